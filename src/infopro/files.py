"""Writing files safely: atomically, with the permissions the umask gives, and OS errors as one line.

Every file infopro writes (run directories, caches, benchmark and probe reports) goes through
`atomic_write`, so a crash, a kill or a full disk never leaves half a file in place of a good one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable

from .errors import InfoProError


class WriteError(InfoProError, OSError):
    """A file could not be written (full or read-only file system, no permission): one line naming it.
    Still an OSError, so code that can do without the file (a cache) goes on."""


def current_umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def error_reason(error: BaseException) -> str:
    """The cause of an error in words ("No space left on device", the first line of a message), never empty."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or os.strerror(error.errno)
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class _RecordingWriter:
    """A file object that remembers the OSError of a failed write: `torch.save` (and zip writers in
    general) replace it by an unhelpful RuntimeError ("unexpected pos 704 vs 598")."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """`write(file)` into a temporary file in the same folder, then rename it over `path`: a crash never
    leaves half a file, and the old one stays until the new one is complete. The file gets the mode a
    plain `open()` would give (0666 less the umask), and the temporary file never outlives a failure.
    An OS error (read-only or full file system, no permission) becomes a `WriteError` naming `path`."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            writer = _RecordingWriter(f)
            try:
                write(writer)  # type: ignore[arg-type]
            except Exception as error:
                if writer.error is not None and writer.error is not error:
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error_reason(error)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Prove that the output directory `path` can be created and written (by doing both), so that a command
    that computes for a long time finds out before, not after; what this made is removed again, so a
    command that fails later leaves nothing behind. The caller makes it for real (`mkdir`) when it writes."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InfoProError(f"{flag} {path} is a file, not a directory; give a directory")
    first_new = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InfoProError(f"{flag} {path}: cannot create {error.filename or path}: {_with_hint(error)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InfoProError(f"{flag} {path}: cannot write in it: {_with_hint(error)}") from None
    finally:
        if first_new is not None:
            for made in [path, *path.parents]:
                with contextlib.suppress(OSError):
                    made.rmdir()
                if made == first_new:
                    break
    return path


def _with_hint(error: OSError) -> str:
    cause = error_reason(error)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause += "; give a directory you can write to"
    return cause

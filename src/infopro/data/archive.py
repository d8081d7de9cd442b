"""Reading images out of a .zip without trusting it: bounded inflation, and members checked before a run starts.

A zip's headers say how large a member is, how it is compressed and whether it
is encrypted, and any of that can be wrong or unreadable. `member_problem`
judges a member from its central-directory entry alone (cheap: no data is
read), so `screen_archive` can refuse, or with `skip` leave out, what cannot be
read before a run starts; `read_member` inflates a member a chunk at a time and
stops at `max_bytes`, whatever its header declared, so a lying header or a zip
bomb never holds more than the limit in memory.

Limits: `max_bytes` per image (DataOptions.max_image_mb, `--max-image-mb`;
default `MAX_IMAGE_MB`). A member that inflates more than `BOMB_RATIO` times
its compressed size may inflate to at most 1/`BOMB_SHARE` of that limit.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
import zlib

from ..errors import InfoProError

MAX_IMAGE_MB = 256.0  # default per-image limit of what a member may inflate to
BOMB_RATIO = 500  # deflate's ceiling is ~1032:1; genuine image files (PNG, JPEG) are ~1:1, raw BMP/TIFF rarely > 100:1
BOMB_SHARE = 16  # past BOMB_RATIO a member may inflate to 1/16 of the limit (16 MB of the default 256 MB)
CHUNK = 1 << 20  # bytes inflated per read

MB = 1 << 20

# Methods of the zip specification (APPNOTE 4.4.5) by number, to name the ones zipfile cannot inflate.
METHOD_NAMES = {1: "shrink", 2: "reduce", 3: "reduce", 4: "reduce", 5: "reduce", 6: "implode", 9: "deflate64",
                10: "PKWARE DCL implode", 12: "bzip2", 14: "lzma", 18: "IBM TERSE", 19: "IBM LZ77", 93: "zstandard",
                95: "xz", 96: "JPEG variant", 97: "WavPack", 98: "PPMd", 99: "AES encryption"}


def _supported_methods() -> frozenset[int]:
    """Compression methods this Python's zipfile can inflate (bzip2 and lzma only where their modules exist)."""
    methods = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    if importlib.util.find_spec("bz2") is not None:
        methods.add(zipfile.ZIP_BZIP2)
    if importlib.util.find_spec("lzma") is not None:
        methods.add(zipfile.ZIP_LZMA)
    zstd = getattr(zipfile, "ZIP_ZSTANDARD", None)  # Python 3.14+
    if zstd is not None:
        methods.add(zstd)
    return frozenset(methods)


SUPPORTED_METHODS = _supported_methods()


def max_bytes_of(max_image_mb: float) -> int:
    """The per-image limit in bytes of a limit in MB (refusing one that is not > 0)."""
    if not max_image_mb > 0:  # also nan
        raise InfoProError(f"--max-image-mb must be > 0, got {max_image_mb}")
    return int(max_image_mb * MB)


def _mb(n: int) -> str:
    if n >= 1024 * MB:
        return f"{n / (1024 * MB):.3g} GB"
    return f"{n / MB:.3g} MB" if n >= MB // 10 else f"{n / 1024:.3g} KB"


def _raise_to(n: int) -> int:
    """A --max-image-mb value (whole MB) above n bytes."""
    return n // MB + 1


def bomb_floor(max_bytes: int) -> int:
    """Bytes a member may inflate to whatever its compression ratio."""
    return max_bytes // BOMB_SHARE


def member_problem(info: zipfile.ZipInfo, max_bytes: int) -> str | None:
    """Why the member `info` cannot be read, judged from its central-directory entry alone, or None."""
    if info.flag_bits & 0x1 or info.compress_type == 99:
        return "encrypted (a password is needed)"
    if info.compress_type not in SUPPORTED_METHODS:
        name = METHOD_NAMES.get(info.compress_type, "an unknown method")
        return f"compressed with {name} (method {info.compress_type}), which Python's zipfile cannot read"
    if info.file_size > max_bytes:
        return (f"declares {_mb(info.file_size)} uncompressed, over the limit of {_mb(max_bytes)} per image "
                f"(--max-image-mb {_raise_to(info.file_size)} would admit it)")
    if info.file_size > bomb_floor(max_bytes) and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
        return (f"declares {_mb(info.file_size)} from {_mb(info.compress_size)} compressed, a zip bomb's ratio "
                f"(over {BOMB_RATIO}:1; --max-image-mb {_raise_to(info.file_size * BOMB_SHARE)} would admit it)")
    if info.file_size == 0:
        return "empty (0 bytes)"
    return None


def is_size_problem(reason: str) -> bool:
    """Whether raising --max-image-mb would admit a member refused for `reason`."""
    return "--max-image-mb" in reason


def _bad(archive: str, name: str, reason: str, advice: str = "remove or replace that file") -> InfoProError:
    return InfoProError(f"cannot read image {archive}:{name} ({reason}); {advice}")


def read_member(zf: zipfile.ZipFile, archive: str, name: str, max_bytes: int) -> io.BytesIO:
    """The bytes of member `name`, inflated a chunk at a time and never more than `max_bytes` of them.

    Raises one-line `InfoProError`s naming `archive:name`: a member its header says cannot be read
    (`member_problem`), one that inflates past the limit, past its declared size or at a bomb's ratio,
    and one whose data is damaged (CRC mismatch, truncated or invalid compressed data)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _bad(archive, name, "no longer in the archive", "the archive changed; open the data set again") from None
    problem = member_problem(info, max_bytes)
    if problem is not None:
        advice = ("if the file is genuine raise the limit, else remove it" if is_size_problem(problem)
                  else "re-pack it (stored or deflated, no password) or remove it")
        raise _bad(archive, name, problem, advice)
    out = io.BytesIO()
    inflated = 0
    try:
        with zf.open(info) as f:
            while True:
                chunk = f.read(min(CHUNK, max_bytes + 1 - inflated))  # one byte past the limit shows it was passed
                if not chunk:
                    break
                inflated += len(chunk)
                if inflated > max_bytes:
                    raise _bad(archive, name, f"inflates past the limit of {_mb(max_bytes)} per image",
                               f"if the file is genuine pass a larger --max-image-mb, else remove it")
                if inflated > info.file_size:
                    raise _bad(archive, name, f"inflates past the {_mb(info.file_size)} its header declares")
                if inflated > bomb_floor(max_bytes) and inflated > BOMB_RATIO * max(info.compress_size, 1):
                    raise _bad(archive, name, f"inflates over {BOMB_RATIO}:1 past {_mb(inflated)}, a zip "
                               "bomb's ratio", f"if the file is genuine pass --max-image-mb "
                               f"{_raise_to(info.file_size * BOMB_SHARE)}, else remove it")
                out.write(chunk)
    except InfoProError:
        raise
    except zipfile.BadZipFile as e:  # CRC mismatch, a local header that disagrees with the directory
        if str(e).startswith("Bad CRC-32"):
            raise _bad(archive, name, "damaged: its data does not match its CRC-32 (corrupt, or headers that lie "
                                      "about its size)") from None
        raise _bad(archive, name, f"damaged: {e}") from None
    except (zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as e:
        # zlib/bz2/lzma errors: invalid or truncated compressed data; RuntimeError: encryption zipfile found itself
        raise _bad(archive, name, f"damaged: {type(e).__name__}: {e}") from None
    out.seek(0)
    return out


def _listed(problems: list[tuple[str, str]], shown: int = 3) -> str:
    text = ", ".join(f"{name} ({reason})" for name, reason in problems[:shown])
    return text + (f" and {len(problems) - shown} more" if len(problems) > shown else "")


def skipped_line(split: str, skipped: list[tuple[str, str]]) -> str:
    """The line that says what `--skip-unreadable` left out of a split."""
    return f"skipped {len(skipped)} unreadable files of {split}: {_listed(skipped)}"


def screen_archive(archive: str, names_by_split: dict[str, list[str]], max_bytes: int,
                   skip: bool) -> tuple[dict[str, list[int]], dict[str, list[tuple[str, str]]]]:
    """(split -> indices into its names of the members that can be read, split -> (name, reason) of those that
    cannot), judged from the archive's headers alone.

    Without `skip`, a member that cannot be read is refused with one line naming the first of them, their
    count, and the flags that admit or skip them."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = {info.filename: info for info in zf.infolist()}
    except (zipfile.BadZipFile, OSError) as e:
        raise InfoProError(f"{archive} is not a readable zip file ({e}); rebuild or re-download it") from None
    kept: dict[str, list[int]] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    for split, names in names_by_split.items():
        kept[split], skipped[split] = [], []
        for i, name in enumerate(names):
            info = infos.get(name)
            problem = "not in the archive" if info is None else member_problem(info, max_bytes)
            if problem is None:
                kept[split].append(i)
            else:
                skipped[split].append((name, problem))
    problems = [p for split in skipped.values() for p in split]
    if problems and not skip:
        advice = []
        if any(is_size_problem(reason) for _, reason in problems):
            advice.append("if they are genuine raise --max-image-mb as said")
        if not all(is_size_problem(reason) for _, reason in problems):
            advice.append("re-pack them (stored or deflated, no password)")
        raise InfoProError(f"{archive} has {len(problems)} unreadable member(s): {_listed(problems)}; "
                           f"{', or '.join(advice)}; or pass --skip-unreadable to leave them out")
    return kept, skipped

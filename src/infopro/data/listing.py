"""Listing a data set's folders, and the class names they give: what is neither a folder nor a file is refused.

A data set's structure is its folders (split, class, image and mask folders), so
an entry that is neither a folder nor a file -- a broken symbolic link, a link
loop, a FIFO, a socket, a device -- would silently change what is read (a class
or a split missing). Readers list folders with `list_folder`, which refuses such
an entry by name; hidden entries (.DS_Store, .git, ._x from macOS archives) are
skipped silently. A symbolic link to a folder or file is followed.

Class names go into the model file, summary, CSV files, exports and plots as
UTF-8 text, one a line where a file lists them: `check_class_names` refuses, at
the start of a run, a name that is not valid UTF-8 or holds a control character.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path
from typing import Iterable

from ..errors import InfoProError

# Unicode categories no class name may hold: control characters (\n, \t, \x00, DEL, ...) and the line and
# paragraph separators, which str.splitlines also breaks a line at.
FORBIDDEN_CATEGORIES = ("Cc", "Zl", "Zp")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def entry_kind(path: str | os.PathLike) -> str:
    """What a folder entry that is neither a folder nor a regular file is, in words (for error messages)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if error.errno == errno.ENOENT and os.path.islink(path):
            return f"a broken symbolic link (to {os.readlink(path)!r}, which does not exist)"
        return f"an entry that cannot be read ({error.strerror})"
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "neither a folder nor a file"


def _is_folder_or_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir() or entry.is_file()
    except OSError:  # a link loop (is_dir says False only for a missing target)
        return False


def list_folder(folder: str | os.PathLike) -> list[os.DirEntry]:
    """The entries of `folder` that are not hidden, sorted by name, each a folder or a regular file (symbolic
    links followed). Raises InfoProError naming an entry that is neither, or `folder` when it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not is_hidden(e.name)), key=lambda e: e.name)
    except PermissionError:
        raise InfoProError(f"cannot list the folder {folder} (permission denied); give it read and execute "
                           f"permission (chmod u+rx) or remove it") from None
    except OSError as error:
        raise InfoProError(f"cannot list the folder {folder} ({error.strerror}); fix or remove it") from None
    for e in entries:
        if not _is_folder_or_file(e):
            raise InfoProError(f"{shown_path(e.path)} is {entry_kind(e.path)}, neither a folder nor a file; "
                               "replace it with the folder or file it stands for, or remove it")
    return entries


def shown_name(name: str) -> str:
    """`name` quoted on one line: control characters escaped, and bytes that are not UTF-8 (os.fsdecode's
    surrogate escapes) shown as the bytes they are ('caf\\xe9')."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(name))[1:]
    return repr(name)


def shown_path(path: str | os.PathLike) -> str:
    """`path` as text for a one-line message: as it is, unless it needs escaping (see `shown_name`)."""
    text = os.fspath(path)
    return text if text.isprintable() else shown_name(text)


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name (not UTF-8, a control character), or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    bad = next((c for c in name if unicodedata.category(c) in FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        return f"holds the control character {bad!r}"
    return None


def check_class_names(names: Iterable[str], where: str | Path, kind: str = "class folder") -> None:
    """Refuse (InfoProError) the first name that is not valid UTF-8 or holds a control character: class names are
    written as UTF-8 text, one a line, into the run's files and the model's exports. `where` names where the
    names come from (a split folder, a classes.txt)."""
    for name in names:
        problem = class_name_problem(name)
        if problem is not None:
            raise InfoProError(f"{kind} {shown_name(name)} in {shown_path(where)} {problem}; rename it (class names "
                               "must be UTF-8 text without tabs, newlines or other control characters)")

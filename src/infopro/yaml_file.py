"""Reading a YAML file of settings (a `-c` config, a run's config.yaml, a grid file) that may be hostile.

Every way such a file can be wrong is one `InfoProError` line: missing, a directory or a FIFO, larger than a
settings file can be, binary, not UTF-8, empty, not YAML, not a mapping, a key given twice, nested too deep, or
aliases that expand to more values than a settings file holds (an "alias bomb": PyYAML shares an anchored value
among its aliases, so the loaded structure is small but anything that walks it walks every copy). These are
checked while the file is composed, before any value is built.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import InfoProError, elide, shown
from .files import error_reason

MAX_BYTES = 1 << 20  # a settings file is a few kB; 1 MB is a wrong file, not a config
MAX_DEPTH = 32  # nesting levels of lists and mappings (settings use 2)
MAX_ALIASES = 100  # *alias references in a file
MAX_VALUES = 10_000  # values once every alias is expanded (a run's config.yaml holds about 200)


class _Refused(Exception):
    """A file refused while it is composed: the message says why (the path is added by the reader)."""


def _line(node_or_event: Any) -> str:
    mark = getattr(node_or_event, "start_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts, while it composes, the aliases, the nesting and the values each node
    stands for once its aliases are expanded, and refuses duplicate keys; all before anything is constructed."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), once composed
        self._aliases = 0
        self._open = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"uses more than {MAX_ALIASES} aliases (*name){_line(event)}; write the values out")
            anchored = self.anchors.get(event.anchor)
            if anchored is not None and id(anchored) not in self._expanded:
                raise _Refused(f"alias *{elide(str(event.anchor), 40)} refers to a value that holds it{_line(event)}")
            return super().compose_node(parent, index)  # an undefined alias: PyYAML's own error
        self._open += 1
        try:
            if self._open > MAX_DEPTH:
                raise _Refused(f"is nested more than {MAX_DEPTH} levels deep{_line(self.peek_event())}")
            node = super().compose_node(parent, index)
        finally:
            self._open -= 1
        if isinstance(node, yaml.MappingNode):
            self._refuse_duplicate_keys(node)
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes = [self._expanded[id(child)] for child in children]
        values = 1 + sum(s[0] for s in sizes)
        depth = 1 + max((s[1] for s in sizes), default=0)
        if values > MAX_VALUES:
            how = "expands to" if self._aliases else "holds"
            bomb = " through its aliases (an alias bomb?)" if self._aliases else ""
            raise _Refused(f"{how} more than {MAX_VALUES:,} values{bomb}{_line(node)}; a settings file holds a "
                           f"few hundred")
        if depth > MAX_DEPTH:
            raise _Refused(f"is nested more than {MAX_DEPTH} levels deep through its aliases{_line(node)}")
        self._expanded[id(node)] = (values, depth)
        return node

    @staticmethod
    def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
        seen: dict[tuple[str, str], Any] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue  # a merge (<<: *base) may be overridden: that is what it is for
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                raise _Refused(f"gives key {shown(key.value, 40)} twice (lines {first.start_mark.line + 1} and "
                               f"{key.start_mark.line + 1}); keep one")


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def read_yaml_text(path: Path, named: str) -> str:
    """The text of the YAML file `path` (`named`: how messages name it), or one line saying why not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InfoProError(f"{named} does not exist") from None
    except OSError as error:
        raise InfoProError(f"cannot read {named}: {error_reason(error)}") from None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise InfoProError(f"{named} is a directory; give a YAML file")
    if not stat.S_ISREG(mode):  # reading a FIFO would wait for a writer forever
        raise InfoProError(f"{named} is {_file_kind(mode)}, not a file; give a YAML file")
    too_big = (f"{named} is larger than {MAX_BYTES // 2**20} MB, far more than a settings file; "
               f"is it the right file?")
    if info.st_size > MAX_BYTES:
        raise InfoProError(too_big)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise InfoProError(f"cannot read {named}: {error_reason(error)}") from None
    if len(data) > MAX_BYTES:  # grew since it was looked at
        raise InfoProError(too_big)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InfoProError(f"{named} is UTF-16 text; save it as UTF-8")
    if b"\0" in data:
        raise InfoProError(f"{named} is a binary file (it holds NUL bytes), not YAML text; give a UTF-8 YAML file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InfoProError(f"{named} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                           f"save it as UTF-8") from None
    return text


def read_yaml_mapping(path: str | Path, what: str = "") -> dict[str, Any]:
    """A YAML file holding a mapping, or one line saying why it cannot be used (`what`, e.g. "config file",
    goes before the path in messages)."""
    path = Path(path)
    named = f"{what} {path}".strip()
    text = read_yaml_text(path, named)
    loader = _BoundedLoader(text)
    try:
        values = loader.get_single_data()
    except _Refused as refused:
        raise InfoProError(f"{named} {refused}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = error.problem or error.context or "cannot be parsed"
        if error.problem and error.context:
            problem = f"{error.problem} ({error.context})"
        problem = elide(str(problem), 120)
        raise InfoProError(f"{named} is not valid YAML: {problem}{where}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as error:
        # e.g. a date like 2024-13-45, or an integer too long for Python to read (over 4300 digits)
        reason = "a number of thousands of digits" if "digits" in str(error) else elide(error_reason(error), 100)
        raise InfoProError(f"{named} holds a value YAML cannot read: {reason}") from None
    finally:
        loader.dispose()
    if values is None:
        raise InfoProError(f"{named} is empty: it holds no `key: value` lines")
    if not isinstance(values, dict):
        raise InfoProError(f"{named} must be a mapping of setting names to values (`key: value` lines), got "
                           f"{_kind(values)}")
    return values


def _kind(value: Any) -> str:
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false",
             set: "a set"}
    return next((k for t, k in kinds.items() if type(value) is t), f"a {type(value).__name__}")

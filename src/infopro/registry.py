"""Name -> builder mappings, so architectures, heads and losses are chosen by name."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from .errors import InfoProError, shown

T = TypeVar("T")


def closest_name(word: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The choice `word` most likely misspells (difflib's closest, or the choice an alias of another tool names),
    for a "did you mean" hint; None when nothing is close."""
    choices = [str(c) for c in choices]
    if len(str(word)) > 4 * max(map(len, choices), default=0):  # no name is that long: nothing to suggest
        return None
    if aliases and aliases.get(word) in choices:
        return aliases[word]
    close = difflib.get_close_matches(str(word), choices, n=1)
    return close[0] if close else None


class Registry(Generic[T]):
    """A small mapping from names to things, with an error that lists the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@REGISTRY.register("name")` adds the decorated object."""

        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            close = closest_name(name, self.names()) if isinstance(name, str) else None
            hint = f"did you mean {close!r}? " if close else ""
            raise InfoProError(
                f"unknown {self.kind} {shown(name)}; {hint}choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{self.kind} registry: {', '.join(self.names())}"

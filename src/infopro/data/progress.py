"""What a data set says while it reads: a line, or a bar that is closed before an error leaves it (so the
error is the last line printed, not the bar's final state drawn after it)."""

from __future__ import annotations

import sys
from typing import Callable, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def say(progress: bool, text: str) -> None:
    """A progress line on stderr (what a set is reading or decoding), unless progress is off."""
    if progress:
        print(text, file=sys.stderr, flush=True)


def progress_map(fn: Callable[[T], R], items: Sequence[T], desc: str, unit: str, progress: bool) -> list[R]:
    """[fn(item) for item in items] under a progress bar; an exception closes the bar before it propagates."""
    out: list[R] = []
    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, mininterval=1.0) as bar:
        for item in items:
            out.append(fn(item))
            bar.update()
    return out

"""Recompute inside a piece: run its blocks as N checkpointed segments, so only segment boundaries stay saved.

Local learning never holds more than one piece's activations; recomputation
(gradient checkpointing) holds, inside that piece, only the input of each
segment plus one segment's activations while its backward recomputes it. The
two combine: `RecomputedSequential` is an `nn.Sequential` (same children,
same state-dict keys) whose forward runs segments through torch's
non-reentrant `torch.utils.checkpoint.checkpoint`.

Recomputation runs each segment's forward a second time, in backward. Two
things must not see it twice, so that a step is bitwise the step without
recomputation:
- buffers a forward updates in place (BatchNorm's running_mean, running_var,
  num_batches_tracked): `checkpoint`'s `context_fn` gives the recomputation a
  context of its own, which copies the segment's buffers on entry and writes
  them back on exit (the batch statistics that normalise are recomputed
  bitwise; only the running averages would move twice);
- random draws (dropout): `preserve_rng_state=True` replays the forward's.
Forward hooks that keep an output (the segmentation objective's `TapHook`)
ask `recomputing()` and keep nothing from a recomputation.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InfoProError

AUTO = "auto"

_state = threading.local()


def recomputing() -> bool:
    """Whether this thread is inside a segment's recomputation (in backward)."""
    return getattr(_state, "depth", 0) > 0


def auto_segments(num_modules: int) -> int:
    """Segments `auto` gives a piece of `num_modules` blocks: round(sqrt(n)), at least 1.

    The classic sqrt(n) rule (Chen et al., 2016): with n blocks of similar size in N segments a piece keeps
    N boundaries plus one segment of n/N blocks, and N + n/N is smallest at N = sqrt(n); every segment but
    (at most) the last is recomputed once whatever N is, so more segments cost hardly any more time.
    """
    return max(1, round(math.sqrt(num_modules)))


def parse_recompute(value: int | str | None) -> int | str | None:
    """`recompute` as given (None, 0, 'off', N >= 1 or 'auto'; a string from the command line too) ->
    None (off), an int N >= 1 or 'auto'."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", "0", ""):
            return None
        if text == AUTO:
            return AUTO
        try:
            value = int(text)
        except ValueError:
            raise InfoProError(f"recompute must be a number of segments (>= 1), 'auto' or 'off', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InfoProError(f"recompute must be a number of segments (>= 1), 'auto' or 'off', got {value!r}")
    return value or None


def segments_for(recompute: int | str | None, num_modules: int) -> int:
    """Segments a piece of `num_modules` modules gets under `recompute` (0: off), never more than its modules."""
    recompute = parse_recompute(recompute)
    if recompute is None:
        return 0
    wanted = auto_segments(num_modules) if recompute == AUTO else recompute
    return min(wanted, num_modules)


def segment_ranges(num_modules: int, segments: int) -> list[range]:
    """Module indices of each segment: block counts differ by at most one, larger segments first."""
    base, extra = divmod(num_modules, segments)
    ranges, start = [], 0
    for s in range(segments):
        size = base + (1 if s < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


class _Recomputation:
    """The recomputation's context: buffers as they were before it, recomputing() true inside it."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self._buffers = [b for m in modules for b in m.buffers(recurse=False)]
        self._saved: list[torch.Tensor] = []

    def __enter__(self) -> None:
        self._saved = [b.detach().clone() for b in self._buffers]
        _state.depth = getattr(_state, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        # Runs also when checkpoint stops the recomputation early (all it needs is recomputed).
        _state.depth -= 1
        with torch.no_grad():
            for buffer, saved in zip(self._buffers, self._saved):
                buffer.copy_(saved)
        self._saved = []


def _run(modules: list[nn.Module], x: Any) -> Any:
    for module in modules:
        x = module(x)
    return x


@torch.compiler.disable  # the compiler cannot trace a checkpoint with a context_fn; what `fn` runs may be compiled
def checkpointed(fn: Callable[..., Any], modules: list[nn.Module], *args: Any) -> Any:
    """`fn(*args)` under non-reentrant checkpoint; `modules` (those `fn` runs) keep their buffers through
    the recomputation."""
    def contexts() -> tuple[contextlib.AbstractContextManager, _Recomputation]:
        return contextlib.nullcontext(), _Recomputation([m for module in modules for m in module.modules()])

    return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=True, context_fn=contexts)


class RecomputedSequential(nn.Sequential):
    """An `nn.Sequential` that trains as `segments` checkpointed segments (same children, same state-dict keys).

    The segments split the modules evenly (larger first). The last segment runs
    without checkpointing unless `checkpoint_last`: its backward would start as
    soon as its forward ends, unless a loss with nets of its own (auxiliary nets)
    comes between, whose activations then need not coexist with the segment's.
    Without gradients (evaluation, `torch.no_grad`) it is a plain `nn.Sequential`.
    `segments` 0 or 1 with `checkpoint_last` False: no checkpointing at all.
    """

    def __init__(self, *args: Any, segments: int = 1, checkpoint_last: bool = False) -> None:
        super().__init__(*args)
        if segments < 0:
            raise InfoProError(f"segments must be >= 0, got {segments}")
        self.segments = int(segments)
        self.checkpoint_last = bool(checkpoint_last)

    @classmethod
    def of(cls, sequential: nn.Sequential, segments: int, checkpoint_last: bool = False) -> "RecomputedSequential":
        """The same modules (shared, not copied) under the same names, run as `segments` segments."""
        return cls(OrderedDict(sequential.named_children()), segments=segments, checkpoint_last=checkpoint_last)

    def __getitem__(self, idx: int | slice) -> Any:
        item = super().__getitem__(idx)
        if isinstance(idx, slice):  # a slice keeps the segmenting (HPFF runs piece 0 without its stem)
            item.segments = min(self.segments, len(item))
            item.checkpoint_last = self.checkpoint_last
        return item

    def ranges(self) -> list[range]:
        """Module indices of each segment."""
        return segment_ranges(len(self), max(1, min(self.segments, len(self)))) if len(self) else []

    def forward(self, x: Any) -> Any:
        if not torch.is_grad_enabled() or (self.segments <= 1 and not self.checkpoint_last):
            return super().forward(x)
        modules = list(self)
        ranges = self.ranges()
        for s, r in enumerate(ranges):
            part = modules[r.start:r.stop]
            if s < len(ranges) - 1 or self.checkpoint_last:
                x = checkpointed(_run, part, part, x)
            else:
                x = _run(part, x)
        return x

    def extra_repr(self) -> str:
        return f"segments={self.segments}, checkpoint_last={self.checkpoint_last}"


def iter_recomputed(modules: nn.Module) -> Iterator[RecomputedSequential]:
    """Every `RecomputedSequential` inside `modules`."""
    return (m for m in modules.modules() if isinstance(m, RecomputedSequential))

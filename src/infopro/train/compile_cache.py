"""`--compile`'s two costs kept apart from training: the compile time of each piece, and a cache in the run
directory so that `--resume` does not compile from scratch.

`compile_cache(run_path)` points inductor's on-disk caches (`TORCHINDUCTOR_CACHE_DIR`: the FX graph cache,
the AOTAutograd cache and the compiled kernels, all on by default in torch >= 2.4) at RUN/compile_cache
while the run trains. A resumed run finds there what the first one compiled: Dynamo still traces each piece
again, but AOTAutograd and inductor's code generation are cache hits. (`torch.compiler.save_cache_artifacts`
would bundle the same entries into one file; a directory needs no save step, so a killed run keeps what it
compiled too.)

`CompileClock` times each piece's share of the first two training steps (through `LocalLearner.piece_done`):
a piece's compile time is its first step's time less its second's.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from ..local import LocalLearner

COMPILE_CACHE_NAME = "compile_cache"
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
# torch._dynamo.utils.counters: (group, key) of each cache's hits and misses
HIT_COUNTERS = (("inductor", "fxgraph_cache_hit"), ("aot_autograd", "autograd_cache_hit"))
MISS_COUNTERS = (("inductor", "fxgraph_cache_miss"), ("aot_autograd", "autograd_cache_miss"))


@contextmanager
def compile_cache(run_path: str | Path) -> Iterator[Path]:
    """While inside: inductor caches in `run_path`/compile_cache (created); the previous setting after."""
    directory = Path(run_path) / COMPILE_CACHE_NAME
    directory.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(directory.absolute())
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous


def cache_counts() -> dict[str, int]:
    """Inductor's and AOTAutograd's cache hits and misses in this process so far."""
    from torch._dynamo.utils import counters

    def total(names: tuple[tuple[str, str], ...]) -> int:
        return int(sum(counters[group][key] for group, key in names))

    return {"hits": total(HIT_COUNTERS), "misses": total(MISS_COUNTERS)}


class CompileClock:
    """Times each piece in the first two steps of `learner.train_step` after `start()`; `record()` then
    gives `compile_seconds` (the first step's extra time, all pieces) and its split per piece."""

    def __init__(self, learner: LocalLearner, device: torch.device) -> None:
        self.learner, self.device = learner, device
        self.steps: list[list[float]] = []  # seconds per piece, per timed step
        self._last = 0.0
        self._counts_before: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return len(self.steps) >= 2

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        """Call before the first step: the clock hooks the learner until two steps are timed."""
        self._counts_before = cache_counts()
        self.learner.piece_done = self._piece_done

    def before_step(self) -> None:
        if not self.done:
            self.steps.append([])
            self._last = self._now()

    def _piece_done(self, k: int) -> None:
        if self.steps and len(self.steps[-1]) == k:
            now = self._now()
            self.steps[-1].append(now - self._last)
            self._last = now
        if self.done and len(self.steps[-1]) == self.learner.K:
            self.learner.piece_done = None

    def record(self) -> dict[str, Any]:
        """{compile_seconds, compile_seconds_per_piece, compile_cache_hits, compile_cache_misses}; with one
        step timed only (an epoch of one step), its whole time: an upper bound."""
        first = self.steps[0]
        second = self.steps[1] if self.done else [0.0] * len(first)
        per_piece = [max(0.0, a - b) for a, b in zip(first, second)]
        counts = cache_counts()
        return {"compile_seconds": sum(per_piece), "compile_seconds_per_piece": per_piece,
                "compile_cache_hits": counts["hits"] - self._counts_before.get("hits", 0),
                "compile_cache_misses": counts["misses"] - self._counts_before.get("misses", 0)}

    def line(self, cache_dir: Path | None) -> str:
        """The one line printed once: the compile time per piece and the cache's hits and misses."""
        r = self.record()
        pieces = ", ".join(f"{s:.1f}" for s in r["compile_seconds_per_piece"])
        where = f"cache {cache_dir}: " if cache_dir is not None else "cache: "
        return (f"compile: {r['compile_seconds']:.1f} s (first step less the second; per piece {pieces} s); "
                f"{where}{r['compile_cache_hits']} hits, {r['compile_cache_misses']} misses")

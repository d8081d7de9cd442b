"""Memory-balanced cuts: place K-1 cuts so that the largest piece's peak memory is as small as possible.

A piece's peak during its local step is the activation memory saved for
backward by its blocks plus by its auxiliary nets, all alive when its
backward starts (the previous piece has already freed its graph). One
forward pass records, per block and per candidate auxiliary objective,
which storages autograd saves; a piece's cost is the size of the union of
its blocks' and its objective's storages (a block's input is the previous
block's output, so neighbours share a storage and it is counted once).
An exact dynamic programme over (piece, last block) then minimises the
largest cost (linear partition), for any `SequentialBackbone`.

With recomputation (`RecomputedSequential`: a piece run as N checkpointed
segments) a piece's peak is the larger of two moments, both from the same
profile: when its backward starts (the inputs of the checkpointed segments,
the last segment's saved tensors unless it is checkpointed too, and the
objective's), and while segment s is recomputed (the inputs of segments
0..s and segment s's saved tensors; the objective's are freed by then).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import torch
from torch import nn

from ..errors import InfoProError
from .recompute import segment_ranges


@dataclass(frozen=True)
class CutContext:
    """What a memory-aware cut preset needs besides the backbone; `LocalLearner` provides it.

    objective_for(k, cut): the objective piece k (0-based) gets when it ends after block `cut`
    (the last piece's objective takes cut = number of blocks: the head's output).
    objective_kind(k): pieces with equal kinds get the same aux nets at the same cut.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    batch_size: int
    objective_for: Callable[[int, int], nn.Module]
    objective_kind: Callable[[int], Hashable]
    # (batch, input shape, num_classes, generator) -> targets of the task's shape (`LocalTask.example_targets`)
    example_targets: Callable[..., torch.Tensor]
    # modules in a piece -> its recomputed segments (0: no recomputation), and whether its last segment is
    # checkpointed too (`RecomputedSequential`); None: no recomputation
    recompute_segments: Callable[[int], int] | None = None
    recompute_last: bool = False


@dataclass
class MemoryProfile:
    """Saved-for-backward storages of each block and of each candidate objective, from one pass.

    `blocks[b]` maps storage id -> bytes for block b (the head is block n);
    `objectives[(kind, b)]` the same for an objective on block b's output;
    `inputs[b]` is (storage id, bytes) of block b's input, which a checkpointed
    segment starting at b keeps (ids shared with the maps above).
    """

    blocks: list[dict[int, int]]
    objectives: dict[tuple[Hashable, int], dict[int, int]] = field(default_factory=dict)
    inputs: list[tuple[int, int]] = field(default_factory=list)

    _unions: dict[tuple[int, int], tuple[set[int], int]] = field(default_factory=dict, repr=False)

    def piece_bytes(self, start: int, end: int, kind: Hashable) -> int:
        """Peak saved bytes of the piece made of blocks start..end (inclusive) with objective `kind`."""
        return sum(self.piece_split(start, end, kind))

    def piece_split(self, start: int, end: int, kind: Hashable) -> tuple[int, int]:
        """(bytes saved by the blocks, further bytes saved by the objective) of that piece."""
        ids, total = self._union(start, end)
        objective = self.objectives[(kind, end)]
        return total, sum(size for i, size in objective.items() if i not in ids)

    def recompute_split(self, start: int, end: int, kind: Hashable, segments: int,
                        checkpoint_last: bool = False) -> tuple[int, int]:
        """(blocks' bytes, objective's bytes) at the peak of that piece run as `segments` checkpointed
        segments (`RecomputedSequential`: even block counts, larger first; the last one checkpointed only with
        `checkpoint_last`). No checkpointed segment: `piece_split`."""
        count = end - start + 1
        segments = min(segments, count)
        if segments < 1 or (segments == 1 and not checkpoint_last):
            return self.piece_split(start, end, kind)
        ranges = [range(r.start + start, r.stop + start) for r in segment_ranges(count, segments)]
        checkpointed = ranges if checkpoint_last else ranges[:-1]
        kept = [self.inputs[r.start] for r in checkpointed]  # each checkpointed segment keeps its input

        def with_kept(ids: set[int], total: int, upto: int) -> tuple[set[int], int]:
            extra = {i: size for i, size in kept[:upto] if i not in ids}
            return ids | set(extra), total + sum(extra.values())

        # When the backward starts: the kept inputs, the plain last segment's tensors, the objective's.
        if checkpoint_last:
            ids, total = with_kept(set(), 0, len(kept))
        else:
            ids, total = with_kept(*self._union(ranges[-1].start, ranges[-1].stop - 1), len(kept))
        objective = self.objectives[(kind, end)]
        peak = (total, sum(size for i, size in objective.items() if i not in ids))
        # While segment s is recomputed: the inputs of segments 0..s, segment s's tensors.
        for s, r in enumerate(checkpointed):
            _, recomputed = with_kept(*self._union(r.start, r.stop - 1), s + 1)
            if recomputed > sum(peak):
                peak = (recomputed, 0)
        return peak

    def _union(self, start: int, end: int) -> tuple[set[int], int]:
        # Built from start..end-1, so a DP sweep over all (start, end) is quadratic, not cubic.
        if (start, end) not in self._unions:
            ids, total = (set(), 0) if end == start else self._union(start, end - 1)
            ids = set(ids)
            for i, size in self.blocks[end].items():
                if i not in ids:
                    ids.add(i)
                    total += size
            self._unions[(start, end)] = (ids, total)
        return self._unions[(start, end)]


class _StorageRecorder:
    """Records storages saved for backward, keeping only the last two blocks' alive.

    Storages are told apart by an id given when first seen; tensors are held
    while their neighbours may still share them, then released (returning
    nothing to autograd keeps the pass's memory at about two blocks, at the
    price of a graph that cannot run backward, which this pass never does).
    """

    def __init__(self, exclude: Sequence[torch.Tensor]) -> None:
        self._excluded = {self._key(t) for t in exclude}
        self._alive: dict[tuple, int] = {}
        self._held: list[list[torch.Tensor]] = [[], []]
        self._next_id = 0
        self.current: dict[int, int] = {}

    @staticmethod
    def _key(t: torch.Tensor) -> tuple:
        return (t.device.type, t.device.index, t.untyped_storage().data_ptr())

    def pack(self, tensor: torch.Tensor) -> None:
        key = self._key(tensor)
        if key in self._excluded:
            return None
        if key not in self._alive:
            self._alive[key] = self._next_id
            self._next_id += 1
        self.current[self._alive[key]] = tensor.untyped_storage().nbytes()
        self._held[-1].append(tensor)
        return None

    def excluding(self, tensors: Sequence[torch.Tensor]) -> "_Excluded":
        """Context: `tensors` (a temporary module's parameters) are not counted while it lasts.

        Their keys are forgotten afterwards: once freed, their memory may hold an activation.
        """
        return _Excluded(self._excluded, {self._key(t) for t in tensors} - self._excluded)

    def id_of(self, tensor: torch.Tensor) -> int:
        """The id of `tensor`'s storage (given now if it was never saved), without counting it in a unit."""
        key = self._key(tensor)
        if key not in self._alive:
            self._alive[key] = self._next_id
            self._next_id += 1
            self._held[-1].append(tensor)
        return self._alive[key]

    def start(self) -> dict[int, int]:
        """Begin recording a new unit (a block or an objective); returns its storage map."""
        self.current = {}
        return self.current

    def next_block(self) -> None:
        """Forget storages saved two blocks ago: a later block cannot share them."""
        dropped = self._held.pop(0)
        kept = {self._key(t) for t in self._held[0]}
        for t in dropped:
            key = self._key(t)
            if key not in kept:
                self._alive.pop(key, None)
        self._held.append([])


class _Excluded:
    def __init__(self, excluded: set, keys: set) -> None:
        self._excluded, self._keys = excluded, keys

    def __enter__(self) -> None:
        self._excluded |= self._keys

    def __exit__(self, *exc: object) -> None:
        self._excluded -= self._keys


def profile_memory(
    blocks: Sequence[nn.Module],
    head: nn.Module,
    K: int,
    context: CutContext,
    cuts: Sequence[int] | None = None,
) -> MemoryProfile:
    """Record what each block, and each kind of objective after each block, saves for backward.

    Runs on copies in training mode (BatchNorm statistics of the model are
    untouched) at `context.batch_size`, on the model's device and dtype.
    `cuts`: profile objectives only after these blocks (default: after every
    block that may end a piece). Each candidate objective is built just before
    its forward pass and dropped after it, so memory stays at about one
    objective's, even for deep networks with large auxiliary nets.
    """
    # Building the candidate aux nets must not move the global RNG the real nets are initialised from.
    with torch.random.fork_rng(devices=[]):
        return _profile_memory(blocks, head, K, context, cuts)


def _profile_memory(blocks: Sequence[nn.Module], head: nn.Module, K: int, context: CutContext,
                    cuts: Sequence[int] | None) -> MemoryProfile:
    blocks = copy.deepcopy(list(blocks)) + [copy.deepcopy(head)]
    param = next(p for b in blocks for p in b.parameters())
    device, dtype = param.device, param.dtype
    n = len(blocks) - 1
    candidates = set(range(n - 1)) if cuts is None else set(cuts)
    kinds = {context.objective_kind(k): k for k in range(K - 1)}
    last_kind = context.objective_kind(K - 1)
    final = context.objective_for(K - 1, n).to(device=device, dtype=dtype)
    params = [p for m in [*blocks, final] for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)

    gen = torch.Generator().manual_seed(0)
    batch = context.batch_size
    x = torch.randn(batch, *context.input_shape, generator=gen).to(device, dtype)
    image = torch.rand(batch, *context.input_shape, generator=gen).to(device, dtype)
    labels = context.example_targets(batch, context.input_shape, context.num_classes, gen).to(device)
    recorder = _StorageRecorder(exclude=params)
    profile = MemoryProfile(blocks=[])
    h = x
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(recorder.pack, lambda _: None):
        for b, block in enumerate(blocks):
            block.train()
            profile.blocks.append(recorder.start())
            h_in, h = h, block(h)
            profile.inputs.append((recorder.id_of(h_in), h_in.untyped_storage().nbytes()))
            del h_in
            if b in candidates:
                for kind, k in kinds.items():
                    objective = context.objective_for(k, b).to(device=device, dtype=dtype).train()
                    with recorder.excluding(list(objective.parameters())):
                        profile.objectives[(kind, b)] = recorder.start()
                        objective(h, labels, image)
                    del objective
            recorder.next_block()
        profile.objectives[(last_kind, n)] = recorder.start()
        final.train()(h, labels, image)
    return profile


def linear_partition(cost: Callable[[int, int, int], int], n: int, K: int) -> list[int]:
    """Cuts minimising max_k cost(k, start_k, end_k) over K contiguous pieces of n blocks (exact DP).

    `cost(k, start, end)` is the cost of piece k covering blocks start..end.
    """
    if not 1 <= K <= n:
        raise InfoProError(f"cannot cut {n} blocks into K={K} pieces")
    inf = float("inf")
    # best[k][e]: smallest largest-cost of pieces 0..k covering blocks 0..e; start_of: piece k's start.
    # Piece k ends at e in [k, n - K + k] so that every later piece keeps at least one block.
    best = [[inf] * n for _ in range(K)]
    start_of = [[0] * n for _ in range(K)]
    for e in range(0, n - K + 1):
        best[0][e] = cost(0, 0, e)
    for k in range(1, K):
        for e in range(k, n - K + k + 1) if k < K - 1 else [n - 1]:
            for s in range(k, e + 1):
                value = max(best[k - 1][s - 1], cost(k, s, e))
                if value < best[k][e]:
                    best[k][e], start_of[k][e] = value, s
    cuts, e = [], n - 1
    for k in range(K - 1, 0, -1):
        s = start_of[k][e]
        cuts.append(s - 1)
        e = s - 1
    return cuts[::-1]


def piece_memory(profile: MemoryProfile, cuts: Sequence[int], kinds: Sequence[Hashable],
                 segments: Callable[[int], int] | None = None, checkpoint_last: bool = False) -> list[tuple[int, int]]:
    """Each piece's (blocks, aux) peak saved bytes under `cuts`; the last piece includes the head (block n).
    `segments(modules)`: the checkpointed segments of a piece of that many modules (None: no recomputation)."""
    n = len(profile.blocks) - 1
    bounds = [-1, *cuts, n - 1]
    return [
        piece_cost(profile, start + 1, n if k == len(cuts) else end, kinds[k], segments, checkpoint_last)
        for k, (start, end) in enumerate(zip(bounds, bounds[1:]))
    ]


def piece_cost(profile: MemoryProfile, start: int, end: int, kind: Hashable,
               segments: Callable[[int], int] | None = None, checkpoint_last: bool = False) -> tuple[int, int]:
    """(blocks, aux) peak saved bytes of the piece of modules start..end, recomputed as `segments` says."""
    if segments is None:
        return profile.piece_split(start, end, kind)
    return profile.recompute_split(start, end, kind, segments(end - start + 1), checkpoint_last)


def balanced_cuts(blocks: Sequence[nn.Module], head: nn.Module, K: int, context: CutContext) -> list[int]:
    """The K-1 cuts that minimise the largest piece's peak saved memory, aux nets included."""
    if K == 1:
        return []
    profile = profile_memory(blocks, head, K, context)
    n = len(blocks)
    kinds = [context.objective_kind(k) for k in range(K)]

    def cost(k: int, start: int, end: int) -> int:
        # The last piece also runs the head (block n) and the task loss on the logits.
        return sum(piece_cost(profile, start, n if k == K - 1 else end, kinds[k], context.recompute_segments,
                              context.recompute_last))

    return linear_partition(cost, n, K)

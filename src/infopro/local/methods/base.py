"""What a local-learning method is: something that builds each piece's objective from a `PieceContext`.

A method never sees the training loop. The learner gives it, per piece, the
shape of the feature at the cut, the piece's index k and K, and read access to
the backbone's later blocks (the next piece starts with the first of them); the
method returns an `Objective` (auxiliary nets + loss, an `nn.Module`). An
objective may also (a) update state once per step after its backward pass
(`after_backward`, e.g. MAN's EMA of the next piece's weights) or after the
optimiser step (`after_optimizer_step`) and
(b) ask for the previous piece and its input (`needs_cascade`), so that its
loss runs through two pieces. Both are said out loud by `crossings`, which
`infopro describe` prints and the isolation test checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable, Mapping, Sequence

import torch
from torch import nn

from ...errors import InfoProError
from ...models.backbone import TokenLayout
from ...registry import Registry
from ..aux_nets import AuxOptions, Feature
from ..objective import LocalObjective, Objective
from ..task import CLASSIFY, LocalTask


@dataclass(frozen=True)
class Lambdas:
    """(lambda1, lambda2) = (second-term weight, task weight) of the first piece and of piece K-1.

    The second term is the method's: InfoPro's reconstruction, PredSim's similarity matching.
    Pieces in between move linearly from the first pair to the last; with K=2
    the only local piece uses the first pair.
    """

    recon_first: float
    task_first: float
    recon_last: float
    task_last: float

    @classmethod
    def parse(cls, values: "Lambdas | tuple[float, ...] | list[float]") -> "Lambdas":
        if isinstance(values, Lambdas):
            return values
        values = list(values)
        if len(values) == 2:
            values = values * 2
        if len(values) != 4:
            raise InfoProError(
                f"lambdas takes four numbers (lambda1, lambda2 of the first piece, then of piece K-1) "
                f"or two (the same for every piece), got {values}"
            )
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise InfoProError(f"lambdas must be numbers, got {values}") from None
        if any(v < 0 for v in numbers):
            raise InfoProError(f"lambdas must be >= 0, got {numbers}")
        return cls(*numbers)

    def for_piece(self, k: int, K: int) -> tuple[float, float]:
        """(lambda1, lambda2) of local piece k (0-based, k < K-1)."""
        t = k / (K - 2) if K > 2 else 0.0
        return (
            self.recon_first + t * (self.recon_last - self.recon_first),
            self.task_first + t * (self.task_last - self.task_first),
        )


@dataclass(frozen=True)
class PieceContext:
    """Everything a method may use to build piece k's objective.

    `cut` is the index of the block the piece ends after (the last piece: the
    number of blocks, its output is the logits). `blocks` are the backbone's
    blocks, for reading only (a method copies shapes or weights from them, it
    never trains them): `later_blocks` are those after the cut, the first of
    them opens the next piece.
    """

    k: int
    K: int
    cut: int
    feature_shape: tuple[int, ...]
    image_shape: tuple[int, ...]
    num_classes: int
    block_shapes: tuple[tuple[int, ...], ...]
    blocks: Sequence[nn.Module] = field(repr=False)
    lambdas: Lambdas
    head: str | None
    aux: AuxOptions
    temperature: float
    options: Mapping[str, Any]
    tokens: TokenLayout | None = None  # how a token feature lies on the image (ViTs)
    stage_sizes: tuple[int, ...] = ()  # blocks per stage, the stem stage 0 (`SequentialBackbone.stage_sizes`)
    label_smoothing: float = 0.0  # of the last piece's cross-entropy (the network's own classifier)
    task: LocalTask = CLASSIFY  # what the network is trained for: its last loss and local task terms
    # The first block of the piece, where known (the learner's own build; not the candidates of cut profiling).
    start: int | None = None
    # name -> block index whose output a network's auxiliary head reads (`SequentialBackbone.aux_taps`)
    taps: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        return self.k == self.K - 1

    @property
    def feature_kind(self) -> str:
        """'map' (C, H, W), 'tokens' (N, D) or 'vector' (D)."""
        return {3: "map", 2: "tokens", 1: "vector"}.get(len(self.feature_shape), "other")

    def feature(self, shape: Sequence[int] | None = None) -> Feature:
        """What the auxiliary-net families build for: the cut's feature (or one of `shape`) and the image."""
        return Feature(tuple(shape) if shape is not None else self.feature_shape, self.image_shape, self.tokens,
                       dense=self.task.dense)

    @property
    def weights(self) -> tuple[float, float]:
        """(lambda1, lambda2) of this piece."""
        return self.lambdas.for_piece(self.k, self.K)

    @property
    def later_blocks(self) -> Sequence[nn.Module]:
        return self.blocks[self.cut + 1:]

    @property
    def next_block(self) -> nn.Module:
        """The first block of the next piece (only for k < K-1)."""
        return self.blocks[self.cut + 1]

    def stage_of(self, block: int) -> int:
        """The stage (0: the stem) that block index `block` lies in."""
        end = 0
        for stage, size in enumerate(self.stage_sizes):
            end += size
            if block < end:
                return stage
        raise InfoProError(f"block {block} lies in no stage of sizes {list(self.stage_sizes)}")


class LocalMethod:
    """Base of every method: the defaults below are Greedy SL's shape (a head and a task loss per piece).

    Subclasses set the class attributes and override `objective` (pieces 0..K-2)
    and, if the last piece is not plain cross-entropy on the logits, `last_objective`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    head: ClassVar[str | None] = None  # default auxiliary head (None: the method builds its own nets)
    task_loss: ClassVar[str] = "cross-entropy"
    second_term: ClassVar[str | None] = None  # what lambda1 weighs: "reconstruction", "similarity" or None
    default_lambdas: ClassVar[Lambdas] = Lambdas(0, 1, 0, 1)
    end_to_end: ClassVar[bool] = False
    # name -> default of the method's own settings (`LocalLearner(method_options=...)`, CLI flags)
    option_defaults: ClassVar[dict[str, Any]] = {}
    # What crosses a cut, one sentence each; empty: the pieces are fully gradient-isolated.
    crossings: ClassVar[tuple[str, ...]] = ()
    # A sentence saying why `--parallel pieces` cannot run this method, or None.
    pieces_parallel_refusal: ClassVar[str | None] = None
    # What the saved-activation profile (describe, cuts='balanced') does not see, or None.
    memory_note: ClassVar[str | None] = None

    @property
    def decoder(self) -> bool:
        """Whether lambda1 weighs a term at all (kept for callers of the old triple)."""
        return self.second_term is not None

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        """Refuse settings this method cannot use (one clear InfoProError)."""
        if self.second_term is None and (lambdas.recon_first or lambdas.recon_last):
            raise InfoProError(
                f"method {self.name!r} has no decoder, so lambda1 (the reconstruction weight) must be 0, "
                f"got lambdas {lambdas}"
            )
        self.check_piece_weights(K, lambdas, options)

    def check_piece_weights(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        """Refuse a local piece that has no loss that trains it (`trains_piece`; a method whose weights depend
        on more than the linear schedule overrides this)."""
        for k in range(K - 1):
            if not self.trains_piece(k, K, lambdas, options):
                raise InfoProError(
                    f"lambdas {lambdas} give piece {k + 1} of {K} no loss at all (lambda1 = lambda2 = 0), "
                    f"so it would never train; give it a non-zero weight"
                )

    def trains_piece(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> bool:
        """Whether local piece k (k < K-1) has a loss that trains it (the learner refuses one that has none)."""
        return lambdas.for_piece(k, K) != (0, 0)

    def objective_kind(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> Hashable:
        """Pieces of equal kind get the same auxiliary nets at the same cut (used by memory profiling)."""
        if k == K - 1:
            return "last"
        return tuple(w != 0 for w in lambdas.for_piece(k, K))

    def objective(self, ctx: PieceContext) -> Objective:
        raise NotImplementedError

    def last_objective(self, ctx: PieceContext) -> Objective:
        """The last piece ends with the network's own head: the task's loss on its output (`LocalTask`)."""
        return ctx.task.last_objective(ctx)

    def build(self, ctx: PieceContext) -> Objective:
        return self.last_objective(ctx) if ctx.is_last else self.objective(ctx)

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The method's settings: its defaults, overridden by `given` (None values keep the default)."""
        given = {k: v for k, v in (given or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            known = ", ".join(self.option_defaults) or "none"
            raise InfoProError(f"method {self.name!r} takes no option(s) {', '.join(unknown)} (its options: {known})")
        return {**self.option_defaults, **given}


METHODS: Registry[LocalMethod] = Registry("method")


def get_method(name: str, K: int) -> LocalMethod:
    method = METHODS.get(name)
    if method.end_to_end and K != 1:
        raise InfoProError(f"method 'e2e' trains the whole network as one piece: use K=1, got K={K}")
    return method


def reinitialise_(module: nn.Module) -> nn.Module:
    """Fresh weights as the rivals' reference code gives all its nets: He-normal convs (fan-out), BN 1 / 0."""
    from ...models.resnet_cifar import init_resnet_

    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    init_resnet_(module)
    return module


def require_map(ctx: PieceContext, method: str) -> None:
    if ctx.feature_kind != "map":
        raise InfoProError(
            f"method {method!r} needs a feature map (channels, height, width) at every cut; "
            f"piece {ctx.k + 1} ends with features of shape {ctx.feature_shape}"
        )


def detach_module(module: nn.Module) -> nn.Module:
    """Freeze: no gradient, not trained by the optimiser."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def head_objective(ctx: PieceContext, head: str, task_loss: str, feature_shape: Sequence[int] | None = None,
                   ) -> LocalObjective:
    """lambda1 * BCE(decoder(h), image) + lambda2 * task_loss(head(h), y) on a feature of `feature_shape`
    (default: the cut's), with the auxiliary-net family that fits the feature (map or tokens, small or
    large input). Greedy SL, DGL and InfoPro are this with different heads, losses and lambdas."""
    from ..aux_families import aux_family_for, check_embedding_head

    recon_weight, task_weight = ctx.weights
    loss = ctx.task.task_loss(task_loss, ctx)
    out_dim = ctx.aux.feature_dim if loss.output_is_embedding else ctx.num_classes
    feature = ctx.feature(feature_shape)
    family = aux_family_for(feature)
    if loss.output_is_embedding and task_weight:
        check_embedding_head(family, feature)
    return LocalObjective(
        loss,
        head=family.head(ctx.head or head, feature, out_dim, ctx.aux) if task_weight else None,
        decoder=family.decoder(feature, ctx.aux) if recon_weight else None,
        recon_weight=recon_weight,
        task_weight=task_weight,
    )


class HeadMethod(LocalMethod):
    """A method whose piece objective is `head_objective` with its own head and task loss."""

    def objective(self, ctx: PieceContext) -> Objective:
        return head_objective(ctx, self.head, self.task_loss)

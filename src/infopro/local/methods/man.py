"""MAN (Su et al., ECCV 2024) and MAN++ (TPAMI 2026): momentum auxiliary networks on top of InfoPro.

Piece k (k < K-1) ends after block `cut`; block cut+1 opens piece k+1. Its
auxiliary input is y = LB(h) + EMA(h) (MAN) or y = s LB(h) + (2 - s) EMA(h)
(MAN++, s a learnable scalar starting at 1), where LB and EMA are blocks of
block cut+1's architecture, initialised afresh (the reference deep-copies the
block, then its init loop draws new weights: they do not start equal to it).
LB is trained with the piece; EMA is frozen and follows block cut+1,
theta_EMA <- m theta_EMA + (1 - m) theta_next (m = `momentum`, 0.995), once per
step, right after piece k's backward and BEFORE the optimiser step, towards
block cut+1's weights as they are then (the weights after the previous step),
as the reference code does (`resnetInfoPro_MAN.py` 284-289, `resnetInfoPro_MANPP.py`
312-317). InfoPro's decoder and a head are then applied to y; the last piece
trains on cross-entropy as usual.

As the authors' README trains them: the head is 2c2f with cross-entropy
(option `task_loss`; "supcon" for the contrastive head, its mean set by
`supcon_mean`), lambdas (5, 0.5, 0, 0). The lambdas of a piece follow the
reference's schedule (`lambda_schedule` "next-stage"): t = stage of the next
block / (K_ref - 2) (0 when K_ref <= 2), weights lambda_first (1 - t) +
lambda_last t, where K_ref (`lambda_K`) is the reference's `local_module_num`:
by default K for MAN, whose stem is part of piece 1, and K - 1 for MAN++, whose
stem is a piece of its own (its K=4 and K=8 runs are our 5 and 9 pieces). The
reference's "one block per piece" labels need it given: ResNet-32 K=16 has 15
entries (MAN: 15 pieces; MAN++: 16), ResNet-110 K=55 has 54. MAN++'s stem piece
(piece 1 when it holds the stem alone) is as in the reference (136-140, 285):
t = 0 and always a 1c2f head with the supervised contrastive loss, whatever the
head and task-loss settings. `lambda_schedule` "piece" is InfoPro's k / (K - 2)
over our pieces instead (for networks without stages, or small K, where the
stage ratio exceeds 1: the reference would then give a piece zero or negative
weights, which is refused here).

What crosses a cut: *weights*, not gradients. Piece k reads the parameters (not
the BatchNorm statistics) of piece k+1's first block into its EMA copy; piece
k's loss never reaches piece k+1 (the EMA copy is frozen, and it is a copy).
Under `--parallel pieces` rank k+1 sends that block's parameters at the start
of every step (as they are before its optimiser step) and rank k applies the
update at the end of the same step: the EMA then holds what one process holds.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Hashable, Mapping

import torch
from torch import nn

from ...errors import InfoProError
from ..losses import SUPCON_MEANS
from ..objective import LocalObjective, Objective
from .base import METHODS, Lambdas, LocalMethod, PieceContext, detach_module, head_objective, reinitialise_, require_map

LAMBDA_SCHEDULES = ("next-stage", "piece")
MAN_TASK_LOSSES = ("cross-entropy", "supcon")


class MomentumObjective(Objective):
    """InfoPro's loss on y = a LB(h) + b EMA(h); `after_backward` moves EMA towards `target`."""

    def __init__(self, learnable: nn.Module, ema: nn.Module, target: nn.Module, infopro: LocalObjective,
                 momentum: float, learnable_scale: bool) -> None:
        super().__init__()
        self.learnable = learnable
        self.ema = detach_module(ema)
        self.scale = nn.Parameter(torch.tensor(1.0)) if learnable_scale else None
        self.infopro = infopro
        self.momentum = float(momentum)
        self.recon_weight, self.task_weight = infopro.recon_weight, infopro.task_weight
        # The next piece's first block: read after each backward, never trained here, so not a submodule
        # (it stays out of this objective's parameters and state dict).
        object.__setattr__(self, "_target", target)

    @property
    def needs_image(self) -> bool:
        return self.infopro.needs_image

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        if self.scale is None:
            y = self.learnable(h) + self.ema(h)
        else:
            y = self.scale * self.learnable(h) + (2 - self.scale) * self.ema(h)
        return self.infopro(y, labels, image)

    @property
    def follows(self) -> nn.Module:
        return self._target

    @torch.no_grad()
    def after_backward(self) -> None:
        """theta_EMA <- m theta_EMA + (1 - m) theta_next, with the next block's weights as they are now
        (before the optimiser step), in the reference's order of operations."""
        m = self.momentum
        for ema, target in zip(self.ema.parameters(), self._target.parameters()):
            ema.mul_(m).add_(target.detach().to(ema.dtype) * (1 - m))

    def extra_repr(self) -> str:
        return f"momentum={self.momentum:g}"


class MomentumAuxiliary(LocalMethod):
    """MAN / MAN++: InfoPro's decoder and a head on LB(h) + EMA(h), EMA following the next piece's first block."""

    second_term = "reconstruction"
    task_loss = "cross-entropy"
    head = "2c2f"
    default_lambdas = Lambdas(5, 0.5, 0, 0)
    option_defaults = {"momentum": 0.995, "task_loss": "cross-entropy", "supcon_mean": "all-anchors",
                       "lambda_schedule": "next-stage", "lambda_K": None}
    crossings = (
        "weights: right after piece k's backward, before the optimiser step, piece k moves its frozen EMA block "
        "towards the parameters of piece k+1's first block as they are then (momentum m); no gradient crosses a cut",
        "architecture: the LB and EMA blocks of piece k are built like piece k+1's first block (fresh weights)",
        "--parallel pieces: at the start of every step rank k+1 sends that block's parameters (before its optimiser "
        "step) to rank k, which applies the update at the end of the same step: the EMA holds what it holds in "
        "one process",
    )

    def __init__(self, name: str, learnable_scale: bool, stem_piece: bool, description: str) -> None:
        self.name, self.learnable_scale, self.description = name, learnable_scale, description
        # MAN++: the stem alone is piece 1, with the reference's fixed head, loss and t = 0.
        self.stem_piece = stem_piece

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        if not 0 <= options["momentum"] <= 1:
            raise InfoProError(f"{self.name}'s momentum (--ema-momentum) must be in [0, 1], got {options['momentum']}")
        for key, allowed, flag in (("task_loss", MAN_TASK_LOSSES, "--task-loss"),
                                   ("supcon_mean", SUPCON_MEANS, "--supcon-mean"),
                                   ("lambda_schedule", LAMBDA_SCHEDULES, "--lambda-schedule")):
            if options[key] not in allowed:
                raise InfoProError(f"{self.name}'s {key} ({flag}) must be one of {', '.join(allowed)}, "
                                   f"got {options[key]!r}")
        lambda_K = options["lambda_K"]
        if lambda_K is not None and (not isinstance(lambda_K, int) or isinstance(lambda_K, bool) or lambda_K < 1):
            raise InfoProError(f"{self.name}'s lambda_K (--lambda-K) must be an integer >= 1, got {lambda_K!r}")

    def check_piece_weights(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        if options["lambda_schedule"] == "piece":
            super().check_piece_weights(K, lambdas, options)
        # "next-stage": the weights depend on where the cuts are; each piece's are checked as it is built.

    def objective_kind(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> Hashable:
        if k < K - 1 and options["lambda_schedule"] == "next-stage":
            return "local"  # the objective at a cut depends on the cut only
        return super().objective_kind(k, K, lambdas, options)

    def reference_K(self, K: int, options: Mapping[str, Any]) -> int:
        """The K of the reference's ratio stage / (K - 2): `lambda_K`, else K (MAN) or K - 1 (MAN++)."""
        if options["lambda_K"] is not None:
            return int(options["lambda_K"])
        return K - 1 if self.stem_piece else K

    def is_stem_piece(self, ctx: PieceContext) -> bool:
        """MAN++'s first piece when it holds the stem alone (block 0, all of stage 0)."""
        return self.stem_piece and ctx.k == 0 and ctx.cut == 0 and ctx.stage_sizes[:1] == (1,)

    def piece_weights(self, ctx: PieceContext) -> tuple[float, float]:
        """(lambda1, lambda2) of local piece k under the method's `lambda_schedule`."""
        options = ctx.options
        if options["lambda_schedule"] == "piece":
            return ctx.weights
        if len(ctx.stage_sizes) < 2:
            raise InfoProError(
                f"{self.name}'s lambda schedule 'next-stage' reads the stage of each cut's next block, but this "
                f"backbone has no stages; use --lambda-schedule piece"
            )
        ref_K = self.reference_K(ctx.K, options)
        stage = 0 if self.is_stem_piece(ctx) else ctx.stage_of(ctx.cut + 1)
        t = stage / (ref_K - 2) if ref_K > 2 else 0.0
        lam = ctx.lambdas
        weights = (lam.recon_first * (1 - t) + lam.recon_last * t, lam.task_first * (1 - t) + lam.task_last * t)
        if min(weights) < 0 or weights == (0, 0):
            raise InfoProError(
                f"{self.name}'s lambda schedule 'next-stage' (the reference's t = stage of the next block / "
                f"(K - 2) = {stage}/({ref_K} - 2)) gives piece {ctx.k + 1} of {ctx.K} the weights "
                f"({weights[0]:g}, {weights[1]:g}) from lambdas {lam}: "
                f"{'negative weights would train it to increase its loss' if min(weights) < 0 else 'it would never train'}; "
                f"use --lambda-schedule piece, a larger --lambda-K or other --lambdas"
            )
        return weights

    def objective(self, ctx: PieceContext) -> Objective:
        require_map(ctx, self.name)
        recon_weight, task_weight = self.piece_weights(ctx)
        stem = self.is_stem_piece(ctx)
        head = "1c2f" if stem else (ctx.head or self.head)
        task_loss = "supcon" if stem else ctx.options["task_loss"]
        piece_ctx = dataclasses.replace(ctx, head=head,
                                        lambdas=Lambdas(recon_weight, task_weight, recon_weight, task_weight))
        target = ctx.next_block
        learnable, ema = (reinitialise_(copy.deepcopy(target)) for _ in range(2))
        infopro = reinitialise_(head_objective(piece_ctx, head, task_loss, ctx.block_shapes[ctx.cut + 1]))
        return MomentumObjective(learnable.requires_grad_(True), ema, target, infopro,
                                 ctx.options["momentum"], self.learnable_scale)


METHODS.add("man", MomentumAuxiliary(
    "man", False, False, "MAN: InfoPro's decoder and a head on LB(h) + EMA(h), EMA of the next piece's first block"))
METHODS.add("man++", MomentumAuxiliary(
    "man++", True, True, "MAN++: as MAN on s LB(h) + (2 - s) EMA(h), s learnable; the stem is a piece of its own"))

"""MAN (Su et al., ECCV 2024) and MAN++ (TPAMI 2026): momentum auxiliary networks on top of InfoPro.

Piece k (k < K-1) ends after block `cut`; block cut+1 opens piece k+1. Its
auxiliary input is y = LB(h) + EMA(h) (MAN) or y = s LB(h) + (2 - s) EMA(h)
(MAN++, s a learnable scalar starting at 1), where LB and EMA are newly
initialised blocks of block cut+1's architecture: LB is trained with the
piece, EMA is frozen and follows block cut+1's weights after every optimiser
step, theta_EMA <- m theta_EMA + (1 - m) theta_next (m = `momentum`, 0.995).
Under `--parallel pieces` the weights come from rank k+1 by a message after
every step and are applied one step late (see `crossings`).
InfoPro's decoder and head (Contrast) are then applied to y, with InfoPro's
lambdas. The last piece trains on cross-entropy as usual.

What crosses a cut: *weights*, not gradients. After every optimiser step piece
k reads the parameters (not the BatchNorm statistics) of piece k+1's first
block into its EMA copy; piece k's loss never reaches piece k+1 (the EMA copy
is frozen, and it is a copy). As in the reference code, the EMA update after
step t uses block cut+1's weights after step t.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from ...errors import InfoProError
from ..objective import LocalObjective, Objective
from .base import METHODS, Lambdas, LocalMethod, PieceContext, detach_module, head_objective, reinitialise_, require_map


class MomentumObjective(Objective):
    """InfoPro's loss on y = a LB(h) + b EMA(h); `after_optimizer_step` moves EMA towards `target`."""

    def __init__(self, learnable: nn.Module, ema: nn.Module, target: nn.Module, infopro: LocalObjective,
                 momentum: float, learnable_scale: bool) -> None:
        super().__init__()
        self.learnable = learnable
        self.ema = detach_module(ema)
        self.scale = nn.Parameter(torch.tensor(1.0)) if learnable_scale else None
        self.infopro = infopro
        self.momentum = float(momentum)
        self.recon_weight, self.task_weight = infopro.recon_weight, infopro.task_weight
        # The next piece's first block: read after each step, never trained here, so not a submodule
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
    def after_optimizer_step(self) -> None:
        m = self.momentum
        for ema, target in zip(self.ema.parameters(), self._target.parameters()):
            ema.mul_(m).add_(target.detach().to(ema.dtype), alpha=1 - m)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum:g}"


class MomentumAuxiliary(LocalMethod):
    """MAN / MAN++: InfoPro on LB(h) + EMA(h), EMA following the next piece's first block."""

    second_term = "reconstruction"
    task_loss = "supcon"
    head = "1c2f"
    default_lambdas = Lambdas(5, 1, 5, 1)
    option_defaults = {"momentum": 0.995}
    crossings = (
        "weights: after every optimiser step piece k copies an EMA (momentum m) of the parameters of piece "
        "k+1's first block into its frozen EMA block; no gradient crosses a cut",
        "architecture: the LB and EMA blocks of piece k are built like piece k+1's first block (fresh weights)",
        "--parallel pieces: rank k+1 sends that block's parameters to rank k after every optimiser step, and "
        "rank k applies the update for step t-1 after its own step t (one step stale; the last update of an "
        "epoch is applied at its end, so the EMA has caught up before evaluation and checkpointing)",
    )

    def __init__(self, name: str, learnable_scale: bool, description: str) -> None:
        self.name, self.learnable_scale, self.description = name, learnable_scale, description

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        if not 0 <= options["momentum"] <= 1:
            raise InfoProError(f"{self.name}'s momentum (--ema-momentum) must be in [0, 1], got {options['momentum']}")

    def objective(self, ctx: PieceContext) -> Objective:
        require_map(ctx, self.name)
        target = ctx.next_block
        learnable, ema = (reinitialise_(copy.deepcopy(target)) for _ in range(2))
        infopro = reinitialise_(head_objective(ctx, self.head, self.task_loss, ctx.block_shapes[ctx.cut + 1]))
        return MomentumObjective(learnable.requires_grad_(True), ema, target, infopro,
                                 ctx.options["momentum"], self.learnable_scale)


METHODS.add("man", MomentumAuxiliary("man", False, "MAN: InfoPro on LB(h) + EMA(h), EMA of the next piece's first block"))
METHODS.add("man++", MomentumAuxiliary("man++", True, "MAN++: InfoPro on s LB(h) + (2 - s) EMA(h), s learnable"))

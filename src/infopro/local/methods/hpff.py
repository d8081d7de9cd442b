"""HPFF (hierarchical locally supervised learning with patch feature fusion, ECCV 2024), on InfoPro's cuts.

As its code runs it (Zeudfish/HPFF, `Exp on CIFAR_SVHN_STL/network/resnetInfoPro_HPFF.py`), two paths per
piece k >= 1, with weights (own, cascade) = (0.001, 0.999):
- own: a head on the piece's own output h_k and the task loss (the last piece: cross-entropy on its logits);
- cascade: z = piece_k(piece_{k-1}(h_{k-2})), both pieces run again from piece k-1's (detached) input,
  and InfoPro's loss on z: lambda1 * quadrant-decoder BCE + lambda2 * task loss of a second head
  (the last piece: cross-entropy on z's logits, lines 296-301). The quadrant decoder cuts z into four
  quadrants, each with its own decoder for the matching quadrant of the image; the four BCEs are
  summed, not averaged (`network/auxiliary_net.py` 59-60).
- Piece 0 has no loss of its own (lines 261-265): it learns only through piece 1's cascade. Its first
  block (the stem) runs once per step and piece 1's cascade starts from its output (`y = torch.clone(x)`,
  line 257), so the stem's BatchNorm statistics move once per step, every other piece's as often as
  in the reference (see `LocalLearner.train_step`).
- lambdas: piece k uses ratio k / (K - 2) between the first pair and the last (line 271): the first pair
  belongs to piece 0, which has no loss, so piece 1 starts at 1 / (K - 2). Where the reference's K counts
  one more module than it builds (its ResNet-32 K=16 and ResNet-110 K=55 lists have 15 and 54 entries,
  the stem merged into the first), scale the last pair so that piece K-2 lands on the reference's ratio
  (scripts/make_configs.py does).
- Defaults are its README's commands: head 2c2f, cross-entropy (`--local_loss_mode cross_entropy`),
  lambdas (5, 0.5, 0, 0). `hpff-contrast` is the same with the supervised contrastive loss
  (its train.py's default `--local_loss_mode contrast`).

What crosses a cut: *gradients*. Piece k's cascade loss back-propagates into piece
k-1's parameters, so piece k-1's gradient is the sum of its own loss's and piece k's
cascade's (weight 0.999); piece k-1's BatchNorm statistics are updated by both
forward passes. Nothing reaches further back than one piece.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import torch
from torch import nn

from ...errors import InfoProError
from ..aux_families import aux_family_for
from ..aux_nets import Decoder
from ..losses import TASK_LOSSES, CrossEntropyTerm, reconstruction_loss
from ..objective import Objective
from .base import METHODS, Lambdas, LocalMethod, PieceContext, reinitialise_, require_map


class QuadrantDecoder(nn.Module):
    """Four decoders: quadrant q of the feature map reconstructs quadrant q of the image (sum of 4 BCEs)."""

    def __init__(self, feature_shape: Sequence[int], image_shape: Sequence[int], widen: int) -> None:
        super().__init__()
        c, fh, fw = feature_shape
        ic, ih, iw = image_shape
        if min(fh, fw) < 2:
            raise InfoProError(f"hpff's quadrant decoder needs a feature map of at least 2x2, got {fh}x{fw}")
        self.decoders = nn.ModuleList(
            Decoder((c, fh - fh // 2 if r else fh // 2, fw - fw // 2 if s else fw // 2),
                    (ic, ih - ih // 2 if r else ih // 2, iw - iw // 2 if s else iw // 2), widen)
            for r in (0, 1) for s in (0, 1)
        )

    @staticmethod
    def quadrants(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        return [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]

    def loss(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return sum(reconstruction_loss(decoder(f), i) for decoder, f, i in
                   zip(self.decoders, self.quadrants(features), self.quadrants(image)))


def _cascade(h: torch.Tensor, cascade: Sequence | None) -> torch.Tensor:
    """z = piece_k(piece_{k-1}(input of piece k-1)); without a cascade (memory profiling only) h stands in."""
    if cascade is None:
        return h
    previous, piece, h_previous = cascade
    return piece(previous(h_previous))


class HPFFObjective(Objective):
    """own_weight * task(own_head(h)) + cascade_weight * (l1 * quadrant BCE(z) + l2 * task(head(z)))."""

    needs_cascade = True

    def __init__(self, own_head: nn.Module, head: nn.Module | None, decoder: QuadrantDecoder | None,
                 task_loss: nn.Module, weights: tuple[float, float], lambdas: tuple[float, float]) -> None:
        super().__init__()
        self.own_head, self.head, self.decoder, self.task = own_head, head, decoder, task_loss
        self.own_weight, self.cascade_weight = weights
        self.recon_weight, self.task_weight = lambdas

    @property
    def needs_image(self) -> bool:
        return self.decoder is not None

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None,
                cascade: Sequence | None = None) -> torch.Tensor:
        loss = self.own_weight * self.task(self.own_head(h), labels)
        z = _cascade(h, cascade)
        # With both lambdas 0 the reference still back-propagates 0 * loss: pieces k-1 and k get zero
        # gradients, not none, so weight decay and momentum act on them as there.
        cascade_loss = 0 * z.float().sum()
        if self.decoder is not None:
            cascade_loss = cascade_loss + self.recon_weight * self.decoder.loss(z, image)
        if self.head is not None:
            cascade_loss = cascade_loss + self.task_weight * self.task(self.head(z), labels)
        return loss + self.cascade_weight * cascade_loss


class HPFFLastObjective(Objective):
    """own_weight * CE(logits) + cascade_weight * CE(piece_{K-1}(piece_{K-2}(h_{K-3})))."""

    needs_cascade = True

    def __init__(self, weights: tuple[float, float], label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.own_weight, self.cascade_weight = weights
        self.ce = CrossEntropyTerm(label_smoothing)  # both terms are the network's own classifier

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None,
                cascade: Sequence | None = None) -> torch.Tensor:
        return self.own_weight * self.ce(h, labels) + self.cascade_weight * self.ce(_cascade(h, cascade), labels)


class NoOwnLoss(Objective):
    """HPFF's first piece: no loss of its own (its gradient comes from piece 1's cascade)."""

    task_weight = 0.0

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        return h.new_zeros((), dtype=torch.float32)


class HPFF(LocalMethod):
    """Own path (weight 0.001) + cascade through pieces k-1 and k into InfoPro's loss (weight 0.999)."""

    head = "2c2f"
    second_term = "reconstruction"
    default_lambdas = Lambdas(5, 0.5, 0, 0)  # the README's --ixx_1 5 --ixy_1 0.5 --ixx_2 0 --ixy_2 0
    option_defaults = {"own_weight": 0.001, "cascade_weight": 0.999}
    crossings = (
        "gradients: piece k's cascade loss (weight cascade_weight) runs pieces k-1 and k again on piece k-1's "
        "input and back-propagates into piece k-1's parameters (and the last piece's into piece K-2's)",
        "piece 1 has no loss of its own: it is trained only through piece 2's cascade, which starts from "
        "the output of its first block (the stem runs once per step)",
    )
    pieces_parallel_refusal = (
        "its cascade loss runs piece k-1 inside piece k's step and sends gradients back to piece k-1"
    )
    memory_note = "the saved-memory profile leaves out the cascade's second pass through pieces k-1 and k"

    def __init__(self, name: str, task_loss: str, description: str) -> None:
        self.name, self.task_loss, self.description = name, task_loss, description

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        if K < 2:
            raise InfoProError(f"{self.name}'s cascade runs across two pieces: use K >= 2")
        if any(options[k] < 0 for k in ("own_weight", "cascade_weight")):
            raise InfoProError(f"{self.name}'s path weights must be >= 0, got {options['own_weight']}, "
                               f"{options['cascade_weight']}")

    def trains_piece(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> bool:
        """Piece 0 learns through piece 1's cascade; piece k >= 1 also through its own path (the README's
        lambdas end at (0, 0): piece K-2 then trains by its own head and piece K-1's cascade)."""
        return k == 0 or options["own_weight"] > 0 or super().trains_piece(k, K, lambdas, options)

    def objective_kind(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> Hashable:
        return "first" if k == 0 else super().objective_kind(k, K, lambdas, options)

    def _weights(self, ctx: PieceContext) -> tuple[float, float]:
        return float(ctx.options["own_weight"]), float(ctx.options["cascade_weight"])

    def objective(self, ctx: PieceContext) -> Objective:
        require_map(ctx, self.name)
        if ctx.k == 0:
            return NoOwnLoss()
        recon_weight, task_weight = ctx.weights
        task = TASK_LOSSES.get(self.task_loss)(ctx.temperature)
        out_dim = ctx.aux.feature_dim if task.output_is_embedding else ctx.num_classes
        head_name = ctx.head or self.head
        feature = ctx.feature()
        family = aux_family_for(feature)  # heads follow the feature kind; the quadrant decoder is HPFF's own
        return reinitialise_(HPFFObjective(
            own_head=family.head(head_name, feature, out_dim, ctx.aux),
            head=family.head(head_name, feature, out_dim, ctx.aux) if task_weight else None,
            decoder=QuadrantDecoder(ctx.feature_shape, ctx.image_shape, ctx.aux.widen) if recon_weight else None,
            task_loss=task, weights=self._weights(ctx), lambdas=(recon_weight, task_weight),
        ))

    def last_objective(self, ctx: PieceContext) -> Objective:
        return HPFFLastObjective(self._weights(ctx), ctx.label_smoothing)


METHODS.add("hpff", HPFF("hpff", "cross-entropy", "HPFF: own 2c2f CE head (0.001) + cascade through pieces k-1, k "
                                                   "into quadrant-decoder InfoPro with a CE head (0.999)"))
METHODS.add("hpff-contrast", HPFF("hpff-contrast", "supcon", "HPFF with the supervised contrastive loss in "
                                                             "both heads (its train.py's default loss mode)"))

"""The last piece's objective for semantic segmentation: the decode head's loss + 0.4 x the FCN auxiliary head's.

As the authors' DeepLab-v3 config (mmseg 0.10): the network's output (the ASPP
decode head's logits) against the mask, plus `aux_weight` (0.4) times the loss
of an FCN head on the output of an intermediate block (the end of ResNet's
layer3), both resized with align_corners=False and averaged over all pixels.
The intermediate output is taken by a forward hook on that block (`TapHook`),
only while it trains with gradients, and dropped as soon as the loss read it.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from ..errors import InfoProError
from .dense_losses import PixelCrossEntropyTerm
from .objective import Objective
from .recompute import recomputing


class TapHook:
    """A forward hook that keeps the last output of its block for the objective that owns it.

    It keeps it only while grad is enabled, the block trains, its owner is
    alive and no checkpointed segment is being recomputed, so evaluation, export and a dropped objective never hold a tensor.
    A deep copy (or pickle) of the hook holds nothing and has no owner until an
    objective adopts it: a copied backbone alone gets an inert hook, a copy made
    together with its objective (one `deepcopy` of both) gets a working pair.
    """

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None
        self.owner: weakref.ref | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        # A recomputation (in backward) keeps nothing: the loss read the forward's output long before.
        if (self.owner is not None and self.owner() is not None and module.training and torch.is_grad_enabled()
                and not recomputing()):
            self.output = output

    def take(self) -> torch.Tensor | None:
        """The kept output, forgotten here."""
        output, self.output = self.output, None
        return output

    def __deepcopy__(self, memo: dict) -> "TapHook":
        return TapHook()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


class SegmentationLastObjective(Objective):
    """`pixel_ce(h, mask) + aux_weight * pixel_ce(aux_head(tap_block's output), mask)`.

    `tap_block`: the block (in the last piece) whose output the auxiliary head reads, or None
    for no auxiliary head; it is hooked, not held (its parameters stay the piece's).
    `aux_head` comes with it (e.g. `fcn_aux_head(channels, classes)`). When the tap did not
    run with gradients in training mode before the loss (evaluation, no_grad), the auxiliary
    term is left out and `last_terms` has "task" only; otherwise {"task", "aux"}.
    """

    def __init__(self, tap_block: nn.Module | None = None, aux_head: nn.Module | None = None,
                 aux_weight: float = 0.4, ignore_index: int = 255, align_corners: bool = False,
                 avg_non_ignore: bool = False) -> None:
        super().__init__()
        if (tap_block is None) != (aux_head is None):
            raise InfoProError("the segmentation objective's auxiliary head needs both tap_block and aux_head "
                               "(or neither, for no auxiliary head)")
        if aux_weight < 0:
            raise InfoProError(f"the auxiliary head's weight must be >= 0, got {aux_weight}")
        self.task_loss = PixelCrossEntropyTerm(ignore_index, align_corners, avg_non_ignore)
        self.aux_head = aux_head
        self.aux_weight = float(aux_weight)
        self._tap: TapHook | None = None
        if tap_block is not None:
            self._tap = TapHook()
            self._tap.owner = weakref.ref(self)
            handle = tap_block.register_forward_hook(self._tap)
            # The hook leaves the block when this objective is dropped (e.g. the candidates of cut profiling).
            weakref.finalize(self, handle.remove)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self._tap is not None:  # a copy adopts its (copied) hook
            self._tap.owner = weakref.ref(self)

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        tapped = self._tap.take() if self._tap is not None else None
        terms = {"task": self.task_loss(h, labels)}
        loss = terms["task"]
        if tapped is not None:
            terms["aux"] = self.task_loss(self.aux_head(tapped), labels)
            loss = loss + self.aux_weight * terms["aux"]
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return loss

    def after_backward(self) -> None:
        if self._tap is not None:  # a forward whose loss was never computed holds nothing past the step
            self._tap.take()

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight:g}" if self.aux_head is not None else "no auxiliary head"

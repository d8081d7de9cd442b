"""What local learning needs to know of the task a network is trained for: the shape of its output, the loss
of the last piece, the task term of a local piece, and which methods make sense at all.

`LocalTask`'s defaults are classification's (one class index per image). A task with other targets (semantic
segmentation: one class index per pixel) is a subclass in `infopro.tasks`; the learner and the methods consult
the object they are given and never test a task's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from ..errors import InfoProError
from .losses import TASK_LOSSES, CrossEntropyTerm
from .objective import LocalObjective, Objective

if TYPE_CHECKING:  # only for hints: methods/ imports this module
    from .methods.base import LocalMethod, PieceContext


class LocalTask:
    """The task's side of local learning; the defaults are image classification's."""

    name: str = "classify"
    # Targets per pixel: the auxiliary nets keep the map's layout (`Feature.dense`) and labels are (N, H, W).
    dense: bool = False

    def check_output(self, output_shape: Sequence[int], num_classes: int) -> None:
        """Refuse a network whose output does not fit the task (classification: logits (num_classes,))."""
        if tuple(output_shape) != (num_classes,):
            raise InfoProError(
                f"the backbone's head gives outputs of shape {tuple(output_shape)}, but num_classes={num_classes}; "
                f"build the backbone with num_classes={num_classes}"
            )

    def refusal(self, method: "LocalMethod") -> str | None:
        """Why `method` cannot train this task (one sentence), or None."""
        return None

    def task_loss(self, name: str, ctx: "PieceContext") -> nn.Module:
        """A local piece's task term by name (`TASK_LOSSES`): cross-entropy on logits or SupCon on an embedding."""
        # The SupCon mean is a method option (`supcon_mean`) of the methods that offer it; others get the default.
        return TASK_LOSSES.get(name)(ctx.temperature, **{k: v for k, v in ctx.options.items() if k == "supcon_mean"})

    def last_objective(self, ctx: "PieceContext") -> Objective:
        """The last piece ends with the network's own head: cross-entropy on its logits (label-smoothed by
        `ctx.label_smoothing`)."""
        return LocalObjective(CrossEntropyTerm(ctx.label_smoothing))

    def example_targets(self, batch: int, input_shape: Sequence[int], num_classes: int,
                        generator: torch.Generator) -> torch.Tensor:
        """Targets like a real batch's, on the CPU, for a pass that only measures (memory-balanced cuts' profile,
        `infopro bench`): classification takes every class in turn."""
        return torch.arange(batch) % num_classes


CLASSIFY = LocalTask()

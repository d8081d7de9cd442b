"""Loss terms of a local objective, and the task-loss registry.

`reconstruction_loss` is InfoPro's I(h, x) term; the task terms (`TASK_LOSSES`)
raise I(h, y): cross-entropy on logits (per pixel for segmentation), or supervised contrastive on an embedding.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InfoProError
from ..registry import Registry
from .dense_losses import local_pixel_loss


def reconstruction_loss(decoder_logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of sigmoid(logits) against the image in [0, 1].

    Equal to `F.binary_cross_entropy(torch.sigmoid(logits), image)`, computed from
    the logits, which is exact where the sigmoid saturates and allowed under autocast.
    """
    return F.binary_cross_entropy_with_logits(decoder_logits.float(), image.float())


# How the per-anchor SupCon terms are averaged (see `supervised_contrastive_loss`).
SUPCON_MEANS = ("all-anchors", "anchors-with-positive")


def supervised_contrastive_loss(
    embedding: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07, mean: str = "all-anchors"
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), one view per sample.

    The embedding is L2-normalised. For anchor i with positives P(i) (other
    samples of its label) and all others A(i):
        l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t) )
    `mean`:
    - "all-anchors" (default; the authors' `losses.py`, the same file in InfoPro, MAN, MAN++):
      the mean over ALL anchors of the batch, an anchor alone in its class contributing 0;
    - "anchors-with-positive": the mean over the anchors that have a positive (0 when none has),
      so the loss's scale does not shrink with the share of classes seen once in the batch
      (small batches, many classes). The two agree when every label of the batch appears twice or more.
    """
    if mean not in SUPCON_MEANS:
        raise InfoProError(f"supcon mean must be one of {', '.join(SUPCON_MEANS)}, got {mean!r}")
    z = F.normalize(embedding.float(), dim=1)
    logits = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    num_positives = positives.sum(1)
    # where() rather than multiplying, so the -inf on the diagonal never meets a 0.
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1)
    has_positive = num_positives > 0
    per_anchor = -pos_log_prob / num_positives.clamp(min=1)  # 0 where there is no positive
    if mean == "all-anchors":
        return per_anchor.mean()
    return (per_anchor * has_positive).sum() / has_positive.sum().clamp(min=1)


class CrossEntropyTerm(nn.Module):
    """Softmax cross-entropy on class logits, against class indices or soft targets (N, classes) (mixup);
    `label_smoothing` mixes the targets with the uniform distribution (torch's, as timm's for DeiT)."""

    output_is_embedding = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.is_floating_point():
            labels = labels.float()
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing:g}" if self.label_smoothing else ""


class SupConTerm(nn.Module):
    """Supervised contrastive loss on an embedding (InfoPro "Contrast")."""

    output_is_embedding = True

    def __init__(self, temperature: float = 0.07, mean: str = "all-anchors") -> None:
        super().__init__()
        if mean not in SUPCON_MEANS:
            raise InfoProError(f"supcon mean must be one of {', '.join(SUPCON_MEANS)}, got {mean!r}")
        self.temperature, self.mean = temperature, mean

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.is_floating_point():
            raise InfoProError("the supervised contrastive loss needs class labels, not soft targets (mixup, "
                               "cutmix): use a cross-entropy method, or --mixup 0 --cutmix 0")
        return supervised_contrastive_loss(embedding, labels, self.temperature, self.mean)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, mean={self.mean}"


# name -> builder(temperature, supcon_mean=...) -> loss module with an `output_is_embedding` flag
TASK_LOSSES: Registry[Callable[..., nn.Module]] = Registry("task loss")
TASK_LOSSES.add("cross-entropy", lambda temperature, supcon_mean=None: CrossEntropyTerm())
# Per-pixel targets (segmentation): the authors' InfoPro local head loss (see dense_losses.py).
TASK_LOSSES.add("pixel-cross-entropy", lambda temperature, supcon_mean=None: local_pixel_loss())
TASK_LOSSES.add("supcon", lambda temperature, supcon_mean="all-anchors": SupConTerm(temperature, supcon_mean))

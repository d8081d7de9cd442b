"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a batch with itself reversed, with soft targets.

timm's Mixup in DeiT's 'batch' mode: with probability `prob` the batch is mixed, by CutMix with
probability `switch_prob` when both are on (else whichever is on); lam ~ Beta(alpha, alpha) of that
one. Mixup: x * lam + x.flip(0) * (1 - lam). CutMix: a box of side sqrt(1 - lam) of each side's
length centred at a uniform point (clipped at the edges) is pasted from the reversed batch, and lam
becomes 1 - the box's share of the image. Targets: lam * one_hot(y) + (1 - lam) * one_hot(y.flip(0))
(label smoothing is the loss's, see `CrossEntropyTerm`: the same targets as timm's mixup_target).
A batch left unmixed still gets one-hot targets, so every batch has one kind of target.
All random numbers come from a CPU generator.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, lam: float = 1.0) -> torch.Tensor:
    """lam * one_hot(labels) + (1 - lam) * one_hot(labels reversed), float32 (N, num_classes)."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot if lam == 1.0 else one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of CutMix's box for `lam` (timm's rand_bbox)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mix_batch(x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, num_classes: int,
              mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
              switch_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mixed images (a new tensor), soft targets (N, num_classes), lam) of a (N, C, H, W) batch."""
    # numpy's Beta from a seed drawn from the CPU generator: torch's Beta takes no generator.
    rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
    lam, use_cutmix = 1.0, False
    if (mixup_alpha > 0 or cutmix_alpha > 0) and rng.random() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < switch_prob)
        else:
            use_cutmix = cutmix_alpha > 0
        alpha = cutmix_alpha if use_cutmix else mixup_alpha
        lam = float(rng.beta(alpha, alpha))
    if lam == 1.0:
        return x.clone(), soft_targets(labels, num_classes), lam
    if use_cutmix:
        top, bottom, left, right = cutmix_box(x.shape[-2], x.shape[-1], lam, rng)
        out = x.clone()
        out[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / float(x.shape[-2] * x.shape[-1])  # the box's true share
    else:
        out = x * lam + x.flip(0) * (1.0 - lam)
    return out, soft_targets(labels, num_classes, lam), lam

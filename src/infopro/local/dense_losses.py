"""Per-pixel cross-entropy for semantic segmentation, as the authors' mmseg 0.10 code computes it.

Logits at the feature's resolution (N, K, h, w) are resized bilinearly to the
mask's (H, W), then cross-entropy is taken per pixel, pixels labelled
`ignore_index` giving 0. Two averagings occur in the authors' code:
- their InfoPro local head (`torch.nn.CrossEntropyLoss(ignore_index=255)` after an
  `align_corners=True` resize): the mean over the NON-ignored pixels (`avg_non_ignore=True`);
- mmseg 0.10's decode and FCN auxiliary heads (`reduction='none'`, then `.mean()`, after an
  `align_corners=False` resize for DeepLab-v3): the mean over ALL pixels, ignored ones counting 0
  (`avg_non_ignore=False`; mmseg only added the option, default False, in v0.24).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InfoProError


class PixelCrossEntropyTerm(nn.Module):
    """Cross-entropy of per-pixel logits (N, K, h, w) against a mask (N, H, W) or (N, 1, H, W) of class indices.

    Computed in float32 with autocast off (safe under mixed precision). A batch
    whose pixels are all ignored gives 0 with a zero, finite gradient.
    """

    output_is_embedding = False

    def __init__(self, ignore_index: int = 255, align_corners: bool = False, avg_non_ignore: bool = False) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.align_corners = bool(align_corners)
        self.avg_non_ignore = bool(avg_non_ignore)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.dim() == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if logits.dim() != 4 or mask.dim() != 3 or logits.shape[0] != mask.shape[0]:
            raise InfoProError(
                f"per-pixel cross-entropy needs logits (N, classes, h, w) and a mask (N, H, W) of class indices, "
                f"got {tuple(logits.shape)} and {tuple(mask.shape)}"
            )
        if mask.is_floating_point():
            raise InfoProError("per-pixel cross-entropy needs an integer mask of class indices, got floats")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if logits.shape[-2:] != mask.shape[-2:]:
                logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear",
                                       align_corners=self.align_corners)
            per_pixel = F.cross_entropy(logits, mask.long(), ignore_index=self.ignore_index, reduction="none")
            if self.avg_non_ignore:
                count = (mask != self.ignore_index).sum().clamp(min=1)
            else:
                count = max(per_pixel.numel(), 1)
            return per_pixel.sum() / count

    def extra_repr(self) -> str:
        return (f"ignore_index={self.ignore_index}, align_corners={self.align_corners}, "
                f"avg_non_ignore={self.avg_non_ignore}")


def local_pixel_loss(ignore_index: int = 255) -> PixelCrossEntropyTerm:
    """The authors' InfoPro local head loss: resize with align_corners=True, mean over non-ignored pixels."""
    return PixelCrossEntropyTerm(ignore_index, align_corners=True, avg_non_ignore=True)

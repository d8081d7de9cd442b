"""Sliding-window inference for semantic segmentation (mmsegmentation's slide mode): a model built for a crop
size scores an image of any size window by window, overlapping windows averaged."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import InfoProError


def _pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if min(pair) < 1:
        raise InfoProError(f"the sliding window's {what} must be >= 1, got {value}")
    return pair


def sliding_window_logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                          crop: int | tuple[int, int], stride: int | tuple[int, int],
                          num_classes: int | None = None) -> torch.Tensor:
    """Logits (B, num_classes, H, W) of images x (B, C, H, W): `model` run on windows of `crop` (h, w) every
    `stride` (h, w), the last window of a row or column moved back to end at the image's edge, each pixel's
    logits summed over the windows that cover it and divided by their count. A window smaller than the crop
    where the image is; a model whose logits come out smaller than its input (an output stride) has them
    resized bilinearly to the window, as mmseg's encode_decode does. `num_classes` None: the first window's."""
    (crop_h, crop_w), (stride_h, stride_w) = _pair(crop, "crop"), _pair(stride, "stride")
    batch, _, height, width = x.shape
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = None  # made at the first window, which says the class count when `num_classes` does not
    count = x.new_zeros((1, 1, height, width), dtype=torch.float32)
    for row in range(rows):
        for col in range(cols):
            bottom, right = min(row * stride_h + crop_h, height), min(col * stride_w + crop_w, width)
            top, left = max(bottom - crop_h, 0), max(right - crop_w, 0)
            logits = model(x[:, :, top:bottom, left:right])
            if total is None:
                num_classes = logits.shape[1] if num_classes is None and logits.ndim == 4 else num_classes
                total = x.new_zeros((batch, num_classes or 0, height, width), dtype=torch.float32)
            if logits.ndim != 4 or logits.shape[:2] != (batch, num_classes):
                raise InfoProError(f"the model gave logits of shape {tuple(logits.shape)} for a window of "
                                   f"{tuple(x[:, :, top:bottom, left:right].shape)}; expected ({batch}, "
                                   f"{num_classes}, h, w)")
            if logits.shape[-2:] != (bottom - top, right - left):
                logits = F.interpolate(logits, size=(bottom - top, right - left), mode="bilinear",
                                       align_corners=False)
            total[:, :, top:bottom, left:right] += logits.float()
            count[:, :, top:bottom, left:right] += 1
    return total / count

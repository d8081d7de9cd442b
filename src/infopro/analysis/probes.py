"""Probe classifiers for I(h, y), chosen by name from `PROBES`: builder(feature_shape, num_classes) -> nn.Module."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..local.aux_nets import require_feature_map
from ..models import build_backbone
from ..registry import Registry

ProbeBuilder = Callable[[Sequence[int], int], nn.Module]
PROBES: Registry[ProbeBuilder] = Registry("probe")

# The paper's probe sees h at the resolution of the image, with ResNet-32's stem width.
PROBE_IMAGE_SIZE = 32
PROBE_CHANNELS = 16


class ResizeTo(nn.Module):
    """Bilinear resize of a feature map to a fixed spatial size (a no-op when it already has it)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = (size, size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-2:] == self.size:
            return h
        return F.interpolate(h, size=self.size, mode="bilinear", align_corners=True)


@PROBES.register("resnet32")
def resnet32_probe(feature_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The paper's probe: h resized to 32x32, mapped to 16 channels, then a whole ResNet-32.

    The paper only says h is "upsampled to 32x32 and mapped to 16 channels";
    bilinear interpolation and a 1x1 conv are the least that does it: the
    resize makes every depth look like an image-sized input, and the learned
    1x1 conv gives the ResNet-32 stem the 16 channels it is built for, without
    mixing neighbouring positions (that is the probe's own job).
    """
    channels, _, _ = require_feature_map(feature_shape, "the resnet32 probe")
    return nn.Sequential(
        ResizeTo(PROBE_IMAGE_SIZE),
        nn.Conv2d(channels, PROBE_CHANNELS, 1, bias=False),
        build_backbone("resnet32", num_classes, in_channels=PROBE_CHANNELS),
    )


# The linear probe pools h to at most this many positions per side before its linear layer.
LINEAR_POOL = 8


@PROBES.register("linear")
def linear_probe(feature_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A cheap probe: h average-pooled to at most 8x8, flattened, one linear layer.

    Pooling to 8x8 (the last stage's size in a CIFAR ResNet), not to 1x1, keeps
    the spatial layout that early features carry their information in, while
    keeping the weight count small enough to fit on a few thousand images.
    """
    channels, height, width = require_feature_map(feature_shape, "the linear probe")
    pooled = (min(height, LINEAR_POOL), min(width, LINEAR_POOL))
    return nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Flatten(), nn.Linear(channels * pooled[0] * pooled[1], num_classes))


def build_probe(name: str, feature_shape: Sequence[int], num_classes: int) -> nn.Module:
    return PROBES.get(name)(feature_shape, num_classes)

"""The architecture registry: name -> builder(num_classes, in_channels) -> SequentialBackbone."""

from __future__ import annotations

from typing import Callable

import torch

from ..registry import Registry
from .backbone import SequentialBackbone

ARCHITECTURES: Registry[Callable[..., SequentialBackbone]] = Registry("architecture")


def build_backbone(arch: str, num_classes: int = 10, in_channels: int = 3) -> SequentialBackbone:
    """Build a registered architecture, e.g. `build_backbone("resnet32", 10)`."""
    return ARCHITECTURES.get(arch)(num_classes=num_classes, in_channels=in_channels)


def native_input_shape(arch: str, in_channels: int = 3) -> tuple[int, int, int]:
    """(C, H, W) of the inputs `arch` is built for (32x32 for CIFAR nets, 224x224 for ImageNet ones)."""
    with torch.device("meta"):  # no memory, no initialisation cost
        backbone = build_backbone(arch, 2, in_channels)
    size = backbone.image_size or 32
    return (in_channels, size, size)

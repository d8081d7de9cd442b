"""The architecture registry: name -> builder(num_classes, in_channels) -> SequentialBackbone."""

from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .backbone import SequentialBackbone

ARCHITECTURES: Registry[Callable[..., SequentialBackbone]] = Registry("architecture")


def build_backbone(arch: str, num_classes: int = 10, in_channels: int = 3) -> SequentialBackbone:
    """Build a registered architecture, e.g. `build_backbone("resnet32", 10)`."""
    return ARCHITECTURES.get(arch)(num_classes=num_classes, in_channels=in_channels)

"""CIFAR ResNets (He et al. 2016): BasicBlocks, widths 16/32/64, 1x1 projection shortcuts.

Depth 6n+2: a conv stem, then three stages of n blocks. As in the InfoPro
reference, a shortcut that changes shape is a 1x1 conv + BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ClassifierHead, SequentialBackbone
from .registry import ARCHITECTURES


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The shortcut: identity, or 1x1 conv + BatchNorm where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs; `dilation` dilates the first only, as MMSegmentation's dilated ResNet-18/34 do."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride, dilation)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # In-place ReLUs: BatchNorm's backward needs its input, not its output,
        # so overwriting the output saves one activation per ReLU.
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu(out)


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    in_channels: int = 3,
    widths: tuple[int, int, int] = (16, 32, 64),
    arch: str | None = None,
) -> SequentialBackbone:
    """A CIFAR ResNet of depth 6n+2 as a `SequentialBackbone` (stem first, then 3n blocks)."""
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
    n = (depth - 2) // 6
    stem = nn.Sequential(conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    blocks: list[nn.Module] = [stem]
    channels = widths[0]
    for stage, width in enumerate(widths):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(BasicBlock(channels, width, stride))
            channels = width
    model = SequentialBackbone(
        blocks, ClassifierHead(channels, num_classes), stage_sizes=[1, n, n, n], arch=arch, image_size=32
    )
    init_resnet_(model)
    return model


def init_resnet_(model: nn.Module) -> None:
    """He-normal convs (fan-out, as the reference), BatchNorm weight 1 / bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _register(depth: int) -> None:
    name = f"resnet{depth}"

    def build(num_classes: int = 10, in_channels: int = 3) -> SequentialBackbone:
        return cifar_resnet(depth, num_classes, in_channels, arch=name)

    ARCHITECTURES.add(name, build)


for _depth in (20, 32, 44, 56, 110):
    _register(_depth)

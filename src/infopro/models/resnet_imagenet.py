"""ImageNet ResNets and ResNeXts (He et al. 2016; Xie et al. 2017), torchvision's v1.5 layout.

A 7x7 stride-2 stem with max-pool, then four stages of BasicBlocks (ResNet-18/34)
or Bottlenecks (ResNet-50/101/152, ResNeXt) with the stride on the 3x3 conv and
1x1-conv + BatchNorm projection shortcuts where the shape changes. Blocks: the
stem, then every residual block; stages [1, *layers], so (2, b) is block b of
`layer2` (the paper's conv3_x, 28x28 at 224 px).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbone import ClassifierHead, SequentialBackbone
from .registry import ARCHITECTURES
from .resnet_cifar import BasicBlock, init_resnet_, projection


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carries the stride and the dilation), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, groups: int = 1,
                 width_per_group: int = 64, dilation: int = 1) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def imagenet_resnet(
    layers: Sequence[int],
    bottleneck: bool,
    num_classes: int = 1000,
    in_channels: int = 3,
    groups: int = 1,
    width_per_group: int = 64,
    widths: Sequence[int] = (64, 128, 256, 512),
    arch: str | None = None,
) -> SequentialBackbone:
    """An ImageNet-style ResNet/ResNeXt as a `SequentialBackbone`; `widths` may be shrunk for tests."""
    stem = nn.Sequential(
        nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )
    blocks: list[nn.Module] = [stem]
    channels = widths[0]
    for stage, (width, count) in enumerate(zip(widths, layers)):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            if bottleneck:
                blocks.append(Bottleneck(channels, width, stride, groups, width_per_group))
                channels = width * Bottleneck.expansion
            else:
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
    model = SequentialBackbone(blocks, ClassifierHead(channels, num_classes), stage_sizes=[1, *layers],
                               arch=arch, image_size=224)
    init_resnet_(model)
    return model


# name: (layers per stage, bottleneck, groups, width per group)
IMAGENET_RESNETS = {
    "resnet18": ((2, 2, 2, 2), False, 1, 64),
    "resnet34": ((3, 4, 6, 3), False, 1, 64),
    "resnet50": ((3, 4, 6, 3), True, 1, 64),
    "resnet101": ((3, 4, 23, 3), True, 1, 64),
    "resnet152": ((3, 8, 36, 3), True, 1, 64),
    "resnext50_32x4d": ((3, 4, 6, 3), True, 32, 4),
    "resnext101_32x8d": ((3, 4, 23, 3), True, 32, 8),
}


def _register(name: str) -> None:
    layers, bottleneck, groups, width_per_group = IMAGENET_RESNETS[name]

    def build(num_classes: int = 1000, in_channels: int = 3) -> SequentialBackbone:
        return imagenet_resnet(layers, bottleneck, num_classes, in_channels, groups, width_per_group, arch=name)

    ARCHITECTURES.add(name, build)


for _name in IMAGENET_RESNETS:
    _register(_name)

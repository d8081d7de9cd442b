"""DenseNet-BC (Huang et al. 2017): dense layers that concatenate their input with k new channels.

Blocks: the stem, then every dense layer and every transition, so a cut may
fall after any layer of a dense block or after a transition. A dense layer's
output is its input with its k new channels appended (the concatenation the
next layer reads); the head is the final BatchNorm + ReLU, pool and classifier.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbone import SequentialBackbone
from .registry import ARCHITECTURES
from .resnet_cifar import init_resnet_


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (bn_size * growth) - BN-ReLU-conv3x3 (growth); returns cat(x, new)."""

    def __init__(self, in_channels: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        hidden = bn_size * growth
        self.net = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), nn.Conv2d(hidden, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.net(x)], 1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 (compressing the channels) then 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
                         nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.AvgPool2d(2))


class DenseHead(nn.Sequential):
    """Final BN + ReLU, global average pool, linear."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(channels, num_classes))


def densenet(
    layers: Sequence[int],
    growth: int,
    num_classes: int,
    in_channels: int = 3,
    imagenet_stem: bool = True,
    init_features: int | None = None,
    bn_size: int = 4,
    compression: float = 0.5,
    arch: str | None = None,
    image_size: int | None = None,
) -> SequentialBackbone:
    """A DenseNet-BC. `imagenet_stem`: 7x7 stride-2 conv + BN + ReLU + max-pool; else one 3x3 conv (CIFAR)."""
    channels = init_features or 2 * growth
    if imagenet_stem:
        stem = nn.Sequential(nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False),
                             nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
    else:
        stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
    blocks: list[nn.Module] = [stem]
    stage_sizes = [1]
    for i, count in enumerate(layers):
        for _ in range(count):
            blocks.append(DenseLayer(channels, growth, bn_size))
            channels += growth
        if i < len(layers) - 1:
            out = int(channels * compression)
            blocks.append(Transition(channels, out))
            channels = out
        stage_sizes.append(count + (i < len(layers) - 1))
    model = SequentialBackbone(blocks, DenseHead(channels, num_classes), stage_sizes=stage_sizes, arch=arch,
                               image_size=image_size)
    init_resnet_(model)
    nn.init.zeros_(model.head[-1].bias)
    return model


@ARCHITECTURES.register("densenet_bc_100")
def densenet_bc_100(num_classes: int = 10, in_channels: int = 3) -> SequentialBackbone:
    """CIFAR DenseNet-BC, depth 100 (3 dense blocks of 16 layers), growth 12, compression 0.5."""
    return densenet((16, 16, 16), 12, num_classes, in_channels, imagenet_stem=False, arch="densenet_bc_100",
                    image_size=32)


@ARCHITECTURES.register("densenet121")
def densenet121(num_classes: int = 1000, in_channels: int = 3) -> SequentialBackbone:
    """ImageNet DenseNet-121: blocks of 6, 12, 24, 16 layers, growth 32, 64 stem channels."""
    return densenet((6, 12, 24, 16), 32, num_classes, in_channels, init_features=64, arch="densenet121",
                    image_size=224)

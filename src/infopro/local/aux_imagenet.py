"""Auxiliary nets for feature maps of large inputs (>= 128 px): the authors' ImageNet decoder and head.

Paper tables 20-21, for a cut in ResNet's layer2 at 224 px (28x28 features):
decoder conv1x1 -> 128, then three (upsample x2, conv3x3) steps through 32 and
12 channels to the image; head conv1x1 -> 128, two stride-2 3x3 convs to 256
and 512, conv1x1 -> 2048, pool, linear. At other cuts the decoder takes as many
x2 steps as the feature is smaller than the image (widths ..., 64, 32, 12).
The decoder's convolutions keep their biases, as the authors' ImageNet code does
(nn.Conv2d's default, also before each BatchNorm); the head's have none, as theirs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .aux_nets import HEADS, AuxOptions, Feature, require_feature_map

# Widths of the decoder's convs between upsampling steps, last ones used first (the paper's 3 steps: 32, 12).
DECODER_WIDTHS = (128, 64, 32, 12)
DECODER_IN_WIDTH = 128


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class ImageNetDecoder(nn.Sequential):
    """conv1x1 -> 128, BN, ReLU, then per x2 step: bilinear upsample, conv3x3 (BN, ReLU except the last).

    Returns pixel logits (the sigmoid is in `reconstruction_loss`), as `Decoder` does.
    `conv_bias=True` (default) gives every conv a bias, as the authors' ImageNet decoder has
    (106,699 parameters at ResNet-101's layer2 cut); False drops the biases of the convs that a
    BatchNorm follows (redundant there: 106,527 parameters), keeping the last conv's.
    """

    def __init__(self, feature_shape: tuple[int, ...], image_shape: tuple[int, ...], widen: int = 1,
                 conv_bias: bool = True) -> None:
        channels, height, width = require_feature_map(feature_shape, "the ImageNet decoder")
        image_channels, image_h, image_w = require_feature_map(image_shape, "the ImageNet decoder's image")
        steps = max(1, round(math.log2(min(image_h / height, image_w / width))))
        # Sizes after each step (x2 each, the last exactly the image's) and the conv widths there.
        sizes = [(round(image_h / 2 ** (steps - i)), round(image_w / 2 ** (steps - i))) for i in range(1, steps)]
        sizes.append((image_h, image_w))
        hidden = list(DECODER_WIDTHS[-(steps - 1):]) if steps > 1 else []
        hidden = [DECODER_WIDTHS[0]] * (steps - 1 - len(hidden)) + hidden
        c = DECODER_IN_WIDTH * widen
        layers: list[nn.Module] = [nn.Conv2d(channels, c, 1, bias=conv_bias), *_bn_relu(c)]
        current = (height, width)
        for i, (size, out) in enumerate(zip(sizes, [w * widen for w in hidden] + [image_channels])):
            if size != current:
                layers.append(nn.Upsample(size=size, mode="bilinear", align_corners=True))
            last = i == steps - 1
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=conv_bias or last))
            if not last:
                layers += _bn_relu(out)
            c, current = out, size
        super().__init__(*layers)

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(h))


class ImageNetHead(nn.Sequential):
    """conv1x1 -> 128, conv3x3/2 -> 256, conv3x3/2 -> 512, conv1x1 -> 2048 (each BN, ReLU), pool, linear."""

    def __init__(self, feature_shape: tuple[int, ...], out_dim: int, widen: int = 1) -> None:
        channels, _, _ = require_feature_map(feature_shape, "the ImageNet head")
        layers: list[nn.Module] = []
        for width, kernel, stride in ((128, 1, 1), (256, 3, 2), (512, 3, 2), (2048, 1, 1)):
            width *= widen
            layers += [nn.Conv2d(channels, width, kernel, stride=stride, padding=kernel // 2, bias=False),
                       *_bn_relu(width)]
            channels = width
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, out_dim))


def large_map_decoder(feature: Feature, options: AuxOptions) -> nn.Module:
    # The first conv is a 1x1 at the feature's resolution, so there is no full-resolution
    # upsampled feature to chunk: decoder_chunk_channels does not apply.
    return ImageNetDecoder(feature.shape, feature.image_shape, options.widen)


def large_map_head(name: str, feature: Feature, out_dim: int, options: AuxOptions) -> nn.Module:
    """'1c2f' (the head of DGL and InfoPro) is the paper's ImageNet head; other names are the CIFAR heads."""
    if name == "1c2f":
        return ImageNetHead(feature.shape, out_dim, options.widen)
    return HEADS.get(name)(feature.shape, out_dim, options)

"""Auxiliary nets for dense prediction (semantic segmentation): the authors' DeepLab-v3 InfoPro code.

For a cut inside ResNet-101's layer3 (1024 channels at output stride 8), the
authors' segmentor (mmseg `EncoderDecoder`) builds:
- decoder w: conv1x1 -> 128, BN, ReLU, then three (bilinear x2 upsample, align_corners=True;
  conv3x3) steps 128 -> 32 -> 12 -> 3, BN and ReLU after every conv but the last, then a sigmoid;
  every conv has a bias. That is layer for layer the ImageNet decoder (aux_imagenet.py), so
  `DenseDecoder` is that net: 3 steps at output stride 8, 4 (128 -> 64 -> 32 -> 12 -> 3) at 16.
- head psi: conv3x3 -> 512 (with bias), BN, ReLU, Dropout2d(0.1), conv1x1 -> classes: per-pixel
  logits at the feature's resolution, resized to the mask by the loss (`PixelCrossEntropyTerm`).
Both keep PyTorch's default initialisation: the authors create them after `init_weights` ran.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import InfoProError
from .aux_imagenet import ImageNetDecoder
from .aux_nets import AuxOptions, Feature, require_feature_map

DENSE_HEAD_CHANNELS = 512
DENSE_HEAD_DROPOUT = 0.1  # the authors' Dropout2d rate, as mmseg's decode heads (dropout_ratio=0.1)


class DenseDecoder(ImageNetDecoder):
    """conv1x1 -> 128, BN, ReLU, then per x2 step: bilinear upsample (align_corners=True), conv3x3
    (BN, ReLU except the last); widths ..., 32, 12, image channels. Returns pixel logits.

    The steps follow the feature's downsampling: log2(image / feature), 3 at output stride 8 and
    4 at 16. Where the ratio is not a power of two, the steps go through round(image / 2**j) and the
    last one lands exactly on the image size (`ImageNetDecoder`'s rule).
    """

    def __init__(self, feature_shape: Sequence[int], image_shape: Sequence[int], widen: int = 1) -> None:
        super().__init__(tuple(feature_shape), tuple(image_shape), widen, conv_bias=True)


class DenseHead(nn.Sequential):
    """conv3x3 -> `channels` (with bias, as theirs), BN, ReLU, Dropout2d(`dropout`), conv1x1 -> classes.

    Per-pixel class logits at the feature's resolution (N, classes, h, w).
    """

    def __init__(self, feature_shape: Sequence[int], num_classes: int, channels: int = DENSE_HEAD_CHANNELS,
                 dropout: float = DENSE_HEAD_DROPOUT) -> None:
        in_channels, _, _ = require_feature_map(feature_shape, "the dense head")
        if channels < 1 or num_classes < 1:
            raise InfoProError(f"the dense head needs channels and num_classes >= 1, got {channels}, {num_classes}")
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )


def dense_map_decoder(feature: Feature, options: AuxOptions) -> nn.Module:
    return DenseDecoder(feature.shape, feature.image_shape, options.widen)


def dense_map_head(name: str, feature: Feature, out_dim: int, options: AuxOptions) -> nn.Module:
    """The one dense head, whatever classification head `name` the method asks for (it has no pooled heads)."""
    return DenseHead(feature.shape, out_dim, DENSE_HEAD_CHANNELS * options.widen)

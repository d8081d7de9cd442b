"""Auxiliary nets of a piece for small feature maps (CIFAR-sized inputs), and what every family is built from.

Decoder w reconstructs the input image (InfoPro's I(h, x) term); a head psi
maps the feature to class logits or to a contrastive embedding. Heads are
chosen by name from `HEADS`; all follow the paper's tables 18-19. Which
family of auxiliary nets a cut gets follows its `Feature` (see aux_families.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InfoProError
from ..models.backbone import TokenLayout
from ..registry import Registry


@dataclass(frozen=True)
class Feature:
    """What a cut's auxiliary nets are built for: the feature's shape (no batch), the input image's
    (C, H, W), for token-sequence features (L, D) how the tokens lie on the image, and whether the task
    has per-pixel targets (`dense`: semantic segmentation), whose heads keep the map instead of pooling it."""

    shape: tuple[int, ...]
    image_shape: tuple[int, ...]
    tokens: TokenLayout | None = None
    dense: bool = False


@dataclass(frozen=True)
class AuxOptions:
    """Sizes of the auxiliary nets: `widen` scales their widths, `feature_dim` the hidden fc width;
    `decoder_chunk_channels` > 0 chunks the small-map decoder's upsampling (see `Decoder`)."""

    widen: int = 1
    feature_dim: int = 128
    decoder_chunk_channels: int = 0

    def __post_init__(self) -> None:
        if self.widen < 1 or self.feature_dim < 1:
            raise InfoProError(f"widen and feature_dim must be >= 1, got {self.widen}, {self.feature_dim}")


def require_feature_map(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise InfoProError(
            f"{what} needs a feature map (channels, height, width) at the cut, got shape {tuple(shape)}"
        )
    c, h, w = shape
    return int(c), int(h), int(w)


class _ChunkedUpsampleConv(torch.autograd.Function):
    """conv3x3(bilinear_upsample(h)) as a sum over channel chunks of h; backward recomputes chunk by chunk.

    Only the low-resolution h is saved, so the full-resolution upsampled
    feature and its gradient never exist whole: at most one chunk of each.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, size, chunk):  # noqa: ANN001, ANN205
        ctx.save_for_backward(h, weight)
        ctx.size, ctx.chunk = size, chunk
        out = None
        for c in range(0, h.shape[1], chunk):
            up = F.interpolate(h[:, c:c + chunk], size=size, mode="bilinear", align_corners=True)
            part = F.conv2d(up, weight[:, c:c + chunk], bias if c == 0 else None, padding=1)
            out = part if out is None else out.add_(part)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        h, weight = ctx.saved_tensors
        grad_h, grad_w = torch.empty_like(h), torch.empty_like(weight)
        for c in range(0, h.shape[1], ctx.chunk):
            with torch.enable_grad():
                hc = h[:, c:c + ctx.chunk].detach().requires_grad_()
                wc = weight[:, c:c + ctx.chunk].detach().requires_grad_()
                up = F.interpolate(hc, size=ctx.size, mode="bilinear", align_corners=True)
                grad_h[:, c:c + ctx.chunk], grad_w[:, c:c + ctx.chunk] = torch.autograd.grad(
                    F.conv2d(up, wc, padding=1), (hc, wc), grad_out)
        return grad_h, grad_w, grad_out.sum((0, 2, 3)), None, None


class Decoder(nn.Module):
    """Upsample h bilinearly to the image size, conv3x3 -> 12*widen, BN, ReLU, conv3x3 -> image channels.

    `forward` returns logits; the sigmoid is folded into the loss
    (`reconstruction_loss`) so it is exact and safe under autocast.
    `chunk_channels` > 0 runs the upsample and first conv over chunks of that
    many feature channels, recomputed in backward: the same function and
    gradients (up to summation order), without the full-resolution upsampled
    feature in memory (it dominates the auxiliary nets' memory at deep cuts).
    """

    def __init__(self, feature_shape: Sequence[int], image_shape: Sequence[int], widen: int = 1,
                 chunk_channels: int = 0) -> None:
        super().__init__()
        if chunk_channels < 0:
            raise InfoProError(f"the decoder's chunk_channels must be >= 0 (0 = off), got {chunk_channels}")
        self.chunk_channels = chunk_channels
        channels, _, _ = require_feature_map(feature_shape, "the decoder")
        image_channels, height, width = require_feature_map(image_shape, "the decoder's image")
        hidden = 12 * widen
        self.image_size = (height, width)
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, image_channels, 3, padding=1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if h.shape[-2:] == self.image_size:
            return self.net(h)
        if self.chunk_channels and h.shape[1] > self.chunk_channels and torch.is_grad_enabled():
            conv = self.net[0]
            h = _ChunkedUpsampleConv.apply(h, conv.weight, conv.bias, self.image_size, self.chunk_channels)
            return self.net[1:](h)
        h = F.interpolate(h, size=self.image_size, mode="bilinear", align_corners=True)
        return self.net(h)

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        """The reconstructed image in [0, 1]."""
        return torch.sigmoid(self(h))


HeadBuilder = Callable[[Sequence[int], int, AuxOptions], nn.Module]
HEADS: Registry[HeadBuilder] = Registry("auxiliary head")


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _make_head(num_convs: int, num_fcs: int) -> HeadBuilder:
    """`{num_convs}c{num_fcs}f`: conv-BN-ReLU layers, global pool, then fully connected layers.

    The first conv doubles the channels with stride 2 until 64 channels
    (16 -> 32 -> 64, 64 stays 64 at stride 1), as in the paper's CIFAR heads.
    """

    def build(feature_shape: Sequence[int], out_dim: int, options: AuxOptions) -> nn.Module:
        channels, _, _ = require_feature_map(feature_shape, f"head {num_convs}c{num_fcs}f")
        layers: list[nn.Module] = []
        if num_convs:
            width = max(channels, min(2 * channels, 64))
            stride = 2 if width > channels else 1
            width *= options.widen
            layers += _conv_bn_relu(channels, width, stride)
            for _ in range(num_convs - 1):
                layers += _conv_bn_relu(width, width, 1)
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        hidden = options.feature_dim * options.widen
        for _ in range(num_fcs - 1):
            layers += [nn.Linear(channels, hidden), nn.ReLU(inplace=True)]
            channels = hidden
        layers.append(nn.Linear(channels, out_dim))
        return nn.Sequential(*layers)

    return build


for _name, (_convs, _fcs) in {
    "0c1f": (0, 1),  # Greedy SL: pool + linear
    "0c2f": (0, 2),
    "1c1f": (1, 1),
    "1c2f": (1, 2),  # DGL and InfoPro
    "1c3f": (1, 3),
    "2c2f": (2, 2),
}.items():
    HEADS.add(_name, _make_head(_convs, _fcs))


def build_head(name: str, feature_shape: Sequence[int], out_dim: int, options: AuxOptions) -> nn.Module:
    return HEADS.get(name)(feature_shape, out_dim, options)


def small_map_decoder(feature: Feature, options: AuxOptions) -> nn.Module:
    return Decoder(feature.shape, feature.image_shape, options.widen, options.decoder_chunk_channels)


def small_map_head(name: str, feature: Feature, out_dim: int, options: AuxOptions) -> nn.Module:
    return build_head(name, feature.shape, out_dim, options)

"""Semantic segmentation: DeepLabV3 and FCN on dilated ResNets, as MMSegmentation 0.x builds them.

The backbone is mmseg's ResNetV1c: a deep stem (three 3x3 conv-BN-ReLUs with
32, 32, 64 channels, the first with stride 2, then a 3x3 max-pool; or
torchvision's 7x7 stem with `deep_stem=False`, so that torchvision weights
fit), then four stages whose later strides are traded for dilations: output
stride 8 keeps layer3 and layer4 at 1/8 of the input, with dilations 2 and 4;
output stride 16 keeps layer4 at 1/16 with dilation 2. As mmseg's
`contract_dilation`, the first block of a dilated stage uses half the stage's
dilation. Blocks: the stem, then every residual block (stages [1, *layers]),
so the IJCV paper's cut "after the first 13 blocks of layer3" of ResNet-101
is block 1 + 3 + 4 + 13 - 1 = 20.

The head maps the last block's features to per-pixel class logits at the
feature resolution, (N, classes, H/os, W/os); upsampling them to the mask is
the loss's job. mmseg's auxiliary FCN head (loss weight 0.4) reads the last
block of layer3; the model only names that block in `aux_taps["fcn"]`, and
`fcn_aux_head` builds the head for whoever computes the losses.

Head widths: `channels=None` is a quarter of the head's input channels, which
is mmseg's choice for every depth (512 for the ASPP/FCN heads on ResNet-50/101's
2048 channels, 256 for the auxiliary head on their 1024; 128 and 64 on ResNet-18).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..errors import InfoProError
from ..registry import Registry
from .backbone import SequentialBackbone
from .registry import ARCHITECTURES
from .resnet_cifar import BasicBlock, init_resnet_
from .resnet_imagenet import Bottleneck

# output stride: (stride of the first block of each stage, dilation of each stage), mmseg's "d8" and "d16".
STAGE_LAYOUTS = {8: ((1, 2, 1, 1), (1, 1, 2, 4)), 16: ((1, 2, 2, 1), (1, 1, 1, 2))}
# The ASPP's dilations at each output stride (DeepLabV3: 6/12/18 at os 16, doubled at os 8).
ASPP_DILATIONS = {8: (1, 12, 24, 36), 16: (1, 6, 12, 18)}
DROPOUT = 0.1  # mmseg's dropout_ratio before every head's classifier
SEGMENTATION_IMAGE_SIZE = 512  # the side of mmseg's Cityscapes/ADE20K/VOC crops (Cityscapes: 512x1024)


def default_channels(in_channels: int) -> int:
    """A head's width when none is given: a quarter of its input, as mmseg's configs at every depth."""
    return max(in_channels // 4, 1)


class ConvBNReLU(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU, named as mmcv's ConvModule so mmseg head weights keep their keys."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> None:
        super().__init__()
        padding = 0 if kernel_size == 1 else dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class _DecodeHead(nn.Module):
    """The part every mmseg decode head ends with: Dropout2d, then a 1x1 conv to the class logits."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(h))

    def reset_parameters(self) -> None:
        """He-normal convs, BatchNorm 1/0 (mmcv's ConvModule), the classifier N(0, 0.01) with zero bias (mmseg)."""
        init_resnet_(self)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)


class ASPPHead(_DecodeHead):
    """DeepLabV3's head (Chen et al. 2017): image pooling + parallel dilated convs, concatenated and fused.

    Image-pool branch: global average pool, 1x1 conv-BN-ReLU, upsampled back
    (bilinear, align_corners=False). ASPP branches: a 1x1 conv-BN-ReLU for
    dilation 1, a 3x3 dilated one for each other dilation. Then a 3x3
    conv-BN-ReLU "bottleneck" to `channels`, Dropout2d and a 1x1 conv to the
    logits, at the input's resolution. (As in mmseg, the pooled branch's
    BatchNorm needs more than one image per batch in training.)
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512,
                 dilations: Sequence[int] = ASPP_DILATIONS[8], dropout: float = DROPOUT) -> None:
        super().__init__(channels, num_classes, dropout)
        self.dilations = tuple(dilations)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.aspp_modules = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1 if d == 1 else 3, dilation=d) for d in self.dilations)
        self.bottleneck = ConvBNReLU((len(self.dilations) + 1) * channels, channels, 3)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        branches = [pooled, *(branch(x) for branch in self.aspp_modules)]
        return self.classify(self.bottleneck(torch.cat(branches, 1)))


class FCNHead(_DecodeHead):
    """FCN's head (Long et al. 2015) as mmseg's FCNHead: `num_convs` 3x3 conv-BN-ReLUs to `channels`,
    optionally a conv-BN-ReLU over [input, their output] (`concat_input`), Dropout2d, 1x1 conv to the logits."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, num_convs: int = 2,
                 concat_input: bool = True, kernel_size: int = 3, dropout: float = DROPOUT) -> None:
        super().__init__(channels, num_classes, dropout)
        if num_convs < 0 or (num_convs == 0 and in_channels != channels):
            raise InfoProError(f"an FCN head needs num_convs >= 1, or 0 with in_channels == channels; got num_convs "
                               f"{num_convs}, in_channels {in_channels}, channels {channels}")
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*(ConvBNReLU(a, b, kernel_size) for a, b in zip(widths, widths[1:])))
        self.conv_cat = ConvBNReLU(in_channels + channels, channels, kernel_size) if concat_input else None
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        if self.conv_cat is not None:
            h = self.conv_cat(torch.cat([x, h], 1))
        return self.classify(h)


def fcn_aux_head(in_channels: int, num_classes: int, channels: int | None = None) -> FCNHead:
    """mmseg's auxiliary head of DeepLabV3/FCN (loss weight 0.4 on layer3): one 3x3 conv-BN-ReLU to
    `channels` (256 on ResNet-50/101's 1024 channels), Dropout2d(0.1), 1x1 conv to the logits."""
    return FCNHead(in_channels, num_classes, channels or default_channels(in_channels), num_convs=1,
                   concat_input=False)


# name -> builder(in_channels, num_classes, channels, output_stride) of a decode head.
DECODE_HEADS: Registry[Callable[[int, int, int, int], nn.Module]] = Registry("decode head")
DECODE_HEADS.add("aspp", lambda c, n, width, stride: ASPPHead(c, n, width, ASPP_DILATIONS[8 if stride <= 8 else 16]))
DECODE_HEADS.add("fcn", lambda c, n, width, stride: FCNHead(c, n, width, num_convs=2, concat_input=True))


def decode_head(name: str, in_channels: int, num_classes: int, channels: int | None = None,
                output_stride: int = 8) -> nn.Module:
    """A registered decode head for features of `in_channels` at `output_stride` (the ASPP's dilations follow it)."""
    return DECODE_HEADS.get(name)(in_channels, num_classes, channels or default_channels(in_channels), output_stride)


def stem(in_channels: int, channels: int, deep: bool) -> nn.Sequential:
    """ResNetV1c's deep stem (3x3 convs to channels/2, channels/2, channels) or torchvision's 7x7 one, then max-pool."""
    if deep:
        half = channels // 2
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate([(in_channels, half), (half, half), (half, channels)]):
            layers += [nn.Conv2d(a, b, 3, stride=2 if i == 0 else 1, padding=1, bias=False), nn.BatchNorm2d(b),
                       nn.ReLU(inplace=True)]
    else:
        layers = [nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(channels),
                  nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.MaxPool2d(3, stride=2, padding=1))


def dilated_resnet(
    layers: Sequence[int],
    bottleneck: bool,
    num_classes: int,
    in_channels: int = 3,
    output_stride: int = 8,
    deep_stem: bool = True,
    head: str = "aspp",
    channels: int | None = None,
    widths: Sequence[int] = (64, 128, 256, 512),
    arch: str | None = None,
    image_size: int = SEGMENTATION_IMAGE_SIZE,
) -> SequentialBackbone:
    """A segmentor on a dilated ResNet (mmseg's ResNetV1c, `contract_dilation`) with decode head `head`.

    `output_stride` 8 or 16; `widths` may be shrunk for tests. `aux_taps["fcn"]`
    is the last block of layer3, where mmseg's auxiliary FCN head reads.
    """
    if output_stride not in STAGE_LAYOUTS:
        raise InfoProError(f"output stride must be one of {sorted(STAGE_LAYOUTS)}, got {output_stride}")
    if len(layers) != 4 or len(widths) != 4:
        raise InfoProError(f"a dilated ResNet has 4 stages; got layers {tuple(layers)} and widths {tuple(widths)}")
    strides, dilations = STAGE_LAYOUTS[output_stride]
    blocks: list[nn.Module] = [stem(in_channels, widths[0], deep_stem)]
    features = widths[0]
    for width, count, stride, dilation in zip(widths, layers, strides, dilations):
        first_dilation = dilation // 2 if dilation > 1 else dilation  # mmseg's contract_dilation
        for i in range(count):
            block_stride, block_dilation = (stride, first_dilation) if i == 0 else (1, dilation)
            if bottleneck:
                blocks.append(Bottleneck(features, width, block_stride, dilation=block_dilation))
                features = width * Bottleneck.expansion
            else:
                blocks.append(BasicBlock(features, width, block_stride, block_dilation))
                features = width
    stage_sizes = [1, *layers]
    model = SequentialBackbone(blocks, decode_head(head, features, num_classes, channels, output_stride),
                               stage_sizes=stage_sizes, arch=arch, image_size=image_size,
                               aux_taps={"fcn": sum(stage_sizes[:4]) - 1})
    init_resnet_(model.blocks)
    return model


def _input_channels(blocks: nn.Module) -> int | None:
    conv = next((m for m in blocks.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


def _probe(blocks: nn.Module, shape: tuple[int, ...]) -> torch.Size:
    """The output shape (without batch) of `blocks` for one input of `shape`: on the meta device (no memory,
    no compute, the module untouched) where its ops allow, else one zero image in eval mode."""
    state = {name: torch.empty_like(t, device="meta") for name, t in [*blocks.named_parameters(),
                                                                      *blocks.named_buffers()]}
    try:
        return functional_call(blocks, state, (torch.zeros(2, *shape, device="meta"),)).shape[1:]
    except (NotImplementedError, RuntimeError):
        pass
    param = next(blocks.parameters(), None)
    modes = [(m, m.training) for m in blocks.modules()]
    blocks.eval()
    try:
        with torch.no_grad():
            return blocks(torch.zeros(1, *shape, device=param.device if param is not None else "cpu")).shape[1:]
    finally:
        for m, mode in modes:
            m.training = mode


def segmentation_model(backbone: SequentialBackbone, num_classes: int, head: str = "aspp",
                       channels: int | None = None) -> SequentialBackbone:
    """`backbone`'s blocks (shared, not copied) with a decode head for `num_classes` in place of its head.

    Works for any backbone whose last block gives (C, H, W) maps; the head is
    built for C channels, its width is `channels` (default C/4), and the ASPP's
    dilations follow the measured output stride (mmseg's os-8 set up to 8,
    the os-16 set above). Stages, arch, image size and aux taps are kept.
    """
    if backbone.tokens is not None:
        raise InfoProError(f"segmentation_model needs (C, H, W) feature maps, but {backbone.arch or 'this backbone'} "
                           f"gives token sequences; use a convolutional backbone such as resnet18 or resnet32")
    in_channels = _input_channels(backbone.blocks)
    side = backbone.image_size or 32
    shape = _probe(backbone.blocks, (in_channels, side, side)) if in_channels is not None else None
    if shape is None or len(shape) != 3:
        got = "no convolution to take images" if shape is None else f"features of shape {tuple(shape)}"
        raise InfoProError(f"segmentation_model needs a backbone whose last block gives (C, H, W) feature maps; "
                           f"{backbone.arch or 'this backbone'} has {got}")
    output_stride = max(round(side / shape[-1]), 1)
    return SequentialBackbone(list(backbone.blocks), decode_head(head, shape[0], num_classes, channels, output_stride),
                              stage_sizes=backbone.stage_sizes, arch=backbone.arch, image_size=backbone.image_size,
                              aux_taps=backbone.aux_taps)


# name: (layers per stage, bottleneck)
SEGMENTATION_RESNETS = {"resnet18": ((2, 2, 2, 2), False), "resnet50": ((3, 4, 6, 3), True),
                        "resnet101": ((3, 4, 23, 3), True)}


def _register(head: str, prefix: str, resnet: str) -> None:
    name = f"{prefix}_{resnet}"
    layers, bottleneck = SEGMENTATION_RESNETS[resnet]

    def build(num_classes: int = 19, in_channels: int = 3) -> SequentialBackbone:
        return dilated_resnet(layers, bottleneck, num_classes, in_channels, head=head, arch=name)

    ARCHITECTURES.add(name, build)


for _resnet in SEGMENTATION_RESNETS:
    _register("aspp", "deeplabv3", _resnet)
    _register("fcn", "fcn", _resnet)

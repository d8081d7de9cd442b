"""The check of `infopro train` that needs both the data and the network: the image size. (The data set and its
loaders come from the task: `infopro.tasks`.)"""

from __future__ import annotations

import argparse

from ..data import Data
from ..errors import InfoProError
from ..local.pieces import feature_shapes
from ..models import build_backbone

_PROBE_SIZE = 256  # input size at which a network's total downsampling is measured


def check_image_size(args: argparse.Namespace, data: Data) -> None:
    """The images must be at least as large as the network's total downsampling (else its last
    stages would run on padding only), and the network must take them at all."""
    backbone = build_backbone(args.arch, data.num_classes, data.channels)
    blocks = list(backbone.blocks)
    try:
        feature_shapes(blocks, data.image_shape)
    except RuntimeError as error:
        raise InfoProError(f"{args.arch} cannot take {data.size[1]}x{data.size[0]} images "
                           f"({str(error).splitlines()[0]}); choose another --image-size") from None
    try:  # the downsampling, measured at a size every such network takes
        maps = [s for s in feature_shapes(blocks, (data.channels, _PROBE_SIZE, _PROBE_SIZE)) if len(s) == 3]
    except RuntimeError:
        return  # a network made for one input size only: the check above was the whole check
    factor = _PROBE_SIZE // min(s[-1] for s in maps) if maps else 1
    if min(data.size) < factor:
        raise InfoProError(f"images of {data.size[1]}x{data.size[0]} are too small for {args.arch}, which "
                           f"downsamples by {factor}; pass --image-size {factor} or more")

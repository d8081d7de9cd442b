"""Cutting a block sequence into pieces, and finding feature shapes by a dry forward pass."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import InfoProError
from ..files import error_reason
from .cuts import piece_ranges


@torch.no_grad()
def feature_shapes(blocks: Sequence[nn.Module], input_shape: Sequence[int]) -> list[torch.Size]:
    """The output shape (without batch) of every block, from one forward pass of a zero image.

    Runs in eval mode on a single sample, on the blocks' own device; every
    module's train/eval mode and BatchNorm statistics are left as they were.
    """
    if len(input_shape) == 0 or min(input_shape) < 1:
        raise InfoProError(f"input shape {tuple(input_shape)} has an empty dimension; give positive sizes")
    modules = [m for block in blocks for m in block.modules()]
    param = next((p for block in blocks for p in block.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modes = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        h = torch.zeros(1, *input_shape, device=device, dtype=dtype)
        shapes = []
        for index, block in enumerate(blocks):
            try:
                h = block(h)
            except RuntimeError as error:  # a kernel or pool larger than what is left of the image
                raise InfoProError(
                    f"inputs of shape {'x'.join(map(str, input_shape))} are too small for this network: block {index} "
                    f"({type(block).__name__}) fails on its input of shape {'x'.join(map(str, h.shape[1:]))} "
                    f"({error_reason(error)}); "
                    f"use larger images") from None
            shapes.append(h.shape[1:])
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode
    return shapes


def split_blocks(blocks: nn.Sequential, cuts: Sequence[int], head: nn.Module) -> list[nn.Sequential]:
    """The K pieces as `nn.Sequential`s sharing the blocks' modules; the last one ends with `head`."""
    ranges = piece_ranges(cuts, len(blocks))
    pieces = [nn.Sequential(*(blocks[i] for i in r)) for r in ranges]
    pieces[-1].append(head)
    return pieces

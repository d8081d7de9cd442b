"""Cutting a block sequence into pieces, and finding feature shapes by a dry forward pass."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .cuts import piece_ranges


@torch.no_grad()
def feature_shapes(blocks: nn.Sequential, input_shape: Sequence[int]) -> list[torch.Size]:
    """The output shape (without batch) of every block, from one forward pass of a zero image.

    Runs in eval mode on a single sample (BatchNorm statistics are left as they
    were) on the blocks' own device.
    """
    param = next(blocks.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = blocks.training
    blocks.eval()
    try:
        h = torch.zeros(1, *input_shape, device=device, dtype=dtype)
        shapes = []
        for block in blocks:
            h = block(h)
            shapes.append(h.shape[1:])
    finally:
        blocks.train(was_training)
    return shapes


def split_blocks(blocks: nn.Sequential, cuts: Sequence[int], head: nn.Module) -> list[nn.Sequential]:
    """The K pieces as `nn.Sequential`s sharing the blocks' modules; the last one ends with `head`."""
    ranges = piece_ranges(cuts, len(blocks))
    pieces = [nn.Sequential(*(blocks[i] for i in r)) for r in ranges]
    pieces[-1].append(head)
    return pieces

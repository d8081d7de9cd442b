"""A network written as a sequence of blocks plus a head: the shape every cut needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class TokenLayout:
    """How a token-sequence feature (N, L, D) sits on the image: `prefix_tokens` (e.g. a class token)
    first, then one token per `patch_size` x `patch_size` patch in row-major order."""

    patch_size: int
    prefix_tokens: int = 1

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.prefix_tokens < 0:
            raise ValueError(f"patch_size must be >= 1 and prefix_tokens >= 0, got {self}")


class SequentialBackbone(nn.Module):
    """`head(blocks(x))`, with `blocks` an `nn.Sequential` that can be cut after any entry.

    `stage_sizes` groups the blocks into stages (the stem is stage 0) so that
    published cut positions, written as (stage, block-within-stage), can be
    mapped to block indices. `arch` names the architecture for cut presets.
    `image_size` is the input side the network is built for (None: any);
    `tokens` says how token-sequence features lie on the image (None: the
    features are (C, H, W) maps), so that auxiliary nets can follow them.
    `aux_taps` names the blocks whose outputs the network's own auxiliary
    heads read (name -> block index), e.g. {"fcn": 30} for DeepLabV3-R101's FCN
    head on the last block of layer3; the model only describes them, the
    losses build them.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        head: nn.Module,
        stage_sizes: Sequence[int] | None = None,
        arch: str | None = None,
        image_size: int | None = None,
        tokens: TokenLayout | None = None,
        aux_taps: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.stage_sizes = list(stage_sizes) if stage_sizes is not None else [len(self.blocks)]
        if sum(self.stage_sizes) != len(self.blocks):
            raise ValueError(
                f"stage_sizes {self.stage_sizes} sum to {sum(self.stage_sizes)}, "
                f"but there are {len(self.blocks)} blocks"
            )
        self.arch = arch
        self.image_size = image_size
        self.tokens = tokens
        self.aux_taps = dict(aux_taps or {})
        for name, index in self.aux_taps.items():
            if not 0 <= index < len(self.blocks):
                raise ValueError(f"aux tap {name!r} reads block {index}, but there are {len(self.blocks)} blocks")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))

    def block_index(self, stage: int, block: int) -> int:
        """Index in `.blocks` of block `block` of stage `stage` (stage 0 is the stem)."""
        if not 0 <= stage < len(self.stage_sizes) or not 0 <= block < self.stage_sizes[stage]:
            raise IndexError(f"no block ({stage}, {block}) in stages of sizes {self.stage_sizes}")
        return sum(self.stage_sizes[:stage]) + block


class ClassifierHead(nn.Sequential):
    """Global average pool + linear: the head of the CIFAR ResNets."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

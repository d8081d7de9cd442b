"""Vision transformers (Dosovitskiy et al. 2021) in DeiT's sizes (Touvron et al. 2021).

Blocks: the stem (patch embedding + class token + learned position embedding),
then every pre-norm transformer block. Every feature between blocks is a token
sequence (N, 1 + patches, D), class token first (`TokenLayout(patch, 1)`); the
head is the final LayerNorm and a linear classifier on the class token.
`vit_tiny`/`vit_small` are DeiT-T/S (patch 16, 224 px); the `_p4` variants
use 4x4 patches for 32 px inputs. Other input sizes work: the position
embedding is resized bilinearly to the patch grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import SequentialBackbone, TokenLayout
from .registry import ARCHITECTURES

LAYER_NORM_EPS = 1e-6


class PatchEmbedding(nn.Module):
    """Image -> (N, 1 + gh*gw, D): a patch x patch conv, a class token in front, plus position embeddings."""

    def __init__(self, image_size: int, patch_size: int, in_channels: int, dim: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.patch_size = patch_size
        self.grid = image_size // patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid ** 2, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == (self.grid, self.grid):
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.proj(x)
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], 1)
        return tokens + self.position_embedding(tuple(patches.shape[-2:]))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class TransformerBlock(nn.Module):
    """Pre-norm: x + attn(LN(x)), then x + MLP(LN(x)) with a GELU MLP of `mlp_ratio` x width."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassTokenHead(nn.Module):
    """Final LayerNorm, then a linear classifier on the class token (token 0)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x[:, 0]))


def init_transformer_(model: nn.Module) -> None:
    """Linear layers truncated-normal (std 0.02) with zero bias, LayerNorm weight 1 / bias 0, as DeiT."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def vision_transformer(
    image_size: int,
    patch_size: int,
    dim: int,
    depth: int,
    heads: int,
    num_classes: int = 1000,
    in_channels: int = 3,
    mlp_ratio: float = 4.0,
    arch: str | None = None,
) -> SequentialBackbone:
    """A ViT as a `SequentialBackbone`: stem (patch embedding) + `depth` transformer blocks."""
    blocks: list[nn.Module] = [PatchEmbedding(image_size, patch_size, in_channels, dim)]
    blocks += [TransformerBlock(dim, heads, mlp_ratio) for _ in range(depth)]
    model = SequentialBackbone(blocks, ClassTokenHead(dim, num_classes), stage_sizes=[1, depth], arch=arch,
                               image_size=image_size, tokens=TokenLayout(patch_size, prefix_tokens=1))
    init_transformer_(model)
    return model


# name: (image size, patch size, width, depth, heads)
VISION_TRANSFORMERS = {
    "vit_tiny": (224, 16, 192, 12, 3),  # DeiT-T
    "vit_small": (224, 16, 384, 12, 6),  # DeiT-S
    "vit_tiny_p4": (32, 4, 192, 12, 3),
    "vit_small_p4": (32, 4, 384, 12, 6),
}


def _register(name: str) -> None:
    image_size, patch_size, dim, depth, heads = VISION_TRANSFORMERS[name]

    def build(num_classes: int = 1000, in_channels: int = 3) -> SequentialBackbone:
        return vision_transformer(image_size, patch_size, dim, depth, heads, num_classes, in_channels, arch=name)

    ARCHITECTURES.add(name, build)


for _name in VISION_TRANSFORMERS:
    _register(_name)

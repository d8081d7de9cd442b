"""Auxiliary nets for token-sequence features (N, L, D) of vision transformers (IJCV 2025, DeiT-S).

"For DeiT-S, we simply use an MLP as w to reconstruct the model inputs, while
psi consists of a 3x3 convolutional layer with stride=2, followed by 3
standard Transformer layers." Here w maps each patch token to its patch's
pixels and reassembles the image; psi puts the patch tokens back on their grid,
applies the stride-2 conv, three transformer layers, LayerNorm, mean-pools and
classifies. Greedy's '0c1f' head is LayerNorm, mean over tokens, linear.
The feature's `TokenLayout` (prefix tokens, patch size) places the tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InfoProError
from ..models.vit import LAYER_NORM_EPS, TransformerBlock, init_transformer_
from .aux_nets import AuxOptions, Feature

HEAD_TRANSFORMER_LAYERS = 3
HEAD_WIDTH_PER_ATTENTION_HEAD = 64


def token_grid(feature: Feature) -> tuple[int, int, int]:
    """(grid height, grid width, width D) of a token feature; checks its length against the image and layout."""
    if len(feature.shape) != 2:
        raise InfoProError(f"token auxiliary nets need a (tokens, width) feature, got shape {tuple(feature.shape)}")
    layout = feature.tokens
    if layout is None:
        raise InfoProError(
            f"a cut gives token features of shape {tuple(feature.shape)}, but the backbone declares no token layout; "
            f"build it with SequentialBackbone(..., tokens=TokenLayout(patch_size, prefix_tokens))"
        )
    length, dim = feature.shape
    _, height, width = feature.image_shape
    p = layout.patch_size
    grid_h, grid_w = height // p, width // p
    if height % p or width % p or length != layout.prefix_tokens + grid_h * grid_w:
        raise InfoProError(
            f"{length} tokens do not match a {height}x{width} image in {p}x{p} patches "
            f"plus {layout.prefix_tokens} prefix token(s); check the backbone's TokenLayout"
        )
    return grid_h, grid_w, int(dim)


class TokensToMap(nn.Module):
    """(N, prefix + gh*gw, D) -> (N, D, gh, gw): drops the prefix tokens, lays the patch tokens on their grid."""

    def __init__(self, feature: Feature) -> None:
        super().__init__()
        self.grid_h, self.grid_w, _ = token_grid(feature)
        self.prefix = feature.tokens.prefix_tokens

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        patches = h[:, self.prefix:]
        return patches.transpose(1, 2).reshape(len(h), -1, self.grid_h, self.grid_w)


class PatchDecoder(nn.Module):
    """LayerNorm + a two-layer GELU MLP from each patch token to its patch's pixel logits, reassembled."""

    def __init__(self, feature: Feature, widen: int = 1) -> None:
        super().__init__()
        self.grid_h, self.grid_w, dim = token_grid(feature)
        self.prefix, self.patch = feature.tokens.prefix_tokens, feature.tokens.patch_size
        self.channels = feature.image_shape[0]
        self.mlp = nn.Sequential(nn.LayerNorm(dim, eps=LAYER_NORM_EPS), nn.Linear(dim, dim * widen), nn.GELU(),
                                 nn.Linear(dim * widen, self.channels * self.patch ** 2))
        init_transformer_(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, p = len(h), self.patch
        pixels = self.mlp(h[:, self.prefix:])  # (N, gh*gw, C*p*p)
        pixels = pixels.reshape(n, self.grid_h, self.grid_w, self.channels, p, p)
        return pixels.permute(0, 3, 1, 4, 2, 5).reshape(n, self.channels, self.grid_h * p, self.grid_w * p)

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(h))


def attention_heads(dim: int) -> int:
    """DeiT's 64 channels per head where the width allows it, else the most heads that divide the width."""
    heads = max(1, dim // HEAD_WIDTH_PER_ATTENTION_HEAD)
    while dim % heads:
        heads -= 1
    return heads


class TokenHead(nn.Module):
    """Patch tokens on their grid -> conv3x3 stride 2 -> 3 transformer layers -> LayerNorm, mean pool, linear."""

    def __init__(self, feature: Feature, out_dim: int, widen: int = 1) -> None:
        super().__init__()
        _, _, dim = token_grid(feature)
        width = dim * widen
        self.to_map = TokensToMap(feature)
        self.conv = nn.Conv2d(dim, width, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(TransformerBlock(width, attention_heads(width))
                                      for _ in range(HEAD_TRANSFORMER_LAYERS)))
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.fc = nn.Linear(width, out_dim)
        init_transformer_(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(self.to_map(h)).flatten(2).transpose(1, 2)
        return self.fc(self.norm(self.blocks(tokens)).mean(1))


class TokenLinearHead(nn.Module):
    """Greedy SL's head on tokens: LayerNorm, mean over all tokens, linear."""

    def __init__(self, feature: Feature, out_dim: int) -> None:
        super().__init__()
        _, _, dim = token_grid(feature)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.fc = nn.Linear(dim, out_dim)
        init_transformer_(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(h).mean(1))


TOKEN_HEADS = {"0c1f": "LayerNorm + mean pool + linear (Greedy SL)",
               "1c2f": "grid + conv3x3/2 + 3 transformer layers + pool + linear (DGL, InfoPro)"}


def token_decoder(feature: Feature, options: AuxOptions) -> nn.Module:
    return PatchDecoder(feature, options.widen)


def token_head(name: str, feature: Feature, out_dim: int, options: AuxOptions) -> nn.Module:
    if name == "0c1f":
        return TokenLinearHead(feature, out_dim)
    if name == "1c2f":
        return TokenHead(feature, out_dim, options.widen)
    choices = "; ".join(f"{k}: {v}" for k, v in TOKEN_HEADS.items())
    raise InfoProError(f"auxiliary head {name!r} has no version for token features; choose {choices}")

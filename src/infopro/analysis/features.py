"""Features h at a depth of a frozen backbone.

Depth d is the output of the first d entries of `backbone.blocks`, where
entry 0 is the stem: depth 1 is the stem's output and depth
`len(backbone.blocks)` is the last block's output (before the head's
pooling). A cut after block index c (see `local/cuts.py`) ends a piece at
depth c + 1. For a CIFAR ResNet-32 the valid depths are 1..16.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

from ..data import DeviceLoader
from ..errors import InfoProError, shown
from ..local import Feature
from ..local.aux_tokens import TokensToMap
from ..models import SequentialBackbone, TokenLayout


def parse_depths(text: str | Sequence[int]) -> list[int]:
    """'1,5,10' (or a list) -> sorted unique ints; anything else is an error saying what a depth is."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    depths = []
    for item in items:
        try:
            if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
                raise ValueError
            depth = int(item)
        except (TypeError, ValueError):
            raise InfoProError(
                f"--depths must be a comma list of integers (block counts, e.g. 1,5,10), got {shown(item, 40)} in {shown(text, 60)}"
            ) from None
        depths.append(depth)
    if not depths:
        raise InfoProError("--depths is empty; give block counts such as 1,5,10")
    return sorted(set(depths))


def check_depths(depths: Iterable[int], num_blocks: int) -> list[int]:
    """Depths must lie in 1..num_blocks (depth d = output of blocks[0:d], block 0 the stem)."""
    depths = sorted(set(depths))
    bad = [d for d in depths if not 1 <= d <= num_blocks]
    if bad:
        raise InfoProError(
            f"depth(s) {', '.join(map(str, bad))} out of range: depth d is the output of the first d blocks "
            f"(block 1 is the stem), so valid depths are 1..{num_blocks} for these runs"
        )
    return depths


def default_depths(num_blocks: int, cut_depths: Iterable[int], evenly_spaced: int = 4) -> list[int]:
    """Every cut depth, plus `evenly_spaced` depths from 1 to `num_blocks` (both ends included)."""
    even = np.linspace(1, num_blocks, num=min(evenly_spaced, num_blocks)).round().astype(int)
    return check_depths({*even.tolist(), *cut_depths}, num_blocks)


@torch.no_grad()
def extract_features(
    backbone: SequentialBackbone, depth: int, images: np.ndarray, labels: np.ndarray,
    mean: Sequence[float], std: Sequence[float], device: torch.device, batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h, image in [0, 1], labels) for uint8 (N, H, W, C) `images`, h taken at `depth` in eval mode.

    The loader is the evaluation one (in order, no augmentation), so the
    features of a set depend only on the weights and the images. What is
    kept, on `device`: h as float32 (N x the feature's size, written in
    place: no second copy), the images as float32 in [0, 1] (the decoder's
    target) and, until this returns, the loader's uint8 copy of the images.
    """
    check_depths([depth], len(backbone.blocks))
    trunk = backbone.blocks[:depth]
    # Restore every module's own mode afterwards (the slice is a new Sequential whose flag means nothing).
    modes = [(m, m.training) for m in trunk.modules()]
    trunk.eval()
    loader = DeviceLoader(images, labels, device, batch_size, mean, std, train=False)
    features: torch.Tensor | None = None
    try:
        start = 0
        for x, _ in loader:
            h = trunk(x).float()
            if features is None:
                features = h.new_empty((loader.num_samples, *h.shape[1:]))
            features[start:start + len(h)] = h
            start += len(h)
        # The decoder's target: the unnormalised image in [0, 1], i.e. what `LocalLearner.unnormalize`
        # recovers from x, taken straight from the uint8 pixels so that no rounding creeps in.
        targets = loader.images.float().div_(255)
    finally:
        for module, mode in modes:
            module.training = mode
    return features, targets, loader.labels  # the loader's labels are in its (evaluation) order


def probe_bytes(n_train: int, n_test: int, feature_values: int, image_shape: Sequence[int]) -> int:
    """What the probe holds at one depth: float32 features and float32 images (the decoder's target) of both
    subsets, plus the loader's uint8 copy of the train images while it extracts them."""
    pixels = int(np.prod(image_shape))
    return (n_train + n_test) * 4 * (feature_values + pixels) + n_train * pixels


def feature_map(h: torch.Tensor, tokens: TokenLayout | None, image_shape: Sequence[int]) -> torch.Tensor:
    """h as a (N, C, H, W) map for the probes: token features (N, L, D) laid on their patch grid."""
    if h.dim() == 4:
        return h
    return TokensToMap(Feature(tuple(h.shape[1:]), tuple(image_shape), tokens))(h)

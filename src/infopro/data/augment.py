"""Batched augmentation on the images' device: the papers' crop and flip (pad with reflect or zeros, random
crop, random flip), and `ExtraAugment`, the DeiT recipe's further steps (RandAugment, random erasing,
mixup/cutmix), which the loaders apply to training batches when asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .erasing import random_erase
from .mixing import mix_batch
from .randaugment import rand_augment


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map coordinates in [-pad, size + pad) to [0, size) as reflect padding does (edge not repeated)."""
    index = index.abs()
    return (size - 1) - (size - 1 - index).abs()


PADDINGS = ("reflect", "zeros")


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int,
              padding: str = "reflect") -> torch.Tensor:
    """Crop each image of `images` (N, C, H, W) at `offsets` (N, 2: top, left, in [0, 2*pad])
    from its padded version (`padding`: reflect, as the CIFAR code, or zeros, as torchvision's RandomCrop
    for SVHN and STL-10), mirrored where `flips` (N,) is true. One gather, no padded copy."""
    n, c, h, w = images.shape
    device = images.device
    rows = offsets[:, :1] - pad + torch.arange(h, device=device)  # (N, H), in [-pad, h + pad)
    cols = torch.arange(w, device=device).expand(n, w)
    cols = offsets[:, 1:] - pad + torch.where(flips[:, None], (w - 1) - cols, cols)  # (N, W)
    if padding == "reflect":
        return images[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(c, device=device)[None, :, None, None],
            _reflect(rows, h)[:, None, :, None],
            _reflect(cols, w)[:, None, None, :],
        ]
    inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
    out = images[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows.clamp(0, h - 1)[:, None, :, None],
        cols.clamp(0, w - 1)[:, None, None, :],
    ]
    return out * inside.to(out.dtype)


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True, padding: str = "reflect"
) -> torch.Tensor:
    """Randomly crop (from a `pad`-pixel `padding`) and horizontally flip a uint8 (N, C, H, W) batch.

    The random numbers come from `generator` on its own device and are moved to
    the images' device, so a CPU generator gives the same result on any device.
    pad=0 and flip=False is the identity.
    """
    if images.ndim != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if pad >= min(h, w) or pad < 0:
        raise ValueError(f"pad must be in [0, {min(h, w) - 1}] for {h}x{w} images (reflect padding), got {pad}")
    if pad == 0 and not flip:
        return images.clone()  # a copy, like every other case, so callers may modify it in place
    gen_device = generator.device
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=gen_device)
    flips = (
        torch.randint(0, 2, (n,), generator=generator, device=gen_device).bool()
        if flip
        else torch.zeros(n, dtype=torch.bool, device=gen_device)
    )
    return crop_flip(images, offsets.to(images.device), flips.to(images.device), pad, padding)


@dataclass(frozen=True)
class ExtraAugment:
    """What a training loader does beyond crop and flip, in timm's order (DeiT's recipe):
    RandAugment on the uint8 images (`randaugment_ops` > 0), then, after normalisation, random erasing
    (`erasing` > 0) and mixup/cutmix (`mixup` or `cutmix` > 0: the labels become soft targets
    (N, num_classes)). All off by default; see randaugment.py, erasing.py, mixing.py."""

    randaugment_ops: int = 0
    randaugment_magnitude: float = 9.0
    randaugment_std: float = 0.5
    erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.mixes and self.num_classes < 1:
            raise ValueError("mixup/cutmix need num_classes for their soft targets")

    @property
    def mixes(self) -> bool:
        """Whether the labels come out as soft targets."""
        return self.mixup > 0 or self.cutmix > 0

    def on_uint8(self, images: torch.Tensor, generator: torch.Generator, fill: Sequence[float]) -> torch.Tensor:
        """RandAugment (if on) of a uint8 batch; `fill`: the colour geometric ops uncover (0..255)."""
        if self.randaugment_ops <= 0:
            return images
        return rand_augment(images, generator, self.randaugment_ops, self.randaugment_magnitude,
                            self.randaugment_std, fill)

    def on_normalised(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random erasing, then mixup/cutmix (each if on) of a normalised batch."""
        if self.erasing > 0:
            x = random_erase(x, generator, self.erasing)
        if self.mixes:
            x, labels, _ = mix_batch(x, labels, generator, self.num_classes, self.mixup, self.cutmix,
                                     self.mix_prob, self.mix_switch_prob)
        return x, labels

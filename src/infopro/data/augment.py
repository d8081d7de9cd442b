"""The papers' augmentation, batched on the images' device: pad (reflect or zeros), random crop, random flip."""

from __future__ import annotations

import torch


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

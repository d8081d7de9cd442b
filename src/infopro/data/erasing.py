"""Random erasing (Zhong et al. 2020) of a normalised batch, per sample, on the batch's device.

timm's RandomErasing as DeiT uses it (--reprob P, mode 'pixel', one box): with probability P an
image gets one box of 2% to 1/3 of its area, aspect ratio log-uniform in [0.3, 1/0.3] (up to 10
tries for a box that fits, else none), filled with per-pixel standard normal noise in the
normalised space (all channels). The box parameters come from a CPU generator; the noise from a
generator on the batch's device seeded from it, so the result depends only on the CPU generator.
"""

from __future__ import annotations

import math

import torch

MIN_AREA, MAX_AREA = 0.02, 1 / 3
MIN_ASPECT = 0.3
ATTEMPTS = 10


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded from the CPU `generator` (one draw), for large random tensors there."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def random_erase(x: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """`x` (N, C, H, W) float with at most one box per image replaced by noise; a new tensor."""
    n, c, h, w = x.shape
    erase = torch.rand(n, generator=generator) < probability
    area = torch.empty(n, ATTEMPTS).uniform_(MIN_AREA, MAX_AREA, generator=generator) * (h * w)
    log_aspect = torch.empty(n, ATTEMPTS).uniform_(math.log(MIN_ASPECT), -math.log(MIN_ASPECT), generator=generator)
    aspect = log_aspect.exp()
    box_h = (area * aspect).sqrt().round().long()
    box_w = (area / aspect).sqrt().round().long()
    fits = (box_h < h) & (box_w < w)
    first = fits.long().argmax(1)  # the first try that fits (0 when none: then `fits` says no)
    rows = torch.arange(n)
    box_h, box_w, erase = box_h[rows, first], box_w[rows, first], erase & fits[rows, first]
    top = (torch.rand(n, generator=generator) * (h - box_h + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - box_w + 1)).long()
    index = erase.nonzero().flatten()
    out = x.clone()
    if len(index) == 0:
        return out
    device = x.device
    top, left, box_h, box_w = (t[index].to(device).view(-1, 1, 1) for t in (top, left, box_h, box_w))
    ys = torch.arange(h, device=device).view(1, h, 1)
    xs = torch.arange(w, device=device).view(1, 1, w)
    inside = ((ys >= top) & (ys < top + box_h) & (xs >= left) & (xs < left + box_w)).unsqueeze(1)  # (k, 1, H, W)
    where = index.to(device)
    noise = torch.randn((len(index), c, h, w), generator=device_generator(generator, device), device=device,
                        dtype=x.dtype)
    out[where] = torch.where(inside, noise, out[where])
    return out

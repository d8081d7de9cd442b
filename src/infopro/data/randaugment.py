"""RandAugment on uint8 image batches, per sample, on the images' device.

Written by hand on tensors: torchvision is not imported (it does not install beside the CPU
torch wheel, see DEVELOPERS.md). The op set and the magnitude scales are those of timm's
'rand-m{M}-mstd{S}-inc1' policy, the one DeiT trains with (its "increasing" variants: every
op grows stronger with M): AutoContrast, Equalize, Invert, Rotate (up to 30 degrees),
Posterize (4 down to 0 bits), Solarize (threshold 256 down to 0), SolarizeAdd (up to 110),
Color, Contrast, Brightness, Sharpness (factor 1 -/+ 0.9 M/10, at least 0.1), ShearX/Y (up to
0.3), TranslateX/Y (up to 45% of the side). Each of `num_ops` rounds picks one op per image
uniformly (with replacement over rounds) and applies it with probability 0.5, its magnitude
drawn per image from N(M, std) clipped to [0, 10], and a random sign for the signed ops, as
timm does. The colour ops give PIL's results exactly (tests/test_deit_recipe.py compares them);
the geometric ones sample bilinearly (timm: bilinear or bicubic at random, DeiT: bicubic) with
`grid_sample`, so pixels differ from PIL's by rounding, and fill with `fill` (DeiT: the data
set's mean colour).

All random numbers come from a CPU generator (the loaders' own, seeded from seed, epoch and
step), so the same batches come out on any device and on resume.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

MAX_LEVEL = 10.0  # magnitudes are on a 0..10 scale (timm's _LEVEL_DENOM)
_GRAY_FIXED = (19595, 38470, 7471)  # ITU-R 601-2 luma in 16-bit fixed point, as PIL's convert("L")

# op(images uint8 (b, C, H, W), magnitude (b,), sign (b,) of +-1, fill float (C,)) -> uint8 (b, C, H, W)
Op = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(b, C, H, W) uint8 -> (b, 1, H, W) float luma, rounded as PIL's convert("L") (the image itself when it
    has one channel)."""
    if x.shape[1] != 3:
        return x[:, :1].float()
    weights = torch.tensor(_GRAY_FIXED, dtype=torch.long, device=x.device).view(1, 3, 1, 1)
    return (((x.long() * weights).sum(1, keepdim=True) + 0x8000) >> 16).float()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance (Image.blend): degenerate + factor * (image - degenerate), clipped, truncated."""
    return (degenerate + _per_image(factor) * (x - degenerate)).clamp_(0, 255).to(torch.uint8)


def _enhance_factor(magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    # In double precision, as timm computes it, then float32, as PIL's blend takes it.
    return (1.0 + sign.double() * (magnitude.double() / MAX_LEVEL * 0.9)).clamp(min=0.1).float()


def auto_contrast(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to 0..255 (PIL's autocontrast without cut-off); flat channels stay."""
    xf = x.double()  # PIL's lookup table is computed in double precision: x * scale + offset, truncated
    lo = xf.amin((2, 3), keepdim=True)
    hi = xf.amax((2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp(min=1)
    out = (xf * scale - lo * scale).floor_().clamp_(0, 255)
    return torch.where(hi > lo, out, xf).to(torch.uint8)


def equalize(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel, PIL's algorithm (step from the histogram without its top bin)."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, flat, torch.ones_like(flat))
    top = 255 - torch.flip(hist > 0, [1]).long().argmax(1)  # the highest level present
    step = (h * w - hist.gather(1, top[:, None]).squeeze(1)) // 255
    below = hist.cumsum(1) - hist  # pixels below each level
    lut = ((step[:, None] // 2 + below) // step.clamp(min=1)[:, None]).clamp_(0, 255)
    lut = torch.where(step[:, None] > 0, lut, torch.arange(256, device=x.device))
    return lut.gather(1, flat).to(torch.uint8).view(b, c, h, w)


def invert(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    return 255 - x


def posterize(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Keep the 4 - int(0.4 M) most significant bits (M = 10: none, a black image)."""
    bits = 4 - (magnitude / MAX_LEVEL * 4).long()
    mask = ((0xFF << (8 - bits)) & 0xFF).to(torch.uint8)
    return x & _per_image(mask)


def solarize(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Invert the levels >= 256 - int(25.6 M)."""
    threshold = 256 - (magnitude / MAX_LEVEL * 256).long()
    return torch.where(x.long() >= _per_image(threshold), 255 - x, x)


def solarize_add(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Add int(11 M) to the levels below 128, clipped at 255."""
    add = _per_image((magnitude / MAX_LEVEL * 110).long())
    return torch.where(x < 128, (x.long() + add).clamp(max=255), x.long()).to(torch.uint8)


def color(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    return _blend(_gray(x).expand_as(xf), xf, _enhance_factor(magnitude, sign))


def contrast(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    mean = (_gray(x).mean((1, 2, 3), keepdim=True) + 0.5).floor()
    return _blend(mean.expand_as(xf), xf, _enhance_factor(magnitude, sign))


def brightness(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    return _blend(torch.zeros_like(xf), xf, _enhance_factor(magnitude, sign))


def sharpness(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre 5, others 1, / 13) inside, the image itself at the border."""
    xf = x.float()
    c = x.shape[1]
    kernel = torch.ones(3, 3, dtype=xf.dtype, device=x.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(c, 1, 3, 3)
    smooth = xf.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(xf, kernel, groups=c).round_()
    return _blend(smooth, xf, _enhance_factor(magnitude, sign))


def _affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Resample with `matrix` (b, 2, 3) mapping output pixel-centre coordinates (u, v) = (x + 0.5, y + 0.5)
    to input ones, as PIL's Image.transform(AFFINE) does; outside the image: `fill`."""
    b, c, h, w = x.shape
    v, u = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32) + 0.5,
                          torch.arange(w, device=x.device, dtype=torch.float32) + 0.5, indexing="ij")
    coords = torch.stack([u, v, torch.ones_like(u)], -1).view(1, h * w, 3)
    source = coords @ matrix.transpose(1, 2)  # (b, H*W, 2) input coordinates
    size = torch.tensor([w, h], dtype=torch.float32, device=x.device)
    grid = (source / size * 2 - 1).view(b, h, w, 2)
    shifted = x.float() - fill.view(1, c, 1, 1)  # zeros outside become the fill colour
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _to_uint8(out + fill.view(1, c, 1, 1))


def _matrices(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, e: torch.Tensor,
              f: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.stack([a, b, c], 1), torch.stack([d, e, f], 1)], 1).float()


def rotate(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise by sign * 3 M degrees about the centre (PIL's Image.rotate)."""
    h, w = x.shape[-2:]
    angle = -torch.deg2rad(sign * magnitude / MAX_LEVEL * 30.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    # input = R (output - centre) + centre, R = [[cos, sin], [-sin, cos]]
    return _affine(x, _matrices(cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy), fill)


def shear_x(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    shear = sign * magnitude / MAX_LEVEL * 0.3
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    return _affine(x, _matrices(one, shear, zero, zero, one, zero), fill)


def shear_y(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    shear = sign * magnitude / MAX_LEVEL * 0.3
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    return _affine(x, _matrices(one, zero, zero, shear, one, zero), fill)


def translate_x(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    pixels = sign * magnitude / MAX_LEVEL * 0.45 * x.shape[-1]
    one, zero = torch.ones_like(pixels), torch.zeros_like(pixels)
    return _affine(x, _matrices(one, zero, pixels, zero, one, zero), fill)


def translate_y(x: torch.Tensor, magnitude: torch.Tensor, sign: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    pixels = sign * magnitude / MAX_LEVEL * 0.45 * x.shape[-2]
    one, zero = torch.ones_like(pixels), torch.zeros_like(pixels)
    return _affine(x, _matrices(one, zero, zero, zero, one, pixels), fill)


# timm's _RAND_INCREASING_TRANSFORMS, in its order.
OPS: dict[str, Op] = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "PosterizeIncreasing": posterize, "SolarizeIncreasing": solarize, "SolarizeAdd": solarize_add,
    "ColorIncreasing": color, "ContrastIncreasing": contrast, "BrightnessIncreasing": brightness,
    "SharpnessIncreasing": sharpness, "ShearX": shear_x, "ShearY": shear_y, "TranslateXRel": translate_x,
    "TranslateYRel": translate_y,
}


def rand_augment(images: torch.Tensor, generator: torch.Generator, num_ops: int = 2, magnitude: float = 9.0,
                 magnitude_std: float = 0.5, fill: Sequence[float] | None = None, prob: float = 0.5,
                 ops: Sequence[str] | None = None) -> torch.Tensor:
    """RandAugment of a uint8 (N, C, H, W) batch (see the module's docstring); a new tensor.

    `generator` is a CPU generator; `fill` the colour (0..255 per channel) where geometric ops uncover
    the image (default 128 gray); `ops` a subset of `OPS` by name (default: all 15).
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"rand_augment takes uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
    names = list(OPS) if ops is None else list(ops)
    n, c = images.shape[:2]
    fill_tensor = torch.tensor(list(fill) if fill is not None else [128.0] * c, dtype=torch.float32,
                               device=images.device)
    out = images.clone()
    for _ in range(num_ops):
        chosen = torch.randint(0, len(names), (n,), generator=generator)
        applied = torch.rand(n, generator=generator) < prob
        noise = torch.randn(n, generator=generator)
        magnitudes = (magnitude + magnitude_std * noise).clamp(0, MAX_LEVEL) if magnitude_std > 0 else \
            torch.full((n,), float(magnitude)).clamp(0, MAX_LEVEL)
        signs = torch.where(torch.rand(n, generator=generator) < 0.5, 1.0, -1.0)
        for k, name in enumerate(names):
            index = ((chosen == k) & applied).nonzero().flatten()  # on the CPU: no device sync
            if len(index) == 0:
                continue
            where = index.to(images.device)
            out[where] = OPS[name](out[where], magnitudes[index].to(images.device), signs[index].to(images.device),
                                   fill_tensor)
    return out


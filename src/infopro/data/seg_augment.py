"""Semantic segmentation's training augmentation, as mmsegmentation 0.x runs it for the authors
(configs/_base_/datasets/cityscapes.py): Resize with a ratio range, RandomCrop with cat_max_ratio,
RandomFlip, PhotoMetricDistortion, Normalize, Pad. One sample at a time, on torch tensors on any
device; every random number is drawn from the CPU generator given, in mmseg's order, so a sample's
augmentation depends on the generator alone (the same on CPU and GPU).

Scale, crop and flip move image and mask together (the mask resized by nearest neighbour); the
photometric distortion touches the image only. Images are float in [0, 255] until normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RATIO_RANGE = (0.5, 2.0)  # mmseg Resize(ratio_range): the scale drawn per sample, of the base scale
CAT_MAX_RATIO = 0.75  # mmseg RandomCrop: a crop's largest class may hold at most this share of its labelled pixels
CROP_TRIES = 10
FLIP_PROB = 0.5
BRIGHTNESS_DELTA = 32.0  # PhotoMetricDistortion's defaults
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # of OpenCV's 180 hue steps (+-36 degrees)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high), as numpy's randint."""
    return int(torch.randint(low, high, (), generator=generator))


def rescaled_size(height: int, width: int, ratio: float, scale: tuple[int, int] | None = None) -> tuple[int, int]:
    """(h, w) after mmseg's Resize(img_scale=scale, ratio_range, keep_ratio=True) drew `ratio`: the image fitted
    inside (long, short) = scale * ratio keeping its aspect ratio. `scale`: (long edge, short edge) as mmseg's
    img_scale, e.g. (2048, 1024) for Cityscapes; None: the image's own size (a rescale by `ratio`)."""
    base = (width, height) if scale is None else scale
    target = (int(base[0] * ratio), int(base[1] * ratio))
    factor = min(max(target) / max(height, width), min(target) / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float (C, H, W) resized bilinearly (OpenCV's INTER_LINEAR, mmcv's default) to `size` (h, w)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) class indices resized by nearest neighbour (OpenCV's INTER_NEAREST: source = floor(dst * H / h)),
    in integer arithmetic so any dtype works and no index is off by a rounding."""
    height, width = mask.shape
    h, w = size
    if (h, w) == (height, width):
        return mask
    rows = torch.arange(h, device=mask.device) * height // h
    cols = torch.arange(w, device=mask.device) * width // w
    return mask[rows][:, cols]


def crop_is_balanced(mask: torch.Tensor, cat_max_ratio: float = CAT_MAX_RATIO, ignore_index: int = 255) -> bool:
    """mmseg's RandomCrop rule for a crop of the mask: among its pixels that are not `ignore_index`, more than
    one class, and the largest class's share below `cat_max_ratio`."""
    labels = mask[mask != ignore_index].long()
    if labels.numel() == 0:
        return False
    counts = torch.bincount(labels)
    present, largest, total = torch.stack([(counts > 0).sum(), counts.max(), counts.sum()]).tolist()
    return present > 1 and largest / total < cat_max_ratio


def choose_crop(mask: torch.Tensor, crop: tuple[int, int], generator: torch.Generator,
                cat_max_ratio: float = CAT_MAX_RATIO, ignore_index: int = 255,
                tries: int = CROP_TRIES) -> tuple[int, int]:
    """(top, left) of a random `crop` (h, w) of the mask (0 along a side the mask is smaller than the crop):
    redrawn up to `tries` times while the crop is not `crop_is_balanced`, the last draw kept unchecked
    (mmseg's loop)."""
    margin_h, margin_w = max(mask.shape[0] - crop[0], 0), max(mask.shape[1] - crop[1], 0)

    def draw() -> tuple[int, int]:
        return _randint(generator, 0, margin_h + 1), _randint(generator, 0, margin_w + 1)

    top, left = draw()
    if cat_max_ratio < 1:
        for _ in range(tries):
            if crop_is_balanced(mask[top : top + crop[0], left : left + crop[1]], cat_max_ratio, ignore_index):
                break
            top, left = draw()
    return top, left


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = rgb
    maxc, minc = rgb.max(0).values, rgb.min(0).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return torch.stack([h, s, maxc])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """(3, H, W) HSV in [0, 1] -> RGB in [0, 1]."""
    h, s, v = hsv
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    i = sector.long().remainder(6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # The six sectors of the hue circle, as colorsys has them.
    r = torch.stack([v, q, p, p, t, v]).gather(0, i[None])[0]
    g = torch.stack([t, v, v, q, p, p]).gather(0, i[None])[0]
    b = torch.stack([p, p, t, v, v, q]).gather(0, i[None])[0]
    return torch.stack([r, g, b])


def _contrast(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if _randint(generator, 0, 2):
        return (image * _uniform(generator, *CONTRAST_RANGE)).clamp_(0, 255)
    return image


def photometric_distortion(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """mmseg's PhotoMetricDistortion on float (C, H, W) in [0, 255]: each step with probability 1/2, brightness
    (+- 32), contrast (x 0.5..1.5) first or last (a coin), saturation (x 0.5..1.5), hue (+- 18 of 180 steps).
    Saturation and hue only for 3-channel images (a grey image has neither)."""
    image = image.clone()
    if _randint(generator, 0, 2):
        image = (image + _uniform(generator, -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)).clamp_(0, 255)
    contrast_first = _randint(generator, 0, 2) == 1
    if contrast_first:
        image = _contrast(image, generator)
    if image.shape[0] == 3:
        if _randint(generator, 0, 2):
            hsv = rgb_to_hsv(image / 255)
            hsv[1] = (hsv[1] * _uniform(generator, *SATURATION_RANGE)).clamp_(0, 1)
            image = hsv_to_rgb(hsv) * 255
        if _randint(generator, 0, 2):
            hsv = rgb_to_hsv(image / 255)
            hsv[0] = torch.remainder(hsv[0] + _randint(generator, -HUE_DELTA, HUE_DELTA) / 180.0, 1.0)
            image = hsv_to_rgb(hsv) * 255
    if not contrast_first:
        image = _contrast(image, generator)
    return image


def augment_pair(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, crop: tuple[int, int],
                 ignore_index: int = 255, scale: tuple[int, int] | None = None,
                 ratio_range: tuple[float, float] = RATIO_RANGE, cat_max_ratio: float = CAT_MAX_RATIO,
                 flip_prob: float = FLIP_PROB, photometric: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One training sample: uint8 image (C, H, W) and mask (H, W) -> float image (C, h, w) in [0, 255] and int64
    mask (h, w), h <= crop[0] and w <= crop[1] (smaller where the rescaled image is: `pad_pair` then pads).
    Rescale (ratio drawn in `ratio_range` of `scale`, see `rescaled_size`), crop (`choose_crop`), flip, and the
    photometric distortion if `photometric`."""
    ratio = _uniform(generator, *ratio_range)
    size = rescaled_size(image.shape[-2], image.shape[-1], ratio, scale)
    picture = resize_image(image.float(), size)
    labels = resize_mask(mask, size)
    top, left = choose_crop(labels, crop, generator, cat_max_ratio, ignore_index)
    picture = picture[:, top : top + crop[0], left : left + crop[1]]
    labels = labels[top : top + crop[0], left : left + crop[1]]
    if _uniform(generator, 0.0, 1.0) < flip_prob:
        picture, labels = picture.flip(-1), labels.flip(-1)
    if photometric:
        picture = photometric_distortion(picture, generator)
    return picture, labels.long()


def pad_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int],
             ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a normalised image (C, h, w) with 0 and its mask with `ignore_index` at the bottom and right to `size`
    (mmseg's Pad after Normalize: the padding is the mean colour, and no pixel of it is scored)."""
    dh, dw = size[0] - image.shape[-2], size[1] - image.shape[-1]
    if dh == 0 and dw == 0:
        return image, mask
    return F.pad(image, (0, dw, 0, dh), value=0.0), F.pad(mask, (0, dw, 0, dh), value=ignore_index)


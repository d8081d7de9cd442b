"""Per-image transforms on PIL images (torchvision's algorithms, which the core cannot import).

- `fit`: resize the short side to the target, centre crop (what the memory path stores);
- `eval_view`: resize the short side to S / 0.875, centre crop S (the standard ImageNet evaluation);
- `random_resized_crop` + flip: the standard ImageNet training augmentation.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .items import convert, to_array

EVAL_CROP_FRACTION = 0.875
RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)

Size = tuple[int, int]  # (height, width)


def resize_short_side(img: Image.Image, short: int) -> Image.Image:
    """Resize so the shorter side is `short` (torchvision's Resize(int): long = int(short * long / short_old))."""
    w, h = img.size
    if w <= h:
        new = (short, int(short * h / w))
    else:
        new = (int(short * w / h), short)
    return img if new == (w, h) else img.resize(new, Image.BILINEAR)


def center_crop(img: Image.Image, size: Size) -> Image.Image:
    """torchvision's center_crop for an image at least `size` large: top = round((H - h) / 2)."""
    h, w = size
    top = int(round((img.height - h) / 2.0))
    left = int(round((img.width - w) / 2.0))
    return img.crop((left, top, left + w, top + h))


def fit(img: Image.Image, size: Size) -> Image.Image:
    """Resize the short side to cover `size`, then centre crop it: the whole image when aspect ratios agree."""
    if img.size == (size[1], size[0]):
        return img
    h, w = size
    scale = max(h / img.height, w / img.width)
    new = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
    return center_crop(img.resize(new, Image.BILINEAR), size)


def eval_view(img: Image.Image, size: Size) -> Image.Image:
    """Resize the short side to floor(min(size) / 0.875), then centre crop `size`."""
    short = max(math.floor(min(size) / EVAL_CROP_FRACTION), max(size))
    return center_crop(resize_short_side(img, short), size)


def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float] = RRC_SCALE,
                            ratio: tuple[float, float] = RRC_RATIO) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a crop covering `scale` of the area at aspect ratio in `ratio` (log-uniform):
    torchvision's RandomResizedCrop.get_params, 10 tries then the central crop clamped to `ratio`."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def random_resized_crop(img: Image.Image, size: Size, rng: np.random.Generator) -> Image.Image:
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng)
    return img.resize((size[1], size[0]), Image.BILINEAR, box=(left, top, left + w, top + h))


def train_view(img: Image.Image, size: Size, rng: np.random.Generator) -> Image.Image:
    """Random-resized crop to `size`, then a horizontal flip with probability 1/2."""
    img = random_resized_crop(img, size, rng)
    return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def prepare_array(img: Image.Image, size: Size, channels: int) -> np.ndarray:
    """uint8 (H, W, C): converted to `channels`, then `fit` to `size` (the memory path's stored image)."""
    return to_array(fit(convert(img, channels), size))


def eval_array(img: Image.Image, size: Size, channels: int) -> np.ndarray:
    """uint8 (H, W, C): converted to `channels`, then `eval_view` at `size` (the stream path's evaluation image)."""
    return to_array(eval_view(convert(img, channels), size))


# The image a run's evaluation loader shows, by the data path it was trained on.
EVAL_VIEWS = {"memory": prepare_array, "stream": eval_array}

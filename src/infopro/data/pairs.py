"""Image + mask pairs for semantic segmentation: finding them on disk, matching them by stem, reading a mask.

A mask holds one class index per pixel: an 8-bit grey ("L") or palette ("P",
as VOC's are: read by index, not colour) PNG, or 16-bit grey ("I;16"). An RGB
mask is accepted only where its three channels agree (a grey mask saved as
RGB); a colour-coded one must be converted to indices first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import InfoProError
from .items import Items, mode_channels
from .listing import check_class_names, list_folder, shown_path

# Extensions kept in an image or a mask folder (torchvision's IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# key (the path below the split folder, without its suffix) -> file path
Files = dict[str, str]


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def plain_key(relative: str) -> str | None:
    """The pairing key of a file in a generic layout: its path below the split folder without the extension."""
    return os.path.splitext(relative)[0] if _is_image_name(os.path.basename(relative)) else None


def scan(folder: Path, key: Callable[[str], str | None] = plain_key) -> Files:
    """key -> path of every file under `folder` (recursively, in sorted order) that `key` names; two files with
    one key (a.jpg and a.png) are an error, and so is an entry that is neither a folder nor a file (a broken
    link, a FIFO: `list_folder`) or a link back to a folder above it. Hidden entries are skipped; links to
    folders are followed."""
    found: Files = {}

    def walk(directory: str, above: tuple[str, ...]) -> None:
        entries = list_folder(directory)
        for e in entries:
            if e.is_dir():
                continue
            relative = os.path.relpath(e.path, folder).replace(os.sep, "/")
            k = key(relative)
            if k is None:
                continue
            if k in found:
                raise InfoProError(f"{found[k]} and {e.path} share the stem {k!r} in {folder}; keep one of them")
            found[k] = e.path
        for e in entries:
            if e.is_dir():
                real = os.path.realpath(e.path)
                if real in above:
                    raise InfoProError(f"{e.path} is a link back to {real}, a folder above it (a loop); "
                                       "remove the link")
                walk(e.path, (*above, real))

    walk(os.fspath(folder), (os.path.realpath(folder),))
    return found


def check_layout(*folders: Path) -> None:
    """Refuse an entry of these folders (a data root, its split or image/mask folders) that is neither a folder
    nor a file: a broken val/ link or masks/ link would otherwise drop a split, or read another tree."""
    for f in dict.fromkeys(folders):
        if f.is_dir():
            list_folder(f)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return f"{len(keys)}: {shown}{', ...' if len(keys) > 3 else ''}"


def match_pairs(image_dir: Path, mask_dir: Path, images: Files, masks: Files) -> "PairItems":
    """The pairs of `images` and `masks` with the same key, sorted by key; refuses an unpaired file."""
    if not images:
        raise InfoProError(f"{image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add the split's images "
                           "or remove the folder")
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_masks:
        raise InfoProError(f"{mask_dir} has masks without an image of the same stem in {image_dir} "
                           f"({_listed(lonely_masks)}); add their images or remove those masks")
    lonely_images = sorted(set(images) - set(masks))
    if lonely_images:
        raise InfoProError(f"{image_dir} has images without a mask of the same stem in {mask_dir} "
                           f"({_listed(lonely_images)}); add their masks or remove those images")
    keys = sorted(images)
    return PairItems([images[k] for k in keys], [masks[k] for k in keys], keys)


def read_classes_txt(root: Path) -> list[str]:
    """The class names of `root/classes.txt` (one a line, blank lines skipped), or [] where there is none:
    the masks then decide the count."""
    path = root / "classes.txt"
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InfoProError(f"{shown_path(path)} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise InfoProError(f"cannot read {shown_path(path)} ({error.strerror}); fix its permissions or remove it"
                           ) from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    check_class_names(names, path, kind="class name")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InfoProError(f"{path} names {', '.join(twice)} more than once; give each class one line")
    return names


def read_mask(path: str) -> np.ndarray:
    """The class indices of a mask file as (H, W) uint8 (8-bit masks) or int32 (16/32-bit ones)."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            a = np.array(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InfoProError(f"cannot read mask {path} ({e}); remove or replace that file") from None
    if mode in ("P", "L", "1", "I", "PA", "LA") or mode.startswith("I;16"):
        index = a if a.ndim == 2 else a[..., 0]  # PA/LA: the index, not the alpha
    elif mode in ("RGB", "RGBA") and (a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all():
        index = a[..., 0]  # a grey mask saved as RGB
    elif mode in ("RGB", "RGBA"):
        raise InfoProError(f"mask {path} is an RGB colour image; convert it to class indices (an 8-bit grey or "
                           "palette PNG whose pixel value is the class index)")
    else:
        raise InfoProError(f"mask {path} is a {mode} image; save masks as 8-bit grey or palette PNGs whose pixel "
                           "value is the class index")
    if index.dtype == np.bool_ or index.dtype == np.uint8:
        return index.astype(np.uint8)
    if index.min() < 0:
        raise InfoProError(f"mask {path} holds negative values; class indices start at 0")
    return index.astype(np.int32)


@dataclass
class PairItems(Items):
    """Image files and their masks, pair i = (images[i], masks[i]), with the key they were matched by."""

    images: list[str]
    masks: list[str]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:  # Items' per-image label: none here, the masks are the targets
        return np.zeros(len(self), dtype=np.int64)

    def name(self, i: int) -> str:
        return self.images[i]

    def image(self, i: int) -> Image.Image:
        try:
            with Image.open(self.images[i]) as img:
                img.load()
                return img
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InfoProError(f"cannot read image {self.images[i]} ({e}); remove or replace that file") from None

    def mask(self, i: int) -> np.ndarray:
        return read_mask(self.masks[i])

    def header(self, i: int) -> tuple[int, int, int]:
        try:
            with Image.open(self.images[i]) as img:  # size and mode from the header only
                return img.width, img.height, mode_channels(img.mode)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InfoProError(f"cannot read image {self.images[i]} ({e}); remove or replace that file") from None

    def headers(self, progress: bool = False, desc: str = "") -> np.ndarray:
        return np.array([self.header(i) for i in range(len(self))], dtype=np.int64).reshape(-1, 3)

    def take(self, index: np.ndarray) -> "PairItems":
        return PairItems([self.images[i] for i in index], [self.masks[i] for i in index],
                         [self.keys[i] for i in index])

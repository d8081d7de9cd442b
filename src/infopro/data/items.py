"""The images of one split, before any resizing: held as an array, or as files decoded one at a time.

Readers return `Items`; the memory path decodes all of them into one uint8
array, the stream path decodes one per sample in worker processes. Both go
through `Items.image(i)`, so both see the same pixels.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageMode

from ..errors import InfoProError
from .archive import MAX_IMAGE_MB, max_bytes_of, read_member

# 8-bit (and 1-bit) band types; any other (16/32-bit integer, 32-bit float) is scaled to 8 bits by `to_8bit`.
EIGHT_BIT_TYPES = ("|u1", "|b1")
SIXTEEN_BIT_TOP = 65535


def mode_channels(mode: str) -> int:
    """1 for a greyscale-like Pillow mode (its base mode is "L": 1, L, LA, I, I;16*, F), else 3 (RGB, RGBA, RGBX,
    CMYK, YCbCr, LAB, HSV, and P/PA: a palette is taken as colour). Alpha never counts."""
    try:
        return 1 if ImageMode.getmode(mode).basemode == "L" else 3
    except KeyError:  # a mode Pillow does not list: `convert` says whether it can be read
        return 3


def is_high_depth(mode: str) -> bool:
    """A mode of 16 or 32 bits per pixel (I;16, I;16B, I;16L, I;16N, I, F): one band, scaled by `to_8bit`."""
    try:
        return ImageMode.getmode(mode).typestr not in EIGHT_BIT_TYPES
    except KeyError:
        return False


def to_8bit(a: np.ndarray) -> np.ndarray:
    """A 16/32-bit greyscale image's values as uint8, scaled and never clipped:

    - unsigned 16-bit (I;16*): v / 257 (0..65535 onto 0..255);
    - signed 32-bit (I, what Pillow makes of 16-bit PGM/PPM/TIFF data): v / 257 when every value is in
      0..65535, else the image's own min..max onto 0..255;
    - float (F): v * 255 when every value is in [0, 1], else the image's min..max onto 0..255.

    Rounded to the nearest integer; values that are not finite (NaN, inf) become 0."""
    v = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(v)
    v = np.where(finite, v, 0.0)
    lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 0.0)
    if a.dtype.kind == "f" and 0.0 <= lo and hi <= 1.0:
        scaled = v * 255.0
    elif a.dtype.kind in "ui" and 0 <= lo and hi <= SIXTEEN_BIT_TOP:
        scaled = v * (255.0 / SIXTEEN_BIT_TOP)
    else:  # beyond any fixed range: the image's own
        scaled = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(np.where(finite, scaled, 0.0)), 0, 255).astype(np.uint8)


def convert(img: Image.Image, channels: int) -> Image.Image:
    """The image as 'L' (channels=1) or 'RGB' (channels=3), whatever its Pillow mode: 16/32-bit greyscale is
    scaled to 8 bits (`to_8bit`), alpha is dropped (the colour under it is kept, as Pillow converts), palette,
    CMYK, YCbCr, LAB and HSV images are converted by Pillow (LAB to grey through RGB)."""
    mode = "L" if channels == 1 else "RGB"
    if img.mode == mode:
        return img
    if is_high_depth(img.mode):
        grey = Image.fromarray(to_8bit(np.asarray(img)), "L")
        return grey if mode == "L" else grey.convert("RGB")
    try:
        return img.convert(mode)
    except ValueError:  # no direct conversion (LAB -> L): through RGB
        try:
            return img.convert("RGB").convert(mode)
        except ValueError:
            raise InfoProError(f"images of Pillow mode {img.mode} cannot be converted to {mode}; save them as "
                               "8-bit greyscale or RGB") from None


def to_array(img: Image.Image) -> np.ndarray:
    """uint8 (H, W, C) of an 'L' or 'RGB' image (a writable copy)."""
    a = np.array(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


class Items:
    """Labels plus a way to open each image. Subclasses: `ArrayItems`, `FileItems`."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        raise NotImplementedError

    def image(self, i: int) -> Image.Image:
        """Image i as PIL (any mode, full size)."""
        raise NotImplementedError

    def header(self, i: int) -> tuple[int, int, int]:
        """(width, height, channels as stored: 1 or 3) without decoding the pixels where possible."""
        raise NotImplementedError

    def headers(self, progress: bool = False, desc: str = "") -> np.ndarray:
        """(N, 3) int array of every item's (width, height, channels)."""
        raise NotImplementedError

    def take(self, index: np.ndarray) -> "Items":
        """The items at `index`, in that order."""
        raise NotImplementedError


@dataclass
class ArrayItems(Items):
    """Images already decoded (N, H, W, C) uint8, C in {1, 3}, as the CIFAR/SVHN/STL/MNIST files hold them."""

    images: np.ndarray
    labels: np.ndarray
    source: str = ""

    def name(self, i: int) -> str:
        return f"{self.source}[{i}]"

    def image(self, i: int) -> Image.Image:
        a = self.images[i]
        return Image.fromarray(a[:, :, 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB")

    def header(self, i: int) -> tuple[int, int, int]:
        _, h, w, c = self.images.shape
        return w, h, c

    def headers(self, progress: bool = False, desc: str = "") -> np.ndarray:
        return np.tile(np.array(self.header(0), dtype=np.int64), (len(self), 1))

    def take(self, index: np.ndarray) -> "ArrayItems":
        return ArrayItems(self.images[index], self.labels[index], self.source)


@dataclass
class FileItems(Items):
    """Image files, by path (or member name inside `archive`, a .zip), decoded on demand.

    The zip is opened lazily in each process that reads it (a ZipFile does not
    survive being sent to a DataLoader worker). A member is inflated a chunk at
    a time and refused past `max_bytes` (see `archive.read_member`), whatever its
    header declares."""

    paths: list[str]
    labels: np.ndarray
    archive: str | None = None
    max_bytes: int = field(default_factory=lambda: max_bytes_of(MAX_IMAGE_MB))
    _zip: zipfile.ZipFile | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def name(self, i: int) -> str:
        return f"{self.archive}:{self.paths[i]}" if self.archive else self.paths[i]

    def _open(self, i: int):
        if self.archive is None:
            return open(self.paths[i], "rb")
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.archive)
        return read_member(self._zip, self.archive, self.paths[i], self.max_bytes)

    def _read(self, i: int, decode: bool) -> Image.Image:
        try:
            with self._open(i) as f:
                img = Image.open(f)
                if decode:
                    img.load()
                return img
        except InfoProError:  # already one line naming the member (an InfoProError is a ValueError)
            raise
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, Image.DecompressionBombError) as e:
            raise InfoProError(f"cannot read image {self.name(i)} ({e}); remove or replace that file") from None

    def image(self, i: int) -> Image.Image:
        return self._read(i, decode=True)

    def header(self, i: int) -> tuple[int, int, int]:
        img = self._read(i, decode=False)  # PIL reads size and mode from the header only
        return img.width, img.height, mode_channels(img.mode)

    def headers(self, progress: bool = False, desc: str = "") -> np.ndarray:
        from .progress import progress_map

        rows = progress_map(self.header, range(len(self)), desc, "img", progress)
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def take(self, index: np.ndarray) -> "FileItems":
        return FileItems([self.paths[i] for i in index], self.labels[index], self.archive, self.max_bytes)



"""The images of one split, before any resizing: held as an array, or as files decoded one at a time.

Readers return `Items`; the memory path decodes all of them into one uint8
array, the stream path decodes one per sample in worker processes. Both go
through `Items.image(i)`, so both see the same pixels.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import InfoProError
from .archive import MAX_IMAGE_MB, max_bytes_of, read_member

# Modes that hold one intensity per pixel: these sets train as 1 channel unless --channels 3.
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def convert(img: Image.Image, channels: int) -> Image.Image:
    """The image as 'L' (channels=1) or 'RGB' (channels=3)."""
    mode = "L" if channels == 1 else "RGB"
    if img.mode == mode:
        return img
    if img.mode in ("I", "I;16", "F") and mode == "L":  # 16/32-bit greyscale: scale to 8 bits, not clip
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" else max(float(a.max()), 1e-12)
        return Image.fromarray(np.clip(a * 255.0 / top, 0, 255).astype(np.uint8), "L")
    if img.mode in ("I", "I;16", "F"):
        return convert(convert(img, 1), 3)
    return img.convert(mode)


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
        return img.width, img.height, 1 if img.mode in GRAY_MODES else 3

    def headers(self, progress: bool = False, desc: str = "") -> np.ndarray:
        from tqdm import tqdm

        rows = [self.header(i) for i in tqdm(range(len(self)), desc=desc, unit="img", disable=not progress,
                                             mininterval=1.0)]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def take(self, index: np.ndarray) -> "FileItems":
        return FileItems([self.paths[i] for i in index], self.labels[index], self.archive, self.max_bytes)



"""The idx format of MNIST and Fashion-MNIST (`train-images-idx3-ubyte`, ... gzipped or not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import InfoProError
from .datasets import RawSet
from .items import ArrayItems

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _file(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def locate_idx(path: Path, folder: str) -> Path | None:
    """`path`, `path/raw` or `path/<folder>/raw` (torchvision's layout) if it holds the four idx files."""
    for root in (path, path / "raw", path / folder / "raw"):
        if all(_file(root, stem) for pair in STEMS.values() for stem in pair):
            return root
    return None


def read_idx(path: Path, dims: int) -> np.ndarray:
    """One uint8 idx array with `dims` dimensions."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InfoProError(f"cannot read {path} ({e}); re-download the data set") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != 0x0800 + dims:
        raise InfoProError(f"{path} is not a {dims}-d uint8 idx file (magic {magic:#x}); re-download the data set")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise InfoProError(f"{path} holds {data.size} values for shape {shape}; re-download the data set")
    return data.reshape(shape)


def read_idx_set(root: Path, classes: list[str]) -> RawSet:
    splits = {}
    for split, (images_stem, labels_stem) in STEMS.items():
        images_path, labels_path = _file(root, images_stem), _file(root, labels_stem)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1).astype(np.int64)
        if len(images) != len(labels):
            raise InfoProError(f"{images_path} has {len(images)} images but {labels_path} {len(labels)} labels")
        if len(labels) and labels.max() >= len(classes):
            raise InfoProError(f"{labels_path}: label {labels.max()} outside 0..{len(classes) - 1}")
        splits[split] = ArrayItems(images[:, :, :, None].copy(), labels, str(images_path))
    return RawSet(classes, splits)

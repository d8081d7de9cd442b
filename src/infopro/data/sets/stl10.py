"""STL-10 (labelled part): `stl10_binary/{train,test}_{X,y}.bin`, as torchvision downloads them.

X holds uint8 96x96 RGB images stored column-major per channel; y holds labels 1..10.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InfoProError
from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..items import ArrayItems

FOLDER = "stl10_binary"
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
SIZE = 96


def locate_stl10(path: Path) -> Path | None:
    for root in (path, path / FOLDER):
        if all((root / f"{s}_{k}.bin").is_file() for s in ("train", "test") for k in ("X", "y")):
            return root
    return None


def _read_split(root: Path, split: str) -> ArrayItems:
    x_path, y_path = root / f"{split}_X.bin", root / f"{split}_y.bin"
    x, y = np.fromfile(x_path, dtype=np.uint8), np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
    if len(x) != len(y) * 3 * SIZE * SIZE:
        raise InfoProError(f"{x_path} holds {len(x)} bytes for {len(y)} labels in {y_path}, expected "
                           f"{3 * SIZE * SIZE} per image; re-download STL-10")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise InfoProError(f"{y_path}: labels run from {y.min()} to {y.max()}, STL-10's are 1..10; re-download it")
    # Each channel is stored column-major: (N, C, W, H) -> (N, H, W, C).
    images = np.ascontiguousarray(x.reshape(-1, 3, SIZE, SIZE).transpose(0, 3, 2, 1))
    return ArrayItems(images, y - 1, str(x_path))


def read_stl10(root: Path) -> RawSet:
    names = root / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else CLASSES
    if len(classes) != 10:
        classes = CLASSES
    return RawSet(classes, {split: _read_split(root, split) for split in ("train", "test")})


STL10 = Reader("stl10-binary", "STL-10 binary (stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin)",
               locate_stl10, read_stl10)
DATASETS.add("stl10", DatasetSpec("stl10", (STL10,), 10, padding="zeros"))

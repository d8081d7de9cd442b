"""SVHN (cropped digits): `train_32x32.mat` and `test_32x32.mat`, as torchvision downloads them.

The .mat files need scipy (`pip install 'infopro[svhn]'`); label 10 means digit 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InfoProError
from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..items import ArrayItems

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def locate_svhn(path: Path) -> Path | None:
    for root in (path, path / "svhn", path / "SVHN"):
        if all((root / f).is_file() for f in FILES.values()):
            return root
    return None


def _loadmat(path: Path) -> dict:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise InfoProError(
            "reading SVHN's .mat files needs scipy, an optional extra: pip install 'infopro[svhn]' (or scipy)"
        ) from None
    try:
        return loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise InfoProError(f"{path} is not a readable SVHN .mat file ({e}); re-download it") from None


def _read_split(path: Path) -> ArrayItems:
    mat = _loadmat(path)
    if "X" not in mat or "y" not in mat:
        raise InfoProError(f"{path} has no X and y arrays, so it is not an SVHN file; re-download it")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise InfoProError(f"{path}: X is {x.dtype} {x.shape} for {len(y)} labels, expected uint8 (32, 32, 3, N)")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise InfoProError(f"{path}: labels run from {y.min()} to {y.max()}, SVHN's are 1..10; re-download it")
    y[y == 10] = 0  # the files label the digit 0 as 10
    return ArrayItems(np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y, str(path))


def read_svhn(root: Path) -> RawSet:
    return RawSet([str(d) for d in range(10)], {split: _read_split(root / f) for split, f in FILES.items()})


SVHN = Reader("svhn-mat", "SVHN cropped digits (train_32x32.mat and test_32x32.mat)", locate_svhn, read_svhn)
DATASETS.add("svhn", DatasetSpec("svhn", (SVHN,), 10, pad=2, padding="zeros", flip=False))

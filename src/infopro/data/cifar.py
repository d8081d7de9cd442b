"""Readers for the CIFAR-10/100 "python version" (pickled batches, as torchvision downloads them).

A pickle can run arbitrary code when loaded, and the data dir comes from the
user, so the unpickler only accepts the few globals that the CIFAR files use.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InfoProError
from .splits import Splits

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2 moved the module; the CIFAR files name the old one
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar() -> Any:
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    reconstruct, scalar = _numpy_reconstruct(), _numpy_scalar()
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # how python 3 pickles bytes at protocol 2
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR batch never does") from None


def load_pickle(path: Path) -> dict:
    """Load one CIFAR batch file (a dict with bytes keys, as the python-2 originals)."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise InfoProError(f"{path} is not a readable CIFAR pickle ({e}); re-download the data set") from None
    if not isinstance(obj, dict):
        raise InfoProError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; re-download the data set")
    return obj


def _field(batch: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # bytes keys in the originals; str keys if re-pickled in python 3
        if k in batch:
            return batch[k]
    raise InfoProError(f"{path} has no {key!r} entry, so it is not a CIFAR batch; re-download the data set")


def _names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    data = np.asarray(_field(batch, "data", path))
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise InfoProError(
            f"{path}: 'data' is {data.dtype} of shape {data.shape}, expected uint8 rows of 3072; "
            "re-download the data set"
        )
    if labels.shape != (len(data),):
        raise InfoProError(f"{path}: {len(labels)} labels for {len(data)} images; re-download the data set")
    # Rows are channel-major (1024 R, 1024 G, 1024 B), so CHW, then to HWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _missing(root: Path, files: tuple[str, ...]) -> list[str]:
    return [f for f in files if not (root / f).is_file()]


def locate_cifar10(path: Path) -> Path | None:
    """The `cifar-10-batches-py` folder: `path` itself or its child of that name."""
    for root in (path, path / CIFAR10_FOLDER):
        if root.is_dir() and not _missing(root, CIFAR10_FILES):
            return root
    return None


def locate_cifar100(path: Path) -> Path | None:
    """The `cifar-100-python` folder: `path` itself or its child of that name."""
    for root in (path, path / CIFAR100_FOLDER):
        if root.is_dir() and not _missing(root, CIFAR100_FILES):
            return root
    return None


def read_cifar10(root: Path) -> Splits:
    """Read `data_batch_1..5`, `test_batch` and `batches.meta` from a cifar-10-batches-py folder."""
    parts = [_read_batch(root / f"data_batch_{i}", "labels") for i in range(1, 6)]
    test_images, test_labels = _read_batch(root / "test_batch", "labels")
    meta = root / "batches.meta"
    classes = _names(_field(load_pickle(meta), "label_names", meta))
    return Splits(
        train_images=np.concatenate([p[0] for p in parts]),
        train_labels=np.concatenate([p[1] for p in parts]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
    )


def read_cifar100(root: Path) -> Splits:
    """Read `train`, `test` and `meta` (fine labels) from a cifar-100-python folder."""
    train_images, train_labels = _read_batch(root / "train", "fine_labels")
    test_images, test_labels = _read_batch(root / "test", "fine_labels")
    meta = root / "meta"
    classes = _names(_field(load_pickle(meta), "fine_label_names", meta))
    return Splits(train_images, train_labels, test_images, test_labels, classes)

"""The CIFAR-10/100 "python version" format (pickled batches, as torchvision downloads them).

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


def field(batch: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # bytes keys in the originals; str keys if re-pickled in python 3
        if k in batch:
            return batch[k]
    raise InfoProError(f"{path} has no {key!r} entry, so it is not a CIFAR batch; re-download the data set")


def names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path)
    data = np.asarray(field(batch, "data", path))
    labels = np.asarray(field(batch, label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise InfoProError(
            f"{path}: 'data' is {data.dtype} of shape {data.shape}, expected uint8 rows of 3072; "
            "re-download the data set"
        )
    if labels.shape != (len(data),):
        raise InfoProError(f"{path}: {len(labels)} labels for {len(data)} images; re-download the data set")
    # Rows are channel-major (1024 R, 1024 G, 1024 B), so CHW, then to HWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def missing(root: Path, files: tuple[str, ...]) -> list[str]:
    return [f for f in files if not (root / f).is_file()]


def locate(path: Path, folder: str, files: tuple[str, ...]) -> Path | None:
    """The CIFAR folder: `path` itself or its child named `folder`, if it holds every one of `files`."""
    for root in (path, path / folder):
        if root.is_dir() and not missing(root, files):
            return root
    return None

"""Decoded arrays cached as one .npz per source, keyed by the source's files.

The key hashes the resolved source path plus every file's relative name,
size and mtime, so editing, adding or removing a file re-decodes. Writes go
to a temp file in the cache folder and are renamed into place, so a crash or
a second process never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..files import atomic_write
from .splits import Splits

CACHE_ENV = "INFOPRO_CACHE"
# Bump when the cached arrays would change for the same files (e.g. a new decoding rule).
CACHE_VERSION = 1
_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def default_cache_dir() -> Path:
    """`$INFOPRO_CACHE` if set, else `.cache/infopro` under the current directory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.cwd() / ".cache" / "infopro"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def cache_path(cache_dir: Path, layout: str, source: Path, files: list[tuple[str, int, int]]) -> Path:
    """`<layout>-<hash of source path>-<hash of its files>.npz` in `cache_dir`."""
    source_id = _digest(f"{CACHE_VERSION}\0{layout}\0{source.resolve()}")
    h = hashlib.sha256(source_id.encode())
    for name, size, mtime_ns in sorted(files):
        h.update(f"{name}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return cache_dir / f"{layout}-{source_id}-{h.hexdigest()[:16]}.npz"


def load_cached(path: Path) -> Splits | None:
    """The cached splits at `path`, or None if there is none or it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Splits(*(z[k] for k in _FIELDS), classes=[str(c) for c in z["classes"]])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def save_cached(path: Path, splits: Splits) -> None:
    """Write atomically, then drop older caches of the same source (their files changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Uncompressed: loading 180 MB of CIFAR is then a plain read, and JPEG noise compresses badly.
    atomic_write(path, lambda f: np.savez(f, **{k: getattr(splits, k) for k in _FIELDS},
                                          classes=np.array(splits.classes, dtype=str)))
    source_prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(source_prefix + "*.npz"):
        if old != path:
            old.unlink(missing_ok=True)


def cached(
    read: Callable[[Path], Splits],
    layout: str,
    source: Path,
    files: list[tuple[str, int, int]],
    cache_dir: Path,
) -> Splits:
    """`read(source)`, through the cache in `cache_dir`."""
    path = cache_path(cache_dir, layout, source, files)
    splits = load_cached(path)
    if splits is None:
        splits = read(source)
        try:
            save_cached(path, splits)
        except OSError as e:
            # The data is fine; only the next load will be slow again.
            warnings.warn(f"could not write the data cache {path} ({e}); set ${CACHE_ENV} to a writable folder", stacklevel=2)
    return splits

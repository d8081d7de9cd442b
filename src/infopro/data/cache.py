"""Decoded arrays cached as one .npz per (source, settings), keyed by the source's files.

The key hashes the resolved source path and the settings (e.g. image size and
channels) plus every file's relative name, size and mtime, so editing, adding
or removing a file re-decodes. Writes go
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

CACHE_ENV = "INFOPRO_CACHE"
# Bump when the cached arrays would change for the same files (e.g. a new decoding rule).
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """`$INFOPRO_CACHE` if set, else `.cache/infopro` under the current directory."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.cwd() / ".cache" / "infopro"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def cache_path(cache_dir: Path, kind: str, source: Path, settings: str, files: list[tuple[str, int, int]]) -> Path:
    """`<kind>-<hash of source path and settings>-<hash of its files>.npz` in `cache_dir`."""
    source_id = _digest(f"{CACHE_VERSION}\0{kind}\0{source.resolve()}\0{settings}")
    h = hashlib.sha256(source_id.encode())
    for name, size, mtime_ns in sorted(files):
        h.update(f"{name}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return cache_dir / f"{kind}-{source_id}-{h.hexdigest()[:16]}.npz"


def load_cached(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays at `path`, or None if there is none or it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def save_cached(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically, then drop older caches of the same source and settings (their files changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Uncompressed: loading 180 MB of CIFAR is then a plain read, and JPEG noise compresses badly.
    atomic_write(path, lambda f: np.savez(f, **arrays))
    source_prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(source_prefix + "*.npz"):
        if old != path:
            old.unlink(missing_ok=True)


def cached(
    compute: Callable[[], dict[str, np.ndarray]],
    kind: str,
    source: Path,
    settings: str,
    files: list[tuple[str, int, int]],
    cache_dir: Path,
) -> dict[str, np.ndarray]:
    """`compute()`, through the cache in `cache_dir`."""
    path = cache_path(cache_dir, kind, source, settings, files)
    arrays = load_cached(path)
    if arrays is None:
        arrays = compute()
        try:
            save_cached(path, arrays)
        except OSError as e:
            # The data is fine; only the next load will be slow again.
            warnings.warn(f"could not write the data cache {path} ({e}); set ${CACHE_ENV} to a writable folder", stacklevel=2)
    return arrays

"""On-disk layouts a data dir may have, by name: how to find, read and cache each one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .cifar import locate_cifar10, locate_cifar100, read_cifar10, read_cifar100
from .image_folder import image_folder_files, locate_image_folder, read_image_folder
from .splits import Splits


@dataclass(frozen=True)
class Layout:
    """`locate(path)` gives the root to read (path or a child of it) or None; `files(root)`
    lists (name, size, mtime_ns) for the cache key, or is None where reading is already fast."""

    name: str
    description: str
    locate: Callable[[Path], Path | None]
    read: Callable[[Path], Splits]
    files: Callable[[Path], list[tuple[str, int, int]]] | None = None


LAYOUTS: Registry[Layout] = Registry("data layout")

# The pickles already hold arrays: caching them would only duplicate 180 MB.
LAYOUTS.add(
    "cifar10-pickle",
    Layout(
        "cifar10-pickle",
        "CIFAR-10 python version (cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta)",
        locate_cifar10,
        read_cifar10,
    ),
)
LAYOUTS.add(
    "cifar100-pickle",
    Layout(
        "cifar100-pickle",
        "CIFAR-100 python version (cifar-100-python/ with train, test, meta)",
        locate_cifar100,
        read_cifar100,
    ),
)
LAYOUTS.add(
    "image-folder",
    Layout(
        "image-folder",
        "an image folder train/<class>/* and test/<class>/* (a directory or a .zip of one)",
        locate_image_folder,
        read_image_folder,
        image_folder_files,
    ),
)

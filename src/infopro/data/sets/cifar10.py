"""CIFAR-10: the python version (`cifar-10-batches-py/`), or an image folder of it (e.g. the JPEG copy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...constants import CIFAR_MEAN, CIFAR_STD
from ..cifar_pickle import field, load_pickle, locate, names, read_batch
from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..items import ArrayItems
from .folder import IMAGE_FOLDER

FOLDER = "cifar-10-batches-py"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def locate_cifar10(path: Path) -> Path | None:
    return locate(path, FOLDER, FILES)


def read_cifar10(root: Path) -> RawSet:
    """Read `data_batch_1..5`, `test_batch` and `batches.meta` from a cifar-10-batches-py folder."""
    parts = [read_batch(root / f"data_batch_{i}", "labels") for i in range(1, 6)]
    test_images, test_labels = read_batch(root / "test_batch", "labels")
    meta = root / "batches.meta"
    train = ArrayItems(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), str(root))
    return RawSet(names(field(load_pickle(meta), "label_names", meta)),
                  {"train": train, "test": ArrayItems(test_images, test_labels, str(root / "test_batch"))})


CIFAR10_PICKLE = Reader(
    "cifar10-pickle",
    "CIFAR-10 python version (cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta)",
    locate_cifar10,
    read_cifar10,
)
DATASETS.add("cifar10", DatasetSpec("cifar10", (CIFAR10_PICKLE, IMAGE_FOLDER), 10, CIFAR_MEAN, CIFAR_STD, 32,
                                    bundled="cifar10-subset.zip"))

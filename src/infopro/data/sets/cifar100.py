"""CIFAR-100 (fine labels): the python version (`cifar-100-python/`), or an image folder of it."""

from __future__ import annotations

from pathlib import Path

from ...constants import CIFAR_MEAN, CIFAR_STD
from ..cifar_pickle import field, load_pickle, locate, names, read_batch
from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..items import ArrayItems
from .folder import IMAGE_FOLDER

FOLDER = "cifar-100-python"
FILES = ("train", "test", "meta")


def locate_cifar100(path: Path) -> Path | None:
    return locate(path, FOLDER, FILES)


def read_cifar100(root: Path) -> RawSet:
    """Read `train`, `test` and `meta` (fine labels) from a cifar-100-python folder."""
    splits = {split: ArrayItems(*read_batch(root / split, "fine_labels"), str(root / split)) for split in ("train", "test")}
    meta = root / "meta"
    return RawSet(names(field(load_pickle(meta), "fine_label_names", meta)), splits)


CIFAR100_PICKLE = Reader(
    "cifar100-pickle",
    "CIFAR-100 python version (cifar-100-python/ with train, test, meta)",
    locate_cifar100,
    read_cifar100,
)
DATASETS.add("cifar100", DatasetSpec("cifar100", (CIFAR100_PICKLE, IMAGE_FOLDER), 100, CIFAR_MEAN, CIFAR_STD, 32))

"""MNIST: the raw idx files (gzipped or not), in `MNIST/raw/` as torchvision leaves them, or any folder."""

from __future__ import annotations

from pathlib import Path

from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..idx import locate_idx, read_idx_set

CLASSES = [str(d) for d in range(10)]


def locate_mnist(path: Path) -> Path | None:
    return locate_idx(path, "MNIST")


def read_mnist(root: Path) -> RawSet:
    return read_idx_set(root, CLASSES)


MNIST = Reader("mnist-idx", "MNIST idx files (train-images-idx3-ubyte[.gz] ... t10k-labels-idx1-ubyte[.gz], "
               "or MNIST/raw/ holding them)", locate_mnist, read_mnist)
DATASETS.add("mnist", DatasetSpec("mnist", (MNIST,), 10))

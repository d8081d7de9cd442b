"""Fashion-MNIST: the raw idx files (gzipped or not), in `FashionMNIST/raw/` as torchvision leaves them."""

from __future__ import annotations

from pathlib import Path

from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..idx import locate_idx, read_idx_set

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def locate_fashion_mnist(path: Path) -> Path | None:
    return locate_idx(path, "FashionMNIST")


def read_fashion_mnist(root: Path) -> RawSet:
    return read_idx_set(root, CLASSES)


FASHION_MNIST = Reader("fashion-mnist-idx", "Fashion-MNIST idx files (train-images-idx3-ubyte[.gz] ... "
                       "t10k-labels-idx1-ubyte[.gz], or FashionMNIST/raw/ holding them)",
                       locate_fashion_mnist, read_fashion_mnist)
DATASETS.add("fashion-mnist", DatasetSpec("fashion-mnist", (FASHION_MNIST,), 10))

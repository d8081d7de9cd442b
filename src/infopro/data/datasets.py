"""Data sets by name (`DATASETS`) and `load_dataset`, which finds, reads and caches one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import CIFAR_MEAN, CIFAR_STD
from ..errors import InfoProError
from ..registry import Registry
from .cache import cached, default_cache_dir
from .layouts import LAYOUTS, Layout
from .splits import Splits

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"



@dataclass(frozen=True)
class DatasetSpec:
    """What a named data set is: class count, per-channel normalisation, accepted layouts."""

    name: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layouts: tuple[str, ...]
    bundled: str | None = None  # file in data/bundled/ used when no data dir is given


@dataclass
class ImageDataset:
    """A loaded data set: uint8 images (N, H, W, C), int64 labels, class names, normalisation."""

    name: str
    source: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the shape a model sees."""
        _, h, w, c = self.train_images.shape
        return (c, h, w)


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.add(
    "cifar10",
    DatasetSpec("cifar10", 10, CIFAR_MEAN, CIFAR_STD, ("cifar10-pickle", "image-folder"), "cifar10-subset.zip"),
)
DATASETS.add("cifar100", DatasetSpec("cifar100", 100, CIFAR_MEAN, CIFAR_STD, ("cifar100-pickle", "image-folder")))


def _accepted(spec: DatasetSpec) -> str:
    return "; or ".join(LAYOUTS.get(name).description for name in spec.layouts)


def find_source(spec: DatasetSpec, data_dir: Path) -> tuple[Layout, Path]:
    """The first of the spec's layouts found at `data_dir` (or in a child folder of the usual name)."""
    if not data_dir.exists():
        raise InfoProError(f"data dir {data_dir} does not exist; for {spec.name} give a folder with {_accepted(spec)}")
    if data_dir.is_dir() and not any(data_dir.iterdir()):
        raise InfoProError(f"data dir {data_dir} is empty; for {spec.name} give a folder with {_accepted(spec)}")
    for name in spec.layouts:
        layout = LAYOUTS.get(name)
        root = layout.locate(data_dir)
        if root is not None:
            return layout, root
    # Say what is there when it is another data set's layout: the likeliest mistake.
    for name in LAYOUTS:
        if name not in spec.layouts and LAYOUTS.get(name).locate(data_dir) is not None:
            raise InfoProError(
                f"data dir {data_dir} holds {LAYOUTS.get(name).description}, which is not {spec.name}; "
                f"pass the matching dataset name, or for {spec.name} give a folder with {_accepted(spec)}"
            )
    raise InfoProError(f"no recognised data layout in {data_dir}; for {spec.name} give a folder with {_accepted(spec)}")


def _check(spec: DatasetSpec, splits: Splits, source: Path) -> None:
    if len(splits.classes) != spec.num_classes:
        raise InfoProError(
            f"{source} has {len(splits.classes)} classes but {spec.name} has {spec.num_classes}; "
            f"point the data dir at a {spec.name} copy"
        )
    for split, labels in (("train", splits.train_labels), ("test", splits.test_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise InfoProError(
                f"{source}: {split} labels run from {labels.min()} to {labels.max()}, outside 0..{spec.num_classes - 1} "
                f"for {spec.name}; point the data dir at a {spec.name} copy"
            )
    channels = splits.train_images.shape[-1]
    if channels != len(spec.mean):
        raise InfoProError(
            f"{source} has {channels}-channel images but {spec.name} expects {len(spec.mean)}; "
            f"point the data dir at a {spec.name} copy"
        )


def load_dataset(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> ImageDataset:
    """Load a registered data set from `data_dir` (None: its bundled subset), decoding images once
    into `cache_dir` (None: `$INFOPRO_CACHE`, else `.cache/infopro`)."""
    spec = DATASETS.get(name)
    if data_dir is None:
        if spec.bundled is None:
            raise InfoProError(f"{name} has no bundled copy; pass --data-dir with {_accepted(spec)}")
        data_dir = BUNDLED_DIR / spec.bundled
        if not data_dir.is_file():
            raise InfoProError(
                f"the bundled {name} subset {data_dir} is missing; rebuild it with scripts/make_bundled_subset.py "
                "or pass --data-dir"
            )
    data_dir = Path(data_dir).expanduser()
    layout, root = find_source(spec, data_dir)
    if layout.files is None:
        splits = layout.read(root)
    else:
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        splits = cached(layout.read, layout.name, root, layout.files(root), cache)
    _check(spec, splits, root)
    return ImageDataset(
        name=name,
        source=str(root.resolve()),
        classes=splits.classes,
        train_images=splits.train_images,
        train_labels=splits.train_labels,
        test_images=splits.test_images,
        test_labels=splits.test_labels,
        mean=spec.mean,
        std=spec.std,
    )

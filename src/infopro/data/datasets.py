"""Data sets by name (`DATASETS`): what each one is and the on-disk layouts it is read from.

Adding a data set is one file in `data/sets/` (a `Reader` and a `DATASETS.add`)
and one import line in `data/sets/__init__.py`. Readers never download: they
read the layout that torchvision's downloads (or the user) left on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InfoProError
from ..registry import Registry
from .items import Items

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class RawSet:
    """What a reader returns: class names in label order and the items of each split it has
    ("train" always; "val" and/or "test")."""

    classes: list[str]
    splits: dict[str, Items]


@dataclass(frozen=True)
class Reader:
    """`locate(path)` gives the root to read (path or a child of it) or None; `read(root)` the set;
    `files(root)` lists (name, size, mtime_ns) for the decode cache's key, or is None where the
    files already hold decoded arrays (caching them would only duplicate them)."""

    name: str
    description: str
    locate: Callable[[Path], Path | None]
    read: Callable[[Path], RawSet]
    files: Callable[[Path], list[tuple[str, int, int]]] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A named data set. None means the data decides: class count from the class names, the
    normalisation computed on the training split, the image size from the images."""

    name: str
    readers: tuple[Reader, ...]
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: int | None = None  # the set's own square size, where it has one (CIFAR: 32)
    bundled: str | None = None  # file in data/bundled/ used when no data dir is given
    # The in-memory path's training augmentation, as the authors' code has it for this set: pad `pad` pixels
    # (reflect for CIFAR, zeros where they use torchvision's RandomCrop(padding=...): SVHN, STL-10), random crop,
    # and a horizontal flip unless `flip` is False (SVHN: digits are not mirror-symmetric).
    pad: int = 4
    padding: str = "reflect"
    flip: bool = True


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def accepted(spec: DatasetSpec) -> str:
    return "; or ".join(r.description for r in spec.readers)


def _all_readers() -> list[Reader]:
    seen: dict[str, Reader] = {}
    for name in DATASETS:
        for reader in DATASETS.get(name).readers:
            seen.setdefault(reader.name, reader)
    return list(seen.values())


def find_source(spec: DatasetSpec, data_dir: Path) -> tuple[Reader, Path]:
    """The first of the spec's readers whose layout is found at `data_dir` (or in a child of the usual name)."""
    if not data_dir.exists():
        raise InfoProError(f"data dir {data_dir} does not exist; for {spec.name} give a folder with {accepted(spec)}")
    if data_dir.is_dir() and not any(data_dir.iterdir()):
        raise InfoProError(f"data dir {data_dir} is empty; for {spec.name} give a folder with {accepted(spec)}")
    for reader in spec.readers:
        root = reader.locate(data_dir)
        if root is not None:
            return reader, root
    # Say what is there when it is another data set's layout: the likeliest mistake.
    for reader in _all_readers():
        if reader not in spec.readers and reader.locate(data_dir) is not None:
            owners = [n for n in DATASETS if reader in DATASETS.get(n).readers]
            raise InfoProError(
                f"data dir {data_dir} holds {reader.description}, which is not {spec.name}; "
                f"pass --dataset {' or '.join(owners)}, or for {spec.name} give a folder with {accepted(spec)}"
            )
    raise InfoProError(f"no recognised data layout in {data_dir}; for {spec.name} give a folder with {accepted(spec)}")

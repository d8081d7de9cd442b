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
from .listing import list_folder

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
    # What a sample's target is: "class" (one label per image) or "mask" (one class index per pixel: semantic
    # segmentation, opened by `segmentation.open_segmentation`).
    target: str = "class"


DATASETS: Registry[DatasetSpec] = Registry("dataset")


class SetShape:
    """What a model needs to know of a prepared set (`Data`, `SegmentationData`): its classes, and the
    (C, H, W) it sees."""

    classes: list[str]
    channels: int
    size: tuple[int, int]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the shape a model sees (a segmentation set: its training crop)."""
        return (self.channels, *self.size)



def accepted(spec: DatasetSpec) -> str:
    return "; or ".join(r.description for r in spec.readers)


def _all_readers() -> list[Reader]:
    """Every registered reader, those of mask targets first (their layouts may also look like class folders)."""
    seen: dict[str, Reader] = {}
    for name in sorted(DATASETS, key=lambda n: DATASETS.get(n).target != "mask"):
        for reader in DATASETS.get(name).readers:
            seen.setdefault(reader.name, reader)
    return list(seen.values())


def _targets_found(data_dir: Path) -> dict[str, Reader]:
    """target ("mask", "class") -> the first reader of a data set with that target whose layout is at data_dir."""
    found: dict[str, Reader] = {}
    for name in DATASETS:
        spec = DATASETS.get(name)
        for reader in spec.readers:
            if spec.target not in found and reader.locate(data_dir) is not None:
                found[spec.target] = reader
    return found


def detect_target(data_dir: str | Path) -> str | None:
    """What `data_dir` holds: "mask" for a segmentation layout (image + mask pairs), else "class" for a
    classification one, else None. Pairs win: SPLIT/images + SPLIT/masks would also read as two class folders."""
    path = Path(data_dir).expanduser()
    if not path.exists():
        return None
    found = _targets_found(path)
    return "mask" if "mask" in found else "class" if "class" in found else None


def find_source(spec: DatasetSpec, data_dir: Path) -> tuple[Reader, Path]:
    """The first of the spec's readers whose layout is found at `data_dir` (or in a child of the usual name)."""
    if not data_dir.exists():
        raise InfoProError(f"data dir {data_dir} does not exist; for {spec.name} give a folder with {accepted(spec)}")
    if data_dir.is_dir() and not any(data_dir.iterdir()):
        raise InfoProError(f"data dir {data_dir} is empty; for {spec.name} give a folder with {accepted(spec)}")
    for reader in spec.readers:
        root = reader.locate(data_dir)
        if root is not None:
            if spec.target == "class" and data_dir.is_dir():
                pairs = _targets_found(data_dir).get("mask")
                if pairs is not None:  # train/images + train/masks would read as two classes
                    raise InfoProError(f"data dir {data_dir} holds {pairs.description}: a semantic segmentation "
                                       f"set, not {spec.name}; pass --dataset segfolder")
            return reader, root
    # Say what is there when it is another data set's layout: the likeliest mistake.
    for reader in _all_readers():
        if reader not in spec.readers and reader.locate(data_dir) is not None:
            owners = [n for n in DATASETS if reader in DATASETS.get(n).readers]
            raise InfoProError(
                f"data dir {data_dir} holds {reader.description}, which is not {spec.name}; "
                f"pass --dataset {' or '.join(owners)}, or for {spec.name} give a folder with {accepted(spec)}"
            )
    if data_dir.is_dir():
        list_folder(data_dir)  # a broken train/ link is the likeliest reason: name it
    raise InfoProError(f"no recognised data layout in {data_dir}; for {spec.name} give a folder with {accepted(spec)}")

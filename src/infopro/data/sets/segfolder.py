"""Any folder of image + mask pairs for semantic segmentation, in one of the common layouts:

- `SPLIT/images/*` + `SPLIT/masks/*` (CamVid's copy in shared/datasets);
- `images/SPLIT/*` + `masks/SPLIT/*` (or `annotations/SPLIT/*`, `labels/SPLIT/*`);
- mmsegmentation's `img_dir/SPLIT/*` + `ann_dir/SPLIT/*`;
- Cityscapes' own tree (see `cityscapes.py`).

SPLIT is train (needed) and val and/or test. An image and its mask share the
file stem (the path below the split folder, without the extension: subfolders
are allowed). `classes.txt` at the root names the classes in index order;
without it the class count is the largest mask value of the train split + 1.
An entry of these folders that is neither a folder nor a file (a broken link)
is refused (`listing.py`), as a class name that is not UTF-8 text.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InfoProError
from ..datasets import DATASETS, SPLIT_NAMES, DatasetSpec, RawSet, Reader
from ..pairs import PairItems, check_layout, match_pairs, read_classes_txt, scan
from .cityscapes import CITYSCAPES

MASK_FOLDERS = ("masks", "annotations", "labels")  # names of the mask tree in the images/SPLIT layout


def read_split_folders(root: Path, folders: dict[str, tuple[Path, Path]]) -> RawSet:
    """The pairs of each split's (image folder, mask folder), with the class names of classes.txt (or [])."""
    splits: dict[str, PairItems] = {}
    for split, (image_dir, mask_dir) in folders.items():
        if not mask_dir.is_dir():
            raise InfoProError(f"{image_dir} has no mask folder {mask_dir}; add the {split} masks there "
                               f"(or remove {image_dir})")
        splits[split] = match_pairs(image_dir, mask_dir, scan(image_dir), scan(mask_dir))
    return RawSet(read_classes_txt(root), splits)


# SPLIT/images + SPLIT/masks

def _locate_split_first(path: Path) -> Path | None:
    return path if (path / "train" / "images").is_dir() and (path / "train" / "masks").is_dir() else None


def _read_split_first(root: Path) -> RawSet:
    check_layout(root, *(root / s for s in SPLIT_NAMES))
    return read_split_folders(root, {s: (root / s / "images", root / s / "masks")
                                     for s in SPLIT_NAMES if (root / s / "images").is_dir()})


# images/SPLIT + masks/SPLIT (or annotations/, labels/)

def _mask_tree(path: Path) -> Path | None:
    return next((path / m for m in MASK_FOLDERS if (path / m / "train").is_dir()), None)


def _locate_kind_first(path: Path) -> Path | None:
    return path if (path / "images" / "train").is_dir() and _mask_tree(path) is not None else None


def _read_kind_first(root: Path) -> RawSet:
    check_layout(root, root / "images", *(root / m for m in MASK_FOLDERS))
    masks = _mask_tree(root)
    assert masks is not None
    return read_split_folders(root, {s: (root / "images" / s, masks / s)
                                     for s in SPLIT_NAMES if (root / "images" / s).is_dir()})


# mmsegmentation: img_dir/SPLIT + ann_dir/SPLIT

def _locate_mmseg(path: Path) -> Path | None:
    return path if (path / "img_dir" / "train").is_dir() and (path / "ann_dir" / "train").is_dir() else None


def _read_mmseg(root: Path) -> RawSet:
    check_layout(root, root / "img_dir", root / "ann_dir")
    return read_split_folders(root, {s: (root / "img_dir" / s, root / "ann_dir" / s)
                                     for s in SPLIT_NAMES if (root / "img_dir" / s).is_dir()})


SPLIT_FIRST = Reader("seg-split-first", "image + mask pairs SPLIT/images/* and SPLIT/masks/* "
                     "(SPLIT: train, and val and/or test; matched by file stem)", _locate_split_first,
                     _read_split_first)
KIND_FIRST = Reader("seg-kind-first", "image + mask pairs images/SPLIT/* and masks/SPLIT/* "
                    "(or annotations/SPLIT/*, labels/SPLIT/*)", _locate_kind_first, _read_kind_first)
MMSEG = Reader("seg-mmseg", "mmsegmentation's img_dir/SPLIT/* and ann_dir/SPLIT/*", _locate_mmseg, _read_mmseg)

DATASETS.add("segfolder", DatasetSpec("segfolder", (SPLIT_FIRST, KIND_FIRST, MMSEG, CITYSCAPES), target="mask"))

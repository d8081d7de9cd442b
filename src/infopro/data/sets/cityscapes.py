"""Cityscapes (Cordts et al., 2016) as its download unpacks: `leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png` and
`gtFine/SPLIT/CITY/NAME_gtFine_labelTrainIds.png`, 19 classes in the trainId order.

The trainId masks are not in the download: cityscapesscripts' createTrainIdLabelImgs
makes them from the polygons (as mmsegmentation's tools/convert_datasets/cityscapes.py
does). Only train and val are read: the public test masks are blank, so val is the
test set, as in mmsegmentation's config.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InfoProError
from ..datasets import DATASETS, DatasetSpec, RawSet, Reader
from ..pairs import PairItems, check_layout, match_pairs, scan

CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelTrainIds.png"
SPLITS = ("train", "val")


def _key(suffix: str):
    def key(relative: str) -> str | None:  # CITY/NAME of CITY/NAME<suffix>
        return relative[: -len(suffix)] if relative.endswith(suffix) else None

    return key


def locate_cityscapes(path: Path) -> Path | None:
    return path if (path / "leftImg8bit" / "train").is_dir() and (path / "gtFine" / "train").is_dir() else None


def read_cityscapes(root: Path) -> RawSet:
    check_layout(root, root / "leftImg8bit", root / "gtFine")
    splits: dict[str, PairItems] = {}
    for split in SPLITS:
        image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        if not image_dir.is_dir():
            continue
        if not mask_dir.is_dir():
            raise InfoProError(f"{image_dir} has no masks in {mask_dir}; unpack gtFine_trainvaltest.zip beside "
                               "leftImg8bit/")
        masks = scan(mask_dir, _key(MASK_SUFFIX))
        if not masks:
            raise InfoProError(f"{mask_dir} has no *{MASK_SUFFIX} masks; make them with cityscapesscripts' "
                               f"createTrainIdLabelImgs (pip install cityscapesscripts; "
                               f"CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs)")
        splits[split] = match_pairs(image_dir, mask_dir, scan(image_dir, _key(IMAGE_SUFFIX)), masks)
    return RawSet(list(CLASSES), splits)


CITYSCAPES = Reader("cityscapes", "Cityscapes' leftImg8bit/SPLIT/CITY/*_leftImg8bit.png and "
                    "gtFine/SPLIT/CITY/*_gtFine_labelTrainIds.png", locate_cityscapes, read_cityscapes)
DATASETS.add("cityscapes", DatasetSpec("cityscapes", (CITYSCAPES,), num_classes=len(CLASSES), target="mask"))

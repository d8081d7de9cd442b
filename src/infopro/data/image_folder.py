"""Reader for an image-folder tree, `train/<class>/*` and `test/<class>/*`, as a directory or a .zip.

Classes are the sorted class-folder names and a label is the index in that
order. Every image of a set must share one size and one channel count
(grayscale -> 1 channel, anything else converted to RGB -> 3).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import InfoProError
from .splits import Splits

SPLITS = ("train", "test")
_GRAY_MODES = ("1", "L", "LA")

# (split, class name, file name, opener): an image to decode, in label then name order.
_Item = tuple[str, str, str, Callable[[], BinaryIO]]


def decode_image(source: BinaryIO | str | Path, name: str) -> np.ndarray:
    """Decode one image file to uint8 (H, W, C); grayscale keeps 1 channel, anything else becomes RGB."""
    try:
        with Image.open(source) as img:
            mode = "L" if img.mode in _GRAY_MODES else "RGB"
            array = np.asarray(img.convert(mode), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InfoProError(f"cannot read image {name} ({e}); remove or replace that file") from None
    return array[:, :, None] if array.ndim == 2 else array


def _visible(name: str) -> bool:
    # Hidden files (.DS_Store, ._foo.jpg from macOS archives) are never images of the set.
    return not name.startswith(".")


def is_image_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def locate_image_folder(path: Path) -> Path | None:
    """`path` if it holds `train/` and `test/` folders or is a .zip file, else None."""
    if is_image_zip(path):
        return path
    if path.is_dir() and all((path / split).is_dir() for split in SPLITS):
        return path
    return None


def _scan_dir(root: Path) -> dict[str, dict[str, list[os.DirEntry]]]:
    """split -> class -> file entries, sorted by name, from two levels of os.scandir."""
    tree: dict[str, dict[str, list[os.DirEntry]]] = {}
    for split in SPLITS:
        with os.scandir(root / split) as it:
            class_dirs = sorted((e for e in it if _visible(e.name) and e.is_dir()), key=lambda e: e.name)
        tree[split] = {}
        for class_dir in class_dirs:
            with os.scandir(class_dir.path) as it:
                files = [e for e in it if _visible(e.name) and e.is_file()]
            tree[split][class_dir.name] = sorted(files, key=lambda e: e.name)
    return tree


def image_folder_files(root: Path) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime_ns) of every file the reader would decode: the cache key's input."""
    if is_image_zip(root):
        st = root.stat()
        return [(root.name, st.st_size, st.st_mtime_ns)]
    out = []
    for split, classes in _scan_dir(root).items():
        for class_name, files in classes.items():
            for e in files:
                st = e.stat()
                out.append((f"{split}/{class_name}/{e.name}", st.st_size, st.st_mtime_ns))
    return out


def _dir_items(root: Path) -> dict[str, dict[str, list[_Item]]]:
    tree = _scan_dir(root)
    return {
        split: {
            c: [(split, c, e.path, (lambda p=e.path: open(p, "rb"))) for e in files]
            for c, files in classes.items()
        }
        for split, classes in tree.items()
    }


def _zip_items(root: Path, zf: zipfile.ZipFile) -> dict[str, dict[str, list[_Item]]]:
    names = sorted(n for n in zf.namelist() if not n.endswith("/"))
    # Accept the tree at the top of the archive or inside one wrapping folder.
    prefix = ""
    if not any(n.split("/", 1)[0] in SPLITS for n in names):
        tops = {n.split("/", 1)[0] for n in names if len(n.split("/")) == 4 and n.split("/")[1] in SPLITS}
        if len(tops) == 1:
            prefix = tops.pop() + "/"
    tree: dict[str, dict[str, list[_Item]]] = {split: {} for split in SPLITS}
    for n in names:
        if not n.startswith(prefix):
            continue
        parts = n[len(prefix):].split("/")
        if len(parts) != 3 or parts[0] not in SPLITS or not all(_visible(p) for p in parts):
            continue
        split, class_name, _ = parts
        opener = lambda n=n: io.BytesIO(zf.read(n))
        tree[split].setdefault(class_name, []).append((split, class_name, f"{root}:{n}", opener))
    return {split: dict(sorted(classes.items())) for split, classes in tree.items()}


def _check_classes(root: Path, tree: dict[str, dict[str, list[_Item]]]) -> list[str]:
    classes = list(tree["train"])
    test_classes = list(tree["test"])
    if test_classes != classes:
        missing = sorted(set(classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(classes))
        raise InfoProError(
            f"{root}: test/ must have the same class folders as train/ "
            f"(missing in test: {missing or 'none'}; only in test: {extra or 'none'}); make them match"
        )
    for split in SPLITS:
        if not any(tree[split].values()):
            raise InfoProError(f"{root}: {split}/ holds no image files; put images in {split}/<class>/")
    return classes


def _decode_all(items: list[_Item], shape: tuple[int, ...] | None, desc: str) -> np.ndarray:
    """Decode the items into one (N, H, W, C) array; all must share `shape` (or the first one's)."""
    images: np.ndarray | None = None
    first_name = ""
    for i, (_, _, name, opener) in enumerate(tqdm(items, desc=desc, unit="img", disable=None)):
        with opener() as f:
            array = decode_image(f, name)
        if images is None:
            if shape is not None and array.shape != shape:
                raise InfoProError(
                    f"image {name} is {_describe(array.shape)} but the train images are {_describe(shape)}; "
                    "all images of a set must share one size and channel count"
                )
            images = np.empty((len(items), *array.shape), dtype=np.uint8)
            first_name = name
        elif array.shape != images.shape[1:]:
            raise InfoProError(
                f"image {name} is {_describe(array.shape)} but {first_name} is {_describe(images.shape[1:])}; "
                "all images of a set must share one size and channel count"
            )
        images[i] = array
    assert images is not None  # _check_classes guarantees at least one item
    return images


def _describe(shape: tuple[int, ...]) -> str:
    h, w, c = shape
    return f"{w}x{h} with {c} channel{'s' if c != 1 else ''}"


def _read_tree(root: Path, tree: dict[str, dict[str, list[_Item]]]) -> Splits:
    classes = _check_classes(root, tree)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shape = None
    for split in SPLITS:
        items = [item for c in classes for item in tree[split][c]]
        labels = np.concatenate(
            [np.full(len(tree[split][c]), k, dtype=np.int64) for k, c in enumerate(classes)]
        )
        images = _decode_all(items, shape, desc=f"decoding {split}")
        shape = images.shape[1:]
        arrays[split] = (images, labels)
    return Splits(*arrays["train"], *arrays["test"], classes=classes)


def read_image_folder(root: Path) -> Splits:
    """Decode a `train/<class>/*`, `test/<class>/*` tree from a directory or a .zip of one."""
    if is_image_zip(root):
        try:
            with zipfile.ZipFile(root) as zf:
                return _read_tree(root, _zip_items(root, zf))
        except zipfile.BadZipFile as e:
            raise InfoProError(f"{root} is not a readable zip file ({e}); rebuild or re-download it") from None
    return _read_tree(root, _dir_items(root))


"""Any image-folder tree: `train/<class>/*` with `val/<class>/*` and/or `test/<class>/*`, a directory or a .zip.

Classes are the sorted class-folder names of train/ (two or more) and a
label is the index in that order; ImageNet's own layout is train/ + val/.
A plain ImageFolder root (`<class>/*` directly under it, as torchvision's
ImageFolder reads) and a lone train/ are read as a training split only:
`open_data` then needs --val-split to hold out the test set.
Files are kept by image extension, as torchvision's ImageFolder does, so a
stray notes.txt or .DS_Store is skipped; an empty class folder or a class
folder present in one split and not in another is an error naming it.
Entries that are neither folders nor files (a broken link, a FIFO) and class
names that are not UTF-8 or hold control characters are refused (`listing.py`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ...errors import InfoProError
from ..datasets import DATASETS, SPLIT_NAMES, DatasetSpec, RawSet, Reader
from ..items import FileItems
from ..listing import check_class_names, is_hidden, list_folder

# torchvision's IMG_EXTENSIONS.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# split -> class -> sorted file names (paths, or member names in a zip)
Tree = dict[str, dict[str, list[str]]]


def is_image_file(name: str) -> bool:
    # Hidden files (.DS_Store, ._foo.jpg from macOS archives) are never images of the set.
    return not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def is_image_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def _is_class_folder_root(path: Path) -> bool:
    """Class folders of images directly under `path` (torchvision's ImageFolder root), and no split folders.
    A probe: what cannot be listed here is refused when the set is read."""
    if not path.is_dir() or any((path / s).is_dir() for s in SPLIT_NAMES):
        return False
    try:
        with os.scandir(path) as it:
            folders = [e.path for e in it if not is_hidden(e.name) and e.is_dir()]
    except OSError:
        return False
    for folder in folders:
        try:
            with os.scandir(folder) as it:
                if any(is_image_file(e.name) and e.is_file() for e in it):
                    return True
        except OSError:
            continue
    return False


def locate_image_folder(path: Path) -> Path | None:
    """`path` if it holds a `train/` folder, is a plain ImageFolder root, or is a .zip file, else None."""
    if is_image_zip(path):
        return path
    if path.is_dir() and (path / "train").is_dir() or _is_class_folder_root(path):
        return path
    return None


def _scan_dir(root: Path) -> dict[str, dict[str, list[os.DirEntry]]]:
    """split -> class -> image file entries sorted by name, from two levels of `list_folder` (which refuses an
    entry that is neither a folder nor a file: a broken link would drop a class or a split without a word). A
    plain ImageFolder root (no split folders) is the training split."""
    top = list_folder(root)
    splits = {e.name: e for e in top if e.name in SPLIT_NAMES and e.is_dir()}
    plain = not splits
    tree: dict[str, dict[str, list[os.DirEntry]]] = {}
    for split in SPLIT_NAMES:
        if not plain and split not in splits or plain and split != "train":
            continue
        class_dirs = [e for e in (top if plain else list_folder(splits[split].path)) if e.is_dir()]
        check_class_names((e.name for e in class_dirs), root if plain else splits[split].path)
        tree[split] = {}
        for class_dir in class_dirs:
            files = [e for e in list_folder(class_dir.path) if is_image_file(e.name) and e.is_file()]
            tree[split][class_dir.name] = files
    return tree


def image_folder_files(root: Path) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime_ns) of every image the reader would decode: the cache key's input."""
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


def _zip_tree(root: Path, zf: zipfile.ZipFile) -> Tree:
    names = sorted(n for n in zf.namelist() if not n.endswith("/"))
    # Accept the tree at the top of the archive or inside one wrapping folder.
    prefix = ""
    if not any(n.split("/", 1)[0] in SPLIT_NAMES for n in names):
        tops = {n.split("/", 1)[0] for n in names if len(n.split("/")) == 4 and n.split("/")[1] in SPLIT_NAMES}
        if len(tops) == 1:
            prefix = tops.pop() + "/"
    tree: Tree = {}
    for n in names:
        parts = n[len(prefix):].split("/") if n.startswith(prefix) else []
        if len(parts) == 3 and parts[0] in SPLIT_NAMES and not parts[1].startswith(".") and is_image_file(parts[2]):
            tree.setdefault(parts[0], {}).setdefault(parts[1], []).append(n)
    for split, classes in tree.items():
        check_class_names(classes, f"{root}:{prefix}{split}/")
    return {split: dict(sorted(classes.items())) for split, classes in tree.items()}


def _check(root: Path, tree: Tree) -> list[str]:
    if "train" not in tree:
        raise InfoProError(f"{root} needs train/<class>/ and val/<class>/ or test/<class>/ image folders")
    classes = list(tree["train"])
    if not classes:
        raise InfoProError(f"{root}/train has no class folders; put images in train/<class>/")
    if len(classes) == 1:
        raise InfoProError(f"{root} holds one class ({classes[0]}); a classifier needs two or more: add a folder "
                           f"of images per class beside {classes[0]}/")
    for split, by_class in tree.items():
        if list(by_class) != classes:
            missing = sorted(set(classes) - set(by_class))
            extra = sorted(set(by_class) - set(classes))
            raise InfoProError(
                f"{root}: {split}/ must have the same class folders as train/ "
                f"(missing in {split}: {missing or 'none'}; only in {split}: {extra or 'none'}); make them match"
            )
        for c, files in by_class.items():
            if not files:
                raise InfoProError(
                    f"class folder {root}/{split}/{c} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                    "add images or remove the class from every split"
                )
    return classes


def _items(tree: Tree, classes: list[str], archive: str | None) -> dict[str, FileItems]:
    return {
        split: FileItems(
            [f for c in classes for f in by_class[c]],
            np.concatenate([np.full(len(by_class[c]), k, dtype=np.int64) for k, c in enumerate(classes)]),
            archive,
        )
        for split, by_class in tree.items()
    }


def read_image_folder(root: Path) -> RawSet:
    """The files of a `train/<class>/*` + `val/`/`test/` tree (a directory or a .zip of one), undecoded."""
    if is_image_zip(root):
        try:
            with zipfile.ZipFile(root) as zf:
                tree = _zip_tree(root, zf)
        except zipfile.BadZipFile as e:
            raise InfoProError(f"{root} is not a readable zip file ({e}); rebuild or re-download it") from None
        classes = _check(root, tree)
        return RawSet(classes, _items(tree, classes, str(root)))
    tree = {split: {c: [e.path for e in files] for c, files in by_class.items()}
            for split, by_class in _scan_dir(root).items()}
    classes = _check(root, tree)
    return RawSet(classes, _items(tree, classes, None))


IMAGE_FOLDER = Reader(
    "image-folder",
    "an image folder train/<class>/* with val/<class>/* and/or test/<class>/* (a directory or a .zip of one), "
    "or class folders <class>/* with --val-split",
    locate_image_folder,
    read_image_folder,
    image_folder_files,
)
DATASETS.add("folder", DatasetSpec("folder", (IMAGE_FOLDER,)))

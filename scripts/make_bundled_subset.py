"""Build src/infopro/data/bundled/cifar10-subset.zip from the CIFAR-10 JPEG copy.

A stratified subset (200 train and 50 test images per class, chosen with a
seeded RNG) stored as the original JPEG bytes, in the image-folder layout
`train/<class>/<name>.jpg`, `test/<class>/<name>.jpg`. The zip is
byte-for-byte reproducible: sorted entries, fixed timestamps, no compression.

    python scripts/make_bundled_subset.py [--source ../shared/datasets/cifar10-jpeg]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

from infopro.data import BUNDLED_DIR, stratified_subset

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
PER_CLASS = {"train": 200, "test": 50}
MAX_BYTES = 5 * 1024 * 1024


def list_split(source: Path, split: str) -> tuple[list[Path], np.ndarray]:
    classes = sorted(p.name for p in (source / split).iterdir() if p.is_dir())
    files, labels = [], []
    for k, name in enumerate(classes):
        for f in sorted((source / split / name).glob("*.jpg")):
            files.append(f)
            labels.append(k)
    return files, np.array(labels, dtype=np.int64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the cifar10-jpeg folder")
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR / "cifar10-subset.zip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.source / "train").is_dir():
        print(f"error: {args.source} has no train/ folder; pass --source", file=sys.stderr)
        return 1

    entries: list[tuple[str, bytes]] = []
    for i, (split, per_class) in enumerate(PER_CLASS.items()):
        files, labels = list_split(args.source, split)
        num_classes = len(np.unique(labels))
        chosen = stratified_subset(labels, per_class * num_classes, seed=args.seed + i)
        for j in chosen:
            f = files[j]
            entries.append((f"{split}/{f.parent.name}/{f.name}", f.read_bytes()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(args.out)

    size = args.out.stat().st_size
    print(f"wrote {args.out} ({len(entries)} images, {size / 1e6:.2f} MB)")
    if size >= MAX_BYTES:
        print(f"error: {size} bytes is over the {MAX_BYTES} byte limit for a bundled file", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `infopro probe` holds in memory, by depth: features of N images at depth d plus the decoder's targets.

At each depth the probe keeps, on its device, the float32 features of the train
and test subsets and the images themselves as float32 in [0, 1] (the decoder's
target), and while it extracts them the loader's uint8 copy of the images:

    bytes(d) = (N_train + N_test) * 4 * (|h_d| + C*S*S)  +  N_train * C*S*S  (the uint8 copy, briefly)

with |h_d| the number of values of one image's feature at depth d. The sizes
come from one forward pass of a zero image per architecture (`feature_shapes`),
and are checked against the bytes `extract_features` really returns for two
images at the largest depth. Defaults: the probe's own subsets (10,000 train /
2,000 test). `infopro probe` computes the same count (`probe_bytes`) before it
decodes anything and stops with a --train-subset that fits when the widest depth
would take more than 60 % of the memory available. Prints a Markdown table and
writes JSON.

    python benchmarks/probe_memory.py --out benchmarks/results/probe_memory.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from infopro.analysis import extract_features
from infopro.analysis.features import probe_bytes
from infopro.analysis.command import DEFAULT_TEST_SUBSET, DEFAULT_TRAIN_SUBSET
from infopro.files import atomic_write_text
from infopro.local.pieces import feature_shapes
from infopro.models import build_backbone

GB = 1e9
# (arch, classes, image size): CIFAR's ResNet-32 and two ImageNet networks at 224 px.
NETWORKS = [("resnet32", 10, 32), ("resnet50", 1000, 224), ("vit_small", 1000, 224)]


def measure(arch: str, num_classes: int, size: int, n_train: int, n_test: int) -> dict:
    backbone = build_backbone(arch, num_classes).eval()
    values = [math.prod(s) for s in feature_shapes(backbone.blocks, (3, size, size))]
    pixels = 3 * size * size
    n = n_train + n_test
    per_depth = [probe_bytes(n_train, n_test, v, (3, size, size)) for v in values]
    largest = int(np.argmax(values)) + 1
    # The count against what extract_features returns (two random images at the largest depth).
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    h, target, _ = extract_features(backbone, largest, images, np.zeros(2, dtype=np.int64), (0.5,) * 3, (0.25,) * 3,
                                    torch.device("cpu"))
    assert h.nbytes == 2 * 4 * values[largest - 1] and target.nbytes == 2 * 4 * pixels, arch
    return {"arch": arch, "image_size": size, "train_images": n_train, "test_images": n_test,
            "depths": len(values), "feature_values": values, "bytes": per_depth,
            "largest_depth": largest, "largest_shape": list(h.shape[1:]),
            "targets_bytes": n * 4 * pixels, "peak_bytes": max(per_depth), "stem_bytes": per_depth[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-subset", type=int, default=DEFAULT_TRAIN_SUBSET)
    parser.add_argument("--test-subset", type=int, default=DEFAULT_TEST_SUBSET)
    parser.add_argument("--out", default="benchmarks/results/probe_memory.json")
    args = parser.parse_args()
    rows = [measure(arch, k, size, args.train_subset, args.test_subset) for arch, k, size in NETWORKS]
    print(f"| network | images | depth 1 (stem) | largest: depth, feature | largest | of which targets |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} {r['image_size']}px | {r['train_images']} + {r['test_images']} | "
              f"{r['stem_bytes'] / GB:.2f} GB | {r['largest_depth']} of {r['depths']}, "
              f"{'x'.join(map(str, r['largest_shape']))} | {r['peak_bytes'] / GB:.2f} GB | "
              f"{r['targets_bytes'] / GB:.2f} GB |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out), json.dumps({"networks": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""E2E against InfoPro K=2 on CamVid (240 copy): the same DeepLabV3-ResNet-18, budget and seed, on a CPU.

Trains `configs/camvid/deeplabv3_resnet18-e2e.yaml` and `...-infopro-softmax-K2.yaml` (the authors' Cityscapes
recipe shrunk to two CPU cores: 300 iterations of batch 8 on 96x128 crops, poly per iteration; evaluation on
whole 180x240 images) into OUT/<name>, continuing a run that was stopped and reusing one that finished, then
prints one table (val and test mean IoU, pixel accuracy, time, peak memory) with the per-class test IoU and
writes OUT/camvid_segment.json. Short CPU runs from scratch: what counts is the comparison at one budget, not
the absolute value.

    OMP_NUM_THREADS=1 python benchmarks/camvid_segment.py --data-dir ../shared/datasets/camvid-240 --out runs/camvid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infopro.cli import main as infopro_main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"E2E": "deeplabv3_resnet18-e2e", "InfoPro K=2": "deeplabv3_resnet18-infopro-softmax-K2"}
MiB = 2**20


def train_if_needed(name: str, data_dir: str, out: Path, extra: list[str]) -> dict:
    run = out / name
    if not (run / "summary.json").exists():
        flags = ["train", "-c", str(ROOT / "configs" / "camvid" / f"{name}.yaml"), "--data-dir", data_dir,
                 "--out", str(run), "--quiet", *extra]
        if (run / "checkpoint.pt").exists():
            flags += ["--resume", str(run)]
        if infopro_main(flags) != 0:
            raise SystemExit(f"training {name} failed; run the same command again to continue it")
    return json.loads((run / "summary.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "camvid-240"))
    parser.add_argument("--out", default="runs/camvid")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = {label: train_if_needed(name, args.data_dir, out, ["--device", args.device])
            for label, name in CONFIGS.items()}
    classes = (Path(args.data_dir) / "classes.txt").read_text().split()
    print(f"CamVid (240 copy), DeepLabV3-ResNet-18 from scratch, {rows['E2E']['epochs']} epochs of 300 iterations "
          f"in all, seed 0, device {args.device}\n")
    print("| method | val mIoU | test mIoU | test pixel acc. | minutes | peak memory MiB |")
    print("|---|---|---|---|---|---|")
    for label, s in rows.items():
        print(f"| {label} | {s['val_miou']:.2f} % | {s['test_miou']:.2f} % | {s['test_pixel_accuracy']:.2f} % | "
              f"{s['total_seconds'] / 60:.1f} | {s['peak_memory_bytes'] / MiB:.0f} ({s['memory_kind']}) |")
    print("\nper-class test IoU (%):\n")
    print("| class | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i, name in enumerate(classes):
        cells = ["n/a" if s["test_class_iou"][i] is None else f"{s['test_class_iou'][i]:.1f}" for s in rows.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    (out / "camvid_segment.json").write_text(json.dumps({"classes": classes, "runs": rows}, indent=1) + "\n")
    print(f"\nwrote {out / 'camvid_segment.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Imagenette (224 copy) at 128 px through the stream path on a CPU-sized budget: does it learn?

ResNet-20, InfoPro (softmax) K=2, a stratified 2,000-image training subset of
../shared/datasets/imagenette-224/train (after holding out 10 % of train/ for
validation), 3 epochs; the best epoch is picked on the validation hold-out and
its accuracy on a stratified 500-image subset of Imagenette's val/ (the test
split here) is reported. The run directory is reused when it already holds a
finished run (delete it to retrain). Prints a line and writes JSON.

    python benchmarks/imagenette_small.py --out benchmarks/results/imagenette_small
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infopro.cli import main as infopro_main

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--dataset", "folder", "--image-size", "128", "--data-path", "stream", "--arch", "resnet20", "--K", "2",
         "--cuts", "even", "--method", "infopro-softmax", "--train-subset", "2000", "--test-subset", "500",
         "--val-split", "0.1", "--epochs", "3", "--batch-size", "64", "--lr", "0.05", "--seed", "0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "imagenette-224"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/imagenette_small")
    args = parser.parse_args()
    out = Path(args.out)
    run = out / "run"
    if not (run / "summary.json").exists():
        code = infopro_main(["train", *FLAGS, "--data-dir", args.data_dir, "--workers", str(args.workers),
                             "--device", args.device, "--out", str(run),
                             *(["--resume"] if (run / "checkpoint.pt").exists() else [])])
        if code != 0:
            raise SystemExit(f"training failed (exit {code})")
    summary = json.loads((run / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    result = {"command": ["infopro", "train", *FLAGS], "summary": summary,
              "epochs": [{k: r[k] for k in ("epoch", "train_accuracy", "val_accuracy", "test_accuracy",
                                             "epoch_seconds", "images_per_second")} for r in metrics]}
    (out / "imagenette_small.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"Imagenette (224 copy) at 128 px, stream path: best epoch {summary['best_epoch']} on validation, "
          f"test accuracy {100 * (1 - summary['test_error_at_best_epoch']):.2f} % (chance 10 %), "
          f"{summary['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()

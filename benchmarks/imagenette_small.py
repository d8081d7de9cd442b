"""Real photographs on a CPU-sized budget: E2E vs Greedy SL vs InfoPro on Imagenette (ResNet-18) and DeiT-T on CIFAR-10.

- Imagenette (../shared/datasets/imagenette-224) at 128 px through the stream
  path (random-resized crop + flip; decoded in the training process): the
  ImageNet-style ResNet-18, E2E, Greedy SL and InfoPro softmax at K=2 and K=4
  (`even` cuts, lambdas (5, 1)), channels-first, a stratified 1,000-image training subset,
  4 epochs, batch 32, lr 0.025 cosine, seed 0; tested on a stratified
  500-image subset of Imagenette's val/.
- CIFAR-10 (../shared/datasets/cifar10-jpeg): DeiT-T with 4x4 patches
  (`vit_tiny_p4`), E2E, Greedy SL and InfoPro softmax at K=4 (`even` cuts), a
  stratified 2,000-image training subset, 3 epochs, batch 64, lr 0.05, seed 0,
  500 test images.
Every run of a group has the same budget; the final epoch's test accuracy is
reported (no selection on the test set). A finished run directory is reused, a
started one resumed (delete it to retrain); `--only NAME,...` trains some runs
(e.g. in parallel processes; a run another process is writing is refused by its
lock). Prints a table and writes JSON.

    python benchmarks/imagenette_small.py --out benchmarks/results/imagenette_small
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from small_runs import ROOT, SHARED_CIFAR10_JPEG, train_run

SHARED_IMAGENETTE = str(ROOT.parent / "shared" / "datasets" / "imagenette-224")
IMAGENETTE = ["--dataset", "folder", "--image-size", "128", "--data-path", "stream", "--workers", "0",
              "--arch", "resnet18", "--train-subset", "1000", "--test-subset", "500", "--epochs", "4",
              "--batch-size", "32", "--lr", "0.025", "--seed", "0", "--no-channels-last"]
VIT_CIFAR = ["--arch", "vit_tiny_p4", "--train-subset", "2000", "--test-subset", "500", "--epochs", "3",
             "--batch-size", "64", "--lr", "0.05", "--seed", "0", "--no-channels-last"]
# (group, run name, method, K): the order is the order of importance, should the budget run out
RUNS = [("imagenette", "resnet18-e2e", "e2e", 1), ("imagenette", "resnet18-infopro-K2", "infopro-softmax", 2),
        ("imagenette", "resnet18-greedy-K2", "greedy", 2), ("imagenette", "resnet18-infopro-K4", "infopro-softmax", 4),
        ("imagenette", "resnet18-greedy-K4", "greedy", 4),
        ("cifar10_vit", "deit-t-e2e", "e2e", 1), ("cifar10_vit", "deit-t-infopro-K4", "infopro-softmax", 4),
        ("cifar10_vit", "deit-t-greedy-K4", "greedy", 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imagenette-dir", default=SHARED_IMAGENETTE)
    parser.add_argument("--cifar-dir", default=SHARED_CIFAR10_JPEG)
    parser.add_argument("--groups", default="imagenette,cifar10_vit", help="comma list of imagenette, cifar10_vit")
    parser.add_argument("--only", default="", help="comma list of run names to train (default: all of the groups)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/imagenette_small")
    args = parser.parse_args()
    out = Path(args.out)
    groups = args.groups.split(",")
    results = []
    for group, name, method, K in RUNS:
        if group not in groups or (args.only and name not in args.only.split(",")):
            continue
        data = (IMAGENETTE + ["--data-dir", args.imagenette_dir] if group == "imagenette"
                else VIT_CIFAR + ["--data-dir", args.cifar_dir])
        flags = [*data, "--method", method, "--K", str(K), "--cuts", "even", "--device", args.device]
        start = time.time()
        summary = train_run(out / name, flags)
        print(f"{name}: done ({time.time() - start:.0f} s this call)", flush=True)
        metrics = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        results.append({"group": group, "run": name, "method": method, "K": K, "cuts": summary.get("cuts"),
                        "command": ["infopro", "train", *flags, "--out", str(out / name)],
                        "test_accuracy_per_epoch": [r["test_accuracy"] for r in metrics],
                        "final_test_accuracy": metrics[-1]["test_accuracy"],
                        "train_seconds": summary.get("total_seconds")})
    lines = ["| data, network | method | K | cuts | test accuracy per epoch | final test accuracy | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        what = ("Imagenette 128 px, ResNet-18" if r["group"] == "imagenette" else "CIFAR-10, DeiT-T (patch 4)")
        per_epoch = " / ".join(f"{100 * a:.1f}" for a in r["test_accuracy_per_epoch"])
        lines.append(f"| {what} | {r['method']} | {r['K']} | {r['cuts'] or '-'} | {per_epoch} | "
                     f"{100 * r['final_test_accuracy']:.1f} % | {r['train_seconds']:.0f} |")
    table = "\n".join(lines) + "\n"
    (out / "imagenette_small.json").write_text(json.dumps({"runs": results}, indent=2) + "\n")
    (out / "imagenette_small.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

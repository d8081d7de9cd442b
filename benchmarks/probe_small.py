"""Information along the depth: I(h, x) and I(h, y) of E2E, Greedy SL and InfoPro (K=4) on CPU-sized CIFAR-10.

Trains ResNet-32 three times on a stratified subset of ../shared/datasets/cifar10-jpeg,
with the same epochs, seed, batch and schedule: end-to-end, Greedy SL K=4 and
InfoPro (contrast) K=4, both with the paper's cuts and the published lambdas
(configs/cifar10/). Then probes the three with `infopro probe`: a decoder
(10 epochs of Adam, lr 1e-3) for I(h, x) and, by default, the linear probe
for I(h, y): the paper's ResNet-32 probe trains a whole ResNet-32 per depth
and run, too slow for two CPU cores, so pass `--probe resnet32` on a GPU. Prints a
Markdown table (depth x run) and writes probe.json, probe.png and
probe_small.json into --out. Run directories are reused when they already
hold a finished run (delete them to retrain).

    python benchmarks/probe_small.py --out benchmarks/results/probe_small
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from small_runs import SHARED_CIFAR10_JPEG, add_no_warmup_argument, train_if_needed

from infopro.analysis import probe_table
from infopro.cli import main as infopro_main
# (run directory name, config file, label in the table and the plot)
RUNS = [
    ("e2e-K1", "resnet32-e2e", "E2E"),
    ("greedy-K4", "resnet32-greedy-K4", "Greedy K=4"),
    ("infopro-contrast-K4", "resnet32-infopro-contrast-K4", "InfoPro K=4"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=SHARED_CIFAR10_JPEG)
    parser.add_argument("--train-subset", type=int, default=5000, help="images the networks train on")
    parser.add_argument("--test-subset", type=int, default=1000, help="test images of the networks and of the probes")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of the networks")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depths", default="1,2,4,8,12,16", help="ResNet-32 has 16 blocks; K=4 paper cuts end at 4, 8, 12")
    parser.add_argument("--probe", default="linear")
    parser.add_argument("--probe-epochs", type=int, default=10)
    add_no_warmup_argument(parser)
    parser.add_argument("--probe-train-subset", type=int, default=2000, help="images the decoder and probe train on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/probe_small")
    args = parser.parse_args()

    out = Path(args.out)
    start = time.perf_counter()
    summaries = {label: train_if_needed(out / name, config, args) for name, config, label in RUNS}
    trained = time.perf_counter()
    code = infopro_main([
        "probe", *(str(out / name) for name, _, _ in RUNS), "--names", ",".join(label for _, _, label in RUNS),
        "--depths", args.depths, "--probe", args.probe, "--epochs", str(args.probe_epochs),
        "--train-subset", str(args.probe_train_subset), "--test-subset", str(args.test_subset),
        "--data-dir", args.data_dir, "--seed", str(args.seed), "--device", args.device, "--out", str(out), "--quiet",
    ])
    if code != 0:
        raise SystemExit(f"probing failed (exit {code})")
    probed = time.perf_counter()
    report = json.loads((out / "probe.json").read_text())

    print(f"\nResNet-32, CIFAR-10 (JPEG): networks trained on {args.train_subset} images for {args.epochs} epochs "
          f"(batch {args.batch_size}, seed {args.seed}, {args.device}); decoder and {args.probe} probe trained "
          f"{args.probe_epochs} epochs on {args.probe_train_subset} images, measured on {args.test_subset} test images")
    print("network test error: " + ", ".join(f"{label} {100 * s['final_test_error']:.2f} %" for label, s in summaries.items()))
    print(probe_table(report["runs"]))
    print("I(h,x) = 1 - decoder test BCE; I(h,y) = probe test accuracy; * = a cut point (end of a piece)")
    print(f"training {trained - start:.0f}s (0 if reused), probing {probed - trained:.0f}s")
    path = out / "probe_small.json"
    path.write_text(json.dumps({
        "settings": vars(args),
        "networks": {label: {"run": name, "final_test_error": summaries[label]["final_test_error"],
                             "cuts": summaries[label]["cuts"], "train_seconds": summaries[label]["total_seconds"]}
                     for name, _, label in RUNS},
        "probe_seconds": probed - trained,
        "runs": report["runs"],
    }, indent=2) + "\n")
    print(f"wrote {path}, {out / 'probe.json'} and {out / 'probe.png'}")


if __name__ == "__main__":
    main()

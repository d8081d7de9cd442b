"""E2E vs Greedy SL vs DGL vs InfoPro on a CPU-sized CIFAR-10 (JPEG) subset.

ResNet-32, a stratified 10,000-image training subset of ../shared/datasets/cifar10-jpeg,
the same epochs, seed, batch and schedule for every method; K=4 and K=8 with the
paper's cuts and the published lambdas (configs/cifar10/). Prints a Markdown
table and writes JSON. Run directories are reused when they already hold a
finished run (delete them to retrain).

    python benchmarks/cifar_small.py --epochs 6 --out benchmarks/results/cifar_small

With --rivals: E2E and InfoPro Contrast against PredSim, AugLocal, MAN, MAN++ and HPFF at K=4, 8
and 16, all on the paper's cuts with each method's default settings (InfoPro, MAN, HPFF: the
published InfoPro lambdas of that K), one budget and seed for all:

    python benchmarks/cifar_small.py --rivals --train-subset 1000 --test-subset 500 --epochs 3 \
        --out benchmarks/results/cifar_small_rivals \
        --bench-json benchmarks/results/bench_rivals_resnet32_b128/bench.json

--bench-json adds each run's peak memory per step from an `infopro bench` of the same network,
batch and cuts, and the test accuracy per GiB of it.

The recipe comparison (issue 20): every method at K=4 with the authors' schedule (the configs' 10-epoch
warm-up from 0.01, cosine from the 1-based epoch), 30 epochs, the full test set, two seeds; the table gives
the mean and spread over seeds:

    python benchmarks/cifar_small.py --K 4 --epochs 30 --test-subset 0 --seeds 0 1 \
        --methods e2e infopro-contrast greedy infopro-softmax dgl --out benchmarks/results/cifar_recipe_30ep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from small_runs import SHARED_CIFAR10_JPEG, add_no_warmup_argument, train_if_needed

RUNS = [("e2e", 1)] + [(m, K) for K in (4, 8) for m in ("greedy", "dgl", "infopro-softmax", "infopro-contrast")]
RIVAL_RUNS = [("e2e", 1)] + [(m, K) for K in (4, 8, 16) for m in (
    "infopro-contrast", "predsim", "auglocal", "man", "man++", "hpff")]


def config_name(method: str, K: int) -> str:
    return "resnet32-e2e" if method == "e2e" else f"resnet32-{method}-K{K}"


def config_and_flags(method: str, K: int) -> tuple[str, tuple[str, ...]]:
    """The config and extra flags of a run on the paper's cuts at K (the rivals' own configs cut elsewhere)."""
    if method in ("predsim", "auglocal"):
        return f"resnet32-dgl-K{K}", ("--method", method)  # paper cuts, the method's default settings
    if method == "man++":
        return f"resnet32-man-K{K}", ("--method", method)  # InfoPro's lambdas, as MAN's config
    return config_name(method, K), ()


def print_seed_table(rows: list[dict], args: argparse.Namespace) -> None:
    """Mean and spread (min-max) of the final test error over seeds, per method and K."""
    import statistics

    print(f"\nResNet-32, CIFAR-10 (JPEG), {args.train_subset} train / {args.test_subset or 'all'} test images, "
          f"{args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, {args.device}, the configs' schedule")
    print("| method | K | final test error, mean | min - max | seeds | train seconds (mean) |")
    print("|---|---|---|---|---|---|")
    for method, K in dict.fromkeys((r["method"], r["K"]) for r in rows):
        errors = [100 * r["final_test_error"] for r in rows if (r["method"], r["K"]) == (method, K)]
        seconds = [r["total_seconds"] for r in rows if (r["method"], r["K"]) == (method, K)]
        print(f"| {method} | {K} | {statistics.mean(errors):.2f} % | {min(errors):.2f} - {max(errors):.2f} % | "
              f"{len(errors)} | {statistics.mean(seconds):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=SHARED_CIFAR10_JPEG)
    parser.add_argument("--train-subset", type=int, default=10000)
    parser.add_argument("--test-subset", type=int, default=2000, help="0: the whole test set")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run per seed; the table then gives the mean and spread (default: 0)")
    parser.add_argument("--K", type=int, nargs="+", default=None, help="only these K (E2E always runs)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the table of the runs that have finished, naming the others")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="only these methods, in this order (default: all, E2E first)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rivals", action="store_true", help="the rivals at K=4, 8, 16 (see above)")
    add_no_warmup_argument(parser)
    parser.add_argument("--bench-json", default=None, help="bench.json of the same network and batch (see above)")
    parser.add_argument("--out", default="benchmarks/results/cifar_small")
    args = parser.parse_args()

    out = Path(args.out)
    rows, missing = [], []
    runs = [(m, K) for m, K in (RIVAL_RUNS if args.rivals else RUNS) if args.K is None or K == 1 or K in args.K]
    if args.methods:
        runs = [(m, K) for name in args.methods for m, K in runs if m == name]
    for seed in args.seeds:  # every method once before any runs twice: a partial grid still compares
        for method, K in runs:
            run = out / (f"{method}-K{K}" + (f"-seed{seed}" if len(args.seeds) > 1 else ""))
            config, extra = config_and_flags(method, K)
            if args.report_only:
                if not (run / "summary.json").exists():
                    missing.append(run.name)
                    continue
                summary = json.loads((run / "summary.json").read_text())
            else:
                summary = train_if_needed(run, config, argparse.Namespace(**{**vars(args), "seed": seed}), extra)
            rows.append({"method": method, "K": K, "seed": seed, "cuts": summary["cuts"],
                         "aux_parameters": summary["aux_parameters"], "final_test_error": summary["final_test_error"],
                         "best_test_error": summary["best_test_error"], "total_seconds": summary["total_seconds"],
                         "epochs": summary["epochs"], "run": str(run)})
    if missing:
        print(f"not finished (left out of the table; run the same command without --report-only to train or "
              f"resume them): {', '.join(missing)}")
    if len(args.seeds) > 1:
        print_seed_table(rows, args)
        path = out / "cifar_small.json"
        path.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
        print(f"wrote {path}")
        return
    args.seed = args.seeds[0]

    print(f"\nResNet-32, CIFAR-10 (JPEG), {args.train_subset} train / {args.test_subset} test images, "
          f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}, {args.device}")
    peaks = {}
    if args.bench_json:
        bench = json.loads(Path(args.bench_json).read_text())
        if bench["batch_size"] != args.batch_size:
            raise SystemExit(f"{args.bench_json} was measured at batch {bench['batch_size']}, not {args.batch_size}")
        peaks = {(b["method"], b["K"], tuple(b["cuts"])): b["peak_bytes"] for b in bench["rows"]}
    for r in rows:
        peak = peaks.get((r["method"], r["K"], tuple(r["cuts"])))
        if peak is not None:
            r["bench_peak_bytes"] = peak
            r["accuracy_per_gib"] = (1 - r["final_test_error"]) / (peak / 2**30)
    extra = " peak MiB (bench) | accuracy per GiB |" if peaks else ""
    print(f"| method | K | final test error | best test error | aux params | train seconds |{extra}")
    print("|---" * (6 + 2 * bool(peaks)) + "|")
    for r in rows:
        cells = (f" {r['bench_peak_bytes'] / 2**20:.0f} | {r['accuracy_per_gib']:.2f} |" if "bench_peak_bytes" in r
                 else " – | – |" if peaks else "")
        print(f"| {r['method']} | {r['K']} | {100 * r['final_test_error']:.2f} % | "
              f"{100 * r['best_test_error']:.2f} % | {r['aux_parameters'] / 1e6:.3f} M | {r['total_seconds']:.0f} |{cells}")
    path = out / "cifar_small.json"
    path.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

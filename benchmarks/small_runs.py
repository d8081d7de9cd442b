"""What the CPU-sized benchmarks share: a finished run directory is reused, otherwise trained (or resumed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infopro.cli import main as infopro_main

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10_JPEG = str(ROOT.parent / "shared" / "datasets" / "cifar10-jpeg")


def train_run(run: Path, flags: list[str]) -> dict:
    """`infopro train FLAGS --out RUN` unless `run` already holds a finished run; resume it if it was started
    (stopped before or after its first checkpoint). Returns its summary.json."""
    if not (run / "summary.json").exists():
        started = (run / "config.yaml").exists()  # started before: continue it with its own settings
        code = infopro_main(["train", "--resume", str(run)] if started else ["train", *flags, "--out", str(run)])
        if code != 0:
            raise SystemExit(f"training {run.name} failed (exit {code})")
    return json.loads((run / "summary.json").read_text())


def add_no_warmup_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-warmup", action="store_true",
                        help="a plain cosine from the first epoch instead of the configs' 10-epoch warm-up (the schedule "
                             "the README's short CPU figures were measured with, before the configs carried the "
                             "authors' warm-up, which would fill a run of 10 epochs or fewer)")


def train_if_needed(run: Path, config: str, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> dict:
    """Train `run` from configs/cifar10/<config>.yaml with the benchmark's shared settings
    (subset, epochs, batch, lr 0.1 per 128 images, seed, device, channels-last) and `extra` flags (see train_run)."""
    return train_run(run, [
        "-c", str(ROOT / "configs" / "cifar10" / f"{config}.yaml"), "--data-dir", args.data_dir,
        "--train-subset", str(args.train_subset),
        *(["--test-subset", str(args.test_subset)] if args.test_subset else []),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(0.1 * args.batch_size / 128), "--seed", str(args.seed),
        "--device", args.device, "--channels-last", *extra,
        *(["--warmup-epochs", "0", "--schedule-first-epoch", "0"] if getattr(args, "no_warmup", False) else []),
    ])

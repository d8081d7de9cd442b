"""`infopro probe`: I(h, x) and I(h, y) along the depth of trained runs, as JSON and a plot."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data import Data, Items, available_memory, stratified_subset
from ..errors import InfoProError
from ..files import atomic_write_text, check_output_dir
from ..flag_types import positive_float, positive_int, seed
from ..train.run_dir import refuse_run_file
from ..device import pick_device
from ..local.pieces import feature_shapes
from .estimators import TrainSettings, estimate_i_hx, estimate_i_hy
from .features import check_depths, default_depths, extract_features, feature_map, parse_depths, probe_bytes
from .probes import PROBES
from .report import plot_probe, probe_table
from .restore import RestoredRun, open_run_data, read_run_config, restore_run, run_images

# Share of the available memory the features and targets of one depth may take (the estimators train beside them).
MEMORY_SHARE = 0.6
# Probes see a subset by default: features of all 50,000 CIFAR images at depth 1 take 3 GB.
DEFAULT_TRAIN_SUBSET = 10000
DEFAULT_TEST_SUBSET = 2000


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of `infopro train` (with checkpoint.pt)")
    parser.add_argument("--names", default=None,
                        help="comma list of names for the runs in plots and JSON (default: the directory names)")
    parser.add_argument("--depths", default=None,
                        help="comma list of depths; depth d = output of the first d blocks, 1 = the stem "
                             "(default: every cut point plus 4 evenly spaced depths)")
    parser.add_argument("--probe", default="resnet32",
                        help=f"I(h, y) probe classifier, one of {', '.join(PROBES.names())} (default: %(default)s, the paper's)")
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs of the decoder and of the probe (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate of both (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="(default: %(default)s)")
    parser.add_argument("--train-subset", type=positive_int, default=None, metavar="N",
                        help=f"train the estimators on a stratified subset of N images (default: {DEFAULT_TRAIN_SUBSET} or all)")
    parser.add_argument("--test-subset", type=positive_int, default=None, metavar="N",
                        help=f"measure on a stratified subset of N test images (default: {DEFAULT_TEST_SUBSET} or all)")
    parser.add_argument("--data-dir", default=None, help="data to probe on (default: the data the runs were trained on)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", default="probe", help="output directory for probe.json and probe.png (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, no table")


def run_names(args: argparse.Namespace) -> list[str]:
    if args.names is None:
        names = [Path(r).resolve().name for r in args.runs]
    else:
        names = [n.strip() for n in args.names.split(",")]
        if len(names) != len(args.runs) or not all(names):
            raise InfoProError(f"--names gives {len(names)} name(s) for {len(args.runs)} run(s); give one non-empty name per run")
    if len(set(names)) != len(names):
        raise InfoProError(f"two runs share a name ({', '.join(names)}); tell them apart with --names")
    return names


# What decides the images a run's evaluation saw: runs probed together must agree on all of it.
VIEW_KEYS = ("dataset", "image_size", "channels", "data_path", "mean", "std")


def check_same_data(configs: list[dict[str, Any]], runs: list[str], data_dir: str | None) -> None:
    """All runs must have seen the same data set the same way (and, unless --data-dir overrides it, the same copy)."""
    keys = VIEW_KEYS if data_dir is not None else (*VIEW_KEYS, "data_dir")
    for run, config in zip(runs[1:], configs[1:]):
        differ = [k for k in keys if config.get(k) != configs[0].get(k)]
        if differ:
            raise InfoProError(
                f"runs {runs[0]} and {run} were trained on different data "
                f"({'; '.join(f'{k} {configs[0].get(k)} vs {config.get(k)}' for k in differ)}); "
                f"probe runs of one data set, image size and data path together"
                + (", or pass --data-dir to probe all of them on the same copy" if differ == ["data_dir"] else "")
            )


def subset(items: Items, n: int | None, default: int, seed: int, flag: str) -> Items:
    """A stratified subset of n of `items` (None: `default` or all, whichever is fewer), still undecoded."""
    if n is not None and n <= 0:
        raise InfoProError(f"{flag} must be > 0, got {n}")
    n = min(default, len(items)) if n is None else n
    if n == len(items):
        return items
    return items.take(stratified_subset(items.labels, n, seed=seed))


def check_memory(runs: list[RestoredRun], depths: list[int], image_shape: tuple[int, int, int], n_train: int,
                 n_test: int, device: torch.device) -> None:
    """Stop before decoding anything when one depth's features and targets would not fit in memory: say how
    much they need and which --train-subset would fit, instead of being killed part-way."""
    values = {d: max(math.prod(feature_shapes(r.backbone.blocks, image_shape)[d - 1]) for r in runs) for d in depths}
    depth = max(depths, key=values.__getitem__)
    need = probe_bytes(n_train, n_test, values[depth], image_shape)
    available = available_memory(device)
    budget = int(MEMORY_SHARE * available)
    if need <= budget:
        return
    per_image = probe_bytes(1, 0, values[depth], image_shape)
    fits = (budget - probe_bytes(0, n_test, values[depth], image_shape)) // per_image
    hint = (f"use --train-subset {fits} or fewer" if fits >= 10 else "use a smaller --test-subset and --train-subset")
    raise InfoProError(
        f"probing {n_train} + {n_test} images at depth {depth} ({values[depth]:,} feature values per image) needs "
        f"about {need / 1e9:.1f} GB on {device}, more than {MEMORY_SHARE:.0%} of the {available / 1e9:.1f} GB "
        f"available; {hint}, or leave out the widest depths with --depths")


def probe_run(run: RestoredRun, depths: list[int], data: Data, train: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray], probe: str, settings: TrainSettings, device: torch.device,
              progress: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One point {depth, i_hx, i_hy} per depth, and the per-epoch training losses that produced it.

    The features of each depth are extracted once and serve both estimators.
    """
    points, losses = [], []
    for depth in tqdm(depths, desc=run.name, leave=False, disable=not progress):
        train_h, train_x, train_y = extract_features(run.backbone, depth, *train, run.mean, run.std, device)
        test_h, test_x, test_y = extract_features(run.backbone, depth, *test, run.mean, run.std, device)
        tokens = run.backbone.tokens
        i_hx = estimate_i_hx(train_h, train_x, test_h, test_x, settings, tokens)
        # The probes read maps: token features go on their patch grid.
        train_h, test_h = (feature_map(h, tokens, train_x.shape[1:]) for h in (train_h, test_h))
        i_hy = estimate_i_hy(train_h, train_y, test_h, test_y, data.num_classes, probe, settings)
        points.append({"depth": depth, "i_hx": i_hx.value, "i_hy": i_hy.value})
        losses.append({"depth": depth, "decoder": i_hx.train_losses, "probe": i_hy.train_losses})
        del train_h, test_h, train_x, test_x  # freed before the next depth's are extracted
    return points, losses


def probe_main(args: argparse.Namespace) -> int:
    # Check everything cheap before loading data or training anything.
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                             progress=not args.quiet and sys.stderr.isatty())
    PROBES.get(args.probe)
    if args.seed < 0:
        raise InfoProError(f"--seed must be >= 0, got {args.seed}")
    requested = parse_depths(args.depths) if args.depths is not None else None
    names = run_names(args)
    configs = [read_run_config(r) for r in args.runs]
    check_same_data(configs, names, args.data_dir)
    device = pick_device(args.device)
    out = check_output_dir(args.out)  # before the computation, not after it
    for name in ("probe.json", "probe.png"):
        refuse_run_file(out / name)

    # Only the subsets' images are decoded: a run on an ImageNet-sized folder costs N + M decodes, not 1.3M.
    data = open_run_data(configs[0], args.data_dir)
    train_items = subset(data.train, args.train_subset, DEFAULT_TRAIN_SUBSET, args.seed, "--train-subset")
    test_items = subset(data.test, args.test_subset, DEFAULT_TEST_SUBSET, args.seed, "--test-subset")
    runs = [restore_run(path, data, device, name) for path, name in zip(args.runs, names)]
    num_blocks = min(r.num_blocks for r in runs)
    if requested is not None:
        depths = check_depths(requested, num_blocks)
    else:
        depths = default_depths(num_blocks, [d for r in runs for d in r.cut_depths if d <= num_blocks])
    check_memory(runs, depths, data.image_shape, len(train_items), len(test_items), device)
    train, test = ((run_images(configs[0], data, items, settings.progress), items.labels)
                   for items in (train_items, test_items))

    results = []
    for run in runs:
        points, losses = probe_run(run, depths, data, train, test, args.probe, settings, device, settings.progress)
        results.append({"run": run.name, "points": points, "path": str(run.path), "method": run.config.get("method"),
                        "K": run.config.get("K"), "arch": run.config.get("arch"), "cut_depths": run.cut_depths,
                        "train_losses": losses})

    report = {
        "settings": {"probe": args.probe, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                     "seed": args.seed, "train_images": len(train[1]), "test_images": len(test[1]),
                     "dataset": data.name, "data_source": data.source, "depths": depths,
                     "depth": "output of the first d blocks of backbone.blocks (1 = the stem)",
                     "i_hx": "1 - mean per-pixel BCE of a decoder on the test set",
                     "i_hy": f"test accuracy of the {args.probe} probe"},
        "runs": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "probe.json", json.dumps(report, indent=2) + "\n")
    plot_probe(results, out / "probe.png",
               title=f"{data.name}: {len(train[1])} train / {len(test[1])} test images, {args.probe} probe, {args.epochs} epochs")
    if not args.quiet:
        print(probe_table(results))
        print(f"I(h,x) = 1 - decoder BCE; I(h,y) = {args.probe} probe test accuracy; * = cut point. "
              f"Wrote {out / 'probe.json'} and {out / 'probe.png'}")
    return 0

"""`infopro bench`: memory, FLOPs and time of one training step, E2E vs checkpointing vs local methods."""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
from typing import Any

import torch
from tqdm import tqdm

from ..errors import InfoProError
from ..local import CUT_PRESETS, METHODS
from ..device import pick_device
from ..files import atomic_write_text, check_output_dir
from ..models import ARCHITECTURES, native_input_shape
from .report import MiB, add_ratios, markdown_table, plot_memory, step_spread
from .step import build_step, measure_step

BASELINES = ("e2e", "checkpoint")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="resnet110",
                        help=f"architecture, one of {', '.join(ARCHITECTURES.names())} (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1024, help="(default: %(default)s, the paper's Table 3)")
    parser.add_argument("--input-shape", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="input image shape (default: the architecture's own, 3x32x32 or 3x224x224)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--K", type=int, nargs="+", default=[2, 3, 4, 8, 16], help="pieces (checkpoint: segments)")
    parser.add_argument("--methods", default="e2e,checkpoint,infopro-contrast",
                        help=f"comma list of {', '.join([*BASELINES, *[m for m in METHODS.names() if m != 'e2e']])}")
    parser.add_argument("--cuts", default="paper,even,balanced",
                        help=f"comma list of cut presets for the local methods ({', '.join(CUT_PRESETS.names())})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first also counts FLOPs)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--aux-decoder-chunk", type=int, default=0, metavar="C",
                        help="decoder upsampling + first conv over chunks of C channels (default: 0, off)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", required=True, help="directory for bench.json, bench.md and bench.png")
    parser.add_argument("--quiet", action="store_true")


def _plan(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = [*BASELINES, *METHODS.names()]
    for m in methods:
        if m not in known:
            raise InfoProError(f"--methods: unknown method {m!r}; choose from {', '.join(known)}")
    presets = [c.strip() for c in args.cuts.split(",") if c.strip()]
    for c in presets:
        if c not in CUT_PRESETS:
            raise InfoProError(f"--cuts: unknown preset {c!r}; choose from {', '.join(CUT_PRESETS.names())}")
    if any(k < 1 for k in args.K):
        raise InfoProError(f"--K values must be >= 1, got {args.K}")
    plan = [("e2e", 1, "-")] if "e2e" in methods else []
    for K in sorted(set(args.K)):
        if K == 1:
            continue  # K=1 is E2E, whatever the method
        if "checkpoint" in methods:
            plan.append(("checkpoint", K, "-"))
        plan += [(m, K, c) for m in methods if m not in BASELINES for c in presets]
    return plan


FEW_STEPS = 5  # fewer timed steps than this: the spread says little, and bench says so


def bench_main(args: argparse.Namespace) -> int:
    if args.batch_size < 2:
        raise InfoProError(f"--batch-size must be >= 2 (BatchNorm needs two samples in training mode), got {args.batch_size}")
    if args.steps < 1 or args.warmup < 1:
        raise InfoProError(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")
    plan = _plan(args)
    warning = None
    if args.steps < FEW_STEPS:
        warning = (f"only {args.steps} timed step(s) per row: the times and their spread are rough; "
                   f"use --steps {FEW_STEPS} or more for figures to quote")
        print(f"infopro bench: warning: {warning}", file=sys.stderr)
    device = pick_device(args.device)
    out = check_output_dir(args.out)
    shape = tuple(args.input_shape or native_input_shape(args.arch))
    title = (f"{args.arch}, {'x'.join(map(str, shape))}, batch {args.batch_size}, {device.type}"
             f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    report = {"arch": args.arch, "batch_size": args.batch_size, "input_shape": list(shape), "device": str(device),
              "channels_last": args.channels_last, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "steps": args.steps, "rows": rows, "skipped": skipped,
              "warning": warning}
    bar = tqdm(plan, desc="bench", disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    for method, K, preset in bar:
        bar.set_postfix_str(f"{method} K={K} {preset}")
        try:
            step = build_step(args.arch, method, K, preset, shape, args.num_classes, args.batch_size, device,
                              args.channels_last, args.seed, args.aux_decoder_chunk)
        except InfoProError as error:
            skipped.append(f"{method} K={K} cuts={preset}: {error}")
            if not args.quiet:
                tqdm.write(f"skip {method} K={K} {preset}: {str(error).split(';')[0]}")
            continue
        row = {"method": method, "K": K, "cuts_preset": step.cuts_preset, "cuts": step.cuts}
        row.update(measure_step(step, args.batch_size, device, args.steps, args.warmup, args.channels_last, args.seed))
        rows.append(row)
        del step
        gc.collect()
        if not args.quiet:
            tqdm.write(f"{method:>16} K={K:<2} {row['cuts_preset']:>14} {str(row['cuts']):<24} peak {row['peak_bytes'] / MiB:8.0f} MiB  "
                       f"{row['flops'] / 1e9:8.1f} GFLOP  {step_spread(row)} s/step")
        add_ratios(rows)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    if not rows:
        raise InfoProError(f"nothing to measure: every configuration was skipped ({'; '.join(skipped)})")
    add_ratios(rows)
    table = markdown_table(rows, title)
    atomic_write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "bench.md", table + "".join(f"\nskipped: {s}" for s in skipped) + "\n")
    plot_memory(rows, out / "bench.png", title)
    if not args.quiet:
        print(table)
        print(f"wrote {out / 'bench.json'}, bench.md, bench.png")
    return 0

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

from ..errors import InfoProError, shown
from ..local import CUT_PRESETS, METHODS
from ..local.recompute import parse_recompute
from ..device import pick_device
from ..files import atomic_write_text, check_output_dir
from ..flag_types import Number, mask_value, nonnegative_float, nonnegative_int, positive_int, seed
from ..train.run_dir import refuse_run_file
from ..models import ARCHITECTURES, native_input_shape
from ..tasks import TASKS, Task
from .report import MiB, add_ratios, markdown_table, plot_memory, step_spread
from .step import build_step, measure_step

BASELINES = ("e2e", "checkpoint")
BENCH_BATCH = Number(int, 2, why="BatchNorm needs two samples in training mode", name="bench_batch")


def _shown(value: Any) -> str:
    if value is None:
        return "the architecture's own"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _per_task(key: str) -> str:
    """"resnet110 for classify, deeplabv3_resnet101 for segment": a flag's default under each task."""
    return ", ".join(f"{_shown(TASKS.get(name).bench_defaults[key])} for {name}" for name in TASKS.names())


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS.names(), default="classify",
                        help="what the network is trained for; it picks the loss, the synthetic targets (segment: "
                             "masks with some unlabelled pixels), the methods that fit and the defaults below "
                             "(default: %(default)s)")
    parser.add_argument("--arch", default=None,
                        help=f"architecture, one of {', '.join(ARCHITECTURES.names())} (default: {_per_task('arch')})")
    parser.add_argument("--batch-size", type=BENCH_BATCH, default=None,
                        help=f"(default: {_per_task('batch_size')}; the paper's, per GPU)")
    parser.add_argument("--input-shape", type=positive_int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help=f"input image shape (default: {_per_task('input_shape')})")
    parser.add_argument("--num-classes", type=positive_int, default=None, help=f"(default: {_per_task('num_classes')})")
    parser.add_argument("--K", type=positive_int, nargs="+", default=None,
                        help=f"pieces (checkpoint: segments) (default: {_per_task('K')})")
    parser.add_argument("--methods", default=None,
                        help=f"comma list of {', '.join([*BASELINES, *[m for m in METHODS.names() if m != 'e2e']])} "
                             f"(default: {_per_task('methods')})")
    parser.add_argument("--recompute", nargs="+", default=["off"], metavar="R",
                        help="recomputation inside the local methods' pieces, one row per value: off, auto (round("
                             "sqrt(blocks)) segments per piece) or N segments; a value ending in +aux (auto+aux) "
                             "adds --recompute-aux (default: off)")
    parser.add_argument("--checkpoint-segments", type=positive_int, nargs="+", default=None, metavar="N",
                        help="segments of the checkpoint rows (default: the --K values)")
    parser.add_argument("--cuts", default=None,
                        help=f"comma list of cut presets for the local methods ({', '.join(CUT_PRESETS.names())}) "
                             f"(default: {_per_task('cuts')})")
    parser.add_argument("--ignore-index", type=mask_value, default=255, metavar="I",
                        help="segment: the mask value of unlabelled pixels (default: %(default)s)")
    parser.add_argument("--seg-aux-weight", type=nonnegative_float, default=0.4, metavar="W",
                        help="segment: weight of the FCN auxiliary head's loss in E2E's and the last piece's "
                             "(0: off) (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps per row; the median is reported")
    parser.add_argument("--warmup", type=positive_int, default=1, help="untimed steps first (the first also counts FLOPs)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--aux-decoder-chunk", type=nonnegative_int, default=0, metavar="C",
                        help="decoder upsampling + first conv over chunks of C channels (default: 0, off)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed")
    parser.add_argument("--out", required=True, help="directory for bench.json, bench.md and bench.png")
    parser.add_argument("--quiet", action="store_true")


def _task_defaults(args: argparse.Namespace) -> Task:
    """The task --task names, with the flags left out set to its bench defaults."""
    task_class = TASKS.get(args.task)
    for key, value in task_class.bench_defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    # The bench's network is built for --input-shape: that is the task's crop (evaluation is not measured).
    return task_class.from_args(argparse.Namespace(**vars(args), crop_size=None))


def _refused(methods: list[str], task: Task) -> dict[str, str]:
    """method -> the task's one-line reason, for the local methods the task cannot train."""
    reasons = {m: task.refusal(METHODS.get(m)) for m in methods if m not in BASELINES}
    return {m: reason for m, reason in reasons.items() if reason is not None}


def parse_bench_recompute(value: str) -> tuple[int | str | None, bool]:
    """A --recompute value of bench -> (recompute, recompute_aux): "auto+aux" -> ("auto", True)."""
    aux = value.strip().lower().endswith("+aux")
    base = value.strip()[:-len("+aux")] if aux else value
    try:
        recompute = parse_recompute(base)
    except InfoProError:
        raise InfoProError(f"--recompute: {value!r} is not off, auto or a number of segments (>= 1), "
                           f"optionally followed by +aux") from None
    if aux and recompute is None:
        raise InfoProError(f"--recompute: {value!r}: +aux needs recomputation (auto+aux or N+aux)")
    return recompute, aux


def recompute_label(recompute: int | str | None, aux: bool) -> str:
    """"off", "auto", "4", "auto+aux": how a row's recomputation is shown."""
    return "off" if recompute is None else f"{recompute}{'+aux' if aux else ''}"


Row = tuple[str, int, str, "int | str | None", bool]


def _plan(args: argparse.Namespace, task: Task, skipped: list[str]) -> list[Row]:
    """(method, K, cut preset, recompute, recompute_aux) of every row to measure; the methods the task
    refuses go to `skipped`."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = [*BASELINES, *METHODS.names()]
    for m in methods:
        if m not in known:
            raise InfoProError(f"--methods: unknown method {shown(m)}; choose from {', '.join(known)}")
    refused = _refused(methods, task)
    skipped += [f"{m} (every K and cut): {reason}" for m, reason in refused.items()]
    methods = [m for m in methods if m not in refused]
    presets = [c.strip() for c in args.cuts.split(",") if c.strip()]
    for c in presets:
        if c not in CUT_PRESETS:
            raise InfoProError(f"--cuts: unknown preset {shown(c)}; choose from {', '.join(CUT_PRESETS.names())}")
    if any(k < 1 for k in args.K):
        raise InfoProError(f"--K values must be >= 1, got {shown(args.K)}")
    recomputes = list(dict.fromkeys(parse_bench_recompute(r) for r in args.recompute))
    segments = args.checkpoint_segments
    if segments is not None and any(n < 1 for n in segments):
        raise InfoProError(f"--checkpoint-segments values must be >= 1, got {segments}")
    plan: list[Row] = [("e2e", 1, "-", None, False)] if "e2e" in methods else []
    if "checkpoint" in methods:
        plan += [("checkpoint", n, "-", None, False) for n in sorted(set(segments or args.K)) if n > 1]
    for K in sorted(set(args.K)):
        if K == 1:
            continue  # K=1 is E2E, whatever the method
        plan += [(m, K, c, r, aux) for m in methods if m not in BASELINES for c in presets for r, aux in recomputes]
    return plan


FEW_STEPS = 5  # fewer timed steps than this: the spread says little, and bench says so


def bench_main(args: argparse.Namespace) -> int:
    task = _task_defaults(args)
    if args.batch_size < 2:
        raise InfoProError(f"--batch-size must be >= 2 (BatchNorm needs two samples in training mode), got {args.batch_size}")
    if args.steps < 1 or args.warmup < 1:
        raise InfoProError(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")
    skipped: list[str] = []
    plan = _plan(args, task, skipped)
    if not args.quiet:
        for note in skipped:
            print(f"skip {note}", file=sys.stderr)
    warning = None
    if args.steps < FEW_STEPS:
        warning = (f"only {args.steps} timed step(s) per row: the times and their spread are rough; "
                   f"use --steps {FEW_STEPS} or more for figures to quote")
        print(f"infopro bench: warning: {warning}", file=sys.stderr)
    device = pick_device(args.device)
    out = check_output_dir(args.out)
    for name in ("bench.json", "bench.md", "bench.png"):
        refuse_run_file(out / name)
    shape = tuple(args.input_shape or native_input_shape(args.arch))
    title = (f"{args.arch} ({args.task}, {args.num_classes} classes), {'x'.join(map(str, shape))}, "
             f"batch {args.batch_size}, {device.type}"
             f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}")
    rows: list[dict[str, Any]] = []
    report = {"task": args.task, "task_settings": task.settings(), "arch": args.arch, "num_classes": args.num_classes,
              "batch_size": args.batch_size, "input_shape": list(shape), "device": str(device),
              "channels_last": args.channels_last, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "steps": args.steps, "rows": rows, "skipped": skipped,
              "warning": warning}
    bar = tqdm(plan, desc="bench", disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
    for method, K, preset, recompute, aux in bar:
        label = recompute_label(recompute, aux)
        bar.set_postfix_str(f"{method} K={K} {preset} recompute {label}")
        try:
            step = build_step(args.arch, method, K, preset, shape, args.num_classes, args.batch_size, device,
                              args.channels_last, args.seed, args.aux_decoder_chunk, task, recompute, aux)
        except InfoProError as error:
            skipped.append(f"{method} K={K} cuts={preset} recompute={label}: {error}")
            if not args.quiet:
                tqdm.write(f"skip {method} K={K} {preset} recompute {label}: {str(error).split(';')[0]}")
            continue
        row = {"method": method, "K": K, "cuts_preset": step.cuts_preset, "cuts": step.cuts, "recompute": label,
               "segments": step.segments}
        row.update(measure_step(step, args.batch_size, device, args.steps, args.warmup, args.channels_last, args.seed))
        rows.append(row)
        del step
        gc.collect()
        if not args.quiet:
            tqdm.write(f"{method:>16} K={K:<2} {row['cuts_preset']:>14} {str(row['cuts']):<24} "
                       f"{'' if label == 'off' else 'recompute ' + label + ' ' + str(row['segments']) + ' '}peak {row['peak_bytes'] / MiB:8.0f} MiB  "
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

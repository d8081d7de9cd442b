"""`infopro describe`: how a network is cut into pieces and what trains each piece."""

from __future__ import annotations

import argparse
import math
from typing import Any, Sequence

import torch

from .errors import InfoProError, shown
from .flag_types import nonnegative_float, nonnegative_int, positive_float, positive_int, unit_interval
from .local import CUT_PRESETS, HEADS, METHODS, LocalLearner
from .local.cuts import cuts_label
from .local.recompute import parse_recompute
from .models import ARCHITECTURES, build_backbone, native_input_shape
from .tasks import TASKS, build_task, task_for_output


def add_learner_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the network, the method and the cuts (shared by the subcommands)."""
    g = parser.add_argument_group("network and method")
    g.add_argument("--arch", default=None,
                   help=f"architecture, one of {', '.join(ARCHITECTURES.names())} (default: the task's: resnet32 "
                        f"for classification, deeplabv3_resnet18 for segmentation)")
    g.add_argument("--method", default=None,
                   help=f"one of {', '.join(METHODS.names())} (default: the task's: infopro-contrast for "
                        f"classification, infopro-softmax for segmentation)")
    g.add_argument("--K", type=positive_int, default=None,
                   help=f"number of gradient-isolated pieces; 1 = end-to-end (default: {DEFAULT_K}; 1 for e2e)")
    g.add_argument("--cuts", default="auto",
                   help=f"preset ({', '.join(CUT_PRESETS.names())}) or comma list of block indices after which a "
                        "piece ends; auto: the paper's cuts where they exist for this arch and K, else balanced "
                        "(default: %(default)s)")
    g.add_argument("--lambdas", type=nonnegative_float, nargs="+", metavar="L",
                   help="the second term's and the task's weights: 2 numbers (every local piece) or 4 (the first "
                        "piece's, then piece K-1's; those in between move linearly) (default: the method's)")
    g.add_argument("--aux-head", default=None, help=f"auxiliary head, one of {', '.join(HEADS.names())} (default: the method's)")
    g.add_argument("--aux-widen", type=positive_int, default=1, help="width multiplier of the auxiliary nets (default: %(default)s)")
    g.add_argument("--aux-feature-dim", type=positive_int, default=128, help="hidden width of the heads' fc layers (default: %(default)s)")
    g.add_argument("--temperature", type=positive_float, default=0.07, help="supervised contrastive temperature (default: %(default)s)")
    g.add_argument("--aux-decoder-chunk", type=nonnegative_int, default=0, metavar="C",
                   help="run the decoder's upsampling and first conv over chunks of C channels: same loss, "
                        "less memory at deep cuts (default: 0, off)")
    g.add_argument("--recompute", default=None, metavar="N|auto",
                   help="train each piece as N segments under gradient checkpointing: it keeps only the segments' "
                        "inputs plus one segment's activations, for about one more forward pass; auto: round(sqrt("
                        "blocks)) per piece; balanced cuts balance the recomputed peaks (default: off)")
    g.add_argument("--recompute-aux", action="store_true",
                   help="with --recompute: checkpoint every segment, the last too, and the decoder, so the "
                        "auxiliary nets' activations never coexist with a segment's")
    g.add_argument("--aux-depth", type=positive_int, default=None, metavar="D",
                   help="auglocal: blocks in each auxiliary net (default: the method's, 2)")
    g.add_argument("--aux-pyramid", type=unit_interval, default=None, metavar="C",
                   help="auglocal: pyramid coefficient, depth shrinking along the network; 0 = off (default: 0.5)")
    g.add_argument("--aux-strides", default=None, choices=["reference", "layers"],
                   help="auglocal: where an aux block downsamples. reference: where its width doubles over its "
                        "widened input, as the authors' code; layers: where the imitated layers' width doubles, "
                        "so the aux nets downsample like the network whatever --aux-widen (the same at widen 1; "
                        "the reference refuses most depths at widen > 1) (default: reference)")
    g.add_argument("--ema-momentum", type=unit_interval, default=None, metavar="M",
                   help="man, man++: momentum of the EMA copy of the next piece's first block (default: 0.995)")
    g.add_argument("--task-loss", choices=["cross-entropy", "supcon"], default=None,
                   help="man, man++: the auxiliary head's loss (default: cross-entropy, as the authors' README trains "
                        "them; MAN++'s stem piece always uses supcon, as its code does)")
    g.add_argument("--supcon-mean", choices=["all-anchors", "anchors-with-positive"], default=None,
                   help="infopro-contrast, man, man++: average the supervised contrastive loss over all anchors, one "
                        "alone in its class counting 0 (the authors' code), or over the anchors with a positive (a "
                        "scale that does not shrink when classes appear once in a batch) (default: all-anchors)")
    g.add_argument("--lambda-schedule", choices=["next-stage", "piece"], default=None,
                   help="man, man++: how the lambdas move along the pieces: next-stage = the authors' t = stage of "
                        "the next block / (--lambda-K - 2); piece = InfoPro's t = k / (K - 2) (default: next-stage)")
    g.add_argument("--lambda-K", type=positive_int, default=None, metavar="K",
                   help="man, man++: the K of the next-stage schedule, the authors' local_module_num (default: K for "
                        "man, K - 1 for man++, whose stem is a piece of its own)")
    g.add_argument("--hpff-weights", type=nonnegative_float, nargs=2, default=None, metavar=("OWN", "CASCADE"),
                   help="hpff: weights of the own path and of the cascade path (default: 0.001 0.999)")


DEFAULT_K = 4  # pieces when --K is not given (e2e: 1)

# flag (argparse dest) -> the method option it sets
METHOD_OPTION_FLAGS = {"aux_depth": "depth", "aux_pyramid": "pyramid", "aux_strides": "strides",
                      "ema_momentum": "momentum", "task_loss": "task_loss", "supcon_mean": "supcon_mean",
                      "lambda_schedule": "lambda_schedule", "lambda_K": "lambda_K"}


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options the command line sets (flags left out keep the method's defaults)."""
    flags = {flag: getattr(args, flag, None) for flag in [*METHOD_OPTION_FLAGS, "hpff_weights"]}
    options = {METHOD_OPTION_FLAGS[f]: v for f, v in flags.items() if f in METHOD_OPTION_FLAGS and v is not None}
    if flags["hpff_weights"] is not None:
        options["own_weight"], options["cascade_weight"] = flags["hpff_weights"]
    takes = METHODS.get(args.method).option_defaults if args.method in METHODS else options
    for flag, value in flags.items():
        wanted = ["own_weight"] if flag == "hpff_weights" else [METHOD_OPTION_FLAGS[flag]]
        if value is not None and not all(w in takes for w in wanted):
            users = [m for m in METHODS if all(w in METHODS.get(m).option_defaults for w in wanted)]
            raise InfoProError(f"--{flag.replace('_', '-')} does not apply to method {args.method!r}; "
                               f"it sets an option of {', '.join(users)}")
    return options


def check_learner_arguments(args: argparse.Namespace) -> None:
    """Refuse learner settings no network can use (nan and inf included), before anything is built; --arch and
    --method where not given are the task's (--task, classification where the command has none)."""
    task = TASKS.get(getattr(args, "task", None) or "classify")
    args.arch = args.arch if args.arch is not None else task.default_arch
    args.method = args.method if args.method is not None else task.default_method
    ARCHITECTURES.get(args.arch)  # a misspelt name is one line (with the closest name) before any data is read
    METHODS.get(args.method)
    if args.K is None:
        args.K = 1 if args.method in METHODS and METHODS.get(args.method).end_to_end else DEFAULT_K
    lambdas = list(args.lambdas or [])
    if len(lambdas) not in (0, 2, 4):
        raise InfoProError(f"--lambdas takes 2 numbers (lambda1 lambda2 of every local piece) or 4 (the first "
                           f"piece's, then piece K-1's), got {len(lambdas)}: {shown(lambdas)}")
    if not all(math.isfinite(v) and v >= 0 for v in lambdas):
        raise InfoProError(f"--lambdas must be finite and >= 0, got {shown(lambdas)}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise InfoProError(f"--temperature must be a finite number > 0, got {shown(args.temperature)}")
    for flag in (*METHOD_OPTION_FLAGS, "hpff_weights"):
        values = getattr(args, flag, None)
        values = [] if values is None else values if isinstance(values, (list, tuple)) else [values]
        if not all(math.isfinite(v) for v in values if not isinstance(v, str)):
            raise InfoProError(f"--{flag.replace('_', '-')} must be finite, got {shown(values)}")
    check_recompute_arguments(args)
    for flag, value, least in (("--aux-widen", args.aux_widen, 1), ("--aux-feature-dim", args.aux_feature_dim, 1),
                               ("--aux-decoder-chunk", args.aux_decoder_chunk, 0)):
        if value < least:
            raise InfoProError(f"{flag} must be >= {least}, got {value}")


def check_recompute_arguments(args: argparse.Namespace) -> None:
    """--recompute as None (off), N >= 1 or 'auto'; --recompute-aux only with it."""
    try:
        args.recompute = parse_recompute(getattr(args, "recompute", None))
    except InfoProError:
        raise InfoProError(f"--recompute takes a number of segments (>= 1), auto or off, got {shown(args.recompute)}") from None
    if getattr(args, "recompute_aux", False) and args.recompute is None:
        raise InfoProError("--recompute-aux needs --recompute (a number of segments, or auto)")


def add_describe_arguments(parser: argparse.ArgumentParser) -> None:
    add_learner_arguments(parser)
    parser.add_argument("--num-classes", type=positive_int, default=10)
    parser.add_argument("--input-shape", type=positive_int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="input image shape (default: the architecture's own, 3x32x32 or 3x224x224)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="batch at which each piece's activation memory is profiled (default: %(default)s)")
    parser.add_argument("--task", choices=TASKS.names(), default=None,
                        help="what the network is trained for, which decides the last piece's loss and the methods "
                             "that fit (default: from the network's output: segment for a map of class logits)")


def output_task(arch: str, num_classes: int, input_shape: Sequence[int]) -> str:
    """The task the network `arch` gives outputs for (a map of class logits: segment), from one pass on the meta
    device (no memory, no compute)."""
    with torch.device("meta"), torch.no_grad():
        backbone = build_backbone(arch, num_classes, input_shape[0]).eval()
        output_shape = backbone(torch.zeros(1, *input_shape)).shape[1:]
    return task_for_output(output_shape, num_classes)


def describe_main(args: argparse.Namespace) -> int:
    if args.task is None and args.arch is not None:  # the network says its task, which then picks the method
        ARCHITECTURES.get(args.arch)
        args.task = output_task(args.arch, args.num_classes, args.input_shape or native_input_shape(args.arch))
    check_learner_arguments(args)
    if args.batch_size < 1:
        raise InfoProError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_classes < 1:
        raise InfoProError(f"--num-classes must be >= 1, got {args.num_classes}")
    args.input_shape = list(args.input_shape or native_input_shape(args.arch))
    if min(args.input_shape) < 1:
        raise InfoProError(f"--input-shape must be positive (channels, height, width), got {shown(args.input_shape)}")
    task = build_task(args.task or output_task(args.arch, args.num_classes, args.input_shape))
    backbone = build_backbone(args.arch, args.num_classes, args.input_shape[0])
    learner = LocalLearner(
        backbone, args.K, args.method, cuts=args.cuts, input_shape=args.input_shape,
        num_classes=args.num_classes, lambdas=args.lambdas, head=args.aux_head,
        widen=args.aux_widen, feature_dim=args.aux_feature_dim, temperature=args.temperature,
        # Nothing is trained here, so any per-channel normalisation will do.
        mean=[0.5] * args.input_shape[0], std=[0.5] * args.input_shape[0], profile_batch_size=args.batch_size,
        decoder_chunk_channels=args.aux_decoder_chunk, method_options=method_options(args), task=task,
        recompute=args.recompute, recompute_aux=args.recompute_aux,
    )
    memory = learner.piece_memory(args.batch_size)
    print(f"{args.arch} · {args.method} · K={args.K} · cuts {learner.cuts} ({cuts_label(args.cuts, args.arch, args.K)})")
    header = (f"{'piece':>5}  {'blocks':>9}  {'output':>10}  {'params':>9}  {'aux params':>10}  {'lambda1':>7}  "
              f"{'lambda2':>7}  {'saved MiB (aux)':>15}")
    print(header)
    print("-" * len(header))
    pieces = learner.describe()
    for info in pieces:
        blocks = f"{info.blocks.start}-{info.blocks.stop - 1}"
        shape = "x".join(map(str, info.output_shape))
        block_bytes, aux_bytes = memory[info.index]
        saved = f"{(block_bytes + aux_bytes) / 2**20:.1f} ({aux_bytes / 2**20:.1f})"
        print(f"{info.index + 1:>5}  {blocks:>9}  {shape:>10}  {info.piece_params:>9,}  {info.aux_params:>10,}  "
              f"{info.recon_weight:>7g}  {info.task_weight:>7g}  {saved:>15}")
    total = sum(i.piece_params for i in pieces)
    aux = sum(i.aux_params for i in pieces)
    print(f"backbone {total / 1e6:.3f} M parameters; auxiliary nets {aux / 1e6:.3f} M (dropped by export)")
    print(f"saved MiB: activations kept for backward during the piece's local step at batch {args.batch_size} "
          f"(in brackets: by its auxiliary nets); the step's peak is the largest")
    if learner.recompute is not None:
        print(f"recompute {learner.recompute}{' + aux' if learner.recompute_aux else ''}: checkpointed segments "
              f"per piece {[piece.segments for piece in learner.pieces]}; saved MiB is the recomputed peak")
    method = learner.method
    if learner.method_options:
        print("method options: " + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in learner.method_options.items()))
    if method.memory_note:
        print(f"note: {method.memory_note}")
    if method.crossings:
        print(f"what crosses a cut ({method.name}):")
        for line in method.crossings:
            print(f"  - {line}")
    else:
        print(f"what crosses a cut ({method.name}): nothing; each piece's loss reaches only its own piece and aux nets")
    return 0

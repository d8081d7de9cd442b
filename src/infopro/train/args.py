"""`infopro train` arguments: every hyper-parameter in one parser, YAML files as its defaults."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..data import DATASETS, detect_target
from ..data.archive import BOMB_RATIO, BOMB_SHARE, MAX_IMAGE_MB
from ..describe import add_learner_arguments, check_learner_arguments
from ..errors import InfoProError, shown
from ..flag_types import (BadNumber, Number, integer, mask_value, nonnegative_float, nonnegative_int, open_fraction,
                          positive_float, positive_int, probability, seed, unit_interval)
from ..registry import closest_name
from .run_dir import read_run_settings, read_yaml_mapping, run_to_continue
from .run_log import TRACKERS, tensorboard_writer, tracker_module
from .schedule import SCHEDULES, STEPPED_PER, WARMUP_TARGETS
from ..tasks import TASKS, task_for_data

# Arguments that say how to run, not what the run is: kept out of config.yaml.
RUNTIME_KEYS = {"config", "resume", "test_only", "quiet", "tensorboard", "mlflow", "wandb", "main", "command",
                "command_line", "lr_from_batch"}
# How the work is spread over processes: also kept out of config.yaml, so a run trained on several
# processes resumes or is evaluated in one and the other way round. Micro-batches change BatchNorm's
# batch statistics (and a contrastive loss's pairs), not what the run is.
RUNTIME_KEYS |= {"parallel", "micro_batches", "sync_pieces", "dist_timeout", "sync_batchnorm"}
# Decoding processes change the speed, never the batches.
RUNTIME_KEYS |= {"workers"}


# Other tools' names of our settings (timm's train.py, common habit), so that "did you mean" finds them where
# spelling alone would not: a config key or a flag (`cli.flag_aliases`) of that name suggests ours.
KEY_ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "model": "arch", "opt": "optimizer",
               "sched": "schedule", "warmup_lr": "warmup_start", "num_epochs": "epochs"}

SMOOTHING = Number(float, 0.0, 1.0, high_open=True, name="smoothing")  # 1 would leave no target at all
EMA_DECAY = Number(float, 0.0, 1.0, low_open=True, high_open=True, what="a decay", name="ema_decay")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, metavar="YAML",
                        help="YAML file of defaults (keys are the flag names, e.g. batch_size); flags override it")
    d = parser.add_argument_group("data")
    d.add_argument("--dataset", default=None,
                   help=f"{', '.join(DATASETS.names())}; folder: any image folder; segfolder: image + mask pairs "
                        f"(default: segfolder where --data-dir holds image + mask pairs or --task is segment, else "
                        f"cifar10)")
    d.add_argument("--data-dir", default=None,
                   help="the data set as it lies on disk: cifar-10-batches-py / cifar-100-python, an image folder "
                        "with train/<class>/ and val/<class>/ and/or test/<class>/ (or <class>/ folders only, with "
                        "--val-split), SVHN's .mat, stl10_binary/, "
                        "MNIST's idx files; default: the bundled CIFAR-10 subset")
    d.add_argument("--image-size", type=positive_int, default=None, metavar="S",
                   help="train on S x S images (default: the images' own size; needed when sizes differ)")
    d.add_argument("--channels", type=integer, choices=[1, 3], default=None,
                   help="1 or 3 (default: what most training images have; grayscale sets train as 1)")
    d.add_argument("--val-split", type=open_fraction, default=None, metavar="F",
                   help="hold out a stratified fraction F of the training split for validation (picks the best "
                        "epoch); a folder with both val/ and test/ uses val/; a folder of class folders only "
                        "(no test/ or val/) needs it, and its hold-out is then the test set")
    d.add_argument("--data-path", choices=["auto", "memory", "stream"], default="auto",
                   help="memory: decode the set once and keep it on the device; stream: decode per sample in "
                        "--workers processes with ImageNet's augmentation; auto: memory when it fits "
                        "(default: %(default)s)")
    d.add_argument("--workers", type=nonnegative_int, default=None, metavar="N",
                   help="--data-path stream: decoding processes (default: the cores available)")
    d.add_argument("--mean", type=unit_interval, nargs="+", default=None, metavar="M",
                   help="per-channel normalisation mean in [0, 1] (default: the data set's; measured on the "
                        "training split unless it is CIFAR)")
    d.add_argument("--std", type=positive_float, nargs="+", default=None, metavar="S",
                   help="per-channel normalisation std (default: as --mean)")
    d.add_argument("--max-image-mb", type=positive_float, default=MAX_IMAGE_MB, metavar="MB",
                   help="images in a .zip: the most one member may inflate to; a larger one, or one compressed "
                        f"over {BOMB_RATIO}:1 past 1/{BOMB_SHARE} of this, is refused as a zip bomb "
                        "(default: %(default)g)")
    d.add_argument("--skip-unreadable", action="store_true",
                   help="images in a .zip: leave out the members that cannot be read (encrypted, a compression "
                        "method Python cannot inflate, over --max-image-mb) instead of refusing the set; their "
                        "count is printed")
    d.add_argument("--cache-dir", default=None, help="where decoded arrays are cached (default: $INFOPRO_CACHE or .cache/infopro)")
    d.add_argument("--train-subset", type=positive_int, default=None, metavar="N", help="train on a stratified subset of N images (of what --val-split leaves: the validation set is held out of the whole training split first)")
    d.add_argument("--test-subset", type=positive_int, default=None, metavar="N", help="test on a stratified subset of N images")

    t = parser.add_argument_group("task (see docs/segmentation.md)")
    t.add_argument("--task", choices=TASKS.names(), default=None,
                   help="classify (a class per image) or segment (a class per pixel: image + mask pairs); default: "
                        "what the data holds (a folder of image + mask pairs is segment, anything else classify)")
    t.add_argument("--ignore-index", type=mask_value, default=255, metavar="I",
                   help="segment: the mask value that marks unlabelled pixels, left out of the loss and the metrics "
                        "(default: %(default)s)")
    t.add_argument("--crop-size", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="segment: the training crop (after the random rescale), the size the network is built for; "
                        "evaluation runs on whole images, window by window where they are larger (default: the "
                        "smallest training image)")
    t.add_argument("--seg-aux-weight", type=nonnegative_float, default=0.4, metavar="W",
                   help="segment: weight of the FCN auxiliary head on the last piece's stage-3 output, as "
                        "MMSegmentation's DeepLabV3 (0: off) (default: %(default)s)")
    t.add_argument("--seg-eval", choices=["whole", "slide"], default="whole",
                   help="segment: evaluate the network on whole images (the authors' DeepLabV3 configs), or slide: "
                        "window by window (crop-sized, 2/3 overlap) where an image is larger than --crop-size "
                        "(default: %(default)s)")
    t.add_argument("--pretrained", default=None, metavar="FILE",
                   help="initial backbone weights from a state dict file you have (torchvision, timm or MMSegmentation "
                        "ResNet names; mapped by name and shape, what matched is printed); nothing downloads")

    add_learner_arguments(parser)

    o = parser.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, default=160, help="(default: %(default)s, the paper's)")
    o.add_argument("--batch-size", type=positive_int, default=128,
                   help="(default: %(default)s; a new run on a smaller training set uses the set's size, and the "
                        "default --lr follows it)")
    o.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                   help="sgd (the paper's: Nesterov momentum, --momentum, --nesterov) or adamw (DeiT's: betas 0.9, "
                        "0.999, eps 1e-8, decoupled --weight-decay) (default: %(default)s)")
    o.add_argument("--lr", type=positive_float, default=None,
                   help="initial learning rate; default for sgd 0.1 per 128 images (the paper: batch 128 lr 0.1, "
                        "batch 1024 lr 0.8), for adamw 5e-4 per 512 images (DeiT)")
    o.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="cosine to --min-lr; step: x0.1 at 50%% and 75%% of the epochs; poly: (1 - t/T)^--poly-power "
                        "to --min-lr (MMSegmentation's); set once per epoch unless --schedule-per iteration "
                        "(default: %(default)s)")
    o.add_argument("--schedule-per", choices=STEPPED_PER, default="epoch",
                   help="set the learning rate once per epoch (the authors' classification code) or before every "
                        "step (MMSegmentation's, the segmentation configs) (default: %(default)s)")
    o.add_argument("--poly-power", type=positive_float, default=0.9, metavar="P",
                   help="the poly schedule's power (default: %(default)s, MMSegmentation's)")
    o.add_argument("--iters", type=positive_int, default=None, metavar="N",
                   help="a budget of N optimiser steps instead of --epochs (MMSegmentation's: 40000 for Cityscapes); "
                        "the epochs it takes are run, the last one cut short (default: off)")
    o.add_argument("--schedule-first-epoch", type=integer, choices=[0, 1], default=0,
                   help="the epoch number the schedule is evaluated at in the first epoch: 1 as the authors' CIFAR "
                        "train.py (the paper configs), 0 as their imagenet_DDP.py and torch's schedulers, which "
                        "start at --lr (default: %(default)s, so that a short run does not spend its last epoch at lr 0)")
    o.add_argument("--warmup-epochs", type=nonnegative_int, default=0, metavar="N",
                   help="linear warm-up over the first N epochs from --warmup-start, per epoch as in the authors' "
                        "CIFAR train.py (their configs: 10); default %(default)s: the paper configs set it, a bare "
                        "short run does not")
    o.add_argument("--warmup-start", type=positive_float, default=0.01, metavar="LR",
                   help="the learning rate of the first warm-up epoch (default: %(default)s, the authors')")
    o.add_argument("--warmup-to", choices=WARMUP_TARGETS, default="schedule",
                   help="schedule: blend towards the schedule's value of the epoch (InfoPro's train.py); peak: "
                        "towards --lr (timm's warm-up, as DeiT) (default: %(default)s)")
    o.add_argument("--min-lr", type=nonnegative_float, default=0.0, metavar="LR",
                   help="the cosine's end value (timm's lr_min; 0 in the InfoPro code) (default: %(default)s)")
    o.add_argument("--momentum", type=nonnegative_float, default=0.9, help="SGD momentum")
    o.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True, help="Nesterov momentum")
    o.add_argument("--weight-decay", type=nonnegative_float, default=1e-4,
                   help="L2 weight decay (default: %(default)s); with adamw decoupled, as DeiT's (0.05)")
    o.add_argument("--decay-norm-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay also on norm weights, biases, position embeddings and class tokens; default: "
                        "on for sgd (the paper's code decays every parameter), off for adamw (DeiT/timm exempt them)")
    o.add_argument("--label-smoothing", type=SMOOTHING, default=0.0, metavar="F",
                   help="label smoothing of the last piece's cross-entropy (the network's own classifier; DeiT: "
                        "0.1); the local pieces' heads keep plain targets, as they are auxiliary (default: %(default)s)")
    o.add_argument("--model-ema", type=EMA_DECAY, default=None, metavar="DECAY",
                   help="also keep an exponential moving average of the network's weights (and BatchNorm "
                        "statistics), updated every step with this decay (e.g. 0.99996, DeiT's), evaluated each "
                        "epoch and saved in the checkpoint as model_ema; single process only (default: off)")

    a = parser.add_argument_group("extra augmentation (training batches, on the device; default: all off)")
    a.add_argument("--randaugment", type=nonnegative_float, nargs=2, default=None, metavar=("N", "M"),
                   help="RandAugment: N ops per image from the 15 of timm's 'rand-...-inc1' set, magnitude M of 10, "
                        "each applied with probability 0.5 (DeiT: 2 9), on uint8 images after crop and flip")
    a.add_argument("--randaugment-std", type=nonnegative_float, default=0.5, metavar="S",
                   help="--randaugment: std of the per-op magnitude noise, clipped to [0, 10] (DeiT's mstd0.5) "
                        "(default: %(default)s)")
    a.add_argument("--random-erasing", type=probability, default=0.0, metavar="P",
                   help="erase one random rectangle (2-33%% of the area, aspect 0.3-3.3) per image with probability "
                        "P, filled with per-pixel normal noise of the normalised image (DeiT: 0.25, pixel mode)")
    a.add_argument("--mixup", type=nonnegative_float, default=0.0, metavar="A",
                   help="mixup alpha: blend each batch with itself reversed, lam ~ Beta(A, A), targets mixed alike "
                        "(soft targets; DeiT: 0.8); not with a supervised contrastive loss (needs hard labels)")
    a.add_argument("--cutmix", type=nonnegative_float, default=0.0, metavar="A",
                   help="cutmix alpha: paste a box of the reversed batch, lam ~ Beta(A, A) corrected to the box's "
                        "area (DeiT: 1.0)")
    a.add_argument("--mix-prob", type=probability, default=1.0, metavar="P",
                   help="probability that a batch is mixed at all (default: %(default)s, DeiT's)")
    a.add_argument("--mix-switch-prob", type=probability, default=0.5, metavar="P",
                   help="with both --mixup and --cutmix: probability of cutmix for a mixed batch (default: "
                        "%(default)s, DeiT's)")

    r = parser.add_argument_group("run")
    r.add_argument("--seed", type=seed, default=0, help="seed of the weights, the subsets, the split and the batches")
    r.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    r.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast the forward passes to bfloat16")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format; default: on for convolutional networks (faster on CPUs and GPUs, "
                        "see docs/training.md); --no-channels-last turns it off")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile each piece and each objective on its own (gradient isolation and the "
                        "one-piece-at-a-time memory are kept); the first steps are slow while it compiles (the time is "
                        "recorded apart, as compile_seconds) and the compiled code is cached in RUN/compile_cache, "
                        "so --resume does not compile from scratch")
    r.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA on Ampere or newer: float32 matmuls and convolutions in TF32 (default: on)")
    r.add_argument("--out", default=None, help="run directory (default: runs/<arch>-<method>-K<K>-<time>)")
    r.add_argument("--resume", nargs="?", const="auto", default=None, metavar="RUN",
                   help="continue a run (its directory, or a checkpoint file; default: OUT) with its own settings")
    r.add_argument("--test-only", nargs="?", const="auto", default=None, metavar="RUN",
                   help="evaluate a run (its directory or checkpoint; default: --resume's or OUT) on its own data and exit")
    r.add_argument("--quiet", action="store_true",
                   help="no progress bars, no per-epoch lines, no final line; the two lines that say what will run "
                        "(the recipe, the data) and the notes (resuming, a batch cut to the set) still print")
    r.add_argument("--tensorboard", choices=["auto", "on", "off"], default="auto",
                   help="TensorBoard event files in RUN/tensorboard: auto = when the tensorboard package is "
                        "installed (default: %(default)s)")
    r.add_argument("--mlflow", choices=["auto", "on", "off"], default="off",
                   help="also log the run to MLflow (settings as params, each epoch's numbers, the run's files at "
                        "the end; where: MLflow's own MLFLOW_TRACKING_URI, experiment MLFLOW_EXPERIMENT_NAME or "
                        "'infopro'): on, or auto = when the mlflow package is installed (optional extra "
                        "infopro[mlflow]; default: %(default)s)")
    r.add_argument("--wandb", choices=["auto", "on", "off"], default="off",
                   help="also log the run to Weights & Biases (the same, project WANDB_PROJECT or 'infopro', files "
                        "under RUN/wandb; WANDB_MODE=offline keeps it local): on, or auto = when the wandb package "
                        "is installed (optional extra infopro[wandb]; default: %(default)s)")

    p = parser.add_argument_group("several processes (launch with torchrun; see docs/parallel.md)")
    # MODE, not argparse's {a,b,...}: one choice holds a comma, so the braces would show "pieces,data" as two
    p.add_argument("--parallel", choices=["none", "pieces", "data", "pieces,data"], default="none", metavar="MODE",
                   help="none, pieces, data or pieces,data. pieces: rank k trains piece k (torchrun "
                        "--nproc-per-node K); data: every rank a full copy on a slice of each batch, one DistributedDataParallel per piece; pieces,data: a K x D mesh, "
                        "process (k, d) trains piece k on slice d (torchrun --nproc-per-node K*D) (default: %(default)s)")
    p.add_argument("--micro-batches", type=positive_int, default=1, metavar="M",
                   help="--parallel pieces: split each batch into M micro-batches so all ranks work at once; "
                        "the optimiser still steps once per batch (default: %(default)s)")
    p.add_argument("--sync-pieces", action="store_true",
                   help="--parallel pieces: every rank finishes a step before any starts the next (no overlap)")
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="--parallel data or pieces,data on CUDA: BatchNorm statistics of the whole batch "
                        "(SyncBatchNorm over the data dimension) instead of each slice's own")
    p.add_argument("--dist-timeout", type=positive_float, default=60.0, metavar="SECONDS",
                   help="longest wait for a message from another rank before giving up (default: %(default)s)")


def apply_config_file(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    """Set the parser's defaults: flags given on the command line win over `-c FILE`, which wins over the
    run's own settings when a run is continued or evaluated (`--resume RUN`, `--test-only RUN`)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config", default=None)
    pre.add_argument("--out", default=None)
    pre.add_argument("--resume", nargs="?", const="auto", default=None)
    pre.add_argument("--test-only", nargs="?", const="auto", default=None)
    known, _ = pre.parse_known_args(argv)
    defaults: dict[str, Any] = {}
    run = run_to_continue(known.config, known.out, known.resume, known.test_only)
    if run is not None:
        found = read_run_settings(*run, expected={a.dest for a in parser._actions} - RUNTIME_KEYS - {"help"})
        if found is not None:
            defaults.update(coerce_config(*found, parser))
    if known.config:
        defaults.update(read_config(known.config, parser))
    if run is not None:
        defaults["out"] = os.path.abspath(run[0])  # the run continues in its own directory unless --out says otherwise
    parser.set_defaults(**defaults)


def read_config(path: str | Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A `-c` file's values, type-checked like flags. A run's own config.yaml names its run: its `out`
    is the directory it was read from (so that a copied run directory is itself, not the original)."""
    path = Path(path)
    values = coerce_config(read_yaml_mapping(path, "config file"), path, parser)
    if path.name == "config.yaml" and "out" in values:
        values["out"] = os.path.abspath(path.parent)
    return values


SHOWN_KEYS = 5  # unknown keys named in one message


def coerce_config(values: dict[str, Any], path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Settings read from a file, with the type, range and choices each flag would enforce."""
    known = {a.dest for a in parser._actions} - RUNTIME_KEYS - {"help"}
    named: dict[str, Any] = {}
    for given in values:
        key = str(given).replace("-", "_")
        if key in named:  # batch-size and batch_size: the file would mean one and silently get the other
            raise InfoProError(f"config file {path}: keys {shown(named[key], 40)} and {shown(given, 40)} name the "
                               f"same setting; keep one")
        named[key] = given
    unknown = sorted(set(named) - known)
    if unknown:
        listed = [key if key.isidentifier() and len(key) <= 40 else shown(key, 40) for key in unknown[:SHOWN_KEYS]]
        listed = [name + (f" (did you mean {close}?)" if (close := closest_name(key, known, KEY_ALIASES)) else "")
                  for name, key in zip(listed, unknown)]
        more = f" and {len(unknown) - SHOWN_KEYS} more" if len(unknown) > SHOWN_KEYS else ""
        raise InfoProError(f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(listed)}"
                           f"{more}; a key is a flag of `infopro train --help` without its -- and with _ for -")
    actions = {a.dest: a for a in parser._actions}
    return {key: _coerce(actions[key], values[given], path) for key, given in named.items()}


def _parse_like_flag(kind: Any, value: Any) -> Any:
    """`value` as the command line would give it to `kind`: 1.7 for an int flag is refused, as "1.7" is; a
    checked number type's refusal (`BadNumber`) is passed on, as it says the range."""
    if isinstance(value, (bool, list, tuple, dict, set)):
        raise ValueError
    try:
        return kind(str(value))
    except BadNumber:
        raise
    except (TypeError, ValueError, OverflowError):
        raise ValueError from None


def _coerce(action: argparse.Action, value: Any, path: Path) -> Any:
    """Give a YAML value the type, range and choices its flag would enforce."""
    where = f"config file {path}"
    if value is None:  # `key:` with nothing after it, or null: "not given" only where the flag's default is
        if action.default is None:
            return None
        raise InfoProError(f"{where}: {action.dest} has no value (null); give one, or leave the key out for the "
                           f"default ({shown(action.default)})")
    # A true/false flag, also one whose default is None ("decide for me", e.g. --channels-last)
    switch = isinstance(action.default, bool) or isinstance(action, argparse.BooleanOptionalAction)
    if switch and not isinstance(value, bool):
        raise InfoProError(f"{where}: {action.dest} must be true or false, got {shown(value)}")
    if action.dest == "cuts" and isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = ",".join(map(str, value))  # a YAML list of block indices is the flag's comma list
    kind = action.type or (str if not switch else None)
    expected = getattr(kind, "expected", None) or {int: "an integer", float: "a number"}.get(kind, "a string")
    given = value
    try:
        if action.nargs is not None and action.nargs not in ("?",) and action.type is not None:
            count = "one or more" if action.nargs == "+" else str(action.nargs)
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list of {count} values, each {expected}")
            if (action.nargs == "+" and not value) or (isinstance(action.nargs, int) and len(value) != action.nargs):
                raise ValueError(f"expected a list of {count} values, got {len(value)}")
            items = []
            for item in value:
                given = item
                items.append(_parse_like_flag(kind, item))
            value = items
        elif kind is not None:
            value = _parse_like_flag(kind, value)
    except BadNumber as error:
        raise InfoProError(f"{where}: bad value {shown(given)} for {action.dest}: expected {error.expected}") from None
    except (TypeError, ValueError) as error:
        raise InfoProError(f"{where}: bad value {shown(given)} for {action.dest}: "
                           f"{str(error) or 'expected ' + expected}") from None
    if action.choices is not None and value not in action.choices:
        raise InfoProError(f"{where}: {action.dest} must be one of {list(action.choices)}, got {shown(value)}")
    return value


def resolved_config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings that define the run (what config.yaml holds)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in RUNTIME_KEYS}


def default_lr(optimizer: str, batch_size: int) -> float:
    """--lr's default: sgd 0.1 per 128 images (the paper), adamw 5e-4 per 512 (DeiT)."""
    return 0.1 * batch_size / 128 if optimizer == "sgd" else 5e-4 * batch_size / 512


def fit_batch_to_set(args: argparse.Namespace, train_images: int) -> str | None:
    """A --batch-size larger than the training set becomes the set's size (one step per epoch), and a --lr
    derived from the batch follows it; returns the line that says so, or None when the batch fits."""
    if args.batch_size <= train_images:
        return None
    asked, args.batch_size = args.batch_size, train_images
    lr = ""
    if getattr(args, "lr_from_batch", False):
        args.lr = default_lr(args.optimizer, args.batch_size)
        lr = f" and lr {args.lr:g} ({args.optimizer}'s default for that batch)"
    return (f"note: --batch-size {asked} is larger than the training set ({train_images} images): training with "
            f"batch {train_images}{lr}, one step per epoch; pass --batch-size N to choose another")


def choose_task_and_dataset(args: argparse.Namespace) -> None:
    """--task and --dataset where not given, from each other and from what --data-dir holds (a folder of image +
    mask pairs is segmentation); refuse a pair that does not fit."""
    found = detect_target(args.data_dir) if args.dataset is None and args.data_dir is not None else None
    if args.dataset is not None:
        target = DATASETS.get(args.dataset).target
    elif args.task is not None:
        target = TASKS.get(args.task).target
        if found is not None and found != target:  # said here: the data layer would only name the default set
            raise InfoProError(f"--task {args.task} needs targets of kind {target!r}, but --data-dir {args.data_dir} "
                               f"holds targets of kind {found!r}; pass --task {task_for_data(found)}, or drop --task")
    else:
        target = found or "class"
    if args.dataset is None:
        args.dataset = "segfolder" if target == "mask" else "cifar10"
    if args.task is None:
        args.task = task_for_data(target)
    elif TASKS.get(args.task).target != target:
        wanted = TASKS.get(args.task).target
        fitting = [name for name in DATASETS if DATASETS.get(name).target == wanted]
        raise InfoProError(f"--task {args.task} needs targets of kind {wanted!r}, but --dataset {args.dataset} has "
                           f"targets of kind {target!r}; pass --dataset {' or '.join(fitting)}, or drop --task")


def check_args(args: argparse.Namespace) -> None:
    """Reject values no run can use, before anything is read or written."""
    args.lr_from_batch = args.lr is None  # not a setting: `fit_batch_to_set` may re-derive it for a smaller batch
    if args.lr is None:
        args.lr = default_lr(args.optimizer, args.batch_size)
    if args.decay_norm_bias is None:  # recorded in config.yaml, so a resumed run keeps its groups
        args.decay_norm_bias = args.optimizer == "sgd"
    numbers = (("--lr", args.lr), ("--momentum", args.momentum), ("--weight-decay", args.weight_decay),
               ("--dist-timeout", args.dist_timeout), ("--warmup-start", args.warmup_start),
               ("--min-lr", args.min_lr), ("--label-smoothing", args.label_smoothing),
               ("--mixup", args.mixup), ("--cutmix", args.cutmix), ("--mix-prob", args.mix_prob),
               ("--mix-switch-prob", args.mix_switch_prob), ("--random-erasing", args.random_erasing),
               ("--randaugment-std", args.randaugment_std), ("--seg-aux-weight", args.seg_aux_weight),
               ("--poly-power", args.poly_power), ("--max-image-mb", args.max_image_mb))
    numbers += tuple(("--randaugment", v) for v in args.randaugment or ()) + (("--model-ema", args.model_ema or 0.0),)
    for flag, value in numbers:
        if not math.isfinite(value):
            raise InfoProError(f"{flag} must be a finite number, got {value}")
    choose_task_and_dataset(args)
    check_learner_arguments(args)
    tensorboard_writer(args.tensorboard)  # --tensorboard on without the package: said before anything runs
    for name in TRACKERS:
        tracker_module(name, getattr(args, name))  # the same for --mlflow on / --wandb on
    checks = [
        (args.epochs >= 1, f"--epochs must be >= 1, got {args.epochs}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
        (args.momentum >= 0, f"--momentum must be >= 0, got {args.momentum}"),
        (args.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {args.warmup_epochs}"),
        (args.warmup_start > 0, f"--warmup-start must be > 0, got {args.warmup_start}"),
        (0 <= args.min_lr < args.lr, f"--min-lr must be in [0, --lr {args.lr:g}), got {args.min_lr}"),
        (args.weight_decay >= 0, f"--weight-decay must be >= 0, got {args.weight_decay}"),
        (args.train_subset is None or args.train_subset > 0, f"--train-subset must be > 0, got {args.train_subset}"),
        (args.test_subset is None or args.test_subset > 0, f"--test-subset must be > 0, got {args.test_subset}"),
        (args.micro_batches >= 1, f"--micro-batches must be >= 1, got {args.micro_batches}"),
        (args.batch_size >= 2 * args.micro_batches or args.micro_batches == 1,
         (f"--batch-size {args.batch_size} is too small for {args.micro_batches} micro-batches of at least 2 images "
          f"(BatchNorm needs 2); use --micro-batches {max(1, args.batch_size // 2)} or fewer")),
        (args.dist_timeout > 0, f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}"),
        (args.val_split is None or 0 < args.val_split < 1, f"--val-split must be a fraction in (0, 1), got {args.val_split}"),
        (args.image_size is None or args.image_size >= 1, f"--image-size must be >= 1, got {args.image_size}"),
        (args.workers is None or args.workers >= 0, f"--workers must be >= 0, got {args.workers}"),
        (args.max_image_mb > 0, f"--max-image-mb must be > 0, got {args.max_image_mb}"),
        ((args.mean is None) == (args.std is None), "--mean and --std go together: give both or neither"),
        (args.mean is None or args.std is None or len(args.mean) == len(args.std) <= 3,
         f"--mean and --std take one value per channel (1 or 3), the same number each; got "
         f"{len(args.mean or ())} and {len(args.std or ())}"),
        (args.std is None or min(args.std, default=0) > 0, f"--std must be > 0, got {shown(args.std)}"),
        (0 <= args.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {args.label_smoothing}"),
        (args.mixup >= 0 and args.cutmix >= 0, f"--mixup and --cutmix must be >= 0 (0: off), got {args.mixup}, {args.cutmix}"),
        (0 <= args.mix_prob <= 1 and 0 <= args.mix_switch_prob <= 1,
         f"--mix-prob and --mix-switch-prob must be in [0, 1], got {args.mix_prob}, {args.mix_switch_prob}"),
        (0 <= args.random_erasing <= 1, f"--random-erasing must be a probability in [0, 1], got {args.random_erasing}"),
        (args.randaugment is None or (args.randaugment[0] == int(args.randaugment[0]) and args.randaugment[0] >= 0
                                      and 0 <= args.randaugment[1] <= 10),
         f"--randaugment takes N (a whole number of ops >= 0) and M (a magnitude in [0, 10]), got "
         f"{shown(args.randaugment)}"),
        (args.randaugment_std >= 0, f"--randaugment-std must be >= 0, got {args.randaugment_std}"),
        (args.model_ema is None or 0 < args.model_ema < 1, f"--model-ema takes a decay in (0, 1), got {args.model_ema}"),
        (args.model_ema is None or args.parallel == "none",
         f"--model-ema runs in one process only; drop it or run without --parallel {args.parallel}"),
        (args.iters is None or args.iters >= 1, f"--iters must be >= 1, got {args.iters}"),
        (args.poly_power > 0, f"--poly-power must be > 0, got {args.poly_power}"),
        (args.seg_aux_weight >= 0, f"--seg-aux-weight must be >= 0 (0: off), got {args.seg_aux_weight}"),
        (args.crop_size is None or min(args.crop_size, default=0) >= 1, f"--crop-size takes H W >= 1, got {shown(args.crop_size)}"),
        (args.parallel == "none" or (args.iters is None and args.schedule_per == "epoch"),
         f"--iters and --schedule-per iteration run in one process for now; drop them or run without --parallel "
         f"{args.parallel}"),
    ]
    for ok, message in checks:
        if not ok:
            raise InfoProError(message)
    if args.lambdas is not None:
        args.lambdas = [float(v) for v in args.lambdas]
    # Absolute paths in config.yaml: a run resumes, is evaluated or probed from any working directory.
    for key in ("out", "data_dir", "cache_dir", "pretrained"):
        if getattr(args, key) is not None:
            setattr(args, key, os.path.abspath(getattr(args, key)))

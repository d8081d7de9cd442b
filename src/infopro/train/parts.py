"""What the loop builds for any mode: the learner, its optimiser and learning-rate schedule, and evaluation
of the whole network (`infopro.parallel.MeshTrainer` gets the learner and an optimiser factory from it)."""

from __future__ import annotations

import argparse
import time
from typing import Any, Collection, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..data import DeviceLoader
from ..describe import method_options
from ..device import is_convolutional
from ..local import LocalLearner
from ..models import build_backbone
from ..tasks import TASKS, Task, task_of
from .checkpoint import load_checkpoint
from .schedule import Schedule, build_lr_scheduler

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}


def build_learner(args: argparse.Namespace, image_shape: tuple[int, int, int], num_classes: int,
                  mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                  task: Task | None = None) -> LocalLearner:
    """The run's `LocalLearner` (`task`: default the one the flags name, `task_from_args`)."""
    task = task if task is not None else task_from_args(args)
    torch.manual_seed(args.seed)
    backbone = build_backbone(args.arch, num_classes, image_shape[0])
    if getattr(args, "pretrained", None):
        load_pretrained(backbone, args.pretrained, quiet=args.quiet)
    backbone = backbone.to(device)
    if args.channels_last is None:  # the default: on for convolutional networks, where it is faster (README)
        args.channels_last = is_convolutional(backbone)
    if args.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    learner = LocalLearner(
        backbone, args.K, args.method, cuts=args.cuts, input_shape=image_shape, num_classes=num_classes,
        lambdas=args.lambdas, head=args.aux_head, widen=args.aux_widen, feature_dim=args.aux_feature_dim,
        temperature=args.temperature, mean=mean, std=std, profile_batch_size=args.batch_size,
        decoder_chunk_channels=args.aux_decoder_chunk, method_options=method_options(args),
        label_smoothing=args.label_smoothing, task=task,
        recompute=getattr(args, "recompute", None), recompute_aux=getattr(args, "recompute_aux", False),
    )
    learner.amp_dtype = AMP_DTYPES[args.amp]
    return learner


# Parameters kept out of weight decay by name besides every 1-D one (DeiT's ViT.no_weight_decay(), via timm).
NO_DECAY_NAMES = ("pos_embed", "cls_token")


def decay_exempt(named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> set[int]:
    """ids of the parameters DeiT (timm's create_optimizer) trains without weight decay: every 1-D one (norm
    weights, biases), every bias, the position embedding and the class token."""
    return {id(p) for name, p in named_parameters
            if p.ndim <= 1 or name.endswith(".bias") or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES}


def make_optimizer(params: Iterable[torch.nn.Parameter], args: argparse.Namespace,
                   exempt: Collection[int] = ()) -> torch.optim.Optimizer:
    """The run's optimiser (--optimizer: SGD, the paper's, or AdamW, DeiT's), one per process in the parallel
    modes with the same hyper-parameters. With --no-decay-norm-bias, two parameter groups: the others
    (weight decay), then those whose id is in `exempt` (none); else one group, as before."""
    params = list(params)
    decay_all = args.decay_norm_bias if args.decay_norm_bias is not None else args.optimizer == "sgd"
    if decay_all:
        groups: Any = params
    else:  # both groups always, even empty, so every process numbers its state alike
        groups = [{"params": [p for p in params if id(p) not in exempt]},
                  {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]
    if args.optimizer == "adamw":  # betas (0.9, 0.999), eps 1e-8: torch's defaults, DeiT's (timm's)
        return torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum,
                           nesterov=args.nesterov and args.momentum > 0, weight_decay=args.weight_decay)


def build_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace, done_epochs: int = 0,
                   steps_per_epoch: int = 1) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as in the authors' code (`schedule.py` has the formula and its sources), or per
    iteration (--schedule-per iteration, MMSegmentation's), as it stands after `done_epochs`: a resumed run
    (whose --epochs may have changed) follows the formula of `args.epochs` from there; if they changed, the
    epochs already done followed the old plan."""
    return build_lr_scheduler(optimizer, Schedule.from_args(args, steps_per_epoch), done_epochs)


def model_ema(learner: LocalLearner, decay: float) -> AveragedModel:
    """An exponential moving average of the pieces' weights and buffers (BatchNorm statistics too), as timm's
    ModelEma keeps for DeiT; `update_parameters(learner.pieces)` after every optimiser step."""
    return AveragedModel(learner.pieces, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def ema_network(ema: AveragedModel, learner: LocalLearner) -> nn.Module:
    """The averaged pieces in turn, as something `evaluate_metrics` evaluates like the learner."""
    network = nn.Sequential(*ema.module)
    network.amp_dtype, network.task = learner.amp_dtype, learner.task
    return network


def evaluate(learner: LocalLearner, loader: DeviceLoader, args: argparse.Namespace, device: torch.device) -> float:
    """The whole network's accuracy (all pieces, eval mode): top-1, or per pixel for segmentation."""
    return evaluate_metrics(learner, loader, args, device)["accuracy"]


@torch.no_grad()
def evaluate_metrics(learner: LocalLearner, loader: DeviceLoader, args: argparse.Namespace,
                     device: torch.device) -> dict[str, Any]:
    """The task's evaluation of the whole network in eval mode (classification: {accuracy, loss (mean
    cross-entropy), top5_accuracy (more than 10 classes only), seconds}; segmentation adds miou, class_iou...):
    `evaluate`'s accuracy, with what the per-epoch metrics add."""
    start = time.perf_counter()
    task = task_of(learner)
    learner.eval()
    sums = None  # made at the first batch, which says the class count
    for x, y in loader:
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=learner.amp_dtype, enabled=learner.amp_dtype is not None):
            logits = task.eval_logits(learner, x, y)
        if sums is None:
            sums = task.eval_sums(logits.shape[1], device)
        sums.add(logits, y)
    return task.eval_result([sums.totals()], time.perf_counter() - start)


def task_from_args(args: argparse.Namespace) -> Task:
    """The task the flags name (--task; classification where a caller's namespace has none)."""
    return TASKS.get(getattr(args, "task", None) or "classify").from_args(args)


def load_pretrained(backbone: nn.Module, path: str, quiet: bool = False) -> None:
    """--pretrained: initial weights for the backbone from a state dict file the user has (torchvision, timm or
    MMSegmentation names), mapped by name and shape; prints what matched."""
    from ..models.pretrained import load_backbone_weights

    state = load_checkpoint(path, required=set())  # weights_only=True; a clear line for a bad file
    # mmcv and many training scripts wrap the weights: {"state_dict": ...} or {"model": ...}
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    report = load_backbone_weights(backbone, state)
    if not quiet:
        print(f"--pretrained {path}: {report.summary()}")

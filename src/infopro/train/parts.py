"""What the loop builds for any mode: the learner, its optimiser and learning-rate schedule, and evaluation
of the whole network (`infopro.parallel.MeshTrainer` gets the learner and an optimiser factory from it)."""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import torch

from ..data import DeviceLoader
from ..describe import method_options
from ..device import is_convolutional
from ..epoch_metrics import EvalSums, evaluation_result
from ..local import LocalLearner
from ..models import build_backbone
from .schedule import Schedule, build_lr_scheduler

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}


def build_learner(args: argparse.Namespace, image_shape: tuple[int, int, int], num_classes: int,
                  mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> LocalLearner:
    torch.manual_seed(args.seed)
    backbone = build_backbone(args.arch, num_classes, image_shape[0]).to(device)
    if args.channels_last is None:  # the default: on for convolutional networks, where it is faster (README)
        args.channels_last = is_convolutional(backbone)
    if args.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    learner = LocalLearner(
        backbone, args.K, args.method, cuts=args.cuts, input_shape=image_shape, num_classes=num_classes,
        lambdas=args.lambdas, head=args.aux_head, widen=args.aux_widen, feature_dim=args.aux_feature_dim,
        temperature=args.temperature, mean=mean, std=std, profile_batch_size=args.batch_size,
        decoder_chunk_channels=args.aux_decoder_chunk, method_options=method_options(args),
    )
    learner.amp_dtype = AMP_DTYPES[args.amp]
    return learner


def make_optimizer(params: Any, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with the run's settings (one per process in the parallel modes, same hyper-parameters)."""
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                           nesterov=args.nesterov and args.momentum > 0, weight_decay=args.weight_decay)


def build_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as in the authors' code (`schedule.py` has the formula and its sources)."""
    return build_lr_scheduler(optimizer, Schedule.from_args(args))


def replan_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace,
                    done_epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule planned for `args.epochs` epochs, as it stands after `done_epochs`: what a resumed run
    whose --epochs changed follows from here on. Its learning rate from now on is the one a run planned
    that long from the start would have; the epochs already done followed the old plan, so the run as a
    whole is not bitwise that run."""
    schedule = build_schedule(optimizer, args)
    with warnings.catch_warnings():  # "scheduler stepped before optimizer.step()": on purpose here
        warnings.simplefilter("ignore")
        for _ in range(done_epochs):
            schedule.step()
    return schedule


def evaluate(learner: LocalLearner, loader: DeviceLoader, args: argparse.Namespace, device: torch.device) -> float:
    """Top-1 accuracy of the whole network (all pieces, eval mode)."""
    return evaluate_metrics(learner, loader, args, device)["accuracy"]


@torch.no_grad()
def evaluate_metrics(learner: LocalLearner, loader: DeviceLoader, args: argparse.Namespace,
                     device: torch.device) -> dict[str, float]:
    """{accuracy, loss (mean cross-entropy), top5_accuracy (more than 10 classes only), seconds} of the whole
    network in eval mode: `evaluate`'s accuracy, with what the per-epoch metrics add."""
    start = time.perf_counter()
    learner.eval()
    sums = EvalSums(device)
    for x, y in loader:
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=learner.amp_dtype, enabled=learner.amp_dtype is not None):
            sums.add(learner(x), y)
    return evaluation_result([sums.totals()], time.perf_counter() - start)

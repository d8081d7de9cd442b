"""The learning-rate schedule: one formula per epoch, as the authors set it, stepped by torch's `LambdaLR`.

The authors' CIFAR `train.py` (`adjust_learning_rate(optimizer, epoch + 1)`, `--cos_lr`) sets, at the start
of the 1-based epoch e of E,

    c(e)  = 0.5 * lr0 * (1 + cos(pi * e / E))
    lr(e) = c(e) * (e - 1) / 10 + 0.01 * (11 - e) / 10     for e <= 10   (the warm-up)
    lr(e) = c(e)                                            for e > 10

Their ImageNet `imagenet_DDP.py` sets c(t) from the 0-based epoch t, with no warm-up (what torch's
`CosineAnnealingLR` does). `learning_rate` is that formula with its three choices named:

- `first_epoch`: the epoch number the schedule is evaluated at in the first epoch (1: CIFAR `train.py`,
  0: `imagenet_DDP.py` and torch's schedulers);
- `warmup_epochs` N and `warmup_start` s: for the 0-based epoch t < N, lr = base * t / N + s * (1 - t / N),
  which is the CIFAR formula above for N = 10, s = 0.01 and `first_epoch` 1;
- `warmup_to`: "schedule" blends towards the schedule's own value (the InfoPro authors'), "peak" towards lr0
  (timm's warm-up, which DeiT uses).

`min_lr` is a floor the cosine ends at (timm's `lr_min`; 0 in the InfoPro code). The step schedule divides
by 10 at 50 % and 75 % of the epochs, counted the same way (the authors' `changing_lr` [80, 120] of 160).

The poly schedule is MMSegmentation's (`PolyLrUpdaterHook`, which the authors' segmentation code uses):
lr(t) = (lr0 - min_lr) * (1 - t / T) ** power + min_lr, power 0.9, min_lr 1e-4, t the 0-based iteration of
T. `per_iteration` sets the rate before every optimiser step instead of once per epoch, from the fraction of
the epochs done (`steps_per_epoch`), so a budget given in iterations (--iters) ends at exactly T steps.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch

SCHEDULES = ("cosine", "step", "poly")
STEPPED_PER = ("epoch", "iteration")
WARMUP_TARGETS = ("schedule", "peak")


@dataclass(frozen=True)
class Schedule:
    """Every setting of the learning rate of a run, in one place (`from_args` reads them off the command line)."""

    lr: float
    epochs: float  # fractional where a budget in iterations ends mid-epoch (--iters)
    kind: str = "cosine"
    first_epoch: int = 0
    warmup_epochs: int = 0
    warmup_start: float = 0.01
    warmup_to: str = "schedule"
    min_lr: float = 0.0
    power: float = 0.9  # of the poly schedule
    per_iteration: bool = False
    steps_per_epoch: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace, steps_per_epoch: int = 1) -> "Schedule":
        """The run's schedule; `steps_per_epoch` (the training loader's length) where it is stepped per
        iteration or its budget is in iterations (--iters)."""
        iters = getattr(args, "iters", None)
        epochs = iters / steps_per_epoch if iters else args.epochs
        return cls(lr=args.lr, epochs=epochs, kind=args.schedule, first_epoch=args.schedule_first_epoch,
                   warmup_epochs=args.warmup_epochs, warmup_start=args.warmup_start, warmup_to=args.warmup_to,
                   min_lr=args.min_lr, power=getattr(args, "poly_power", 0.9),
                   per_iteration=getattr(args, "schedule_per", "epoch") == "iteration",
                   steps_per_epoch=steps_per_epoch)

    def base(self, n: float) -> float:
        """The schedule without warm-up at epoch number n (counted from `first_epoch`)."""
        if self.kind == "cosine":
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * n / self.epochs))
        if self.kind == "poly":
            return (self.lr - self.min_lr) * max(0.0, 1 - n / self.epochs) ** self.power + self.min_lr
        milestones = (int(self.epochs * 0.5), int(self.epochs * 0.75))
        return self.lr * 0.1 ** sum(n >= m for m in milestones)

    def learning_rate(self, epoch: float) -> float:
        """The learning rate of the 0-based epoch `epoch` (a fraction of an epoch is allowed)."""
        base = self.base(epoch + self.first_epoch)
        if epoch >= self.warmup_epochs:
            return base
        blend = epoch / self.warmup_epochs
        target = base if self.warmup_to == "schedule" else self.lr
        return target * blend + self.warmup_start * (1 - blend)

    def describe(self) -> str:
        """One line for the start of a run: what the learning rate will do."""
        text = f"lr {self.lr:g} {self.kind}" + (f" {self.power:g}" if self.kind == "poly" else "")
        if self.kind in ("cosine", "poly") and self.min_lr:
            text += f" to {self.min_lr:g}"
        if self.per_iteration:
            text += " per iteration"
        if self.warmup_epochs:
            text += f", {self.warmup_epochs}-epoch warm-up from {self.warmup_start:g}"
        return text + f" (epochs counted from {self.first_epoch})"


def build_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule,
                       done_epochs: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's `LambdaLR` following `schedule`, stepped once per epoch (or per iteration: `per_iteration`), set
    for the epoch after `done_epochs` (the rate is a formula of the epoch: a resumed run, mid-warm-up or not,
    continues the same schedule)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = schedule.lr  # LambdaLR multiplies this; a resumed optimiser may carry a stale one
    per = schedule.steps_per_epoch if schedule.per_iteration else 1
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.learning_rate(step / per) / schedule.lr,
                                             last_epoch=done_epochs * per - 1)

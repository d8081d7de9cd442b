"""`infopro train`: data -> LocalLearner -> SGD, with a run directory, metrics and resumable checkpoints."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from ..data import DeviceLoader, load_dataset, stratified_subset
from ..device import is_convolutional, peak_memory_bytes, pick_device, use_fast_settings
from ..errors import InfoProError
from ..local import LocalLearner
from ..models import build_backbone
from ..parallel import MeshTrainer, ParallelRuntime, PeerLost, start_parallel
from .args import check_args, resolved_config
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint

# Settings that decide the shape of the model: a checkpoint evaluated with --test-only must share them.
STRUCTURE_KEYS = ("arch", "dataset", "method", "K", "cuts", "lambdas", "aux_head", "aux_widen", "aux_feature_dim")
# Settings a resumed run may change; every other one must equal the checkpoint's, so that the
# resumed run ends where the uninterrupted one would.
FREE_ON_RESUME = ("out", "device", "data_dir", "cache_dir", "channels_last", "compile", "tf32")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16}
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt")


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
        decoder_chunk_channels=args.aux_decoder_chunk,
    )
    learner.amp_dtype = AMP_DTYPES[args.amp]
    return learner


def build_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as in the paper's code."""
    if args.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    milestones = [int(args.epochs * 0.5), int(args.epochs * 0.75)]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)




def make_optimizer(params: Any, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with the run's settings (one per process in the parallel modes, same hyper-parameters)."""
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                           nesterov=args.nesterov and args.momentum > 0, weight_decay=args.weight_decay)


@torch.no_grad()
def count_correct(learner: LocalLearner, batches: Any, args: argparse.Namespace,
                  device: torch.device) -> tuple[torch.Tensor, int]:
    """(correct top-1 predictions as a device tensor, images seen) of the whole network in eval mode."""
    learner.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for x, y in batches:
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=learner.amp_dtype, enabled=learner.amp_dtype is not None):
            correct += (learner(x).argmax(1) == y).sum()
        total += len(y)
    return correct, total


def evaluate(learner: LocalLearner, loader: DeviceLoader, args: argparse.Namespace, device: torch.device) -> float:
    """Top-1 accuracy of the whole network (all pieces, eval mode)."""
    correct, total = count_correct(learner, loader, args, device)
    return correct.item() / max(total, 1)


class SingleProcessTrainer:
    """Every piece in this process. `infopro.parallel.MeshTrainer` has the same four methods, so
    `train_main` runs one epoch/metrics/checkpoint path whatever the mode."""

    is_writer = True  # the process that writes the run directory and prints

    def __init__(self, learner: LocalLearner, args: argparse.Namespace, device: torch.device) -> None:
        self.learner, self.device = learner, device
        self.optimizer = make_optimizer(learner.parameters(), args)
        self.where = str(device)

    def drop_last(self, num_samples: int, batch_size: int) -> bool:
        # A last batch of one sample would break BatchNorm in training mode: drop it in that case only.
        return num_samples % batch_size == 1

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def train_epoch(self, loader: DeviceLoader, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        return train_one_epoch(self.learner, self.optimizer, loader, epoch, args, self.device)

    def finish_epoch(self, record: dict[str, Any], test_loader: DeviceLoader,
                     args: argparse.Namespace) -> tuple[dict[str, Any], float, dict[str, Any]] | None:
        """Evaluate; return (record, test accuracy, {model, optimizer} state), or None on a non-writing rank."""
        accuracy = evaluate(self.learner, test_loader, args, self.device)
        record["peak_memory_bytes"], record["memory_kind"] = peak_memory_bytes(self.device)
        return record, accuracy, {"model": self.learner.state_dict(), "optimizer": self.optimizer.state_dict()}


def checkpoint_to_read(args: argparse.Namespace) -> Path | None:
    """The checkpoint that --resume or --test-only reads (None for a fresh run)."""
    if args.resume is None and not args.test_only:
        return None
    if args.resume in (None, "auto"):
        if args.out is None:
            raise InfoProError("--resume or --test-only without a checkpoint path needs --out RUN_DIR")
        path = Path(args.out)
    else:
        path = Path(args.resume)
    return path / "checkpoint.pt" if path.is_dir() else path


def prepare_run_dir(args: argparse.Namespace, checkpoint: Path | None) -> Path:
    """The run directory; an existing run in it may only be continued from its own checkpoint."""
    if args.out is None and checkpoint is not None:
        args.out = str(checkpoint.parent)
    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = str(Path("runs") / f"{args.arch}-{args.method}-K{args.K}-{stamp}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InfoProError(f"--out {out} is a file, not a directory")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    continues_itself = checkpoint is not None and checkpoint.resolve().parent == out.resolve()
    if existing and not continues_itself:
        raise InfoProError(
            f"run directory {out} already holds a run ({', '.join(existing)}); "
            f"pass --resume to continue it from its own checkpoint or choose another --out"
        )
    return out


def check_resumable(state: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    saved = state["args"]
    keys = STRUCTURE_KEYS if args.test_only else [k for k in resolved_config(args) if k not in FREE_ON_RESUME]
    for key in keys:
        if key in saved and saved[key] != getattr(args, key):
            raise InfoProError(
                f"checkpoint {path} was trained with {key}={saved[key]!r}, this run has {key}={getattr(args, key)!r}; "
                f"resume with the same settings (e.g. -c {path.parent / 'config.yaml'})"
            )


def train_main(args: argparse.Namespace) -> int:
    check_args(args)
    runtime = start_parallel(args)  # None unless --parallel (then one process per rank under torchrun)
    try:
        code = _train(args, runtime)
        if runtime is not None and not args.test_only:
            runtime.finish()  # every rank is done before any tears its connections down
        return code
    except InfoProError as error:
        if runtime is not None and runtime.rank != 0 and not isinstance(error, PeerLost):
            raise SystemExit(2) from None  # rank 0 meets the same bad input and says it once
        raise
    finally:
        if runtime is not None:
            runtime.close()


def _train(args: argparse.Namespace, runtime: ParallelRuntime | None) -> int:
    device = runtime.device if runtime is not None else pick_device(args.device)
    use_fast_settings(device, args.tf32)
    data = load_dataset(args.dataset, args.data_dir, args.cache_dir)
    train_images, train_labels = data.train_images, data.train_labels
    test_images, test_labels = data.test_images, data.test_labels
    if args.train_subset:
        keep = stratified_subset(train_labels, args.train_subset, seed=args.seed)
        train_images, train_labels = train_images[keep], train_labels[keep]
    if args.test_subset:
        keep = stratified_subset(test_labels, args.test_subset, seed=args.seed)
        test_images, test_labels = test_images[keep], test_labels[keep]
    if args.batch_size > len(train_labels):
        raise InfoProError(
            f"--batch-size {args.batch_size} is larger than the training set ({len(train_labels)} images); "
            f"use a smaller batch or a larger --train-subset"
        )
    build_on = device if runtime is None else runtime.build_device
    learner = build_learner(args, data.image_shape, data.num_classes, data.mean, data.std, build_on)
    if runtime is None:
        trainer = SingleProcessTrainer(learner, args, device)
    else:
        trainer = MeshTrainer(learner, args, runtime, partial(make_optimizer, args=args))
    if args.compile:
        learner.compile_pieces()  # after the pieces reached their device
    schedule = build_schedule(trainer.optimizer, args)
    test_loader = DeviceLoader(test_images, test_labels, device, 1024, data.mean, data.std, train=False, seed=args.seed)
    writer = trainer.is_writer

    path = checkpoint_to_read(args)
    if args.test_only and not writer:
        return 0  # the writing rank evaluates the whole checkpoint on its own
    out = prepare_run_dir(args, path) if writer and not args.test_only else None
    start_epoch = 0
    if path is not None:
        state = load_checkpoint(path, map_location=device)
        check_resumable(state, args, path)
        try:
            learner.load_state_dict(state["model"])
        except RuntimeError as error:
            raise InfoProError(f"checkpoint {path} does not fit this model: {str(error).splitlines()[0]}") from None
        if args.test_only:
            accuracy = evaluate(learner.to(device), test_loader, args, device)
            print(f"{path}: test accuracy {100 * accuracy:.2f}% (error {100 * (1 - accuracy):.2f}%) "
                  f"on {len(test_labels)} images of {data.name}")
            return 0
        trainer.load_optimizer(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"]
        if start_epoch >= args.epochs:
            raise InfoProError(f"checkpoint {path} has already finished {start_epoch} of {args.epochs} epochs")

    train_loader = DeviceLoader(train_images, train_labels, device, args.batch_size, data.mean, data.std, train=True,
                                seed=args.seed, drop_last=trainer.drop_last(len(train_labels), args.batch_size))
    config = resolved_config(args)
    verbose = writer and not args.quiet
    if writer:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=True))
    if verbose:
        print(f"{data.name} ({len(train_labels)} train / {len(test_labels)} test, {data.source}) · {args.arch} · "
              f"{args.method} K={args.K} cuts {learner.cuts} · {trainer.where} · run dir {out}")

    history = _read_history(out / "metrics.jsonl", start_epoch) if writer else []
    for epoch in range(start_epoch, args.epochs):
        record = trainer.train_epoch(train_loader, epoch, args)
        schedule.step()
        finished = trainer.finish_epoch(record, test_loader, args)  # gathers every rank's share
        if finished is None:
            continue
        record, accuracy, state = finished
        record.update(test_accuracy=accuracy, test_error=1 - accuracy)
        history.append(record)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint({**state, "scheduler": schedule.state_dict(), "epoch": epoch + 1, "args": config},
                        out / "checkpoint.pt")
        if verbose:
            losses = " ".join(f"{v:.3f}" for v in record["train_losses"])
            print(f"epoch {epoch + 1:>3}/{args.epochs}  lr {record['lr']:.4f}  losses [{losses}]  "
                  f"train acc {100 * record['train_accuracy']:5.2f}%  test acc {100 * accuracy:5.2f}%  "
                  f"{record['epoch_seconds']:.1f}s  {record['images_per_second']:.0f} img/s")

    if not writer:
        return 0
    summary = summarize(history, learner, args)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if verbose:
        print(f"done: final test error {100 * summary['final_test_error']:.2f}%, best {100 * summary['best_test_error']:.2f}% "
              f"({summary['total_seconds']:.0f}s) -> {out}")
    return 0


def train_one_epoch(learner: LocalLearner, optimizer: torch.optim.Optimizer, loader: DeviceLoader, epoch: int,
                    args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    learner.train()
    loader.set_epoch(epoch)
    lr = optimizer.param_groups[0]["lr"]
    loss_sums = [0.0] * learner.K
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, dynamic_ncols=True,
               disable=args.quiet or not sys.stderr.isatty())
    for x, y in bar:
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        step = learner.train_step(x, y)
        optimizer.step()
        for k, value in enumerate(step["losses"]):
            loss_sums[k] += value * len(y)
        correct += (step["logits"].argmax(1) == y).sum()
        seen += len(y)
        bar.set_postfix(loss=f"{step['losses'][-1]:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    losses = [s / seen for s in loss_sums]
    if not all(math.isfinite(v) for v in losses):
        raise InfoProError(f"the training loss diverged at epoch {epoch + 1} (losses {losses}); lower --lr")
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_losses": losses,
        "train_accuracy": correct.item() / seen,
        "epoch_seconds": seconds,
        "images_per_second": seen / seconds,
    }


def summarize(history: list[dict[str, Any]], learner: LocalLearner, args: argparse.Namespace) -> dict[str, Any]:
    errors = [r["test_error"] for r in history]
    return {
        "method": args.method,
        "arch": args.arch,
        "dataset": args.dataset,
        "K": args.K,
        "cuts": learner.cuts,
        "epochs": len(history),
        "final_test_error": errors[-1],
        "best_test_error": min(errors),
        "total_seconds": sum(r["epoch_seconds"] for r in history),
        "peak_memory_bytes": max(r["peak_memory_bytes"] for r in history),
        "memory_kind": history[-1]["memory_kind"],
        "parameters": sum(p.numel() for p in learner.pieces.parameters()),
        "aux_parameters": sum(p.numel() for p in learner.aux.parameters()),
    }


def _read_history(path: Path, epochs: int) -> list[dict[str, Any]]:
    """Metrics of the epochs a resumed run already has; later lines (after the checkpoint) are dropped."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r["epoch"] <= epochs]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records

"""`infopro train`: data -> LocalLearner -> SGD, epoch by epoch, into a run directory (`run_dir.py`)."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data import DeviceLoader
from ..data.stream import WorkerDied, worker_death
from ..device import peak_memory_bytes, pick_device, use_fast_settings
from ..epoch_metrics import PieceTerms, epoch_progress, evaluation_record
from ..errors import InfoProError, Interrupted
from ..files import error_reason
from ..finite import CHECK_EVERY, LossWatch, check_finite_state
from ..local import LocalLearner
from ..local.cuts import cuts_label
from ..parallel import MeshTrainer, ParallelRuntime, PeerLost, start_parallel
from .args import check_args, fit_batch_to_set, resolved_config
from .checkpoint import load_checkpoint, save_checkpoint
from .compile_cache import CompileClock, compile_cache
from .data_setup import check_image_size
from .parts import (build_learner, build_schedule, decay_exempt, ema_network, evaluate, evaluate_metrics,
                    make_optimizer, model_ema, task_from_args)
from ..tasks import Loaders, Task, task_of
from .provenance import as_comment, now, provenance
from .run_log import RunLog
from .schedule import Schedule
from ..model_file import backbone_of, model_payload, save_model
from .run_dir import REBUILT_KEY, RunDir, checkpoint_to_read, fault_point, json_record

__all__ = ["build_learner", "evaluate", "make_optimizer", "peak_memory_bytes", "pick_device",
           "train_main"]

# Settings that decide the shape of the model: a checkpoint evaluated with --test-only must share them
# (recomputation moves balanced cuts).
STRUCTURE_KEYS = ("arch", "dataset", "image_size", "channels", "method", "K", "cuts", "lambdas", "aux_head",
                  "aux_widen", "aux_feature_dim", "recompute", "recompute_aux")
# Settings a resumed run may change; every other one must equal the checkpoint's, so that the
# resumed run ends where the uninterrupted one would. `epochs` may change too: the schedule is re-planned.
# The speed settings change how, not what, the run computes.
FREE_ON_RESUME = ("out", "device", "data_dir", "cache_dir", "epochs", "channels_last", "compile", "tf32")


class SingleProcessTrainer:
    """Every piece in this process. `infopro.parallel.MeshTrainer` has the same four methods, so
    `train_main` runs one epoch/metrics/checkpoint path whatever the mode."""

    is_writer = True  # the process that writes the run directory and prints
    # Set by the loop before each epoch: a schedule stepped per iteration, and the steps an --iters budget leaves.
    after_step: Any = None
    max_steps: int | None = None

    def __init__(self, learner: LocalLearner, args: argparse.Namespace, device: torch.device) -> None:
        self.learner, self.device = learner, device
        self.optimizer = make_optimizer(learner.parameters(), args, decay_exempt(learner.named_parameters()))
        self.where = str(device)
        self.ema = model_ema(learner, args.model_ema) if args.model_ema is not None else None
        # --compile: the first two steps timed per piece, so compile time is reported apart from step time
        self.compile_clock = CompileClock(learner, device) if args.compile else None
        self.compile_cache_dir: Path | None = None  # set by the loop while a compiled run trains

    def drop_last(self, num_samples: int, batch_size: int) -> bool:
        # A last batch of one sample would break BatchNorm in training mode: drop it in that case only.
        return num_samples % batch_size == 1

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def load_ema(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)

    def train_epoch(self, loader: DeviceLoader, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        extra = {"ema": self.ema} if self.ema is not None else {}
        clock = self.compile_clock
        if clock is not None and not clock.steps:
            clock.start()
        record = train_one_epoch(self.learner, self.optimizer, loader, epoch, args, self.device, **extra,
                                 after_step=self.after_step, max_steps=self.max_steps,
                                 before_step=clock.before_step if clock is not None else None)
        if clock is not None and clock.done:
            record.update(clock.record())  # once: in the epoch whose steps compiled
            if not args.quiet:
                print(clock.line(self.compile_cache_dir))
            self.compile_clock = None
        return record

    def finish_epoch(self, record: dict[str, Any], eval_loaders: dict[str, DeviceLoader], args: argparse.Namespace
                     ) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]] | None:
        """Evaluate on each of `eval_loaders` ({"val": ..., "test": ...}); return (record, accuracy per
        split, {model, optimizer} state), or None on a non-writing rank."""
        results = {name: evaluate_metrics(self.learner, loader, args, self.device) for name, loader in eval_loaders.items()}
        accuracies = {name: result["accuracy"] for name, result in results.items()}
        record.update(evaluation_record(results))
        state = {"model": self.learner.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.ema is not None:  # the averaged weights: evaluated alike, kept in the checkpoint as an extra
            network = ema_network(self.ema, self.learner)
            for name, loader in eval_loaders.items():
                result = evaluate_metrics(network, loader, args, self.device)
                record.update({f"ema_{name}_accuracy": result["accuracy"], f"ema_{name}_loss": result["loss"]})
            state["model_ema"] = self.ema.state_dict()
        record["peak_memory_bytes"], record["memory_kind"] = peak_memory_bytes(self.device)
        return record, accuracies, state


def check_resumable(saved: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    """The settings of this command must be the run's (`saved`), but for those it may change."""
    keys = STRUCTURE_KEYS if args.test_only else [k for k in resolved_config(args) if k not in FREE_ON_RESUME]
    for key in keys:
        if key in saved and saved[key] != getattr(args, key):
            raise InfoProError(
                f"{path} was trained with {key}={saved[key]!r}, this run has {key}={getattr(args, key)!r}; "
                f"continue a run with its own settings (only --device, --data-dir, --cache-dir, --out, --epochs "
                f"and the speed settings may change), or start a new run with another --out"
            )


def train_main(args: argparse.Namespace) -> int:
    check_args(args)
    runtime = start_parallel(args)  # None unless --parallel (then one process per rank under torchrun)
    try:
        code = _train(args, runtime)
        if runtime is not None and not args.test_only:
            runtime.finish()  # every rank is done before any tears its connections down
        return code
    except KeyboardInterrupt as stop:
        if isinstance(stop, Interrupted) and stop.during_run:
            raise
        raise Interrupted(f"{str(stop) or 'SIGINT'} before the run started; nothing was written: run the same command "
                          f"again", getattr(stop, "exit_code", 130)) from None
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
    task = task_from_args(args)
    data = task.open_data(args, device)
    check_image_size(args, data)
    # A new run only (before the optimiser and loaders are made): a continued run keeps its own batch.
    batch_note = fit_batch_to_set(args, len(data.train)) if args.resume is None and not args.test_only else None
    build_on = device if runtime is None else runtime.build_device
    learner = build_learner(args, data.image_shape, data.num_classes, data.mean, data.std, build_on, task)
    if (args.mixup > 0 or args.cutmix > 0) and not learner.takes_soft_targets:
        raise InfoProError(f"--mixup and --cutmix give soft targets, but method {args.method!r} trains with a "
                           f"supervised contrastive loss, which needs class labels; use --mixup 0 --cutmix 0, or a "
                           f"cross-entropy method (e.g. infopro-softmax for infopro-contrast)")
    if runtime is None:
        trainer = SingleProcessTrainer(learner, args, device)
    else:
        trainer = MeshTrainer(learner, args, runtime,
                              partial(make_optimizer, args=args, exempt=decay_exempt(learner.named_parameters())))
    if args.compile:
        learner.compile_pieces()  # after the pieces reached their device
    # Each process of the data dimension decodes only its slice of each batch (streaming path).
    shard = (runtime.data_rank, runtime.data) if runtime is not None and runtime.data > 1 else None
    loaders = task.make_loaders(data, args, trainer.device, trainer.drop_last(len(data.train), args.batch_size), shard)
    if args.iters is not None:  # a budget in iterations (MMSegmentation's): the epochs it takes, the last one short
        args.epochs = -(-args.iters // len(loaders.train))
    schedule = build_schedule(trainer.optimizer, args, steps_per_epoch=len(loaders.train))
    writer = trainer.is_writer

    path = checkpoint_to_read(args)
    if args.test_only:
        if not writer:
            return 0  # the writing rank evaluates the whole checkpoint on its own
        state = _load_weights(learner, path, args, device)
        result = evaluate_metrics(learner.to(device), loaders.test, args, device)
        print(f"{path}: test {task.score_label} {100 * result[task.score]:.2f}%"
              + (f" (error {100 * (1 - result['accuracy']):.2f}%)" if task.score == "accuracy" else
                 f" (pixel accuracy {100 * result['accuracy']:.2f}%)")
              + f" on {len(data.test)} images of {data.name} (epoch {state['epoch']})")
        return 0

    if args.out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = str(Path("runs", f"{args.arch}-{args.method}-K{args.K}-{stamp}").absolute())
    run = RunDir(args.out)
    with run.locked() if writer else run:
        state, notice = run.begin(args.resume is not None, path, device, writer)
        notice = "\n".join(n for n in (batch_note, notice) if n) or None
        if args.resume is not None and (writer or state is not None):  # every rank refuses what rank 0 refuses
            if state is not None:
                check_resumable(state["args"], args, path or run.checkpoint)
            else:
                check_resumable(run.read_config(), args, run.config)
            _check_epochs(args, run, state)
        try:
            # --compile: inductor's caches in RUN/compile_cache, so that --resume reuses what this run compiles
            with compile_cache(run.path) if args.compile else nullcontext() as cache_dir:
                if hasattr(trainer, "compile_cache_dir"):
                    trainer.compile_cache_dir = cache_dir
                return _run_epochs(args, run, state, notice, learner, trainer, schedule, data, loaders, writer)
        except KeyboardInterrupt as stop:
            raise Interrupted(f"{str(stop) or 'SIGINT'}; {_stopped(run, args)}", getattr(stop, "exit_code", 130),
                              during_run=True) from None
        except InfoProError as error:
            if not writer:
                raise
            raise type(error)(f"{error}; {_stopped(run, args)}") from None
        except Exception as error:  # a bug or an unforeseen failure: its traceback still ends with the way on
            death = worker_death(error)  # torch raises it wherever the main process is when a worker dies
            if death is not None and writer:
                raise WorkerDied(f"{death}; {_stopped(run, args)}") from None
            if writer:
                error.add_note(_stopped(run, args))
            raise


def _stopped(run: RunDir, args: argparse.Namespace) -> str:
    """What a stopped run kept, and the command that continues it."""
    kept = f"{run.checkpoint.name} keeps epoch {run.saved_epoch}" if run.saved_epoch else "no checkpoint was written yet"
    return f"{kept}; continue with: {run.continue_command(args)}"


def _check_epochs(args: argparse.Namespace, run: RunDir, state: dict[str, Any] | None) -> None:
    """--epochs on resume: at least the epochs done; equal to them only to write a missing or damaged summary, or
    to repair the run's other files (`_needs_repair`)."""
    done = state["epoch"] if state is not None else 0
    if done > args.epochs:
        raise InfoProError(f"{run.path} has already trained {done} epochs; --epochs {args.epochs} is fewer")
    if done == args.epochs and run.summary_problem() is None and not _needs_repair(run, state):
        raise InfoProError(f"{run.path} has finished all {done} epochs; evaluate it with --test-only {run.path}, "
                           f"or train it longer with --resume {run.path} --epochs N (N > {done})")


def _needs_repair(run: RunDir, state: dict[str, Any] | None) -> bool:
    """Whether a finished run lacks a file its checkpoint can give again (config.yaml, metrics.jsonl, model.pt,
    metrics.csv, curves.png), or holds one cut short."""
    if state is None:
        return False
    records, text, _ = run.metrics_plan(state["epoch"], state.get("history"))
    return (run.config_problem(state["args"]) is not None or "".join(json.dumps(r) + "\n" for r in records) != text
            or run.model_problem(run.model, state["epoch"]) is not None
            or not run.metrics_csv.is_file() or not run.curves.is_file())


def _repair_models(run: RunDir, learner: LocalLearner, state: dict[str, Any], model_info: dict[str, Any],
                   history: list[dict[str, Any]], score: str) -> None:
    """model.pt (and model-best.pt when its epoch is the checkpoint's) written again from the checkpoint when
    missing, unreadable or older than it; a lost model-best.pt of an earlier epoch is said in one line."""
    epoch = state["epoch"]
    payload = None
    problem = run.model_problem(run.model, epoch)
    if problem is not None:
        payload = model_payload(backbone_of(learner, state["model"]), {**model_info, "epoch": epoch})
        save_model(payload, run.model)
        print(f"note: {run.model} {problem}: written again from {run.checkpoint.name} (epoch {epoch})")
    lost = run.best_model_problem(history, score)
    if lost is None:
        return
    best, problem = lost
    if best == epoch:
        if payload is None:
            payload = model_payload(backbone_of(learner, state["model"]), {**model_info, "epoch": epoch})
        save_model(payload, run.best_model)
        print(f"note: {run.best_model} {problem}: written again from {run.checkpoint.name} (epoch {epoch})")
    else:
        print(f"note: {run.best_model} {problem}, and the weights of its epoch {best} are kept nowhere else: it is "
              f"written again when a later epoch scores higher on validation")


def _load_weights(learner: LocalLearner, path: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Evaluate-only: the checkpoint's weights into `learner` (its settings checked against this command's)."""
    state = load_checkpoint(path, map_location=device)
    check_resumable(state["args"], args, path)
    _load_model(learner, state, path)
    return state


def _load_model(learner: LocalLearner, state: dict[str, Any], path: Path) -> None:
    try:
        learner.load_state_dict(state["model"])
    except RuntimeError as error:
        raise InfoProError(f"checkpoint {path} does not fit this model: {error_reason(error)}") from None


def _run_epochs(args: argparse.Namespace, run: RunDir, state: dict[str, Any] | None, notice: str | None,
                learner: LocalLearner, trainer: Any, schedule: Any, data: Any, loaders: Loaders, writer: bool) -> int:
    if not writer:
        return _epochs(args, run, state, notice, learner, trainer, schedule, data, loaders, writer, None)
    log = RunLog(run, args.tensorboard, f"{args.arch} · {args.method} K={args.K} · {run.path.name}",
                 trackers={"mlflow": args.mlflow, "wandb": args.wandb}, config=resolved_config(args),
                 classes=list(data.classes))
    try:
        with log.tee():
            code = _epochs(args, run, state, notice, learner, trainer, schedule, data, loaders, writer, log)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: a tracker's run is marked killed (`--resume` continues it)
        log.close("killed")
        raise
    except BaseException:  # diverged, a peer lost, a bug: marked failed
        log.close("failed")
        raise
    log.close("finished")
    return code


def _epochs(args: argparse.Namespace, run: RunDir, state: dict[str, Any] | None, notice: str | None,
            learner: LocalLearner, trainer: Any, schedule: Any, data: Any, loaders: Loaders, writer: bool,
            log: RunLog | None) -> int:
    verbose = writer and not args.quiet
    task = task_of(learner)
    start_epoch = 0
    if notice and writer:
        print(notice)
    if state is not None:
        _load_model(learner, state, run.checkpoint)
        trainer.load_optimizer(state["optimizer"])
        if args.model_ema is not None:
            if "model_ema" not in state:
                raise InfoProError(f"{run.checkpoint} holds no model_ema to continue --model-ema {args.model_ema} from")
            trainer.load_ema(state["model_ema"])
        start_epoch = state["epoch"]
        if writer and start_epoch < args.epochs:
            print(f"resuming from epoch {start_epoch + 1} of {args.epochs} ({run.checkpoint.name} holds epoch "
                  f"{start_epoch})")
        # The rate is a formula of the epoch (`schedule.py`): set from it, not from the saved scheduler, so a
        # run resumed mid-warm-up, or one saved by an older version, continues the same schedule.
        schedule = build_schedule(trainer.optimizer, args, start_epoch, steps_per_epoch=len(loaders.train))
        planned = state["args"].get("epochs", args.epochs)
        if planned != args.epochs and start_epoch < args.epochs:
            if writer:
                run.drop_summary()  # it described the shorter plan; the longer one writes its own
                print(f"--epochs {args.epochs} (was {planned}): the {args.schedule} schedule is re-planned for "
                      f"{args.epochs} epochs from epoch {start_epoch + 1} (lr {trainer.optimizer.param_groups[0]['lr']:.4g}); "
                      f"not bitwise a run planned for {args.epochs} epochs from the start")
    eval_loaders = {"val": loaders.val, "test": loaders.test} if loaders.val is not None else {"test": loaders.test}
    config = resolved_config(args)
    model_info = {"arch": args.arch, "num_classes": data.num_classes, "classes": list(data.classes),
                  "input_shape": list(data.image_shape), "mean": list(data.mean), "std": list(data.std),
                  "method": args.method, "K": args.K, "task": task.name, **task.settings()}
    history: list[dict[str, Any]] = []
    summary_problem = None
    if writer:
        summary_problem = run.summary_problem() if start_epoch == args.epochs else None
        history, metrics_note = run.read_metrics(start_epoch, state.get("history") if state is not None else None)
        made = provenance(args, learner, trainer.device, now())
        made["resumed_from_epoch"] = start_epoch if args.resume is not None else None
        run.write_config(config, as_comment(made))
        run.drop_best_model_after(start_epoch)
        if metrics_note is not None:
            print(metrics_note)
        if state is not None:
            _repair_models(run, learner, state, model_info, history, f"val_{task.score}")
            if log is not None and (metrics_note is not None or not run.metrics_csv.is_file() or not run.curves.is_file()):
                log.rewrite(history)  # metrics.csv and curves.png of the records kept
    if writer:  # also with --quiet: two lines that say what will run, before it runs
        print(recipe_line(args, learner, trainer.where))
        print(data_line(data, run.path, args.val_split))
        if args.warmup_epochs >= args.epochs:
            print(f"note: --warmup-epochs {args.warmup_epochs} is not below --epochs {args.epochs}: the whole run is "
                  f"warm-up and never reaches --lr {args.lr:g}; pass --warmup-epochs 0 for a short run")

    for epoch in range(start_epoch, args.epochs):
        per_iteration = Schedule.from_args(args).per_iteration
        trainer.after_step = schedule.step if per_iteration else None
        trainer.max_steps = (args.iters - epoch * len(loaders.train)) if args.iters is not None else None
        seed_epoch_randomness(args.seed, epoch)
        record = trainer.train_epoch(loaders.train, epoch, args)
        if not per_iteration:
            schedule.step()
        finished = trainer.finish_epoch(record, eval_loaders, args)  # gathers every rank's share
        if finished is None:
            continue
        record, accuracies, state = finished
        check_finite_state(state["model"], f"after epoch {epoch + 1}: not written to {run.checkpoint.name}")
        for split, accuracy in accuracies.items():
            record.update({f"{split}_accuracy": accuracy, f"{split}_error": 1 - accuracy})
        score = f"val_{task.score}"
        best = score in record and all(record[score] > r[score] for r in history if score in r)
        record = json_record(record)  # plain JSON values: the checkpoint keeps the history too
        history.append(record)
        run.append_metrics(record)
        run.write_models(model_payload(backbone_of(learner, state["model"]), {**model_info, "epoch": epoch + 1}), best)
        save_checkpoint({**state, "scheduler": schedule.state_dict(), "epoch": epoch + 1, "args": config,
                         "history": history}, run.checkpoint)
        run.saved_epoch = epoch + 1
        fault_point("checkpoint", epoch + 1)
        if log is not None:
            log.epoch(history)
        if verbose:
            losses = " ".join(f"{v:.3f}" for v in record["train_losses"])
            print(f"epoch {epoch + 1:>3}/{args.epochs}  lr {record['lr']:.4f}  losses [{losses}]  "
                  f"train acc {100 * record['train_accuracy']:5.2f}%  "
                  + "".join(task.epoch_text(record, split) for split in accuracies)
                  + "".join(f"EMA {split} acc {100 * record[f'ema_{split}_accuracy']:5.2f}%  " for split in accuracies
                            if f"ema_{split}_accuracy" in record) +
                  f"{record['epoch_seconds']:.1f}s  {record['images_per_second']:.0f} img/s")

    if not writer:
        return 0
    fault_point("summary")
    if not history:
        raise InfoProError(f"{run.metrics} holds no epochs, so summary.json cannot be written")
    if history[-1].get(REBUILT_KEY):
        raise InfoProError(f"the numbers of epoch {history[-1]['epoch']}, the last, are lost ({run.metrics} was rebuilt "
                           f"from a checkpoint of an older infopro, which keeps no history), so summary.json cannot be "
                           f"written; --test-only {run.path} measures its test numbers again, and --resume {run.path} "
                           f"--epochs N (N > {args.epochs}) trains on")
    if start_epoch == args.epochs:
        print(f"{run.path} had finished its {args.epochs} epochs but not its summary: writing summary.json"
              if summary_problem == "is missing" else
              f"{run.path} had finished its {args.epochs} epochs: its files are repaired and summary.json written again"
              if summary_problem is None else
              f"{run.path} had finished its {args.epochs} epochs, but {run.summary.name} {summary_problem}: writing it again")
    summary = summarize(history, learner, args, task)
    summary["splits"] = data.splits  # where the train/val/test numbers come from
    summary["provenance"] = {**made, "ended": now()}
    run.write_summary(summary)
    if verbose:
        print(f"done: {task.done_text(summary)} ({summary['total_seconds']:.0f}s) -> {run.path}")
    return 0


def seed_epoch_randomness(seed: int, epoch: int) -> None:
    """Seed torch's global generator (CPU and devices) from (seed, epoch) alone: what draws from it in training
    (dropout, e.g. the segmentation heads') then draws the same in a resumed run as in an uninterrupted one. The
    data draw from their own generators (`infopro.data.loader.epoch_generator`)."""
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch, 2]).generate_state(1, dtype=np.uint64)[0]))


def recipe_line(args: argparse.Namespace, learner: LocalLearner, where: str) -> str:
    """The recipe a run follows, as one line: network, method, pieces, epochs, batch, optimiser, schedule, device."""
    epochs = f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
    return (f"train {args.arch} · {args.method} K={args.K} cuts {learner.cuts} "
            f"({cuts_label(args.cuts, args.arch, args.K)}) · {epochs} · batch {args.batch_size} · "
            f"{args.optimizer} {Schedule.from_args(args).describe()} · {where}")


def data_line(data: Any, run_path: Path, val_split: float | None) -> str:
    """What a run trains and tests on (sizes, image shape, path, source) and where it writes."""
    val = f" / {len(data.val)} val" if data.val is not None else ""
    held_out = (f" (test: the stratified --val-split {val_split:g} hold-out, as the set has no test split)"
                if data.test_is_held_out else "")
    return (f"  on {data.name}: {len(data.train)} train{val} / {len(data.test)} test images{held_out}, "
            f"{data.size[1]}x{data.size[0]}x{data.channels}, {data.path} path, {data.source} · run dir {run_path}")


def train_one_epoch(learner: LocalLearner, optimizer: torch.optim.Optimizer, loader: DeviceLoader, epoch: int,
                    args: argparse.Namespace, device: torch.device, ema: Any = None,
                    after_step: Callable[[], None] | None = None, max_steps: int | None = None,
                    before_step: Callable[[], None] | None = None) -> dict[str, Any]:
    """One epoch of local steps; `ema` (an `AveragedModel` of the pieces, --model-ema) follows every step, and
    `after_step` runs after each (a schedule stepped per iteration), `before_step` before each (after zero_grad;
    --compile's clock); `max_steps` ends the epoch early (the last epoch of an --iters budget). Labels may be
    soft targets (mixup, cutmix): training accuracy then counts their largest class. Segmentation counts pixels
    (`Task.train_hits`)."""
    task = task_of(learner)
    learner.train()
    loader.set_epoch(epoch)
    lr = optimizer.param_groups[0]["lr"]
    loss_sums = [0.0] * learner.K
    correct = torch.zeros((), dtype=torch.long, device=device)
    counted = torch.zeros((), dtype=torch.long, device=device)  # on the device: no host sync per step
    seen = 0
    steps = len(loader) if max_steps is None else min(len(loader), max_steps)
    start = time.perf_counter()
    bar, progress = epoch_progress(loader, steps, epoch, args.epochs, show=not args.quiet)
    terms = PieceTerms(learner.aux)
    watch = LossWatch()
    for i, (x, y) in enumerate(bar):
        fault_point("step", f"{epoch + 1}.{i + 1}")
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        if before_step is not None:
            before_step()
        step = learner.train_step(x, y)
        watch.add(step["losses"])
        if (i + 1) % CHECK_EVERY == 0:
            watch.check(f"by step {i + 1} of epoch {epoch + 1}")
        optimizer.step()
        if after_step is not None:
            after_step()
        learner.after_optimizer_step()  # e.g. MAN's EMA copies follow the next piece
        if ema is not None:
            ema.update_parameters(learner.pieces)
        for k, value in enumerate(step["losses"]):
            loss_sums[k] += value * len(y)
        hits, count = task.train_hits(step["logits"], y)
        correct += hits
        counted += count
        seen += len(y)
        terms.add(len(y))
        bar.set_postfix(loss=f"{step['losses'][-1]:.3f}")
        progress.step(i + 1, step["losses"][-1], seen)
        if i + 1 == steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    watch.check(f"during epoch {epoch + 1}")
    losses = [s / seen for s in loss_sums]
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_losses": losses,
        **terms.record(seen),
        "train_accuracy": correct.item() / max(counted.item(), 1),
        "epoch_seconds": seconds,
        "images_per_second": seen / seconds,
    }


def summarize(history: list[dict[str, Any]], learner: LocalLearner, args: argparse.Namespace,
              task: Task | None = None) -> dict[str, Any]:
    task = task if task is not None else task_of(learner)
    epochs = len(history)
    # Records rebuilt without their numbers (metrics.jsonl lost, a checkpoint of an older infopro) count as epochs
    # trained, and take no part in the rest; the last one is always measured (`_epochs` sees to it).
    history = [r for r in history if not r.get(REBUILT_KEY)]
    errors = [r["test_error"] for r in history]
    # The best epoch is picked on validation when there is one, never on the test split it is reported on; on the
    # task's score (classification: accuracy, so the lowest error; segmentation: mean IoU), the first of ties.
    select = "val" if "val_error" in history[-1] else "test"
    best = max(range(len(history)), key=lambda i: (history[i][f"{select}_{task.score}"], -i))
    chosen = {"best_selected_on": select, "best_epoch": history[best]["epoch"],
              "test_error_at_best_epoch": errors[best], f"best_{select}_error": history[best][f"{select}_error"]}
    if select == "val":
        chosen["final_val_error"] = history[-1]["val_error"]
    return {
        "task": task.name,
        "method": args.method,
        "arch": args.arch,
        "dataset": args.dataset,
        "K": args.K,
        "cuts": learner.cuts,
        "epochs": epochs,
        **({"epochs_without_metrics": epochs - len(history)} if epochs > len(history) else {}),
        "final_test_error": errors[-1],
        **chosen,
        "total_seconds": sum(r["epoch_seconds"] for r in history),
        "peak_memory_bytes": max(r["peak_memory_bytes"] for r in history),
        "memory_kind": history[-1]["memory_kind"],
        "parameters": sum(p.numel() for p in learner.pieces.parameters()),
        "aux_parameters": sum(p.numel() for p in learner.aux.parameters()),
        **({"final_ema_test_error": 1 - history[-1]["ema_test_accuracy"]} if "ema_test_accuracy" in history[-1] else {}),
        **task.summary(history, best),
    }

"""Training on the pieces x data mesh: process (p, d) trains its pieces on data slice d of each batch.

`--parallel pieces` is the mesh K x 1 (process k holds piece k), `--parallel data` 1 x D (every process
holds all K pieces), `--parallel pieces,data` K x D.

Pieces dimension. Per micro-batch, process (p, d) receives h (detached) from (p-1, d), runs its pieces'
local steps and sends its own detached output on to (p+1, d). No message goes backwards, so (p-1, d)
runs ahead on the next micro-batch while (p, d) works on this one (the pipelined mode); `--sync-pieces`
makes every process finish a step before any starts the next. Either way the arithmetic is the
single-process learner's: piece k sees, for batch b, the output of piece k-1 after b-1 steps.

Data dimension. Each (piece, objective) pair is wrapped in its own `DistributedDataParallel` over the D
processes that hold it (`ddp.py`), so piece k's gradients are averaged over its row of the mesh only,
while the next piece computes. Each slice's loss is scaled by D x its share of the batch, so that the
step is the one-process step on the whole batch for per-image losses (BatchNorm normalises each slice
with its own statistics unless `--sync-batchnorm`; a contrastive loss pairs images within a slice).

What crosses a cut is h alone. Labels and the decoder's target image are not sent: every process
iterates the same `DeviceLoader`, whose order and augmentation depend only on (seed, epoch), so each
draws the very batch rank 0 draws and takes its slice (`tensor_split`, disjoint, no sampler). No header
is needed either (each process knows every micro-batch's size), and every random stream stays in step.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..data import DeviceLoader
from ..device import peak_memory_bytes
from ..epoch_metrics import (
    EvalSums,
    PieceTerms,
    epoch_progress,
    evaluation_record,
    evaluation_result,
    piece_terms_record,
)
from ..errors import InfoProError
from .. import finite
from ..local import LocalLearner, LocalPair, pair_step
from .ddp import DeferredMean, to_sync_batchnorm, wrap_pair
from .merge import (
    global_indices,
    merge_optimizer_states,
    optimizer_parameters,
    optimizer_state_for,
    optimizer_state_to_global,
    piece_state_dict,
)
from .messages import Link
from .setup import ParallelRuntime

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class MeshTrainer:
    """This process's pieces, auxiliary nets and optimiser; the interface of `SingleProcessTrainer`.

    `learner` is the whole learner, built by every process from the same seed on `runtime.build_device`;
    only this process's pieces move to its device and train here."""

    def __init__(self, learner: LocalLearner, args: argparse.Namespace, runtime: ParallelRuntime,
                 make_optimizer: OptimizerFactory) -> None:
        if learner.method.pieces_parallel_refusal:  # each piece trains on its own (own process or own DDP)
            raise InfoProError(f"--parallel {runtime.mode} cannot run method {learner.method.name!r}: "
                               f"{learner.method.pieces_parallel_refusal}; train it in one process")
        self.learner, self.runtime = learner, runtime
        self.K = learner.K
        self.P, self.D = runtime.pieces, runtime.data
        self.p, self.d = runtime.piece_rank, runtime.data_rank
        self.device = device = runtime.device
        self.stage = list(range(self.K)) if self.P == 1 else [self.p]  # the pieces this process holds
        self.first, self.last = self.p == 0, self.p == self.P - 1
        for k in self.stage:
            learner.pieces[k].to(device)
            learner.aux[k].to(device)
        learner.mean, learner.std = learner.mean.to(device), learner.std.to(device)  # unnormalize() runs here
        self.link = Link(runtime.rank, device, runtime.timeout, name=runtime.name,
                         max_in_flight=args.micro_batches + 1)  # run ahead by up to one batch
        self.pairs: list[nn.Module] = [LocalPair(learner.pieces[k], learner.aux[k]) for k in self.stage]
        self.reduction = None
        if self.D > 1:
            if args.sync_batchnorm:
                for pair in self.pairs:
                    to_sync_batchnorm(pair, runtime.data_group)
            self.reduction = DeferredMean(runtime.data_group, self.link)
            self.pairs = [wrap_pair(pair, self.reduction, device) for pair in self.pairs]
        params = [p for k in self.stage for p in (*learner.pieces[k].parameters(), *learner.aux[k].parameters())]
        self.optimizer = make_optimizer(params)
        # Checkpoints number the parameters as the single-process optimiser does (its groups in turn): that
        # optimiser, built over the whole learner (no state is allocated), gives the order.
        order = optimizer_parameters(make_optimizer(list(learner.parameters())))
        self.indices = global_indices(order, optimizer_parameters(self.optimizer))
        self.group_sizes = [len(group["params"]) for group in self.optimizer.param_groups]
        self.in_shape = learner.describe()[self.stage[0] - 1].output_shape if not self.first else None
        # h crosses a cut in the precision the forward pass runs in.
        self.wire_dtype = learner.amp_dtype or params[0].dtype
        self.needs_image = any(learner.aux[k].needs_image for k in self.stage)
        # Weights that go backwards along the pieces (MAN): the block of this piece that piece p-1 follows,
        # and the copy of piece p+1's block this piece follows (moved here: its EMA update runs here). Rank
        # p+1 sends the block at the start of each step, as it is before that step's optimiser step; rank p
        # applies the EMA update at the end of the same step: the update one process makes right after
        # piece p's backward, from the same weights (the EMA is read only by piece p's forward, so that the
        # update comes after rank p's own optimiser step changes nothing).
        split = self.P > 1
        self.sent_block = learner.aux[self.p - 1].follows if split and not self.first else None
        follows = learner.aux[self.p].follows if split else None
        self.followed = follows.to(device) if follows is not None else None
        self.micro_batches = args.micro_batches
        self.sync = args.sync_pieces
        self.is_writer = runtime.rank == 0
        held = (f"piece {self.p + 1} of {self.P}" if self.P > 1 else "all pieces") + \
               (f", data slice {self.d + 1} of {self.D}" if self.D > 1 else "")
        self.where = (f"--parallel {runtime.mode} on a {self.P} x {self.D} mesh ({runtime.backend}; this process: "
                      f"{held} on {device})"
                      + (f", {self.micro_batches} micro-batches" if self.micro_batches > 1 else "")
                      + (", synchronous" if self.sync else "")
                      + (", SyncBatchNorm" if self.D > 1 and args.sync_batchnorm else ""))

    def drop_last(self, num_samples: int, batch_size: int) -> bool:
        # Every micro-batch of every slice of the last batch needs 2 images for BatchNorm.
        return 0 < num_samples % batch_size < 2 * self.D * self.micro_batches

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(optimizer_state_for(state, self.indices, self.group_sizes))

    def _neighbour(self, step: int) -> int:
        return self.runtime.rank_of(self.p + step, self.d)

    def _input(self, x: torch.Tensor, n: int, args: argparse.Namespace, what: str) -> torch.Tensor:
        h = x if self.first else self.link.recv((n, *self.in_shape), self.wire_dtype, self._neighbour(-1), what)
        return h.contiguous(memory_format=torch.channels_last) if args.channels_last and h.dim() == 4 else h

    def _output(self, h: torch.Tensor, what: str) -> None:
        self.link.isend(h.to(self.wire_dtype), self._neighbour(+1), what)

    def _all_reduce(self, tensor: torch.Tensor, group: Any, what: str, op: Any = dist.ReduceOp.SUM) -> torch.Tensor:
        """An all-reduce in place that names a lost process or a timeout, like every message of `Link`."""
        try:
            work = dist.all_reduce(tensor, op=op, group=group, async_op=True)
        except RuntimeError as error:
            raise self.link._fail(None, what, error) from None
        self.link.wait(work, None, what)
        return tensor

    def _check_losses(self, watch: finite.LossWatch, where: str) -> None:
        """Every process reads the flags of every piece at the same step (one max all-reduce), so all stop
        there with the same line naming the first non-finite piece, and none waits for a stopped peer."""
        watch.check(where, lambda flags: self._all_reduce(flags, None, f"checking the losses {where}", dist.ReduceOp.MAX))

    def _slices(self, loader: Any) -> Any:
        """(this process's data slice of each global batch, the global batch size). A streaming loader built
        with shard=(d, D) decodes only this slice; the device-resident one yields whole batches."""
        for step, (x, y) in enumerate(loader):
            if getattr(loader, "shard", None) is not None:
                yield x, y, loader.global_batch_size(step)
            else:
                yield x.tensor_split(self.D)[self.d], y.tensor_split(self.D)[self.d], len(y)

    @torch.no_grad()
    def _follow(self, what: str) -> None:
        """Receive the next piece's followed block (as it was at the start of this step) and run this
        objective's `after_backward` hook (MAN's EMA update)."""
        params = list(self.followed.parameters())
        flat = self.link.recv((sum(p.numel() for p in params),), params[0].dtype, self._neighbour(+1), what)
        for p, value in zip(params, flat.split([p.numel() for p in params])):
            p.copy_(value.view_as(p))
        self.learner.aux[self.p].after_backward()

    def train_epoch(self, loader: DeviceLoader, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        for k in self.stage:
            self.learner.pieces[k].train()
            self.learner.aux[k].train()
        loader.set_epoch(epoch)
        amp = self.learner.amp_dtype
        loss_sums = torch.zeros(len(self.stage), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        watch = finite.LossWatch()  # flags per piece: this process's pieces, zeros for the others
        step_losses = torch.zeros(self.K, dtype=torch.float64, device=self.device)
        terms = PieceTerms([self.learner.aux[k] for k in self.stage])
        bar, progress = epoch_progress(self._slices(loader), len(loader), epoch, args.epochs,
                                       show=self.is_writer and not args.quiet, loss_label=self._progress_label())
        images = 0  # of the whole batches, for the progress lines' rate
        start = time.perf_counter()
        for step, (x, y, batch) in enumerate(bar):
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            what = f"training (epoch {epoch + 1}, step {step + 1})"
            if self.sent_block is not None:  # the weights piece p-1's EMA moves towards in this step
                self.link.isend(torch.cat([p.detach().reshape(-1) for p in self.sent_block.parameters()]),
                                self._neighbour(-1), f"sending weights (epoch {epoch + 1}, step {step + 1})")
            self.optimizer.zero_grad(set_to_none=True)
            micro = list(zip(x.tensor_split(self.micro_batches), y.tensor_split(self.micro_batches)))
            for m, (x_m, y_m) in enumerate(micro):
                h = self._input(x_m, len(y_m), args, what)
                image = self.learner.unnormalize(x_m) if self.needs_image else None
                # DDP averages over the D slices; D x share gives each image its 1/batch weight.
                scale = self.D * len(y_m) / batch
                reduce_now = m == len(micro) - 1  # gradients of the earlier micro-batches accumulate locally
                for i, pair in enumerate(self.pairs):
                    with contextlib.nullcontext() if reduce_now or self.D == 1 else pair.no_sync():
                        h, loss = pair_step(pair, h, y_m, image, amp, scale)
                    loss_sums[i] += loss.double() * len(y_m)
                    step_losses[self.stage[i]] = loss.detach()
                terms.add(len(y_m))
                watch.add(step_losses)
                if not self.last:
                    self._output(h, what)
                    if self.sync:
                        self.link.flush()
                else:
                    correct += (h.argmax(1) == (y_m.argmax(1) if y_m.is_floating_point() else y_m)).sum()
            if self.reduction is not None:
                self.reduction.wait(f"averaging gradients (epoch {epoch + 1}, step {step + 1})")
            if (step + 1) % finite.CHECK_EVERY == 0:
                self._check_losses(watch, f"by step {step + 1} of epoch {epoch + 1}")
            if self.P == 1:  # every piece here: the after-backward hooks run before the step, as in one process
                for k in self.stage:
                    self.learner.aux[k].after_backward()  # e.g. MAN's EMA copies follow the next piece
            self.optimizer.step()
            if self.P == 1:
                self.learner.after_optimizer_step()
            if self.followed is not None:
                self._follow(f"receiving weights of step {step + 1} (epoch {epoch + 1})")
            seen += len(y)
            images += batch
            progress.step(step + 1, step_losses[self.stage[-1]], images)
            if self.sync:
                self.link.barrier(f"finishing step {step + 1} of epoch {epoch + 1}")
        self.link.flush()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._check_losses(watch, f"during epoch {epoch + 1}")
        return {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "loss_sums": loss_sums.tolist(),
                "term_sums": terms.totals(), "correct": int(correct.item()), "seen": seen,
                "seconds": time.perf_counter() - start}

    def _progress_label(self) -> str:
        """Whose loss rank 0's progress lines show: the last piece it holds, on its data slice."""
        label = "loss" if self.last else f"piece {self.stage[-1] + 1} loss"
        return label + (f" (data slice {self.d + 1} of {self.D})" if self.D > 1 else "")

    @torch.no_grad()
    def _evaluate(self, loader: DeviceLoader, args: argparse.Namespace) -> tuple[dict[str, float], float]:
        """The whole network on this slice of the split as a pipeline (the merged model's predictions, since
        eval-mode BatchNorm treats each image alone): (this slice's `EvalSums` totals, counted on the last
        stage; seconds)."""
        start = time.perf_counter()
        pieces = [self.learner.pieces[k].eval() for k in self.stage]
        amp = self.learner.amp_dtype
        size = math.ceil(args.batch_size / (self.D * self.micro_batches))
        sums = EvalSums(self.device)
        for x, y, _ in self._slices(loader):
            for x_m, y_m in zip(x.split(size), y.split(size)):
                h = self._input(x_m, len(y_m), args, "evaluating")
                with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                    for piece in pieces:
                        h = piece(h)
                if not self.last:
                    self._output(h, "evaluating")
                else:
                    sums.add(h, y_m)
        self.link.flush()
        return sums.totals(), time.perf_counter() - start

    def _average_batchnorm_statistics(self) -> None:
        """Each process of a row saw its own slices: their running statistics are averaged over the row."""
        for k in self.stage:
            for module in (*self.learner.pieces[k].modules(), *self.learner.aux[k].modules()):
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                    for buffer in (module.running_mean, module.running_var):
                        self._all_reduce(buffer, self.runtime.data_group, "averaging BatchNorm statistics").div_(self.D)

    def finish_epoch(self, record: dict[str, Any], eval_loaders: dict[str, DeviceLoader],
                     args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]] | None:
        """Average BatchNorm statistics over each row, evaluate as a pipeline, then every process sends its
        share (sums of losses, loss terms and evaluation counts; its pieces and optimiser from the first
        column) to rank 0, which adds them up into the single-process record and merges one single-process
        checkpoint. Only point-to-point messages, so a lost process is always named."""
        if self.D > 1:
            self._average_batchnorm_statistics()
        evaluations = {name: self._evaluate(loader, args) for name, loader in eval_loaders.items()}
        report = {**record, "stage": self.stage, "last": self.last, "evaluations": evaluations,
                  "peak_memory_bytes": peak_memory_bytes(self.device)[0]}
        if self.d == 0:  # the other columns hold the same weights
            report["model"] = {key: value for k in self.stage for key, value in piece_state_dict(self.learner, k).items()}
            report["optimizer"] = optimizer_state_to_global(self.optimizer.state_dict(), self.indices)
        if not self.is_writer:
            self.link.send_object(report, 0, "sending its share of the checkpoint")
            return None
        reports = [report] + [self.link.recv_object(r, "gathering the checkpoint") for r in range(1, self.runtime.world_size)]
        ends = [r for r in reports if r["last"]]
        seen = sum(r["seen"] for r in ends)
        losses = [0.0] * self.K
        terms: list[dict[str, float]] = [{} for _ in range(self.K)]  # each piece's, over its row of the mesh
        for r in reports:
            for k, loss_sum, term_sums in zip(r["stage"], r["loss_sums"], r["term_sums"]):
                losses[k] += loss_sum / seen
                for name, value in term_sums.items():
                    terms[k][name] = terms[k].get(name, 0.0) + value
        seconds = max(r["seconds"] for r in reports)  # the epoch ends when the slowest process is done
        model = self.learner.state_dict()  # every key; each piece's own come from its process
        for r in reports:
            model.update(r.get("model", {}))
        # Each split's shares are those of the last stage's processes; it took as long as the slowest process.
        results = {name: evaluation_result([r["evaluations"][name][0] for r in ends],
                                           max(r["evaluations"][name][1] for r in reports))
                   for name in evaluations}
        merged = {
            "epoch": record["epoch"], "lr": record["lr"], "train_losses": losses, **piece_terms_record(terms, seen),
            "train_accuracy": sum(r["correct"] for r in ends) / seen, "epoch_seconds": seconds,
            "images_per_second": seen / seconds, **evaluation_record(results),
            "peak_memory_bytes": max(r["peak_memory_bytes"] for r in reports),
            "memory_kind": peak_memory_bytes(self.device)[1],
            "rank_peak_memory_bytes": [r["peak_memory_bytes"] for r in reports],
        }
        state = {"model": {k: v.cpu() for k, v in model.items()},
                 "optimizer": merge_optimizer_states([r["optimizer"] for r in reports if "optimizer" in r])}
        return merged, {name: result["accuracy"] for name, result in results.items()}, state

"""Pieces-parallel training: rank k holds piece k and its auxiliary nets, and all K ranks work at once.

Per micro-batch, rank k receives h (detached) from rank k-1, runs `local_step` on
its piece, and sends its own detached output on to rank k+1. No message goes
backwards, so rank k-1 runs ahead on the next micro-batch while rank k works on
this one (the pipelined mode); `--sync-pieces` makes every rank finish a step
before any starts the next. Either way the arithmetic is the single-process
learner's: piece k sees, for batch b, the output of piece k-1 after b-1 steps,
as it does in one process.

What crosses a cut is h alone (but see below for MAN). Labels and the decoder's target image are not
sent: every rank iterates the same `DeviceLoader`, whose order and augmentation
depend only on (seed, epoch), so each rank draws the very batch rank 0 draws.
No header is needed either (each rank knows every micro-batch's size), the
image (3x32x32 floats per sample, against h's 16x32x32 after the first piece
of a CIFAR ResNet) does not travel K-1 times, and every rank's random stream
stays in step. The price: each rank holds the uint8 data set and augments each
batch itself, an index-gather and a crop that cost far less than a piece.

The one message that goes backwards is for methods whose objective follows a block of the next
piece (MAN's EMA): rank k+1 sends that block's parameters to rank k after every optimiser step,
and rank k applies the EMA update for step t-1 after its own step t (one step stale, so rank k
never waits for rank k+1's current step; the single-process EMA is not reproduced exactly); the
last update of an epoch is applied at its end. A method whose loss itself crosses a cut (HPFF)
is refused.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from ..data import DeviceLoader
from ..errors import InfoProError
from ..local import LocalLearner, local_step
from ..device import peak_memory_bytes
from ..train.parts import make_optimizer
from .merge import (
    global_indices,
    merge_optimizer_states,
    optimizer_state_for,
    optimizer_state_to_global,
    piece_state_dict,
)
from .messages import Link
from .setup import ParallelRuntime


class _ScaledObjective:
    """The objective times n_micro / n_batch, so that the gradients of the micro-batches of a batch add up
    to the whole batch's (exactly so for per-image losses without BatchNorm; 1 when there is 1 micro-batch)."""

    def __init__(self, objective: torch.nn.Module, scale: float) -> None:
        self.objective, self.scale = objective, scale

    def __call__(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        loss = self.objective(h, labels, image)
        return loss if self.scale == 1 else loss * self.scale


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


class PiecesTrainer:
    """This rank's piece, auxiliary nets and optimiser; the interface of `SingleProcessTrainer`."""

    def __init__(self, learner: LocalLearner, args: argparse.Namespace, runtime: ParallelRuntime) -> None:
        if learner.method.pieces_parallel_refusal:
            raise InfoProError(f"--parallel pieces cannot run method {learner.method.name!r}: "
                               f"{learner.method.pieces_parallel_refusal}; use --parallel data or one process")
        self.learner, self.runtime = learner, runtime
        self.k, self.K = runtime.rank, learner.K
        self.device = device = runtime.device
        # Every rank built the whole learner on the CPU with the same seed; only piece k moves to the device.
        self.piece = learner.pieces[self.k].to(device)
        self.objective = learner.aux[self.k].to(device)
        learner.mean, learner.std = learner.mean.to(device), learner.std.to(device)  # unnormalize() runs here
        params = [*self.piece.parameters(), *self.objective.parameters()]
        self.indices = global_indices(learner, params)
        self.optimizer = make_optimizer(params, args)
        self.in_shape = learner.describe()[self.k - 1].output_shape if self.k > 0 else None
        # h crosses a cut in the precision the forward pass runs in.
        self.wire_dtype = learner.amp_dtype or params[0].dtype
        self.micro_batches = args.micro_batches
        self.sync = args.sync_pieces
        self.link = Link(self.k, device, runtime.timeout, name=lambda r: f"rank {r} (piece {r + 1} of {self.K})",
                         max_in_flight=args.micro_batches + 1)  # run ahead by up to one batch
        # Weights that go backwards (MAN): the block of this piece that piece k-1 follows, and the copy of
        # piece k+1's block this piece follows (moved here: its EMA update runs on this device).
        self.sent_block = learner.aux[self.k - 1].follows if self.k > 0 else None
        self.followed = self.objective.follows.to(device) if self.objective.follows is not None else None
        self.is_writer = self.k == 0
        self.where = (f"pieces-parallel over {self.K} ranks ({runtime.backend}, piece {self.k + 1} on {device}), "
                      f"{self.micro_batches} micro-batch{'es' if self.micro_batches > 1 else ''}"
                      f"{', synchronous' if self.sync else ''}")

    def drop_last(self, num_samples: int, batch_size: int) -> bool:
        # Every micro-batch of the last batch needs 2 images for BatchNorm (1 micro-batch: as in one process).
        return 0 < num_samples % batch_size < 2 * self.micro_batches

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(optimizer_state_for(state, self.indices))

    def _input(self, x: torch.Tensor, n: int, args: argparse.Namespace, what: str) -> torch.Tensor:
        h = x if self.k == 0 else self.link.recv((n, *self.in_shape), self.wire_dtype, self.k - 1, what)
        return h.contiguous(memory_format=torch.channels_last) if args.channels_last and h.dim() == 4 else h

    def train_epoch(self, loader: DeviceLoader, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        self.piece.train()
        self.objective.train()
        loader.set_epoch(epoch)
        amp = self.learner.amp_dtype
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            for x_m, y_m in zip(x.tensor_split(self.micro_batches), y.tensor_split(self.micro_batches)):
                what = f"training (epoch {epoch + 1}, step {step + 1})"
                h_in = self._input(x_m, len(y_m), args, what)
                image = self.learner.unnormalize(x_m) if self.objective.needs_image else None
                scaled = _ScaledObjective(self.objective, len(y_m) / len(y))
                h_out, loss = local_step(self.piece, scaled, h_in, y_m, image, amp)
                if self.k < self.K - 1:
                    self.link.isend(h_out.to(self.wire_dtype), self.k + 1, what)
                    if self.sync:
                        self.link.flush()
                else:
                    correct += (h_out.argmax(1) == y_m).sum()
                loss_sum += loss.double() * len(y)  # undoes the scale: sum of per-image losses
            self.optimizer.step()
            if self.sent_block is not None:
                self.link.isend(_flat(self.sent_block), self.k - 1, f"sending weights (epoch {epoch + 1}, step {step + 1})")
            if self.followed is not None and step > 0:
                self._follow(f"receiving weights of step {step} (epoch {epoch + 1})")
            seen += len(y)
            if self.sync:
                self.link.barrier(f"finishing step {step + 1} of epoch {epoch + 1}")
        if self.followed is not None and seen:
            self._follow(f"receiving the last weights of epoch {epoch + 1}")
        self.link.flush()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "loss_sum": loss_sum.item(),
                "correct": int(correct.item()), "seen": seen, "seconds": time.perf_counter() - start}

    @torch.no_grad()
    def _follow(self, what: str) -> None:
        """Receive the next piece's followed block (after its previous step) and run this objective's hook."""
        params = list(self.followed.parameters())
        flat = self.link.recv((sum(p.numel() for p in params),), params[0].dtype, self.k + 1, what)
        for p, value in zip(params, flat.split([p.numel() for p in params])):
            p.copy_(value.view_as(p))
        self.objective.after_optimizer_step()

    @torch.no_grad()
    def _evaluate(self, loader: DeviceLoader, args: argparse.Namespace) -> tuple[int, int]:
        """The whole network on the test set as a pipeline (the merged model's predictions, since eval-mode
        BatchNorm treats each image alone); (correct, total) is counted on the last rank."""
        self.piece.eval()
        amp = self.learner.amp_dtype
        size = math.ceil(args.batch_size / self.micro_batches)
        correct, total = torch.zeros((), dtype=torch.long, device=self.device), 0
        for x, y in loader:
            for x_m, y_m in zip(x.split(size), y.split(size)):
                h = self._input(x_m, len(y_m), args, "evaluating")
                with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                    h = self.piece(h)
                if self.k < self.K - 1:
                    self.link.isend(h.to(self.wire_dtype), self.k + 1, "evaluating")
                else:
                    correct += (h.argmax(1) == y_m).sum()
                total += len(y_m)
        self.link.flush()
        return int(correct.item()), total

    def finish_epoch(self, record: dict[str, Any], eval_loaders: dict[str, DeviceLoader],
                     args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]] | None:
        """Evaluate as a pipeline, then every rank sends its share (numbers, piece, optimiser) to rank 0,
        which merges them into one single-process checkpoint. Only point-to-point messages, so a lost
        rank is always named."""
        counts = {name: self._evaluate(loader, args) for name, loader in eval_loaders.items()}
        report = {**record, "eval_counts": counts,
                  "peak_memory_bytes": peak_memory_bytes(self.device)[0],
                  "model": piece_state_dict(self.learner, self.k),
                  "optimizer": optimizer_state_to_global(self.optimizer.state_dict(), self.indices)}
        if self.k > 0:
            self.link.send_object(report, 0, "sending its share of the checkpoint")
            return None
        reports = [report] + [self.link.recv_object(r, "gathering the checkpoint") for r in range(1, self.K)]
        last, seen = reports[-1], reports[-1]["seen"]
        losses = [r["loss_sum"] / seen for r in reports]
        if not all(math.isfinite(v) for v in losses):
            raise InfoProError(f"the training loss diverged at epoch {record['epoch']} (losses {losses}); lower --lr")
        seconds = max(r["seconds"] for r in reports)  # the epoch ends when the slowest rank is done
        model = self.learner.state_dict()  # every key; each piece's own come from its rank
        for r in reports:
            model.update(r["model"])
        merged = {
            "epoch": record["epoch"], "lr": record["lr"], "train_losses": losses,
            "train_accuracy": last["correct"] / seen, "epoch_seconds": seconds, "images_per_second": seen / seconds,
            "peak_memory_bytes": max(r["peak_memory_bytes"] for r in reports),
            "memory_kind": peak_memory_bytes(self.device)[1],
            "rank_peak_memory_bytes": [r["peak_memory_bytes"] for r in reports],
        }
        state = {"model": {k: v.cpu() for k, v in model.items()},
                 "optimizer": merge_optimizer_states([r["optimizer"] for r in reports])}
        return merged, {name: c / max(t, 1) for name, (c, t) in last["eval_counts"].items()}, state

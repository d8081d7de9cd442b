"""Data-parallel training: every rank a full learner on its own slice of each global batch.

All ranks iterate the same seeded `DeviceLoader` over the global batch
(`--batch-size`) and each takes slice `rank` of it (`tensor_split`), so no
sampler is needed and the slices are disjoint. After `train_step` the
gradients are all-reduced, each rank's weighted by its share of the batch, so
the step is the single-process step on the whole batch for per-image losses
(BatchNorm normalises each slice with its own statistics and a contrastive
loss pairs images within a slice only: there the result differs).

Why one all-reduce after the step rather than DistributedDataParallel: DDP over
the whole learner needs one forward() that builds all K graphs at once, losing
the memory saving; DDP around each piece and each objective would overlap the
reduction with the next piece's work but needs care for objectives without
parameters and broadcasts BatchNorm buffers on every forward. One flat
all-reduce per step is simple and exact; its cost is not overlapped.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..data import DeviceLoader
from ..errors import InfoProError
from ..local import LocalLearner
from ..device import peak_memory_bytes
from ..train.parts import count_correct, make_optimizer
from .messages import Link
from .setup import ParallelRuntime


class DataParallelTrainer:
    """A full learner per rank; the interface of `SingleProcessTrainer`."""

    def __init__(self, learner: LocalLearner, args: argparse.Namespace, runtime: ParallelRuntime) -> None:
        self.learner, self.runtime = learner, runtime
        self.rank, self.world = runtime.rank, runtime.world_size
        self.device = runtime.device
        self.params = list(learner.parameters())
        self.optimizer = make_optimizer(self.params, args)
        self.link = Link(self.rank, self.device, runtime.timeout)  # its wait() names the failure
        self.is_writer = self.rank == 0
        self.where = f"data-parallel over {self.world} ranks ({runtime.backend}, this one on {self.device})"

    def drop_last(self, num_samples: int, batch_size: int) -> bool:
        # Every rank's slice of the last batch needs 2 images for BatchNorm.
        return 0 < num_samples % batch_size < 2 * self.world

    def load_optimizer(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    def _all_reduce(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        try:
            work = dist.all_reduce(tensor, async_op=True)
        except RuntimeError as error:
            raise self.link._fail(None, what, error) from None
        self.link.wait(work, None, what)
        return tensor

    def _average_gradients(self, share: float, what: str) -> None:
        trained = [p for p in self.params if p.requires_grad]  # frozen ones (MAN's EMA copies) keep no gradient
        for p in trained:
            if p.grad is None:  # no rank may skip a parameter, or the flat buffers would not line up
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in trained]
        flat = self._all_reduce(_flatten_dense_tensors(grads).mul_(share), what)
        for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(reduced)

    def train_epoch(self, loader: DeviceLoader, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        self.learner.train()
        loader.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        sums = torch.zeros(self.learner.K + 2, dtype=torch.float64, device=self.device)  # losses, correct, seen
        start = time.perf_counter()
        for step, (x, y, batch) in enumerate(self._slices(loader)):
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.optimizer.zero_grad(set_to_none=True)
            out = self.learner.train_step(x, y)
            self._average_gradients(len(y) / batch, f"all-reducing gradients (epoch {epoch + 1}, step {step + 1})")
            self.optimizer.step()
            self.learner.after_optimizer_step()
            sums[:-2] += torch.tensor(out["losses"], dtype=torch.float64, device=self.device) * len(y)
            sums[-2] += (out["logits"].argmax(1) == y).sum()
            sums[-1] += len(y)
        seconds = time.perf_counter() - start
        self._all_reduce(sums, "summing the epoch's losses")
        seen = int(sums[-1].item())
        losses = (sums[:-2] / seen).tolist()
        if not all(math.isfinite(v) for v in losses):
            raise InfoProError(f"the training loss diverged at epoch {epoch + 1} (losses {losses}); lower --lr")
        return {"epoch": epoch + 1, "lr": lr, "train_losses": losses, "train_accuracy": sums[-2].item() / seen,
                "epoch_seconds": seconds, "images_per_second": seen / seconds}

    def _slices(self, loader: Any) -> Any:
        """(this rank's slice of each global batch, the global batch size). A streaming loader built with
        shard=(rank, world) decodes only this rank's slice; the device-resident one yields whole batches."""
        for step, (x, y) in enumerate(loader):
            if loader.shard is not None:
                yield x, y, loader.global_batch_size(step)
            else:
                yield x.tensor_split(self.world)[self.rank], y.tensor_split(self.world)[self.rank], len(y)

    def finish_epoch(self, record: dict[str, Any], eval_loaders: dict[str, DeviceLoader],
                     args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]] | None:
        """Average BatchNorm's running statistics over the ranks (each saw its own slices), evaluate each
        rank's slice of the test set, and let rank 0 return the (identical) weights."""
        for module in self.learner.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                for buffer in (module.running_mean, module.running_var):
                    self._all_reduce(buffer, "averaging BatchNorm statistics").div_(self.world)
        accuracies = {}
        for name, loader in eval_loaders.items():
            slices = ((x, y) for x, y, _ in self._slices(loader))
            correct, total = count_correct(self.learner, slices, args, self.device)
            counts = self._all_reduce(torch.stack([correct.double(), torch.tensor(
                float(total), device=self.device, dtype=torch.float64)]), "evaluating")
            accuracies[name] = counts[0].item() / max(counts[1].item(), 1)
        if not self.is_writer:
            return None
        record["peak_memory_bytes"], record["memory_kind"] = peak_memory_bytes(self.device)
        state = {"model": self.learner.state_dict(), "optimizer": self.optimizer.state_dict()}
        return record, accuracies, state

"""One training step of each way to train a network, and its peak memory, FLOPs and wall time.

Ways: `e2e` (plain backprop), `checkpoint` (gradient checkpointing with
`torch.utils.checkpoint.checkpoint_sequential`, K segments over the blocks and
the head, non-reentrant; the loss is the task's last objective, as E2E's)
and every local method in `METHODS` at K pieces with a cut preset, with or
without recomputation inside the pieces (`LocalLearner(recompute=...)`). A step is
zero_grad + forward/backward + SGD step (Nesterov momentum, weight decay), as
in training. The task (`infopro.tasks`, default classification) builds the
learner's losses and the batch's synthetic targets (segmentation: masks with
some unlabelled pixels).

Memory (`peak_bytes`):
- CUDA: `torch.cuda.max_memory_allocated` over the step after a reset: the
  parameters, optimiser state and batch already allocated, plus everything
  the step allocates (activations, gradients, temporaries, recomputation).
- CPU: the same quantity counted without an allocator: the bytes of the
  parameters, optimiser state and batch, plus the peak of every tensor
  storage the step creates (`LiveTensorMeter`). Also reported there:
  `saved_activation_bytes`, the peak of activations saved for backward
  (`SavedActivationMeter`) plus parameters, gradients and optimiser state;
  for `checkpoint` it is left out, because saved-tensor hooks cannot see what
  checkpointed segments save or recompute; for recomputed pieces it is the
  profile's model of their peak (`MemoryProfile.recompute_split`).
FLOPs: `torch.utils.flop_counter.FlopCounterMode` over forward and backward
(recomputation included). Time: median of N timed steps after warm-up.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential
from torch.utils.flop_counter import FlopCounterMode

from ..local import LocalLearner
from ..models import build_backbone
from ..tasks import Task, build_task
from .live_memory import LiveTensorMeter


@dataclass
class TrainingStep:
    """A model, the task it trains for and `run(x, y)`: forward, backward, no optimiser step."""

    method: str
    K: int
    cuts_preset: str
    cuts: list[int]
    input_shape: tuple[int, int, int]
    num_classes: int
    model: nn.Module
    run: Callable[[torch.Tensor, torch.Tensor], None]
    task: Task
    learner: LocalLearner | None = None  # the local learner whose pieces the step trains (None: checkpoint)
    segments: list[int] | None = None  # recomputed segments of each piece (None: no recomputation)


def build_step(arch: str, method: str, K: int, cuts: str, input_shape: tuple[int, int, int],
               num_classes: int, batch_size: int, device: torch.device, channels_last: bool = False,
               seed: int = 0, decoder_chunk_channels: int = 0, task: Task | None = None,
               recompute: int | str | None = None, recompute_aux: bool = False) -> TrainingStep:
    """Build the model of one benchmark row for `task` (default classification); raises InfoProError if the
    cuts do not exist for it or the task refuses the method. `recompute`, `recompute_aux`: the local
    learner's (`LocalLearner`), recomputation inside its pieces."""
    task = task if task is not None else build_task("classify")
    torch.manual_seed(seed)
    backbone = build_backbone(arch, num_classes, input_shape[0]).to(device)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    if method == "checkpoint":
        # E2E's network and loss (the task's last objective: segmentation's includes the FCN auxiliary head).
        e2e = LocalLearner(backbone, 1, "e2e", input_shape=input_shape, num_classes=num_classes, task=task)
        seq, objective = e2e.pieces[0], e2e.aux[0]

        def run(x: torch.Tensor, y: torch.Tensor) -> None:
            # checkpoint_sequential keeps the last segment's activations (it runs without checkpointing).
            out = checkpoint_sequential(seq, K, x, use_reentrant=False) if K > 1 else seq(x)
            objective(out, y).backward()
            objective.after_backward()  # e.g. drops an auxiliary tap that a recomputed segment refilled

        return TrainingStep(method, K, f"{K} segments", [], input_shape, num_classes, e2e, run, task)
    learner = LocalLearner(backbone, K, method, cuts=cuts if K > 1 else "even", input_shape=input_shape,
                           num_classes=num_classes, profile_batch_size=batch_size,
                           decoder_chunk_channels=decoder_chunk_channels, task=task, recompute=recompute,
                           recompute_aux=recompute_aux)
    segments = [piece.segments for piece in learner.pieces] if learner.recompute is not None else None
    return TrainingStep(method, K, cuts if K > 1 else "-", learner.cuts, input_shape, num_classes, learner,
                        lambda x, y: learner.train_step(x, y), task, learner, segments)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measure_step(step: TrainingStep, batch_size: int, device: torch.device, timed_steps: int = 3,
                 warmup_steps: int = 1, channels_last: bool = False, seed: int = 0) -> dict[str, Any]:
    """Peak memory, FLOPs and median wall time of `step` on a random batch."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *step.input_shape, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = step.task.example_targets(batch_size, step.input_shape, step.num_classes, gen).to(device)
    optimizer = torch.optim.SGD(step.model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)

    def one_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        step.run(x, y)
        optimizer.step()
        if step.learner is not None:
            step.learner.after_optimizer_step()  # MAN's EMA update is part of its step

    # The first warm-up step also counts FLOPs (counting perturbs memory: FlopCounterMode keeps
    # tensors that checkpointing would free, so memory is measured in a step of its own).
    flops = FlopCounterMode(display=False)
    with flops:
        one_step()
    for _ in range(warmup_steps - 1):
        one_step()
    _sync(device)
    optimizer.zero_grad(set_to_none=True)
    row: dict[str, Any] = {"flops": flops.get_total_flops()}
    opt_state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        one_step()
        _sync(device)
        row.update(peak_bytes=torch.cuda.max_memory_allocated(device), memory_kind="cuda_max_memory_allocated")
    else:
        existing = [*step.model.state_dict().values(), *opt_state, x, y]
        with LiveTensorMeter(exclude=existing) as live:
            one_step()
        row.update(peak_bytes=_tensor_bytes(existing) + live.peak_bytes, memory_kind="cpu_live_tensors")
    if step.learner is not None:
        # Saved activations per piece, from the profile (equal to SavedActivationMeter around train_step).
        pieces = step.learner.piece_memory(batch_size)
        params = list(step.model.parameters())
        row.update(
            piece_memory=[list(p) for p in pieces],
            saved_activation_bytes=max(sum(p) for p in pieces),
            # The CPU count adds parameters, their gradients and the optimiser state.
            state_bytes=2 * _tensor_bytes(params) + _tensor_bytes(opt_state),
        )

    seconds = []
    for _ in range(timed_steps):
        _sync(device)
        start = time.perf_counter()
        one_step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    row.update(step_seconds=statistics.median(seconds), step_seconds_min=min(seconds), step_seconds_max=max(seconds),
               step_seconds_all=seconds)
    return row

"""Data parallel on PyTorch's own engine: one `DistributedDataParallel` per (piece, objective) pair.

One DDP around the whole learner would need one forward() that builds all K graphs at once (losing
local learning's memory saving). A DDP per pair sees exactly one piece's forward and backward, so the
learner still holds one piece's graph at a time.

Overlap: DDP starts all-reducing a bucket of gradients as soon as the backward pass has filled it.
Its stock hook then makes the end of each backward wait for the reduction, which on NCCL only orders
the streams (the host goes on to the next piece) but on gloo blocks the host. `DeferredMean` instead
returns at once and keeps the pending reductions, which `wait()` collects before the optimiser step:
piece k's all-reduce runs (in the communication thread or stream) while piece k+1 computes, on any
backend. The gradients are bucket views (`gradient_as_bucket_view`), so the in-place reduction lands
in `.grad` with no copy.
"""

import inspect
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .messages import Link

# No buffer broadcast at each forward. torch 2.13 renamed DDP's `broadcast_buffers` to
# `forward_sync_buffers` (the old name warns there); older torch only has the old name, which also skips
# the broadcast of buffers at construction. That broadcast copies nothing here: every process builds the
# learner from the same seed before wrapping it, so the buffers are already equal on every rank.
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class DeferredMean:
    """A DDP communication hook state: each bucket is averaged over `group` asynchronously; `wait()`
    blocks until every reduction started since the last call is done (a lost peer names itself)."""

    def __init__(self, group: dist.ProcessGroup, link: "Link") -> None:
        self.group, self.link = group, link
        self.size = dist.get_world_size(group)
        self.pending: list[Any] = []

    def wait(self, what: str) -> None:
        pending, self.pending = self.pending, []
        for work in pending:
            self.link.wait(work, None, what)


# Not postponed annotations: DDP checks the hook's by value.
def _deferred_mean_hook(state: DeferredMean, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    buffer = bucket.buffer().div_(state.size)
    state.pending.append(dist.all_reduce(buffer, group=state.group, async_op=True))
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(buffer)  # reduced in place by the time `wait()` returns
    return done


def wrap_pair(pair: nn.Module, state: DeferredMean, device: torch.device) -> DistributedDataParallel:
    """`pair` (a `LocalPair`) in its own DDP over `state.group`.

    BatchNorm buffers are not copied from the first rank at each forward (`_NO_FORWARD_BUFFER_SYNC`):
    each rank keeps its own running statistics, averaged over the group at the end of each epoch. The
    graph of a pair is the same at every step, so DDP may treat it as static.
    """
    ddp = DistributedDataParallel(
        pair, device_ids=[device] if device.type == "cuda" else None, process_group=state.group,
        gradient_as_bucket_view=True, static_graph=True, **_NO_FORWARD_BUFFER_SYNC,
    )
    ddp.register_comm_hook(state, _deferred_mean_hook)
    return ddp


def to_sync_batchnorm(module: nn.Module, group: dist.ProcessGroup) -> None:
    """Swap every BatchNorm in `module`'s children for a `SyncBatchNorm` over `group` (same parameters and
    buffers, same state-dict keys): the batch statistics of the whole global batch, on CUDA only."""
    for name, child in module.named_children():
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(child, group)
        if converted is not child:
            setattr(module, name, converted)

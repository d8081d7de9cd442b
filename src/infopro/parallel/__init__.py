"""Several processes under torchrun on a pieces x data `DeviceMesh` (`--parallel pieces`, `data`,
`pieces,data`), with torch.distributed (gloo on CPU, NCCL on CUDA) and one `DistributedDataParallel`
per (piece, objective) pair along the data dimension.

Depends on `local` (the learner's pieces and `pair_step`), `data` (the loader), `device` and
`epoch_metrics` (the per-epoch numbers), never on the training loop: the loop builds the learner and
hands it, with an optimiser factory, to `MeshTrainer`.
"""

from .merge import (
    merge_optimizer_states,
    optimizer_state_for,
    optimizer_state_to_global,
    piece_state_dict,
)
from .messages import Link, PeerLost
from .setup import ParallelRuntime, start_parallel
from .trainer import MeshTrainer

__all__ = [
    "Link", "MeshTrainer", "ParallelRuntime", "PeerLost", "merge_optimizer_states", "optimizer_state_for",
    "optimizer_state_to_global", "piece_state_dict", "start_parallel",
]

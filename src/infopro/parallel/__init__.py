"""Several processes under torchrun: pieces on separate devices (`--parallel pieces`) and data parallel
(`--parallel data`), both with torch.distributed (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..local import LocalLearner
from .data import DataParallelTrainer
from .merge import (
    merge_optimizer_states,
    optimizer_state_for,
    optimizer_state_to_global,
    piece_state_dict,
)
from .messages import Link, PeerLost
from .pieces import PiecesTrainer
from .setup import ParallelRuntime, start_parallel


def build_parallel_trainer(args: argparse.Namespace, runtime: ParallelRuntime,
                           data: Any) -> tuple[LocalLearner, PiecesTrainer | DataParallelTrainer]:
    """Every rank builds the same whole learner from the same seed (identical initial weights); pieces
    mode builds it on the CPU and moves only this rank's piece to its device."""
    from ..train.parts import build_learner

    build_on = torch.device("cpu") if runtime.mode == "pieces" else runtime.device
    learner = build_learner(args, data.image_shape, data.num_classes, data.mean, data.std, build_on)
    trainer = PiecesTrainer if runtime.mode == "pieces" else DataParallelTrainer
    return learner, trainer(learner, args, runtime)


__all__ = [
    "DataParallelTrainer", "Link", "ParallelRuntime", "PeerLost", "PiecesTrainer", "build_parallel_trainer",
    "merge_optimizer_states", "optimizer_state_for", "optimizer_state_to_global", "piece_state_dict", "start_parallel",
]

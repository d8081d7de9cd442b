"""One process per rank under torchrun: read its environment, pick the device, open the process group."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import InfoProError


@dataclass(frozen=True)
class ParallelRuntime:
    """Where this process stands in the torchrun world."""

    mode: str  # "pieces" or "data"
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # "gloo" on CPU, "nccl" on CUDA
    timeout: timedelta

    def finish(self) -> None:
        """Wait until every rank has finished its work (rank 0 writes last)."""
        from .messages import Link

        Link(self.rank, self.device, self.timeout).barrier("finishing the run")

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def rank_device(requested: str, local_rank: int) -> torch.device:
    """One device per process: cuda:LOCAL_RANK when CUDA is asked for (or `auto` finds it), else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    kind = requested.split(":")[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise InfoProError(f"--device {requested!r} cannot be used with --parallel; use auto, cpu or cuda")
    if not torch.cuda.is_available():
        raise InfoProError(f"--device {requested} asked for, but this PyTorch sees no CUDA device; use --device cpu")
    if local_rank >= torch.cuda.device_count():
        raise InfoProError(f"local rank {local_rank} needs cuda:{local_rank}, but this node has "
                           f"{torch.cuda.device_count()} CUDA devices; start fewer processes per node")
    # Each process owns the GPU of its local rank, whatever index --device named.
    return torch.device("cuda", local_rank)


def start_parallel(args: argparse.Namespace) -> ParallelRuntime | None:
    """None for `--parallel none`; else join the process group torchrun describes in the environment."""
    if args.parallel == "none":
        if args.micro_batches != 1 or args.sync_pieces:
            raise InfoProError("--micro-batches and --sync-pieces only apply to --parallel pieces")
        return None
    if args.parallel == "data" and (args.micro_batches != 1 or args.sync_pieces):
        raise InfoProError("--micro-batches and --sync-pieces only apply to --parallel pieces")
    launch = (f"torchrun --nproc-per-node {args.K if args.parallel == 'pieces' else 'N'} -m infopro train "
              f"--parallel {args.parallel} ...")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise InfoProError(f"--parallel {args.parallel} runs one process per rank, started by torchrun "
                           f"(RANK and WORLD_SIZE are not set): {launch}")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.parallel == "pieces" and world_size != args.K:
        raise InfoProError(f"--parallel pieces puts one piece on each rank: the world has {world_size} processes "
                           f"but --K is {args.K}; {launch}")
    if args.parallel == "data" and args.batch_size < 2 * world_size:
        raise InfoProError(f"--parallel data splits each batch of {args.batch_size} over {world_size} ranks; "
                           f"BatchNorm needs at least 2 images per rank: use --batch-size {2 * world_size} or more")
    device = rank_device(args.device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=args.dist_timeout)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # NCCL's wait() otherwise returns at once (the stream waits, not the host) and its timeout is only
        # the watchdog's; blocking wait makes every `work.wait(timeout)` block and raise on time-out, as gloo does.
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    # The same timeout bounds the rendezvous and every collective; point-to-point waits pass it explicitly.
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
    return ParallelRuntime(args.parallel, rank, world_size, local_rank, device, backend, timeout)

"""One process per rank under torchrun: read its environment, pick the device, open the process group."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..errors import InfoProError


@dataclass(frozen=True)
class ParallelRuntime:
    """Where this process stands in the torchrun world: position (piece_rank, data_rank) on a
    `pieces x data` `DeviceMesh`. `--parallel pieces` is the mesh K x 1, `data` 1 x D (every process holds
    all K pieces), `pieces,data` K x D."""

    mode: str  # "pieces", "data" or "pieces,data"
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # "gloo" on CPU, "nccl" on CUDA
    timeout: timedelta
    mesh: DeviceMesh  # dimensions ("pieces", "data"); rank of (p, d) is mesh.mesh[p, d]

    @property
    def pieces(self) -> int:
        return self.mesh.size(0)

    @property
    def data(self) -> int:
        return self.mesh.size(1)

    @property
    def piece_rank(self) -> int:
        return self.mesh.get_local_rank("pieces")

    @property
    def data_rank(self) -> int:
        return self.mesh.get_local_rank("data")

    @property
    def data_group(self) -> dist.ProcessGroup:
        """The D processes that hold the same pieces: gradients and BatchNorm statistics meet here only."""
        return self.mesh.get_group("data")

    def rank_of(self, piece_rank: int, data_rank: int) -> int:
        return int(self.mesh.mesh[piece_rank, data_rank])

    def name(self, rank: int) -> str:
        """How a message names another process: 'rank 3 (piece 2 of 2, data slice 2 of 2)'."""
        p, d = divmod(rank, self.data)  # init_device_mesh lays the ranks out row by row
        where = ([f"piece {p + 1} of {self.pieces}"] if self.pieces > 1 else []) + \
                ([f"data slice {d + 1} of {self.data}"] if self.data > 1 else [])
        return f"rank {rank} ({', '.join(where)})"

    @property
    def build_device(self) -> torch.device:
        """Where every rank builds the whole learner (same seed, same initial weights): the CPU when it
        holds one piece of it (only that piece moves to the device), else its device."""
        return torch.device("cpu") if self.pieces > 1 else self.device

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


PIECES_ONLY = "--micro-batches and --sync-pieces only apply to --parallel pieces or pieces,data"


def start_parallel(args: argparse.Namespace) -> ParallelRuntime | None:
    """None for `--parallel none`; else join the process group torchrun describes in the environment and
    lay the ranks out on the pieces x data mesh."""
    has_pieces = "pieces" in args.parallel.split(",")
    if not has_pieces and (args.micro_batches != 1 or args.sync_pieces):
        raise InfoProError(PIECES_ONLY)
    if args.parallel == "none":
        if args.sync_batchnorm:
            raise InfoProError("--sync-batchnorm only applies to --parallel data or pieces,data")
        return None
    nproc = {"pieces": str(args.K), "data": "D", "pieces,data": f"{args.K}xD"}[args.parallel]
    launch = f"torchrun --nproc-per-node {nproc} -m infopro train --parallel {args.parallel} ..."
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise InfoProError(f"--parallel {args.parallel} runs one process per rank, started by torchrun "
                           f"(RANK and WORLD_SIZE are not set): {launch}")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.parallel == "pieces" and world_size != args.K:
        raise InfoProError(f"--parallel pieces puts one piece on each rank: the world has {world_size} processes "
                           f"but --K is {args.K}; {launch}")
    if args.parallel == "pieces,data" and world_size % args.K:
        raise InfoProError(f"--parallel pieces,data lays {world_size} processes out as --K {args.K} pieces x D data "
                           f"slices, but {world_size} is not a multiple of {args.K}; start K x D processes")
    shape = {"pieces": (args.K, 1), "data": (1, world_size), "pieces,data": (args.K, world_size // args.K)}[args.parallel]
    data = shape[1]
    if data > 1 and args.batch_size < 2 * data * args.micro_batches:
        raise InfoProError(f"--parallel {args.parallel} splits each batch of {args.batch_size} over {data} data slices"
                           f"{f' of {args.micro_batches} micro-batches' if args.micro_batches > 1 else ''}; BatchNorm "
                           f"needs at least 2 images in each: use --batch-size {2 * data * args.micro_batches} or more")
    if args.sync_batchnorm and data == 1:
        raise InfoProError(f"--sync-batchnorm needs a data dimension (--parallel data or pieces,data); "
                           f"--parallel {args.parallel} has one data slice")
    device = rank_device(args.device, local_rank)
    if args.sync_batchnorm and device.type != "cuda":
        raise InfoProError("--sync-batchnorm needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); "
                           "drop it on the CPU (each rank then normalises with its own slice's statistics)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=args.dist_timeout)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # NCCL's wait() otherwise returns at once (the stream waits, not the host) and its timeout is only
        # the watchdog's; blocking wait makes every `work.wait(timeout)` block and raise on time-out, as gloo does.
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    # The same timeout bounds the rendezvous and every collective; point-to-point waits pass it explicitly.
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
    mesh = init_device_mesh(device.type, shape, mesh_dim_names=("pieces", "data"))
    return ParallelRuntime(args.parallel, rank, world_size, local_rank, device, backend, timeout, mesh)

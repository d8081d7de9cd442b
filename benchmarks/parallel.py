"""Images/s of pieces-parallel training (K processes, one CPU core each) against the single-process
learner on one core (the same total work), on synthetic CIFAR-sized images.

Each configuration is a fresh set of processes: the baseline is `SingleProcessTrainer.train_epoch`,
the parallel rows are `PiecesTrainer.train_epoch` in K gloo processes started with torchrun's
environment variables, each pinned to its own core (`os.sched_setaffinity`, one torch thread).
The ideal speed-up is K with perfectly balanced pieces; with the measured cost of each piece
(its forward, local loss and backward, timed in the baseline process) it is total / slowest piece,
since the pipeline runs at the pace of its slowest stage.

    python benchmarks/parallel.py --arch resnet32 --method infopro-contrast --cuts even --batch-size 64 --steps 40 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from infopro.cli import get_args_parser
from infopro.constants import CIFAR_MEAN, CIFAR_STD
from infopro.data import DeviceLoader
from infopro.local import local_step
from infopro.train.args import check_args
from infopro.train.loop import SingleProcessTrainer, build_learner

WARMUP_STEPS = 3


def train_args(opts: argparse.Namespace, K: int, extra: list[str]) -> argparse.Namespace:
    argv = ["train", "--arch", opts.arch, "--method", opts.method, "--K", str(K), "--cuts", opts.cuts,
            "--batch-size", str(opts.batch_size), "--device", "cpu", "--quiet", "--epochs", "1", *extra]
    args = get_args_parser(argv).parse_args(argv)
    check_args(args)
    return args


def loaders(opts: argparse.Namespace) -> tuple[DeviceLoader, DeviceLoader]:
    """(warm-up, timed) loaders over the same random images on every rank (fixed seed)."""
    rng = np.random.default_rng(0)
    n = opts.steps * opts.batch_size
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    make = lambda m: DeviceLoader(images[:m], labels[:m], "cpu", opts.batch_size, CIFAR_MEAN, CIFAR_STD, train=True)
    return make(WARMUP_STEPS * opts.batch_size), make(n)


def pin(core: int) -> None:
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)


def worker(opts: argparse.Namespace) -> None:
    """One process of a measurement; writes {start, end, ...} as JSON to --result."""
    rank = int(os.environ.get("RANK", "0"))
    pin(opts.cores[rank])
    warm, timed = loaders(opts)
    extra = ["--micro-batches", str(opts.micro_batches)] + (["--sync-pieces"] if opts.sync else [])
    if opts.worker == "single":
        args = train_args(opts, opts.K, [])
        learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, torch.device("cpu"))
        trainer = SingleProcessTrainer(learner, args, torch.device("cpu"))
        trainer.train_epoch(warm, 0, args)
        start = time.time()
        trainer.train_epoch(timed, 0, args)
        result = {"start": start, "end": time.time(), "piece_seconds": piece_seconds(learner, warm, opts.steps)}
    else:
        import torch.distributed as dist

        import infopro.parallel.pieces as pieces_module
        from infopro.parallel import PiecesTrainer, start_parallel

        busy = [0.0]

        def timed_local_step(*a, **kw):  # this rank's own work, without its waits for messages
            start = time.perf_counter()
            out = local_step(*a, **kw)
            busy[0] += time.perf_counter() - start
            return out

        pieces_module.local_step = timed_local_step
        args = train_args(opts, opts.K, ["--parallel", "pieces", *extra])
        runtime = start_parallel(args)
        learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, torch.device("cpu"))
        trainer = PiecesTrainer(learner, args, runtime)
        trainer.train_epoch(warm, 0, args)
        dist.barrier()
        busy[0] = 0.0
        start = time.time()
        trainer.train_epoch(timed, 0, args)
        result = {"start": start, "end": time.time(), "busy_seconds_per_step": busy[0] / opts.steps}
        dist.barrier()
        runtime.close()
    Path(f"{opts.result}.{rank}").write_text(json.dumps(result))


def piece_seconds(learner, loader: DeviceLoader, steps: int) -> list[float]:
    """Seconds per step of each piece's local_step (forward, local loss, backward), averaged."""
    totals = [0.0] * learner.K
    count = 0
    learner.train()
    while count < min(steps, 20):
        for x, y in loader:
            image = learner.unnormalize(x)
            h = x
            for k, (piece, objective) in enumerate(zip(learner.pieces, learner.aux)):
                start = time.perf_counter()
                h, _ = local_step(piece, objective, h, y, image if objective.needs_image else None)
                totals[k] += time.perf_counter() - start
            learner.zero_grad(set_to_none=True)
            count += 1
    return [t / count for t in totals]


def measure(opts: argparse.Namespace, kind: str, K: int, micro_batches: int = 1, sync: bool = False) -> dict:
    """Start the processes of one row, wait for them, return images/s over the slowest rank's span."""
    world = 1 if kind == "single" else K
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result"
        port = _free_port()
        command = [sys.executable, __file__, "--worker", kind, "--result", str(result), "--K", str(K),
                   "--micro-batches", str(micro_batches), "--arch", opts.arch, "--method", opts.method,
                   "--cuts", opts.cuts, "--batch-size", str(opts.batch_size), "--steps", str(opts.steps),
                   "--cores", *map(str, range(world)), *(["--sync"] if sync else [])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs = [subprocess.Popen(command, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise SystemExit(f"a benchmark process failed ({kind}, K={K})")
        parts = [json.loads(Path(f"{result}.{r}").read_text()) for r in range(world)]
    seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    row = {"mode": kind, "K": K, "processes": world, "micro_batches": micro_batches, "sync": sync,
           "images": opts.steps * opts.batch_size, "seconds": seconds,
           "images_per_second": opts.steps * opts.batch_size / seconds}
    if "piece_seconds" in parts[0]:
        row["piece_seconds"] = parts[0]["piece_seconds"]
    else:
        row["rank_busy_seconds"] = [p["busy_seconds_per_step"] for p in parts]
    return row


def best_of(opts: argparse.Namespace, repeats: int, *config) -> dict:
    """The fastest of `repeats` runs of one row (the machine is shared: slower runs met other work)."""
    runs = [measure(opts, *config) for _ in range(repeats)]
    best = max(runs, key=lambda r: r["images_per_second"])
    return {**best, "all_images_per_second": [r["images_per_second"] for r in runs]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet32")
    parser.add_argument("--method", default="infopro-contrast")
    parser.add_argument("--cuts", default="even")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per row")
    parser.add_argument("--K", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the fastest is reported")
    parser.add_argument("--out", default="benchmarks/results/parallel.json")
    # internal: one process of a measurement
    parser.add_argument("--worker", choices=["single", "pieces"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, nargs="+", default=[0], help=argparse.SUPPRESS)
    parser.add_argument("--sync", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        opts.K, opts.micro_batches = opts.K[0], opts.micro_batches[0]
        worker(opts)
        return

    cores = len(os.sched_getaffinity(0))
    rows, notes = [], []
    for K in opts.K:
        if K > cores:
            notes.append(f"K={K} skipped: it needs {K} cores, this machine gives {cores}")
            continue
        base = best_of(opts, opts.repeats, "single", K)
        shares = base["piece_seconds"]
        ideal = sum(shares) / max(shares)
        rows.append({**base, "speedup": 1.0, "ideal": 1.0})
        runs = [(1, True)] + [(m, False) for m in opts.micro_batches]
        for micro_batches, sync in runs:
            row = best_of(opts, opts.repeats, "pieces", K, micro_batches, sync)
            rows.append({**row, "speedup": row["images_per_second"] / base["images_per_second"], "ideal": ideal})
        print(f"K={K}: cost of each piece per step in the single process {', '.join(f'{s * 1000:.0f} ms' for s in shares)} "
              f"-> ideal speed-up {ideal:.2f}x (balanced: {K}x)", flush=True)
        for row in rows[-len(runs):]:
            busy = ", ".join(f"{s * 1000:.0f} ms" for s in row["rank_busy_seconds"])
            notes.append(f"K={K}, {'synchronous' if row['sync'] else 'pipelined'}, {row['micro_batches']} micro-batches: "
                         f"each rank's own work (local_step) per step {busy}")

    print(f"\n{opts.arch} · {opts.method} · cuts {opts.cuts} · batch {opts.batch_size} · {opts.steps} steps · "
          f"one CPU core per process ({cores} cores)\n")
    print("| mode | K | processes | micro-batches | images/s | speed-up | ideal (slowest piece) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mode = "single process" if r["mode"] == "single" else ("pieces, synchronous" if r["sync"] else "pieces, pipelined")
        micro = "-" if r["mode"] == "single" else r["micro_batches"]
        print(f"| {mode} | {r['K']} | {r['processes']} | {micro} | {r['images_per_second']:.1f} | "
              f"{r['speedup']:.2f}x | {r['ideal']:.2f}x |")
    print()
    for note in notes:
        print(note)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {k: v for k, v in vars(opts).items() if k not in ("worker", "result", "cores", "sync")},
                               "cores": cores, "rows": rows, "notes": notes,
                               "torch": torch.__version__}, indent=2) + "\n")
    print(f"\n-> {out}")


if __name__ == "__main__":
    main()

"""Images/s of training on several processes (one CPU core each) against the single-process learner on
one core (the same total work), on synthetic CIFAR-sized images, and a model of the speed-up on K devices.

Rows: `--parallel pieces` at K (synchronous; pipelined with 1 and more micro-batches), `--parallel data`
at D=2 (DDP per piece, each rank a K-piece learner on half of each batch) and `--parallel pieces,data` on
the K x 2 mesh. Each row is a fresh set of processes started with torchrun's environment variables, each
pinned to a core (`os.sched_setaffinity`, one torch thread): with more processes than cores (the K x 2
mesh on a 2-core machine) two processes share each core, so that row measures oversubscription and the
messages, not the mesh's speed-up.

Wall-clock images/s and speed-up are what the processes achieved on this machine at the time; where other
jobs share the cores, a single process gets a smaller share of the CPU than several, which can push a
"speed-up" past what the cores allow. "CPU-time speed-up" is the contention-free counterpart: images per
CPU-second of the busiest process (waits for messages cost no CPU time), over the single process's.

The model: a pipeline of K pieces runs at the pace of its slowest stage, and a stage also moves h across
its cut (bytes per step = batch x the cut's feature size x 4 for float32). With each piece's compute time
t_k (its forward, local loss and backward, timed in one process) and a link of bandwidth B, one step
takes max_k max(t_k, bytes_k / B) when sends overlap compute (the pipelined mode), so the speed-up over
one device is sum_k t_k / that. It is printed for K = 2, 4, 8 and several link speeds, from the pieces'
times on this machine (`--model-device cuda` times them on a GPU to predict GPU figures).

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
from infopro.train.loop import SingleProcessTrainer, build_learner, make_optimizer

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
    pin(opts.cores[rank % len(opts.cores)])
    warm, timed = loaders(opts)
    if opts.worker == "single":
        args = train_args(opts, opts.K, [])
        learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, torch.device("cpu"))
        trainer = SingleProcessTrainer(learner, args, torch.device("cpu"))
        trainer.train_epoch(warm, 0, args)
        start, cpu = time.time(), time.process_time()
        trainer.train_epoch(timed, 0, args)
        result = {"start": start, "end": time.time(), "cpu_seconds": time.process_time() - cpu,
                  "piece_seconds": piece_seconds(learner, warm, opts.steps)}
    else:
        from functools import partial

        import torch.distributed as dist

        import infopro.parallel.trainer as trainer_module
        from infopro.parallel import MeshTrainer, start_parallel

        busy = [0.0]
        pair_step = trainer_module.pair_step

        def timed_pair_step(*a, **kw):  # this rank's own work, without its waits for messages
            start = time.perf_counter()
            out = pair_step(*a, **kw)
            busy[0] += time.perf_counter() - start
            return out

        trainer_module.pair_step = timed_pair_step
        extra = ["--micro-batches", str(opts.micro_batches)] + (["--sync-pieces"] if opts.sync else [])
        args = train_args(opts, opts.K, ["--parallel", opts.worker, *(extra if "pieces" in opts.worker else [])])
        runtime = start_parallel(args)
        learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, runtime.build_device)
        trainer = MeshTrainer(learner, args, runtime, partial(make_optimizer, args=args))
        trainer.train_epoch(warm, 0, args)
        dist.barrier()
        busy[0] = 0.0
        start, cpu = time.time(), time.process_time()
        trainer.train_epoch(timed, 0, args)
        result = {"start": start, "end": time.time(), "cpu_seconds": time.process_time() - cpu,
                  "busy_seconds_per_step": busy[0] / opts.steps}
        dist.barrier()
        runtime.close()
    Path(f"{opts.result}.{rank}").write_text(json.dumps(result))


def clock(device: torch.device) -> float:
    """CPU: this process's CPU time (one thread: the work done, whatever share of the core other jobs left
    it); CUDA: wall time after the device has finished its queue."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def piece_seconds(learner, loader: DeviceLoader, steps: int) -> list[float]:
    """Seconds per step of each piece's local_step (forward, local loss, backward), averaged (`clock`)."""
    totals = [0.0] * learner.K
    count = 0
    learner.train()
    while count < min(steps, 20):
        for x, y in loader:
            image = learner.unnormalize(x)
            h = x
            for k, (piece, objective) in enumerate(zip(learner.pieces, learner.aux)):
                start = clock(x.device)
                h, _ = local_step(piece, objective, h, y, image if objective.needs_image else None)
                totals[k] += clock(x.device) - start
            learner.zero_grad(set_to_none=True)
            count += 1
    return [t / count for t in totals]


WORLD = {"single": lambda K: 1, "pieces": lambda K: K, "data": lambda K: 2, "pieces,data": lambda K: 2 * K}


def measure(opts: argparse.Namespace, kind: str, K: int, micro_batches: int = 1, sync: bool = False) -> dict:
    """Start the processes of one row, wait for them, return images/s over the slowest rank's span."""
    world = WORLD[kind](K)
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result"
        port = _free_port()
        command = [sys.executable, __file__, "--worker", kind, "--result", str(result), "--K", str(K),
                   "--micro-batches", str(micro_batches), "--arch", opts.arch, "--method", opts.method,
                   "--cuts", opts.cuts, "--batch-size", str(opts.batch_size), "--steps", str(opts.steps),
                   "--cores", *map(str, cores[:world]), *(["--sync"] if sync else [])]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs = [subprocess.Popen(command, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(world)]
        for p in procs:
            if p.wait(timeout=1800) != 0:
                raise SystemExit(f"a benchmark process failed ({kind}, K={K})")
        parts = [json.loads(Path(f"{result}.{r}").read_text()) for r in range(world)]
    seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    row = {"mode": kind, "K": K, "processes": world, "cores_used": min(world, len(cores)),
           "micro_batches": micro_batches, "sync": sync, "images": opts.steps * opts.batch_size, "seconds": seconds,
           "images_per_second": opts.steps * opts.batch_size / seconds}
    # Contention-free estimate: the step as fast as the busiest process's CPU time allows, as if each
    # process had a core of its own (waits for messages cost no CPU time, so a pipeline bubble is missed).
    row["rank_cpu_seconds"] = [p["cpu_seconds"] for p in parts]
    row["images_per_cpu_second_of_busiest"] = opts.steps * opts.batch_size / max(row["rank_cpu_seconds"])
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


def cut_bytes(opts: argparse.Namespace, K: int) -> list[int]:
    """Bytes of h that cross each of the K-1 cuts per step (float32)."""
    args = train_args(opts, K, [])
    learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, torch.device("cpu"))
    return [opts.batch_size * 4 * int(np.prod(info.output_shape)) for info in learner.describe()[:-1]]


def model_speedup(piece_seconds: list[float], cut_bytes: list[int], bandwidth: float) -> float:
    """Predicted speed-up of the pipelined pieces over one device: sum of the pieces' times over the
    slowest stage, a stage taking the longer of its compute and its send (they overlap)."""
    sends = [b / bandwidth for b in cut_bytes] + [0.0]
    return sum(piece_seconds) / max(max(t, s) for t, s in zip(piece_seconds, sends))


def modelled_piece_seconds(opts: argparse.Namespace, K: int) -> list[float]:
    """Each piece's local_step time at K pieces on --model-device (one process, a few steps)."""
    device = torch.device(opts.model_device)
    args = train_args(opts, K, [])
    learner = build_learner(args, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD, device)
    if opts.model_device == "cpu":
        torch.set_num_threads(1)  # one core per piece, as in the measured rows
    rng = np.random.default_rng(0)
    n = 6 * opts.batch_size
    loader = DeviceLoader(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n), device,
                          opts.batch_size, CIFAR_MEAN, CIFAR_STD, train=True)
    piece_seconds(learner, loader, 2)  # warm-up
    return piece_seconds(learner, loader, 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet32")
    parser.add_argument("--method", default="infopro-contrast")
    parser.add_argument("--cuts", default="even")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per row")
    parser.add_argument("--K", type=int, nargs="*", default=[2], help="measured K values (none: only the model)")
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the fastest is reported")
    parser.add_argument("--model-K", type=int, nargs="+", default=[2, 4, 8], help="K values of the speed-up model")
    parser.add_argument("--bandwidths", type=float, nargs="+", default=[1e9, 25e9, 300e9],
                        help="link speeds of the model, bytes/s (default: 1 GB/s, PCIe 4 x16 ~25 GB/s, NVLink ~300 GB/s)")
    parser.add_argument("--model-device", default="cpu", help="where the model's piece times are measured")
    parser.add_argument("--out", default="benchmarks/results/parallel.json")
    # internal: one process of a measurement
    parser.add_argument("--worker", choices=list(WORLD), help=argparse.SUPPRESS)
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
        base = best_of(opts, opts.repeats, "single", K)
        shares = base["piece_seconds"]
        ideal = sum(shares) / max(shares)
        rows.append({**base, "speedup": 1.0, "ideal": 1.0, "cpu_speedup": 1.0})
        configs = [("pieces", 1, True)] + [("pieces", m, False) for m in opts.micro_batches] + \
                  [("data", 1, False), ("pieces,data", 1, False)]
        for kind, micro_batches, sync in configs:
            world = WORLD[kind](K)
            row = best_of(opts, opts.repeats, kind, K, micro_batches, sync)
            # With a core per process. pieces: the slowest piece bounds the pipeline; data: 2 slices at once.
            row_ideal = {"pieces": ideal, "data": 2.0, "pieces,data": 2 * ideal}[kind]
            rows.append({**row, "speedup": row["images_per_second"] / base["images_per_second"], "ideal": row_ideal,
                         "cpu_speedup": row["images_per_cpu_second_of_busiest"] / base["images_per_cpu_second_of_busiest"]})
            busy = ", ".join(f"{s * 1000:.0f} ms" for s in row["rank_busy_seconds"])
            notes.append(f"K={K}, {kind}{', synchronous' if sync else ''}, {micro_batches} micro-batch(es), "
                         f"{world} processes on {min(world, cores)} cores: each rank's own work (local steps) per "
                         f"step {busy}")
        print(f"K={K}: cost of each piece per step in the single process "
              f"{', '.join(f'{s * 1000:.0f} ms' for s in shares)} -> ideal pipeline speed-up {ideal:.2f}x "
              f"(balanced: {K}x)", flush=True)

    if rows:
        print(f"\n{opts.arch} · {opts.method} · cuts {opts.cuts} · batch {opts.batch_size} · {opts.steps} steps · "
              f"one CPU core per process where there are enough ({cores} cores) · load average "
              f"{os.getloadavg()[0]:.1f}\n")
        print("| mode | K x D | processes | cores | micro-batches | images/s | speed-up | CPU-time speed-up | "
              "ideal, a core per process |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            mode = {"single": "single process", "data": "data (DDP per piece)", "pieces,data": "pieces,data mesh"}.get(
                r["mode"], "pieces, synchronous" if r["sync"] else "pieces, pipelined")
            shape = {"single": "1 x 1", "pieces": f"{r['K']} x 1", "data": "1 x 2", "pieces,data": f"{r['K']} x 2"}[r["mode"]]
            micro = "-" if r["mode"] == "single" else r["micro_batches"]
            print(f"| {mode} | {shape} | {r['processes']} | {r['cores_used']} | {micro} | {r['images_per_second']:.1f} | "
                  f"{r['speedup']:.2f}x | {r['cpu_speedup']:.2f}x | {r['ideal']:.2f}x |")
        print()
        for note in notes:
            print(note)

    model = []
    print(f"\nModel: pipelined pieces on K devices, piece times measured on {opts.model_device} (CPU: CPU time, one thread), "
          f"h crossing each cut at the given link speed")
    print("| K | piece times (ms) | h per cut (MB/step) | " + " | ".join(f"{b / 1e9:g} GB/s" for b in opts.bandwidths) + " |")
    print("|---|---|---|" + "---|" * len(opts.bandwidths))
    for K in opts.model_K:
        times, sizes = modelled_piece_seconds(opts, K), cut_bytes(opts, K)
        speedups = [model_speedup(times, sizes, b) for b in opts.bandwidths]
        model.append({"K": K, "piece_seconds": times, "cut_bytes": sizes,
                      "speedup": dict(zip(map(str, opts.bandwidths), speedups))})
        print(f"| {K} | {', '.join(f'{t * 1000:.0f}' for t in times)} | {', '.join(f'{b / 1e6:.1f}' for b in sizes)} | "
              + " | ".join(f"{s:.2f}x" for s in speedups) + " |")
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {k: v for k, v in vars(opts).items() if k not in ("worker", "result", "cores", "sync")},
                               "cores": cores, "rows": rows, "notes": notes, "model": model,
                               "load_average": os.getloadavg(), "torch": torch.__version__}, indent=2) + "\n")
    print(f"\n-> {out}")


if __name__ == "__main__":
    main()

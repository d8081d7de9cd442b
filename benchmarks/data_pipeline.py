"""Images/s of each data path (decode + augment only) beside the images/s a network consumes in a training step.

Data rows: the memory path on CIFAR-10 (JPEG) (its one-time decode into the
cache, then an epoch of the device-resident loader's crop + flip), and the
stream path (per-sample decode, random-resized crop + flip, collate,
normalise) with 0, 1 and 2 worker processes on CIFAR-10 (JPEG) at 32 px and
Imagenette (224 copy) at 128 and 224 px. Compute rows: one InfoPro training
step (K=2, forward + backward, no optimiser step) of ResNet-32 at 32 px and of
ResNet-18, the smallest ImageNet-style network of the registry, at 128 and 224 px, on one thread.
Each figure is the best of a few measurements (the CPU is shared with other jobs). Prints a Markdown
table and writes JSON.

    python benchmarks/data_pipeline.py --out benchmarks/results/data_pipeline.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from infopro.bench.step import build_step
from infopro.data import DataOptions, make_loader, open_data

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def _images_per_second(loader, batches: int, repeats: int) -> float:
    """The best of `repeats` measurements (the cores are shared: the best is the least disturbed)."""
    return max(_one_pass(loader, batches) for _ in range(repeats))


def _one_pass(loader, batches: int) -> float:
    """Images/s over the first `batches` batches of an epoch, timed from the start of the epoch: worker
    start-up included, and no batch decoded before the clock starts (prefetching would flatter a short run)."""
    loader.set_epoch(0)
    start, seen = time.perf_counter(), 0
    it = iter(loader)
    for _ in range(batches):
        x, y = next(it)
        seen += len(y)
    seconds = time.perf_counter() - start
    it.close()  # shut the workers down here, not in a later loader's forked workers
    del it
    gc.collect()
    return seen / seconds


def data_rows(args: argparse.Namespace) -> list[dict]:
    rows = []
    cache = Path(tempfile.mkdtemp(prefix="infopro-bench-cache-"))
    try:
        cifar = str(Path(args.cifar_dir))
        start = time.perf_counter()
        data = open_data("cifar10", cifar, DataOptions(path="memory", cache_dir=cache, progress=False))
        decode_seconds = time.perf_counter() - start
        n = len(data.train) + len(data.test)
        rows.append({"data": "CIFAR-10 (JPEG)", "path": "memory, first-time decode into the cache", "size": 32,
                     "workers": 0, "images_per_second": n / decode_seconds})
        loader = make_loader(data, data.train, "cpu", args.batch_size, train=True, seed=0)
        rows.append({"data": "CIFAR-10 (JPEG)", "path": "memory, crop + flip per epoch", "size": 32, "workers": 0,
                     "images_per_second": _images_per_second(loader, len(loader), args.repeats)})
        sets = [("CIFAR-10 (JPEG)", "cifar10", cifar, 32), ("Imagenette (224 copy)", "folder", args.imagenette_dir, 128),
                ("Imagenette (224 copy)", "folder", args.imagenette_dir, 224)]
        for label, name, folder, size in sets:
            options = DataOptions(image_size=size if name == "folder" else None, path="stream", cache_dir=cache,
                                  progress=False)
            data = open_data(name, folder, options)
            for workers in args.workers:
                loader = make_loader(data, data.train, "cpu", args.batch_size, train=True, seed=0, workers=workers)
                rows.append({"data": label, "path": "stream, decode + random-resized crop + flip", "size": size,
                             "workers": workers,
                             "images_per_second": _images_per_second(loader, args.batches, args.repeats)})
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def compute_rows(args: argparse.Namespace) -> list[dict]:
    rows = []
    device = torch.device("cpu")
    for arch, size, batch in (("resnet32", 32, args.batch_size), ("resnet18", 128, 32), ("resnet18", 224, 16)):
        step = build_step(arch, "infopro-softmax", 2, "even", (3, size, size), 10, batch, device)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        step.run(x, y)  # warm-up
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step.run(x, y)
            times.append(time.perf_counter() - start)
        rows.append({"network": arch, "size": size, "batch": batch, "method": "infopro-softmax K=2",
                     "images_per_second": batch / min(times)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-dir", default=str(SHARED / "cifar10-jpeg"))
    parser.add_argument("--imagenette-dir", default=str(SHARED / "imagenette-224"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per stream row")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per compute row (best)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per data row (best)")
    parser.add_argument("--out", default="benchmarks/results/data_pipeline.json")
    args = parser.parse_args()
    # One thread: the figures are per core (a worker decodes on one core too), and on cores shared with
    # other jobs a multi-threaded step mostly waits at its thread barriers (measured 7x slower here).
    torch.set_num_threads(1)

    data, compute = data_rows(args), compute_rows(args)
    print("\n| data | path | px | workers | images/s |\n|---|---|---|---|---|")
    for r in data:
        print(f"| {r['data']} | {r['path']} | {r['size']} | {r['workers']} | {r['images_per_second']:.0f} |")
    print("\n| network (training step) | px | batch | images/s |\n|---|---|---|---|")
    for r in compute:
        print(f"| {r['network']}, {r['method']} | {r['size']} | {r['batch']} | {r['images_per_second']:.0f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "device": "cpu", "batch_size": args.batch_size, "compute_threads": 1,
            "load_average_at_end": os.getloadavg()}
    out.write_text(json.dumps({"meta": meta, "data": data, "compute": compute}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

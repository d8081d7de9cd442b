"""`--compile` measured apart: compile time per piece, steps/s compiled vs eager, and a fresh vs a resumed compile.

Three runs, each in a process of its own (as `infopro train` and `infopro train --resume` are), on one
random batch, with the training step of `infopro train` (zero_grad, `train_step`, SGD step):
  eager     the pieces as they are;
  fresh     `compile_pieces()` (inductor) with an empty cache directory, as a new `--compile` run's
            RUN/compile_cache;
  resumed   the same again in a new process on the cache `fresh` filled, as `--resume` finds it.
Compile time is each piece's first-step time less its second's (`infopro.train.compile_cache.CompileClock`,
what `infopro train --compile` writes to metrics.jsonl as compile_seconds); the steps after those two are
timed (median wall seconds, and steps per CPU-second of the process, the figure that holds on a shared
machine). The caches' hits and misses are torch's own counters.

    OMP_NUM_THREADS=1 python benchmarks/compile_speed.py --arch resnet32 --K 4 --batch-size 32 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("eager", "fresh", "resumed")


def child(spec: dict) -> dict:
    """One run in this process: build, (compile), two clocked steps, `spec['steps']` timed steps."""
    import torch

    import infopro
    from infopro.train.compile_cache import CompileClock

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    backbone = infopro.build_backbone(spec["arch"], 10)
    if spec["channels_last"]:
        backbone = backbone.to(memory_format=torch.channels_last)
    learner = infopro.LocalLearner(backbone, spec["K"], spec["method"], cuts=spec["cuts"] if spec["K"] > 1 else "even")
    start = time.perf_counter()
    if spec["run"] != "eager":
        learner.compile_pieces()
    setup = time.perf_counter() - start
    optimizer = torch.optim.SGD(learner.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(spec["batch_size"], 3, 32, 32, generator=gen)
    if spec["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (spec["batch_size"],), generator=gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        learner.train_step(x, y)
        optimizer.step()

    clock = CompileClock(learner, torch.device("cpu"))
    clock.start()
    first_two = time.perf_counter()
    for _ in range(2):
        clock.before_step()
        step()
    first_two = time.perf_counter() - first_two
    wall, cpu = [], []
    for _ in range(spec["steps"]):
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    median = statistics.median(wall)
    return {"run": spec["run"], "setup_seconds": setup, "first_two_steps_seconds": first_two, **clock.record(),
            "clocked_steps_seconds_per_piece": clock.steps, "step_seconds": wall, "step_cpu_seconds": cpu,
            "median_step_seconds": median, "steps_per_second": 1 / median,
            "steps_per_cpu_second": 1 / statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet32")
    parser.add_argument("--method", default="infopro-contrast")
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--cuts", default="paper")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the two clocked ones")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--out", default="benchmarks/results/compile_speed/resnet32_k4.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    settings = {k: v for k, v in vars(args).items() if k not in ("child", "out")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="compile_cache-") as cache:
        # A cache of our own, empty at first: not the user's default one, which may hold these graphs already.
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TORCHINDUCTOR_CACHE_DIR": cache,
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                              os.environ.get("PYTHONPATH", "")])}
        for run in RUNS:
            spec = {**settings, "run": run}
            print(f"{run} ...", file=sys.stderr, flush=True)
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{run} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    eager = rows[0]
    for row in rows:
        row["speedup_wall"] = row["steps_per_second"] / eager["steps_per_second"]
        row["speedup_cpu"] = row["steps_per_cpu_second"] / eager["steps_per_cpu_second"]

    import torch

    print(f"{args.arch} {args.method} K={args.K} ({args.cuts} cuts), batch {args.batch_size}, {args.threads} thread(s), "
          f"channels-last {'on' if args.channels_last else 'off'}, torch {torch.__version__}, CPU")
    print("| run | compile s (first step less second) | per piece s | cache hits / misses | median step s | "
          "steps/s | steps per CPU-s | vs eager (wall, CPU) |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        pieces = ", ".join(f"{s:.1f}" for s in r["compile_seconds_per_piece"])
        print(f"| {r['run']} | {r['compile_seconds']:.1f} | {pieces} | {r['compile_cache_hits']} / "
              f"{r['compile_cache_misses']} | {r['median_step_seconds']:.3f} | {r['steps_per_second']:.2f} | "
              f"{r['steps_per_cpu_second']:.2f} | {r['speedup_wall']:.2f}x, {r['speedup_cpu']:.2f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out.write_text(json.dumps({"settings": settings, "torch": torch.__version__, "machine": platform.machine(),
                               "load_average_after": load, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

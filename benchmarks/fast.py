"""Images/s of one training step with and without each speed option (CPU): E2E and InfoPro K=4 on
ResNet-32 and ResNet-110, and ResNet-32 K=4 against a plain PyTorch loop written here that mirrors the
authors' reference code (per-module forward, local loss, backward, detach).

A step is zero_grad + forward/backward + SGD step (Nesterov momentum, weight decay), on random CIFAR-sized
images. Options: channels-last memory format (`infopro train`'s default for convolutional networks,
`--no-channels-last` off) and `--compile` (inductor; only with `--compile`, since compiling takes minutes
per network on a small CPU). TF32 and cudnn.benchmark exist on CUDA only and are not measured here.

The machine may be shared by other jobs, which makes wall-clock images/s swing several-fold from round
to round. So each row is also timed in CPU time of this process (`time.process_time`) on one thread
(`--threads 1`, the default): images per CPU-second is the work one core needs, whatever share of the core
the scheduler gave; it is the figure the options are compared by. Rows are measured in turn, `--repeats`
rounds over all rows (interleaved, so a burst of other work hits every row alike), and each row's best
round is reported, with every round's figures and the load average before and after in the JSON.

    python benchmarks/fast.py                                  # default: about 5 CPU-minutes
    python benchmarks/fast.py --archs resnet32 --compile       # adds the compiled rows (ResNet-32)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from infopro import LocalLearner, build_backbone
from infopro.local.losses import reconstruction_loss

METHODS = [("e2e", 1), ("infopro-contrast", 4)]


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)


def learner_step(arch: str, method: str, K: int, channels_last: bool, compile_: bool) -> Callable:
    """`LocalLearner.train_step` + SGD step, as `infopro train` runs it."""
    torch.manual_seed(0)
    backbone = build_backbone(arch, 10)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    learner = LocalLearner(backbone, K, method, cuts="paper" if K > 1 else "even")
    if compile_:
        learner.compile_pieces()
    optimizer = sgd(learner.parameters())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        learner.train_step(x, y)
        optimizer.step()

    return step


def reference_style_step(arch: str, K: int, channels_last: bool) -> Callable:
    """The peer: the authors' training loop structure, written out with plain PyTorch.

    As in their `InfoPro` network's forward: run the blocks one module at a time; at the end of each
    local module compute `ixx_r * BCE(decoder(h), image) + ixy_r * contrast(head(h), y)`, call backward
    on it at once and carry on with `h.detach()`; the last module's loss is the classifier's CE. Only
    the modules (blocks, decoder, head, with the same weights and lambdas) come from infopro, built by
    a LocalLearner and then used here directly.
    """
    torch.manual_seed(0)
    backbone = build_backbone(arch, 10)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    learner = LocalLearner(backbone, K, "infopro-contrast", cuts="paper")
    blocks = list(backbone.blocks)
    ends = set(learner.cuts)
    locals_ = [(obj.decoder, obj.head, obj.recon_weight, obj.task_weight, obj.task_loss) for obj in learner.aux[:-1]]
    mean, std = learner.mean, learner.std
    optimizer = sgd(learner.parameters())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        image = (x * std + mean).clamp(0, 1)
        h, module = x, 0
        for i, block in enumerate(blocks):
            h = block(h)
            if i in ends:
                decoder, head, ixx_r, ixy_r, contrast = locals_[module]
                loss = ixx_r * reconstruction_loss(decoder(h), image) + ixy_r * contrast(head(h), y)
                loss.backward()
                h = h.detach()
                module += 1
        F.cross_entropy(backbone.head(h), y).backward()
        optimizer.step()

    return step


def images_per_second(step: Callable, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float]:
    """(images per CPU-second of this process, images per wall-clock second) over `steps` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(x, y)
    return steps * len(y) / (time.process_time() - cpu), steps * len(y) / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet32", "resnet110"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row and round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU time is comparable at 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per row before the first round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all rows; the fastest is reported")
    parser.add_argument("--compile", action="store_true", help="also measure --compile (inductor) rows")
    parser.add_argument("--out", default="benchmarks/results/fast.json")
    opts = parser.parse_args()

    rows: list[dict] = []
    for arch in opts.archs:
        for method, K in METHODS:
            for channels_last in (True, False):
                rows.append({"arch": arch, "method": method, "K": K, "loop": "infopro", "channels_last": channels_last,
                             "compile": False})
            if opts.compile:
                rows.append({"arch": arch, "method": method, "K": K, "loop": "infopro", "channels_last": True,
                             "compile": True})
        if arch == "resnet32":
            for channels_last in (True, False):
                rows.append({"arch": arch, "method": "infopro-contrast", "K": 4, "loop": "reference-style",
                             "channels_last": channels_last, "compile": False})

    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    x = torch.randn(opts.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (opts.batch_size,))
    load_before = os.getloadavg()
    steps = {}
    for i, row in enumerate(rows):
        start = time.perf_counter()
        if row["loop"] == "infopro":
            steps[i] = learner_step(row["arch"], row["method"], row["K"], row["channels_last"], row["compile"])
        else:
            steps[i] = reference_style_step(row["arch"], row["K"], row["channels_last"])
        xi = x.contiguous(memory_format=torch.channels_last) if row["channels_last"] else x
        for _ in range(opts.warmup):
            steps[i](xi, y)
        row["setup_and_warmup_seconds"] = time.perf_counter() - start
        row["rounds"] = []
    for _ in range(opts.repeats):
        for i, row in enumerate(rows):
            xi = x.contiguous(memory_format=torch.channels_last) if row["channels_last"] else x
            row["rounds"].append(images_per_second(steps[i], xi, y, opts.steps))
    load_after = os.getloadavg()
    for row in rows:
        row["images_per_cpu_second"] = max(cpu for cpu, _ in row["rounds"])
        row["images_per_second"] = max(wall for _, wall in row["rounds"])

    def find(**match) -> dict:
        return next(r for r in rows if all(r[k] == v for k, v in match.items()))

    print(f"\none training step, batch {opts.batch_size}, CPU ({os.cpu_count()} cores, {torch.get_num_threads()} "
          f"thread(s)), best of {opts.repeats} interleaved rounds of {opts.steps} steps; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| network | method | loop | channels-last | compile | images per CPU-second | vs channels-first | "
          "images/s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = find(arch=row["arch"], method=row["method"], K=row["K"], loop=row["loop"], channels_last=False,
                    compile=False)
        row["speedup_vs_channels_first"] = row["images_per_cpu_second"] / base["images_per_cpu_second"]
        method = "E2E" if row["K"] == 1 else f"InfoPro K={row['K']}"
        print(f"| {row['arch']} | {method} | {row['loop']} | {'on' if row['channels_last'] else 'off'} | "
              f"{'on' if row['compile'] else 'off'} | {row['images_per_cpu_second']:.1f} | "
              f"{row['speedup_vs_channels_first']:.2f}x | {row['images_per_second']:.1f} |")
    if "resnet32" in opts.archs:
        print("\nResNet-32 InfoPro K=4, infopro's step over the reference-style loop (same settings):")
        for channels_last in (True, False):
            ours = find(arch="resnet32", K=4, loop="infopro", channels_last=channels_last, compile=False)
            peer = find(arch="resnet32", K=4, loop="reference-style", channels_last=channels_last)
            ratio = ours["images_per_cpu_second"] / peer["images_per_cpu_second"]
            print(f"  channels-last {'on ' if channels_last else 'off'}: {ratio:.2f}x")
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "settings": vars(opts), "rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_average_before": load_before, "load_average_after": load_after,
        "note": "CPU only: TF32 and cudnn.benchmark are CUDA settings and are not measured here.",
    }, indent=2) + "\n")
    print(f"\n-> {out}")


if __name__ == "__main__":
    main()

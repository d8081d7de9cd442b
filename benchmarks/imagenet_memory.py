"""Table 3 at ImageNet scale: peak memory of one training step at 224 px, E2E vs checkpointing vs InfoPro.

Runs `infopro bench` (1000 classes, 224 px, one FLOP-counting warm-up step, one
memory step, one timed step: the minimum the bench allows) for ResNet-101,
ResNet-152 and ResNeXt-101 32x8d (E2E; checkpointing with 2 and 4 segments;
InfoPro softmax K=2 with the paper's cut and with `balanced` cuts, K=4
`balanced`) and DeiT-S (`vit_small`, no published cut: `balanced` only), and
prints one table with the paper's per-GPU ratios beside (METHOD.md: InfoPro*
K=2 vs E2E, batch 128 per GPU, ResNeXt 64). An arch whose bench.json is
complete is reused (delete its folder to measure again). On a CPU the memory is
the live-tensor count (exact, independent of the load); the seconds are not a
speed figure on a shared machine.

    python benchmarks/imagenet_memory.py --batch-size 8 --out benchmarks/results/imagenet_memory
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infopro.cli import main as infopro_main

MiB = 2**20
# (arch, cut presets of the local rows, the paper's InfoPro* K=2 and E2E memory per GPU in GB, or None)
ARCHS = [("resnet101", "paper,balanced", (12.06, 19.71)),
         ("resnet152", "paper,balanced", (15.53, 26.29)),
         ("resnext101_32x8d", "paper,balanced", (11.55, 19.22)),
         ("vit_small", "balanced", None)]
METHODS = "e2e,checkpoint,infopro-softmax"


def bench_if_needed(arch: str, cuts: str, args: argparse.Namespace) -> dict:
    out = Path(args.out) / arch
    flags = ["bench", "--arch", arch, "--batch-size", str(args.batch_size), "--num-classes", "1000",
             "--K", "2", "4", "--methods", METHODS, "--cuts", cuts, "--device", args.device,
             "--steps", "1", "--warmup", "1", "--out", str(out)]
    done = out / "bench.md"  # written last, after every row
    if not done.exists():
        if infopro_main(flags) != 0:
            raise SystemExit(f"bench of {arch} failed")
    report = json.loads((out / "bench.json").read_text())
    report["command"] = ["infopro", *flags]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/imagenet_memory")
    args = parser.parse_args()
    reports = []
    lines = ["| arch | method | K | cuts | peak MiB | vs E2E | saved act. + state MiB | state MiB | batch-dependent MiB | vs E2E | paper, per GPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for arch, cuts, paper in ARCHS:
        report = bench_if_needed(arch, cuts, args)
        rows = report["rows"]
        e2e = next(r for r in rows if r["method"] == "e2e")
        for r in rows:
            # What grows with the batch: the peak less the parameters (auxiliary nets' included), their
            # gradients and the optimiser state; checkpointing holds the same state as E2E.
            r["batch_dependent_bytes"] = r["peak_bytes"] - r.get("state_bytes", e2e["state_bytes"])
            r["batch_dependent_ratio"] = r["batch_dependent_bytes"] / e2e["batch_dependent_bytes"]
            published = ""
            if paper and r["method"] == "e2e":
                published = f"{paper[1]:.2f} GB"
            elif paper and r["method"] == "infopro-softmax" and r["K"] == 2 and r["cuts_preset"] == "paper":
                published = f"{paper[0]:.2f} GB = {100 * paper[0] / paper[1]:.1f} %"
            r["paper"] = published or None
            cut = r["cuts_preset"] if r["method"] in ("e2e", "checkpoint") else f"{r['cuts_preset']} {r['cuts']}"
            saved = "–" if r.get("saved_activation_bytes") is None else f"{(r['saved_activation_bytes'] + r['state_bytes']) / MiB:.0f}"
            lines.append(f"| {arch} | {r['method']} | {r['K']} | {cut} | {r['peak_bytes'] / MiB:.0f} | "
                         f"{100 * r['memory_ratio']:.1f} % | {saved} | {(r['peak_bytes'] - r['batch_dependent_bytes']) / MiB:.0f} | "
                         f"{r['batch_dependent_bytes'] / MiB:.0f} | "
                         f"{100 * r['batch_dependent_ratio']:.1f} % | {published or '–'} |")
        reports.append(report)
    title = (f"224 px, batch {args.batch_size}, 1000 classes, {reports[0]['device']} "
             f"(memory: {rows[0]['memory_kind']}); paper: batch 128 per GPU (ResNeXt 64), InfoPro* K=2 paper cut")
    table = title + "\n\n" + "\n".join(lines) + "\n"
    out = Path(args.out)
    (out / "imagenet_memory.json").write_text(json.dumps({"batch_size": args.batch_size, "benches": reports}, indent=2) + "\n")
    (out / "imagenet_memory.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

"""Memory below every anchor: InfoPro K=4 with recomputation inside its pieces, vs E2E and checkpointing.

Runs `infopro bench` twice, one run per network so that every ratio of a table
comes from one run (the same process, the same load):
- ResNet-110 at the CIFAR shape (3x32x32): E2E, checkpointing with 4 and 16
  segments, InfoPro Contrast K=4 with `balanced` cuts (recompute-aware: the
  cuts move with the segments), without recomputation and with
  `--recompute auto`, 2, 4 and `auto+aux`;
- ResNet-101 at 3x224x224, 1000 classes, a small batch: E2E, checkpointing 4
  and 16, InfoPro softmax K=4 (`balanced`) without recomputation, with
  `--recompute auto` and `auto+aux`.
Prints one table (peak memory, FLOPs and time, each against the E2E row of the
same run; also the peak less the parameters, their gradients and the optimiser
state, auxiliary nets' included: what grows with the batch, which at batch 8 on
ResNet-101 is the smaller part) and, for ResNet-110, the goal: the cheapest InfoPro + recompute row at
<= 15 % of E2E's peak, beside the checkpoint rows. On a CPU the memory is the
live-tensor count (exact, independent of the load) and the FLOPs are counted;
the seconds are a shared machine's, so the FLOPs are the overhead to trust.
A network whose bench.md exists is reused (delete its folder to measure again).

    OMP_NUM_THREADS=1 python benchmarks/recompute_memory.py --out benchmarks/results/recompute_memory
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infopro.cli import main as infopro_main

MiB = 2**20
GOAL = 0.15  # InfoPro K=4 + recompute at <= 15 % of E2E's peak


def runs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, bench flags) of each run."""
    return [
        ("resnet110", ["--arch", "resnet110", "--input-shape", "3", "32", "32", "--num-classes", "10",
                       "--batch-size", str(args.cifar_batch_size), "--K", "4", "--checkpoint-segments", "4", "16",
                       "--methods", "e2e,checkpoint,infopro-contrast", "--cuts", "balanced",
                       "--recompute", "off", "auto", "2", "4", "auto+aux", "--steps", str(args.cifar_steps)]),
        ("resnet101", ["--arch", "resnet101", "--input-shape", "3", "224", "224", "--num-classes", "1000",
                       "--batch-size", str(args.imagenet_batch_size), "--K", "4", "--checkpoint-segments", "4", "16",
                       "--methods", "e2e,checkpoint,infopro-softmax", "--cuts", "balanced",
                       "--recompute", "off", "auto", "auto+aux", "--steps", str(args.imagenet_steps)]),
    ]


def bench_if_needed(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    out = Path(args.out) / name
    flags = ["bench", *flags, "--device", args.device, "--warmup", "1", "--out", str(out)]
    if not (out / "bench.md").exists():  # written last, after every row
        if infopro_main(flags) != 0:
            raise SystemExit(f"bench of {name} failed")
    report = json.loads((out / "bench.json").read_text())
    report["command"] = ["infopro", *flags]
    return report


def row_name(r: dict) -> str:
    if r["method"] == "e2e":
        return "E2E"
    if r["method"] == "checkpoint":
        return f"checkpoint {r['K']} segments"
    name = f"{r['method']} K={r['K']} {r['cuts_preset']} {r['cuts']}"
    return name if r.get("recompute", "off") == "off" else f"{name} + recompute {r['recompute']} {r['segments']}"


def goal_lines(rows: list[dict]) -> list[str]:
    """The cheapest (FLOPs) recomputed InfoPro row at <= GOAL of E2E's peak, against each checkpoint row."""
    local = [r for r in rows if r["method"] not in ("e2e", "checkpoint") and r.get("recompute", "off") != "off"]
    within = [r for r in local if r["memory_ratio"] <= GOAL]
    if not within:
        return [f"no InfoPro + recompute row at <= {100 * GOAL:.0f} % of E2E's peak"]
    best = min(within, key=lambda r: r["flops_overhead"])
    lines = [f"InfoPro + recompute at <= {100 * GOAL:.0f} % of E2E, fewest FLOPs: {row_name(best)}: memory "
             f"{100 * best['memory_ratio']:.1f} %, FLOPs {100 * best['flops_overhead']:+.1f} %, "
             f"time {100 * best['time_overhead']:+.1f} % (vs E2E)"]
    for c in (r for r in rows if r["method"] == "checkpoint"):
        reaches = "reaches" if c["memory_ratio"] <= best["memory_ratio"] else "does not reach"
        lines.append(f"  {row_name(c)}: memory {100 * c['memory_ratio']:.1f} % ({reaches} it), FLOPs "
                     f"{100 * c['flops_overhead']:+.1f} %, time {100 * c['time_overhead']:+.1f} %")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-batch-size", type=int, default=256)
    parser.add_argument("--cifar-steps", type=int, default=5)
    parser.add_argument("--imagenet-batch-size", type=int, default=8)
    parser.add_argument("--imagenet-steps", type=int, default=3)
    parser.add_argument("--only", choices=["resnet110", "resnet101"], default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/recompute_memory")
    args = parser.parse_args()
    lines = ["| network | row | peak MiB | memory vs E2E | peak - state MiB | vs E2E | FLOPs overhead | time overhead "
             "| s/step median |",
             "|---|---|---|---|---|---|---|---|---|"]
    reports, notes = {}, []
    for name, flags in runs(args):
        if args.only not in (None, name):
            continue
        report = bench_if_needed(name, flags, args)
        reports[name] = report
        shape = "x".join(map(str, report["input_shape"]))
        e2e = next(r for r in report["rows"] if r["method"] == "e2e")
        for r in report["rows"]:
            # Checkpointing holds E2E's parameters and optimiser state.
            r["batch_dependent_bytes"] = r["peak_bytes"] - r.get("state_bytes", e2e["state_bytes"])
            batch_ratio = r["batch_dependent_bytes"] / (e2e["peak_bytes"] - e2e["state_bytes"])
            lines.append(f"| {name} {shape} b{report['batch_size']} | {row_name(r)} | {r['peak_bytes'] / MiB:.0f} | "
                         f"{100 * r['memory_ratio']:.1f} % | {r['batch_dependent_bytes'] / MiB:.0f} | "
                         f"{100 * batch_ratio:.1f} % | {100 * r['flops_overhead']:+.1f} % | "
                         f"{100 * r['time_overhead']:+.1f} % | {r['step_seconds']:.2f} |")
        if name == "resnet110":
            notes = goal_lines(report["rows"])
    device = next(iter(reports.values()))
    title = (f"{device['device']}, {device['threads']} thread(s), torch {device['torch']}; memory: "
             f"{device['rows'][0]['memory_kind']}; every ratio against the E2E row of the same run")
    table = title + "\n\n" + "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recompute_memory.json").write_text(json.dumps({"goal": notes, "benches": reports}, indent=2) + "\n")
    (out / "recompute_memory.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

"""The paper's Table 5 memory claim on this machine: one training step of DeepLabV3-R101 at Cityscapes size.

Runs `infopro bench --task segment` (19 classes, synthetic masks with 10 %
unlabelled pixels; one FLOP-counting warm-up step, one memory step, one timed
step: the minimum the bench allows) for E2E, gradient checkpointing with K
segments and InfoPro (softmax, the segmentation InfoPro*) at K pieces with the
paper's cut (K=2: after the 13th block of layer3) and `balanced` cuts, then
prints one table: peak memory of each row as a share of E2E's, the same for
what grows with the batch and the image (the peak less parameters, their
gradients and the optimiser state), FLOPs and time overheads, and the paper's
per-GPU figures beside (Table 5: 4 images of 512x1024 per RTX 3090, syncBN,
E2E 19.43 GB, InfoPro* K=2 12.01 GB). A bench folder whose bench.md exists is
reused (delete it to measure again). On a CPU the memory is the live-tensor
count (exact, independent of the load); the seconds are not a speed figure on a
shared machine.

    OMP_NUM_THREADS=1 python benchmarks/segment_memory.py --input-shape 3 256 512 --batch-size 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infopro.cli import main as infopro_main

MiB = 2**20
PAPER = {"batch_per_gpu": 4, "input_shape": [3, 512, 1024], "e2e_gb": 19.43, "infopro_k2_gb": 12.01}


def bench_if_needed(args: argparse.Namespace, out: Path) -> dict:
    flags = ["bench", "--task", "segment", "--arch", args.arch, "--input-shape", *map(str, args.input_shape),
             "--num-classes", str(args.num_classes), "--batch-size", str(args.batch_size),
             "--K", *map(str, args.K), "--methods", args.methods, "--cuts", args.cuts, "--device", args.device,
             "--steps", str(args.steps), "--warmup", "1", "--out", str(out)]
    if not (out / "bench.md").exists():  # written last, after every row
        if infopro_main(flags) != 0:
            raise SystemExit(f"bench of {args.arch} failed")
    report = json.loads((out / "bench.json").read_text())
    report["command"] = ["infopro", *flags]
    return report


def table(report: dict) -> str:
    rows = report["rows"]
    e2e = next(r for r in rows if r["method"] == "e2e")
    lines = ["| method | K | cuts | peak MiB | vs E2E | state MiB | batch-dependent MiB | vs E2E | FLOPs overhead | "
             "s/step | paper, per GPU |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        # What grows with the batch and the image: the peak less the parameters (auxiliary nets' included), their
        # gradients and the optimiser state; checkpointing holds the same network and loss as E2E.
        state = r.get("state_bytes", e2e["state_bytes"])
        r["batch_dependent_bytes"] = r["peak_bytes"] - state
        r["batch_dependent_ratio"] = r["batch_dependent_bytes"] / (e2e["peak_bytes"] - e2e["state_bytes"])
        paper = None
        if r["method"] == "e2e":
            paper = f"{PAPER['e2e_gb']:.2f} GB"
        elif r["method"] == "infopro-softmax" and r["K"] == 2 and r["cuts_preset"] == "paper":
            paper = f"{PAPER['infopro_k2_gb']:.2f} GB = {100 * PAPER['infopro_k2_gb'] / PAPER['e2e_gb']:.1f} %"
        r["paper"] = paper
        cut = r["cuts_preset"] if r["method"] in ("e2e", "checkpoint") else f"{r['cuts_preset']} {r['cuts']}"
        lines.append(f"| {r['method']} | {r['K']} | {cut} | {r['peak_bytes'] / MiB:.0f} | "
                     f"{100 * r['memory_ratio']:.1f} % | {state / MiB:.0f} | {r['batch_dependent_bytes'] / MiB:.0f} | "
                     f"{100 * r['batch_dependent_ratio']:.1f} % | {100 * r['flops_overhead']:+.1f} % | "
                     f"{r['step_seconds']:.1f} | {paper or '–'} |")
    shape = "x".join(map(str, report["input_shape"][1:]))
    title = (f"{report['arch']}, {report['num_classes']} classes, {shape}, batch {report['batch_size']}, "
             f"{report['device']}, {report['threads']} thread(s) (memory: {rows[0]['memory_kind']}); paper (Table 5): "
             f"{PAPER['batch_per_gpu']} images of 512x1024 per GPU, InfoPro* K=2 paper cut")
    skipped = "".join(f"\nskipped: {s}" for s in report["skipped"])
    return f"{title}\n\n" + "\n".join(lines) + "\n" + skipped + ("\n" if skipped else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplabv3_resnet101")
    parser.add_argument("--input-shape", type=int, nargs=3, default=[3, 512, 1024], metavar=("C", "H", "W"))
    parser.add_argument("--num-classes", type=int, default=19)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--K", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--methods", default="e2e,checkpoint,infopro-softmax")
    parser.add_argument("--cuts", default="paper,balanced")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/segment_memory")
    args = parser.parse_args()
    name = f"{args.arch}_{args.input_shape[1]}x{args.input_shape[2]}_b{args.batch_size}"
    out = Path(args.out)
    report = bench_if_needed(args, out / name)  # the bench's own files: out/NAME/ (not committed)
    text = table(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"script": ["python", *sys.argv], "paper": PAPER, "bench": report}, indent=2) + "\n")
    (out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Peak activation memory saved for backward, per method, K and cuts (a CPU count, not a timing).

For one training step of each configuration, counts the bytes of tensors that
autograd saves for backward and that are alive at the same time
(`infopro.SavedActivationMeter`: de-duplicated by storage, parameters
excluded), and reports it against end-to-end training in the same run.

    python benchmarks/activation_memory.py --arch resnet110 --batch-size 64 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import infopro
from infopro.errors import InfoProError


def peak_saved_bytes(arch: str, method: str, K: int, cuts: str, batch_size: int, seed: int = 0) -> tuple[int, list[int]]:
    torch.manual_seed(seed)
    learner = infopro.LocalLearner(infopro.build_backbone(arch), K, method, cuts=cuts)
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    with infopro.SavedActivationMeter(exclude=learner.parameters()) as meter:
        learner.train_step(x, y)
    return meter.peak_bytes, learner.cuts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--K", type=int, nargs="+", default=[2, 3, 4, 8, 16])
    parser.add_argument("--methods", default="greedy,dgl,infopro-contrast")
    parser.add_argument("--cuts", default="paper,paper-balanced,even")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    e2e, _ = peak_saved_bytes(args.arch, "e2e", 1, "even", args.batch_size)
    rows = [{"method": "e2e", "K": 1, "cuts_preset": "-", "cuts": [], "peak_bytes": e2e, "ratio_to_e2e": 1.0}]
    for method in args.methods.split(","):
        for K in args.K:
            for preset in args.cuts.split(","):
                try:
                    peak, cuts = peak_saved_bytes(args.arch, method, K, preset, args.batch_size)
                except InfoProError:
                    continue  # no such preset for this arch and K
                rows.append({"method": method, "K": K, "cuts_preset": preset, "cuts": cuts,
                             "peak_bytes": peak, "ratio_to_e2e": peak / e2e})

    print(f"{args.arch}, batch {args.batch_size}, 3x32x32: peak activation bytes saved for backward")
    print("| method | K | cuts | peak MiB | vs E2E |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['K']} | {r['cuts_preset']} | {r['peak_bytes'] / 2**20:.1f} | {100 * r['ratio_to_e2e']:.1f} % |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"activation_memory_{args.arch}_b{args.batch_size}.json"
    path.write_text(json.dumps({"arch": args.arch, "batch_size": args.batch_size, "torch": torch.__version__,
                                "rows": rows}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

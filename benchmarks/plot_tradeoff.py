"""The README's picture: what cutting ResNet-110 into K pieces saves in memory, and what it costs in error.

    python benchmarks/plot_tradeoff.py            # -> docs/images/tradeoff.png

Drawn only from committed data, nothing typed in:
- left, measured by this project: peak memory of one training step (ResNet-110, CIFAR-10 size, batch 1024,
  `torch.cuda.max_memory_allocated`, one NVIDIA H200) from benchmarks/results/gpu_h200/main_report.md (the
  Table 3 bench: E2E, checkpointing, InfoPro on the paper's cuts) and table3_balanced_bench.json (InfoPro on
  the memory-balanced cuts);
- right, published: the test errors of the InfoPro paper's Table 2 for the same network, as listed in
  src/infopro/grids/tables.yaml (`table2-resnet110`). This project has not trained these to convergence.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "results" / "gpu_h200"
TABLES = ROOT / "src" / "infopro" / "grids" / "tables.yaml"


def table3_rows(report: Path) -> list[dict]:
    """The rows of the report's "Table 3: ResNet-110, batch 1024" Markdown table: method, K, cuts, memory %."""
    text = report.read_text()
    section = text[text.index("## Table 3: ResNet-110, batch 1024"):]
    section = section[:section.index("\n## ", 5)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[1].isdigit():
            continue
        rows.append({"method": cells[0], "K": int(cells[1]), "cuts": cells[2].split(" ")[0],
                     "memory": float(cells[4].rstrip(" %"))})
    return rows


def balanced_rows(bench: Path) -> list[dict]:
    data = json.loads(bench.read_text())
    return [{"method": r["method"], "K": r["K"], "cuts": r["cuts_preset"], "memory": 100 * r["memory_ratio"]}
            for r in data["rows"]]


def published_errors(tables: Path, table: str = "table2-resnet110") -> dict[str, dict[int, float]]:
    cells = yaml.safe_load(tables.read_text())["tables"][table]["cells"]
    errors: dict[str, dict[int, float]] = {}
    for cell in cells:
        if cell.get("paper") is not None:
            errors.setdefault(cell["method"], {})[cell["K"]] = float(cell["paper"])
    return errors


def series(rows: list[dict], method: str, cuts: str | None) -> tuple[list[int], list[float]]:
    """(K, memory %) of one method on one cut preset (None: any; checkpointing's "cuts" are its segments)."""
    points = sorted((r["K"], r["memory"]) for r in rows
                    if r["method"] == method and (cuts is None or r["cuts"] == cuts))
    return [k for k, _ in points], [m for _, m in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "tradeoff.png")
    args = parser.parse_args()

    rows = table3_rows(GPU / "main_report.md") + balanced_rows(GPU / "table3_balanced_bench.json")
    errors = published_errors(TABLES)
    colours = {"e2e": "black", "checkpoint": "tab:gray", "greedy": "tab:orange", "dgl": "tab:green",
               "infopro-contrast": "tab:blue"}

    fig, (memory, error) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    memory.axhline(100, color=colours["e2e"], linestyle=":", label="E2E")
    memory.plot(*series(rows, "checkpoint", None), marker="s", linestyle="--", color=colours["checkpoint"],
                label="gradient checkpointing, K segments (error: E2E's)")
    memory.plot(*series(rows, "infopro-contrast", "paper"), marker="o", color=colours["infopro-contrast"],
                alpha=0.45, label="InfoPro Contrast, the paper's cuts")
    memory.plot(*series(rows, "infopro-contrast", "balanced"), marker="o", color=colours["infopro-contrast"],
                label="InfoPro Contrast, memory-balanced cuts")
    memory.set_ylabel("peak memory of a training step (% of E2E)")
    memory.set_ylim(0, 110)
    memory.set_title("Memory: measured here (one NVIDIA H200, torch 2.11)", fontsize=10)

    names = {"greedy": "Greedy SL", "dgl": "DGL", "infopro-contrast": "InfoPro Contrast"}
    error.axhline(errors["e2e"][1], color=colours["e2e"], linestyle=":", label="E2E")
    for method, name in names.items():
        ks = sorted(errors[method])
        error.plot(ks, [errors[method][k] for k in ks], marker="o", color=colours[method], label=name)
    error.set_ylabel("CIFAR-10 test error (%)")
    error.set_title("Error: published (Wang et al., ICLR 2021, Table 2)", fontsize=10)

    for ax in (memory, error):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 3, 4, 8, 16], labels=["1", "2", "3", "4", "8", "16"])
        ax.minorticks_off()
        ax.set_xlabel("K (gradient-isolated pieces)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle("ResNet-110 on CIFAR-10, batch 1024: cutting it into K pieces saves memory for a little error")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Showing probe results: a Markdown table (depth x run) and the two-panel plot, like the paper's Fig. 2/3."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..files import atomic_write

# One result per run: {"run": name, "points": [{"depth", "i_hx", "i_hy"}, ...], "cut_depths": [...]}.
RunResult = dict[str, Any]


def probe_table(runs: Sequence[RunResult]) -> str:
    """Markdown table, one row per depth, two columns per run: I(h,x) and I(h,y) (test accuracy in %)."""
    depths = sorted({p["depth"] for r in runs for p in r["points"]})
    header = "| depth | " + " | ".join(f"{r['run']} I(h,x) | {r['run']} I(h,y)" for r in runs) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(runs))]
    for depth in depths:
        cells = []
        for r in runs:
            point = next((p for p in r["points"] if p["depth"] == depth), None)
            cut = "*" if depth in r.get("cut_depths", []) else ""
            cells += ["-", "-"] if point is None else [f"{point['i_hx']:.4f}{cut}", f"{100 * point['i_hy']:.2f} %{cut}"]
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_probe(runs: Sequence[RunResult], path: str | Path, title: str | None = None, mark_cuts: bool = True) -> None:
    """Two panels, I(h, x) and I(h, y) against depth, one line per run; written atomically as PNG.

    With `mark_cuts`, each run's cut depths (where its pieces end) are drawn as
    larger hollow markers on its line.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    panels = (("i_hx", "I(h, x) estimate: 1 - decoder BCE"), ("i_hy", "I(h, y) estimate: probe test accuracy"))
    for ax, (key, label) in zip(axes, panels):
        for i, r in enumerate(runs):
            color = f"C{i}"  # explicit, so the cut markers do not advance the colour cycle
            depths = [p["depth"] for p in r["points"]]
            values = [p[key] for p in r["points"]]
            ax.plot(depths, values, marker="o", markersize=4, color=color, label=r["run"])
            if mark_cuts:
                cuts = [(d, v) for d, v in zip(depths, values) if d in r.get("cut_depths", [])]
                if cuts:
                    ax.plot(*zip(*cuts), linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                            markeredgecolor=color)
        ax.set_xlabel("depth (blocks from the input; 1 = stem)")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(title="run" + (" (rings: cut points)" if mark_cuts else ""), fontsize="small")
    if title:
        figure.suptitle(title)
    try:
        atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120))
    finally:
        plt.close(figure)

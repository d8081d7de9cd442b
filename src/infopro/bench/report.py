"""Benchmark rows -> ratios against E2E, a Markdown table shaped like the paper's Table 3, a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..files import atomic_write

MiB = 2**20


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Memory, FLOPs and time of every row relative to the E2E row measured in the same run."""
    e2e = next((r for r in rows if r["method"] == "e2e"), None)
    for r in rows:
        if e2e is None:
            r.update(memory_ratio=None, flops_overhead=None, time_overhead=None)
            continue
        r["memory_ratio"] = r["peak_bytes"] / e2e["peak_bytes"]
        r["flops_overhead"] = r["flops"] / e2e["flops"] - 1
        r["time_overhead"] = r["step_seconds"] / e2e["step_seconds"] - 1


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f} %" if signed else f"{100 * value:.1f} %"


def step_spread(row: dict[str, Any]) -> str:
    """"0.123 (0.120-0.131)": the median step time and the spread over the timed steps."""
    low, high = row.get("step_seconds_min", row["step_seconds"]), row.get("step_seconds_max", row["step_seconds"])
    return f"{row['step_seconds']:.3f} ({low:.3f}-{high:.3f})"


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    """Method | K | cuts | peak memory | vs E2E | FLOP overhead | time overhead | s/step (+ saved-activation column on CPU)."""
    cpu = any(r["memory_kind"] == "cpu_live_tensors" for r in rows)
    head = ["method", "K", "cuts", "peak MiB", "memory vs E2E", "FLOPs overhead", "time overhead",
            "s/step median (min-max)"]
    if cpu:
        head.append("saved act. + state MiB")
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cuts = r["cuts_preset"] if r["method"] in ("e2e", "checkpoint") else f"{r['cuts_preset']} {r['cuts']}"
        method = r["method"] if r.get("recompute", "off") == "off" else \
            f"{r['method']} + recompute {r['recompute']} {r['segments']}"
        cells = [method, str(r["K"]), cuts, f"{r['peak_bytes'] / MiB:.0f}", _pct(r["memory_ratio"]),
                 _pct(r["flops_overhead"], True), _pct(r["time_overhead"], True), step_spread(r)]
        if cpu:
            saved = r.get("saved_activation_bytes")
            cells.append("–" if saved is None else f"{(saved + r['state_bytes']) / MiB:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_memory(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Peak memory vs K: one line per (method, cuts), checkpointing as its own line, E2E as a level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["method"] == "e2e":
            ax.axhline(r["peak_bytes"] / MiB, color="black", linestyle=":", label="e2e")
            continue
        label = "checkpoint (K segments)" if r["method"] == "checkpoint" else f"{r['method']} · {r['cuts_preset']}"
        if r.get("recompute", "off") != "off":
            label += f" · recompute {r['recompute']}"
        lines.setdefault(label, []).append((r["K"], r["peak_bytes"] / MiB))
    markers = "osD^vP*Xh<>"
    for i, (label, points) in enumerate(lines.items()):
        points.sort()
        style = "--" if label.startswith("checkpoint") else "-"
        # Lines that coincide (e.g. two presets giving the same cuts) stay visible: each its own marker,
        # and a small horizontal offset on the log axis.
        shift = 2 ** (0.04 * (i - (len(lines) - 1) / 2))
        ax.plot([k * shift for k, _ in points], [m for _, m in points], style, marker=markers[i % len(markers)],
                markerfacecolor="none", alpha=0.85, label=label)
    ax.set_xscale("log", base=2)
    ks = sorted({r["K"] for r in rows if r["method"] != "e2e"})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K (pieces, or checkpoint segments)")
    ax.set_ylabel("peak training memory (MiB)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)

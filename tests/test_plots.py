"""curves.png and compare.png, drawn from small made-up histories: every panel has its axes labels, a legend
beside the data where it holds several lines, whole epoch ticks and plain tick labels; the PNG is written."""

import math
from pathlib import Path

import pytest

from infopro.compare import Run, figure, plot, tabulate
from infopro.train.run_dir import RunDir
from infopro.train.run_log import RunLog, curves_figure

PNG = b"\x89PNG\r\n\x1a\n"


def history(epochs: int, pieces: int = 3, scale: float = 1.0) -> list[dict]:
    """InfoPro-like records: every piece but the last has a reconstruction term; losses fall over `scale` decades."""
    records = []
    for e in range(1, epochs + 1):
        fall = 10 ** (-scale * (e - 1) / max(1, epochs - 1))
        terms = [{"recon": 0.5 * fall + 0.01 * k, "task": 2.3 * fall + 0.1 * k} for k in range(pieces - 1)]
        terms.append({"task": 2.0 * fall})
        records.append({"epoch": e, "train_losses": [5 * t.get("recon", 0) + t["task"] for t in terms],
                        "train_piece_terms": terms, "test_loss": 1.5 * fall, "train_accuracy": 0.3 + 0.01 * e,
                        "val_accuracy": 0.28 + 0.01 * e, "test_accuracy": 0.25 + 0.01 * e,
                        "lr": 0.1 * 0.5 * (1 + math.cos(math.pi * e / epochs))})
    return records


def check_panels(fig, min_panels: int) -> None:
    """Labels, legends beside the data where there are several lines, whole epochs, no 6x10^0 tick labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.get_axes()
    assert len(axes) >= min_panels
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax.get_title()
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        if len(ax.get_lines()) > 1:
            legend = ax.get_legend()
            assert legend is not None, ax.get_title()
            # beside the axes, not over the curves
            assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1 - 1, ax.get_title()
            assert len(legend.get_texts()) >= min(2, len(lines))
        labels = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)]
        assert not any("times" in t or "^" in t or "$" in t for t in labels), (ax.get_title(), labels)
        if ax.get_xlabel() == "epoch":
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)


@pytest.mark.parametrize("epochs,scale", [(3, 0.2), (12, 2.0), (1, 0.0)])
def test_curves_have_a_panel_per_term_with_labels_and_legends(epochs, scale):
    fig = curves_figure(history(epochs, scale=scale), "resnet32 · infopro K=3 · run")
    check_panels(fig, min_panels=5)
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert "task loss of each piece (unweighted)" in titles
    assert "reconstruction loss of each piece (unweighted)" in titles
    assert "learning rate (per epoch)" in titles and "accuracy" in titles
    by_title = {ax.get_title(): ax for ax in fig.get_axes()}
    recon = by_title["reconstruction loss of each piece (unweighted)"]
    assert [line.get_label() for line in recon.get_lines()] == ["piece 1", "piece 2"]  # the last has none
    task = by_title["task loss of each piece (unweighted)"]
    pieces = task.get_lines()
    # each piece its own colour and marker
    assert len({line.get_color() for line in pieces}) == len({line.get_marker() for line in pieces}) == 3
    loss = by_title["training loss of each piece (weighted sum of its terms)"]
    assert loss.get_yscale() == ("log" if scale >= 1 else "linear")


def test_curves_survive_a_non_finite_loss_and_records_without_terms():
    records = history(4)
    records[2]["train_losses"][0] = float("nan")
    records[3]["train_losses"][1] = float("inf")
    for r in records[:2]:
        del r["train_piece_terms"]  # e.g. a run resumed from an older version
    check_panels(curves_figure(records, "diverged"), min_panels=5)
    greedy = [{k: v for k, v in r.items() if k != "train_piece_terms"} for r in history(3)]
    fig = curves_figure(greedy, "no terms")
    assert len(fig.get_axes()) == 3
    check_panels(fig, min_panels=3)


def test_run_log_writes_the_png(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    RunLog(run, "off", "title").epoch(history(2))
    assert run.curves.read_bytes()[:8] == PNG
    assert run.metrics_csv.read_text().startswith("epoch,")


def _run(tmp_path: Path, method: str, seed: int, status: str = "finished") -> Run:
    records = history(5 if status == "finished" else 3)
    return Run(tmp_path / f"{method}-{seed}", {"method": method, "K": 2, "seed": seed}, records, status,
               value=None if status != "finished" else 0.3 + 0.01 * seed + (0.05 if method == "greedy" else 0))


def test_compare_plot_has_labels_and_a_legend_per_panel(tmp_path):
    runs = [_run(tmp_path, m, s) for m in ("greedy", "infopro") for s in (0, 1)]
    runs.append(_run(tmp_path, "greedy", 2, status="unfinished"))
    cells = tabulate(runs, "method", "K")
    fig = figure(cells, "method", "K", runs)
    check_panels(fig, min_panels=2)
    err, acc = fig.get_axes()
    assert err.get_legend() is not None
    texts = [t.get_text() for t in acc.get_legend().get_texts()]
    assert texts[:2] == ["greedy", "infopro"] and "unfinished" in texts[2]
    assert plot(cells, "method", "K", runs)[:8] == PNG

"""What a run shows a person, beside `run_dir.py`'s files: metrics.csv, curves.png, train.log, TensorBoard
events (all rebuilt from metrics.jsonl, so a resumed run's are whole). The per-epoch numbers themselves
(per-term piece losses, evaluation metrics, progress lines) are measured in `infopro.epoch_metrics`."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import sys
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TextIO

from ..errors import InfoProError
from ..files import WriteError, atomic_write, atomic_write_text, error_reason
from .run_dir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: lists become numbered columns (train_losses -> train_loss_1, ...), piece terms
    piece_1_recon, ...; other values as they are."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key == "train_losses":
            row.update({f"train_loss_{k + 1}": v for k, v in enumerate(value)})
        elif key == "train_piece_terms":
            row.update({f"piece_{k + 1}_{name}": v for k, terms in enumerate(value) for name, v in terms.items()})
        elif isinstance(value, (list, tuple, dict)):
            row[key] = str(value)
        else:
            row[key] = value
    return row


def metrics_csv(history: Sequence[dict[str, Any]]) -> str:
    rows = [flat_record(r) for r in history]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# Names of the piece loss terms (epoch_metrics' train_piece_terms) in the panel titles; others are shown as named.
TERM_NAMES = {"task": "task loss", "recon": "reconstruction loss"}


def _finite_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def curves_figure(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """curves.png as a Figure: accuracy (train / val / test), each piece's training loss (the weighted sum it
    trains on) beside the whole network's test loss, one panel per loss term (task, reconstruction: unweighted,
    one line per piece that has the term) and the learning rate, all against the epoch."""
    from .. import plots

    epochs = [r["epoch"] for r in history]
    term_names = list(dict.fromkeys(name for r in history for terms in r.get("train_piece_terms", [])
                                    for name in terms))
    term_names.sort(key=lambda name: name != "task")  # the task term first, the others as they come
    panels = 3 + len(term_names)
    columns = 2
    rows = -(-panels // columns)
    fig = plots.new_figure(13, 3.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[panels:]:
        extra.remove()
    acc, loss, *term_axes, rate = axes[:panels]

    for split, style in (("train", "-"), ("val", "--"), ("test", "-.")):
        key = f"{split}_accuracy"
        if all(key in r for r in history):
            acc.plot(epochs, [100 * r[key] for r in history], style, marker="o", markersize=3, label=split)
    acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")

    pieces = max(len(r.get("train_losses", [])) for r in history)
    shown: list[float] = []
    for k in range(pieces):
        values = [_finite_or_nan(r["train_losses"][k]) if k < len(r.get("train_losses", [])) else math.nan
                  for r in history]
        loss.plot(epochs, values, label=f"piece {k + 1}", **plots.piece_style(k, len(epochs)))
        shown += values
    if all("test_loss" in r for r in history):
        values = [_finite_or_nan(r["test_loss"]) for r in history]
        loss.plot(epochs, values, "k--", label="test (whole network, CE)")
        shown += values
    loss.set(xlabel="epoch", ylabel="loss", title="training loss of each piece (weighted sum of its terms)")
    plots.readable_y(loss, shown)

    for name, ax in zip(term_names, term_axes):
        shown = []
        for k in range(pieces):
            values = [_finite_or_nan(terms[k][name]) if k < len(terms := r.get("train_piece_terms", []))
                      and name in terms[k] else math.nan for r in history]
            if not all(math.isnan(v) for v in values):
                ax.plot(epochs, values, label=f"piece {k + 1}", **plots.piece_style(k, len(epochs)))
                shown += values
        label = TERM_NAMES.get(name, f"{name} term")
        ax.set(xlabel="epoch", ylabel=label, title=f"{label} of each piece (unweighted)")
        plots.readable_y(ax, shown)

    if all("lr" in r for r in history):
        rate.plot(epochs, [r["lr"] for r in history], marker="o", markersize=3)
    rate.set(xlabel="epoch", ylabel="learning rate", title="learning rate (per epoch)")

    for ax in axes[:panels]:
        plots.epoch_axis(ax)
        if any(not line.get_label().startswith("_") for line in ax.get_lines()):
            plots.legend_outside(ax)
    fig.suptitle(title)
    return fig


def plot_curves(history: Sequence[dict[str, Any]], title: str) -> bytes:
    """curves.png's bytes (see `curves_figure`)."""
    from .. import plots

    return plots.png(curves_figure(history, title))


def tensorboard_writer(mode: str) -> Any:
    """torch's SummaryWriter class for --tensorboard auto/on when the tensorboard package is installed, else
    None (auto, off); `on` without the package is an error."""
    if mode == "off":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if mode == "on":
            raise InfoProError("--tensorboard on needs the tensorboard package: pip install 'infopro[tensorboard]' "
                               "(or --tensorboard off)") from None
        return None
    return SummaryWriter


class RunLog:
    """Writes metrics.csv, curves.png and TensorBoard events after every epoch, and keeps train.log."""

    def __init__(self, run: RunDir, tensorboard: str, title: str) -> None:
        self.run, self.title = run, title
        writer = tensorboard_writer(tensorboard)
        self.events = writer(str(run.tensorboard)) if writer is not None else None

    def epoch(self, history: Sequence[dict[str, Any]]) -> None:
        atomic_write_text(self.run.metrics_csv, metrics_csv(history))
        png = plot_curves(history, self.title)
        atomic_write(self.run.curves, lambda f: f.write(png))
        if self.events is not None:
            record = history[-1]
            for key, value in flat_record(record).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.events.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
            self.events.flush()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    @contextlib.contextmanager
    def tee(self) -> Iterator[None]:
        """What this process prints to stdout also goes to train.log (appended: a resumed run adds to it)."""
        try:
            log = open(self.run.log, "a", buffering=1)
        except OSError as error:
            raise WriteError(f"cannot write {self.run.log}: {error_reason(error)}") from None
        stdout = sys.stdout
        sys.stdout = _Tee(stdout, log)
        try:
            yield
        finally:
            sys.stdout = stdout
            log.close()


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return self.streams[0].isatty()

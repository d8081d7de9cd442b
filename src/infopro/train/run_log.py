"""What a run shows a person, beside `run_dir.py`'s files: metrics.csv, curves.png, train.log, TensorBoard
events (all rebuilt from metrics.jsonl, so a resumed run's are whole). The per-epoch numbers themselves
(per-term piece losses, evaluation metrics, progress lines) are measured in `infopro.epoch_metrics`."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from typing import Any, Iterator, Sequence, TextIO

from ..errors import InfoProError
from ..files import WriteError, atomic_write, atomic_write_text, error_reason
from .run_dir import RunDir


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


def plot_curves(history: Sequence[dict[str, Any]], title: str) -> bytes:
    """curves.png: accuracy (train / val / test), each piece's training loss and the learning rate against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (acc, loss, rate) = plt.subplots(1, 3, figsize=(15, 4))
    for split, style in (("train", "-"), ("val", "--"), ("test", "-.")):
        key = f"{split}_accuracy"
        if all(key in r for r in history):
            acc.plot(epochs, [100 * r[key] for r in history], style, marker="o", markersize=3, label=split)
    acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    acc.legend()
    for k in range(len(history[-1]["train_losses"])):
        loss.plot(epochs, [r["train_losses"][k] for r in history], marker="o", markersize=3, label=f"piece {k + 1}")
    if all("test_loss" in r for r in history):
        loss.plot(epochs, [r["test_loss"] for r in history], "k--", label="test (whole network, CE)")
    loss.set(xlabel="epoch", ylabel="loss", title="training loss of each piece", yscale="log")
    loss.legend(fontsize="small")
    if all("lr" in r for r in history):
        rate.plot(epochs, [r["lr"] for r in history], marker="o", markersize=3)
    rate.set(xlabel="epoch", ylabel="learning rate", title="learning rate (per epoch)")
    fig.suptitle(title)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


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

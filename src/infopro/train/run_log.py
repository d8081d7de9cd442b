"""What a run shows a person, beside `run_dir.py`'s files: metrics.csv, curves.png, train.log, TensorBoard
events (all rebuilt from metrics.jsonl, so a resumed run's are whole), per-term piece losses, evaluation
metrics, and progress lines when stderr is not a terminal."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import time
from typing import Any, Iterator, Sequence, TextIO

import torch

from ..errors import InfoProError
from ..files import WriteError, atomic_write, atomic_write_text, error_reason
from .run_dir import RunDir

PROGRESS_LINES = 10  # lines per epoch when the bar cannot be drawn (about every 10 %)


class PieceTerms:
    """Sums of each piece's unweighted loss terms (reconstruction, task) over an epoch, from the objectives'
    `last_terms` after each step (device tensors: no host sync per step)."""

    def __init__(self, objectives: Sequence[Any]) -> None:
        self.objectives = list(objectives)
        self.sums: list[dict[str, torch.Tensor]] = [{} for _ in self.objectives]

    def add(self, batch: int) -> None:
        for sums, objective in zip(self.sums, self.objectives):
            for name, value in getattr(objective, "last_terms", {}).items():
                sums[name] = sums.get(name, 0) + value.float() * batch

    def record(self, seen: int) -> dict[str, Any]:
        """{"train_piece_terms": [{"recon": mean, "task": mean}, ...]} (empty dicts for pieces whose method
        does not split its loss), or nothing when no piece does."""
        if not any(self.sums):
            return {}
        return {"train_piece_terms": [{name: (value / seen).item() for name, value in sums.items()}
                                      for sums in self.sums]}


class EpochProgress:
    """When stderr is not a terminal (a cluster log), a line about every 10 % of an epoch instead of a bar."""

    def __init__(self, epoch: int, epochs: int, steps: int, enabled: bool) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.every = max(1, -(-steps // PROGRESS_LINES))
        self.enabled = enabled and steps > 1
        self.start = time.perf_counter()

    def step(self, done: int, loss: float, seen: int) -> None:
        if self.enabled and (done % self.every == 0) and done < self.steps:
            rate = seen / max(time.perf_counter() - self.start, 1e-9)
            print(f"  epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps} ({100 * done // self.steps}%)  "
                  f"loss {loss:.3f}  {rate:.0f} img/s", flush=True)


def evaluation_record(results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per split: {split}_loss and {split}_top5_accuracy (when measured); eval_seconds over all splits."""
    record: dict[str, Any] = {}
    for split, result in results.items():
        record[f"{split}_loss"] = result["loss"]
        if "top5_accuracy" in result:
            record[f"{split}_top5_accuracy"] = result["top5_accuracy"]
    record["eval_seconds"] = sum(r["seconds"] for r in results.values())
    return record


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
    """curves.png: accuracy (train / val / test) and each piece's training loss against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(11, 4))
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

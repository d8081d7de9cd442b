"""What a run shows a person, beside `run_dir.py`'s files: metrics.csv, curves.png (and class_iou.png for
segmentation), train.log, TensorBoard events (all rebuilt from metrics.jsonl, so a resumed run's are whole), and,
when asked, MLflow and Weights & Biases runs (optional extras). The per-epoch numbers themselves (per-term piece
losses, evaluation metrics, progress lines) are measured in `infopro.epoch_metrics`."""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import math
import os
import sys
from pathlib import Path
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


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _finite_or_nan(value: Any) -> float:
    return float(value) if _finite(value) else math.nan


def curves_figure(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """curves.png as a Figure: accuracy (train / val / test; per pixel for segmentation), the mean IoU (val /
    test) where the records have it (segmentation), each piece's training loss (the weighted sum it trains on)
    beside the whole network's test loss, one panel per loss term (task, reconstruction: unweighted, one line per
    piece that has the term) and the learning rate, all against the epoch."""
    from .. import plots

    epochs = [r["epoch"] for r in history]
    term_names = list(dict.fromkeys(name for r in history for terms in r.get("train_piece_terms", [])
                                    for name in terms))
    term_names.sort(key=lambda name: name != "task")  # the task term first, the others as they come
    miou_splits = [split for split in ("val", "test") if any(f"{split}_miou" in r for r in history)]
    panels = 3 + bool(miou_splits) + len(term_names)
    columns = 2
    rows = -(-panels // columns)
    fig = plots.new_figure(13, 3.2 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[panels:]:
        extra.remove()
    acc, loss, *term_axes, rate = axes[:panels]
    miou = term_axes.pop(0) if miou_splits else None

    for split, style in (("train", "-"), ("val", "--"), ("test", "-.")):
        key = f"{split}_accuracy"
        if any(key in r for r in history):  # an epoch without it (rebuilt without numbers) is a gap
            acc.plot(epochs, [100 * _finite_or_nan(r.get(key)) for r in history], style, marker="o", markersize=3,
                     label=split)
    what = "pixel accuracy" if miou_splits else "accuracy"
    acc.set(xlabel="epoch", ylabel=f"{what} (%)", title=what)

    if miou is not None:
        for split, style in (("val", "--"), ("test", "-.")):
            if split in miou_splits:
                values = [100 * r[f"{split}_miou"] if _finite(r.get(f"{split}_miou")) else math.nan for r in history]
                miou.plot(epochs, values, style, marker="o", markersize=3, label=split)
        miou.set(xlabel="epoch", ylabel="mean IoU (%)", title="mean IoU (whole network)")

    pieces = max(len(r.get("train_losses", [])) for r in history)
    shown: list[float] = []
    for k in range(pieces):
        values = [_finite_or_nan(r["train_losses"][k]) if k < len(r.get("train_losses", [])) else math.nan
                  for r in history]
        loss.plot(epochs, values, label=f"piece {k + 1}", **plots.piece_style(k, len(epochs)))
        shown += values
    if any("test_loss" in r for r in history):
        values = [_finite_or_nan(r.get("test_loss")) for r in history]
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

    if any("lr" in r for r in history):
        rate.plot(epochs, [_finite_or_nan(r.get("lr")) for r in history], marker="o", markersize=3)
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


# Trackers beside TensorBoard (--mlflow, --wandb): optional extras, off unless asked for. Where they write is
# theirs to say, by their own environment variables (MLFLOW_TRACKING_URI, WANDB_MODE=offline, ...); the
# experiment / project is "infopro" unless MLFLOW_EXPERIMENT_NAME / WANDB_PROJECT name another.
TRACKERS = ("mlflow", "wandb")
TRACKER_PROJECT = "infopro"
# What a tracker gets at the end besides the metrics: the run's recipe, results, table and curves.
TRACKER_FILES = ("config.yaml", "summary.json", "metrics.csv", "curves.png", "class_iou.png")


def tracker_module(name: str, mode: str) -> Any:
    """The `mlflow` / `wandb` module for --mlflow / --wandb auto|on when it is installed, else None (auto, off);
    `on` without the package is an error, said before anything runs."""
    if mode == "off":
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        if mode == "on":
            raise InfoProError(f"--{name} on needs the {name} package: pip install 'infopro[{name}]' "
                               f"(or --{name} off)") from None
        return None


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record's numbers as flat names (train_loss_1, piece_1_recon, test_accuracy, lr...)."""
    return {key: float(value) for key, value in flat_record(record).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"}


class MlflowTracker:
    """One MLflow run per process of `infopro train` (named after the run directory): its settings as params,
    every epoch's numbers as metrics at step = epoch, the run's files as artifacts at the end."""

    def __init__(self, mlflow: Any, run: RunDir, config: dict[str, Any]) -> None:
        self.mlflow = mlflow
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", TRACKER_PROJECT))
        mlflow.start_run(run_name=run.path.name, tags={"infopro.run_dir": str(run.path)})
        # MLflow keeps a param as a string of at most 6000 characters: long lists are cut, not refused
        mlflow.log_params({key: str(value)[:6000] for key, value in config.items()})

    def log(self, numbers: dict[str, float], epoch: int) -> None:
        self.mlflow.log_metrics(numbers, step=epoch)

    def finish(self, files: Sequence[Path], ending: str) -> None:
        for path in files:
            self.mlflow.log_artifact(str(path))
        self.mlflow.end_run(status=ending.upper())  # MLflow's FINISHED, FAILED, KILLED


class WandbTracker:
    """One Weights & Biases run per process of `infopro train` (named after the run directory; its files under
    RUN/wandb/): its settings as the run's config, every epoch's numbers at step = epoch, the run's files
    saved at the end."""

    def __init__(self, wandb: Any, run: RunDir, config: dict[str, Any]) -> None:
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", TRACKER_PROJECT), name=run.path.name,
                              dir=str(run.path), config=config)
        self.base = str(run.path)

    def log(self, numbers: dict[str, float], epoch: int) -> None:
        self.run.log(numbers, step=epoch)

    def finish(self, files: Sequence[Path], ending: str) -> None:
        for path in files:
            self.run.save(str(path), base_path=self.base, policy="now")
        self.run.finish(exit_code=0 if ending == "finished" else 1)


TRACKER_CLASSES = {"mlflow": MlflowTracker, "wandb": WandbTracker}


def start_trackers(modes: dict[str, str], run: RunDir, config: dict[str, Any]) -> list[Any]:
    """The trackers asked for in `modes` ({"mlflow": "auto"|"on"|"off", ...}) and installed, started. A
    tracker that cannot start (not logged in, its server not reached) is one line naming the way out."""
    trackers = []
    for name in TRACKERS:
        module = tracker_module(name, modes.get(name, "off"))
        if module is None:
            continue
        try:
            trackers.append(TRACKER_CLASSES[name](module, run, config))
        except Exception as error:  # the library's own errors: not ours to list
            for tracker in trackers:
                tracker.finish([], "failed")
            raise InfoProError(f"--{name}: {name} could not start a run ({type(error).__name__}: "
                               f"{error_reason(error)}); check its login / tracking settings, or pass --{name} off"
                               ) from None
    return trackers


class RunLog:
    """Writes metrics.csv, curves.png and TensorBoard events after every epoch (and class_iou.png, the test IoU
    per class of the latest epoch, where its record has them: segmentation; `classes` names them), keeps
    train.log, and sends the epochs' numbers to MLflow / Weights & Biases when asked (`trackers`:
    {"mlflow": mode, "wandb": mode})."""

    def __init__(self, run: RunDir, tensorboard: str, title: str, trackers: dict[str, str] | None = None,
                 config: dict[str, Any] | None = None, classes: Sequence[str] = ()) -> None:
        self.run, self.title, self.classes = run, title, [str(c) for c in classes]
        self.trackers = start_trackers(trackers or {}, run, config or {})  # first: one that cannot start leaves
        writer = tensorboard_writer(tensorboard)                           # no tensorboard/ behind
        self.events = writer(str(run.tensorboard)) if writer is not None else None
        self.sent = 0  # records sent to the trackers: a resumed run's first epoch sends the earlier ones too

    def epoch(self, history: Sequence[dict[str, Any]]) -> None:
        atomic_write_text(self.run.metrics_csv, metrics_csv(history))
        png = plot_curves(history, self.title)
        atomic_write(self.run.curves, lambda f: f.write(png))
        record = history[-1]
        class_iou = record.get("test_class_iou")
        if class_iou is not None and len(class_iou) == len(self.classes):
            from ..plots import write_class_iou_png

            write_class_iou_png(class_iou, self.classes, self.run.class_iou,
                                f"{self.title}\ntest IoU per class, epoch {record['epoch']}")
        if self.events is not None:
            record = history[-1]
            for key, value in flat_record(record).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.events.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
            self.events.flush()
        for record in history[self.sent:]:
            numbers = _numbers(record)
            for tracker in self.trackers if numbers else ():  # a record rebuilt without numbers has none to send
                tracker.log(numbers, record["epoch"])
        self.sent = len(history)

    def rewrite(self, history: Sequence[dict[str, Any]]) -> None:
        """metrics.csv and curves.png of `history` again (a resumed run whose files were lost or rebuilt)."""
        if history:
            atomic_write_text(self.run.metrics_csv, metrics_csv(history))
            png = plot_curves(history, self.title)
            atomic_write(self.run.curves, lambda f: f.write(png))

    def close(self, ending: str = "finished") -> None:
        """`ending`: how this process's part of the run ended, for the trackers: "finished", "killed"
        (interrupted: `--resume` continues it) or "failed"."""
        if self.events is not None:
            self.events.close()
        files = [self.run.path / name for name in TRACKER_FILES if (self.run.path / name).is_file()]
        for tracker in self.trackers:
            tracker.finish(files, ending)

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

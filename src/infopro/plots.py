"""What every infopro plot shares: a Figure that is not pyplot's (no global state, nothing to close), whole epochs
on the x axis, log axes labelled with plain numbers, legends beside the data rather than over it, and piece
styles (colour + marker) that tell overlapping curves apart. Used by curves.png (train/run_log.py) and
compare.png (compare.py); draws a segmentation run's per-class IoU (`write_class_iou_png`). matplotlib is
imported only when a plot is drawn."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# A log axis only pays when the values span this factor; below it a linear axis reads better.
LOG_FROM_RATIO = 10.0


def new_figure(width: float, height: float) -> "Figure":
    """A Figure with constrained layout, so that legends placed outside the axes get room of their own, on an
    Agg canvas of its own (drawable without a display or pyplot's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def piece_style(k: int, points: int) -> dict[str, object]:
    """Piece k's colour and marker, the same in every panel; about 20 markers along a line of `points` epochs,
    so that a long run's curves stay lines."""
    return {"color": f"C{k % 10}", "marker": MARKERS[k % len(MARKERS)], "markersize": 4,
            "markevery": max(1, points // 20)}


def epoch_axis(ax: "Axes") -> None:
    """Epochs are whole numbers: no 1.5 ticks (call it after plotting; a range under 2 epochs, e.g. a single
    epoch's point, gets the whole numbers inside it, which MaxNLocator would not give)."""
    from matplotlib.ticker import MaxNLocator

    low, high = ax.get_xlim()
    if high - low < 2:
        ax.set_xticks(range(math.ceil(low), math.floor(high) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _plain(value: float) -> str:
    return f"{value:g}"


def readable_y(ax: "Axes", values: Iterable[float]) -> None:
    """A log y axis where the positive finite `values` span LOG_FROM_RATIO or more, labelled 0.5, 1, 2 (never
    6x10^0); linear otherwise. Below three decades the 2x and 5x minor ticks carry labels too."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite or min(finite) <= 0 or max(finite) / min(finite) < LOG_FROM_RATIO:
        return
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
    if math.log10(max(finite) / min(finite)) < 3:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _plain(v)))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def legend_outside(ax: "Axes", **kwargs: object) -> None:
    """The axes' legend to the right of its data, so that it hides no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small", **kwargs)


def png(fig: "Figure", dpi: int = 100) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def class_iou_figure(class_iou: Sequence[float | None], classes: Sequence[str], title: str = "") -> "Figure":
    """A segmentation run's IoU per class (in %) as horizontal bars, the first class on top, each labelled with its
    value (n/a where the class was in neither the masks nor the predictions), and the mIoU (the mean over the
    defined ones) as a dashed line."""
    if len(class_iou) != len(classes):
        raise ValueError(f"{len(class_iou)} IoUs for {len(classes)} classes")
    defined = [v for v in class_iou if v is not None]
    fig = new_figure(6.4, 1.2 + 0.28 * len(classes))
    ax = fig.add_subplot()
    rows = range(len(classes))
    ax.barh(rows, [100 * (v or 0.0) for v in class_iou], color="C0")
    for row, value in zip(rows, class_iou):
        ax.text(100 * (value or 0.0) + 1, row, "n/a" if value is None else f"{100 * value:.1f}",
                va="center", fontsize="small")
    if defined:
        miou = sum(defined) / len(defined)
        ax.axvline(100 * miou, color="C3", linestyle="--", label=f"mIoU {100 * miou:.1f}")
        legend_outside(ax)
    ax.set_yticks(list(rows), [str(c) for c in classes], parse_math=False)  # a name with $ is text, not TeX
    ax.invert_yaxis()  # class 0 on top, as a table lists it
    ax.set_xlim(0, 110)  # room for the label of a bar at 100
    ax.set_xlabel("IoU (%)")
    ax.set_ylabel("class")
    ax.set_title(title or "IoU per class", parse_math=False)  # the run directory's name is text too
    return fig


def write_class_iou_png(class_iou: Sequence[float | None], classes: Sequence[str], path: str | Path,
                        title: str = "") -> Path:
    """`class_iou_figure` written (atomically) to `path` as a PNG; returns the path. `class_iou` and `classes`
    are in class order, as a segmentation run's summary keeps them."""
    from .files import atomic_write

    data = png(class_iou_figure(class_iou, classes, title))
    atomic_write(path, lambda f: f.write(data))
    return Path(path)

"""What every infopro plot shares: a Figure that is not pyplot's (no global state, nothing to close), whole epochs
on the x axis, log axes labelled with plain numbers, legends beside the data rather than over it, and piece
styles (colour + marker) that tell overlapping curves apart. Used by curves.png (train/run_log.py) and
compare.png (compare.py); matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Iterable

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

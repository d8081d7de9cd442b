"""`infopro compare RUN...`: several run directories side by side, as the papers of this field show them.

Rows by one setting (method), columns by another (K); each cell is the test error of the runs that differ
only in their seed (a segmentation run's: its test mean IoU), as mean +- std, with peak memory and seconds per
epoch beside. The number is the final one, or the one at the best validation epoch when the runs selected on a
validation split. Runs of different tasks are not compared in one table (refused: compare them apart). Runs without a
summary (unfinished) or with a non-finite loss or error (diverged) are listed and marked, never averaged.
Writes compare.md, compare.csv (one line per cell), runs.csv (one line per run) and compare.png. A folder of
several experiments (runs of one cell that differ in more than the seed) becomes one table per experiment
(`group_runs`), each headed by the settings that set it apart, with compare-1.png, compare-2.png, ...
With `--paper TABLE` (a table of `infopro reproduce`), each cell shows the published number beside it.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import InfoProError, shown
from .files import atomic_write, atomic_write_text, check_output_dir
from .train.run_dir import RunDir, refuse_run_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Settings that do not make two runs different experiments: the seed is what is averaged over.
NOT_AN_EXPERIMENT = frozenset({"seed", "out"})
# (row label, column label) -> (the published test error as a fraction, or None where none is known; its source)
PaperNumbers = Mapping[tuple[str, str], tuple[float | None, str]]
DEFAULT_TASK = "classify"  # a run whose config.yaml names no task (written before tasks were recorded)


@dataclass(frozen=True)
class Measure:
    """What a table's cells hold, as the runs' metrics records name it: `key` (test_error, test_miou; a fraction
    in each epoch's record), `name` for a person, and the record key and name of compare.png's per-epoch panel."""

    key: str
    name: str
    curve_key: str
    curve_name: str

    @property
    def val_key(self) -> str:
        return "val_" + self.key.removeprefix("test_")


# Classification papers report the test error; a task scored otherwise (segmentation: mean IoU) reports its score.
ERROR = Measure("test_error", "test error", "test_accuracy", "test accuracy")


def measure_of(task: str) -> Measure:
    """The measure of runs of `task`: the test error where its score is accuracy, else its own score."""
    from .tasks import TASKS

    if task not in TASKS:
        raise InfoProError(f"runs of task {task!r} cannot be compared by this infopro ({', '.join(TASKS.names())})")
    kind = TASKS.get(task)
    if kind.score == "accuracy":
        return ERROR
    return Measure(f"test_{kind.score}", f"test {kind.score_label}", f"test_{kind.score}", f"test {kind.score_label}")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    status: str  # "finished", "unfinished" or "diverged"
    value: float | None = None  # the run's `measure` (a fraction): its test error, or e.g. test mean IoU
    peak_memory_bytes: int | None = None
    seconds_per_epoch: float | None = None
    error_at: str = ""  # "final", or "best val epoch N" when the run selected its best epoch on validation
    val_value: float | None = None  # the same measure on the validation split at that epoch, where there is one

    @property
    def task(self) -> str:
        return str(self.config.get("task") or DEFAULT_TASK)

    @property
    def measure(self) -> Measure:
        return measure_of(self.task)


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)  # the finished ones, averaged
    marked: list[Run] = field(default_factory=list)  # unfinished or diverged, listed only

    @property
    def values(self) -> list[float]:
        return [r.value for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single run)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `infopro train`")
    parser.add_argument("--out", default="compare", help="output directory for compare.md, compare.csv, runs.csv "
                        "and compare.png (default: %(default)s)")
    parser.add_argument("--rows", default="method", help="config.yaml key whose values make the rows (default: %(default)s)")
    parser.add_argument("--cols", default="K", help="config.yaml key whose values make the columns (default: %(default)s)")
    parser.add_argument("--paper", default=None, metavar="TABLE",
                        help="show the published number beside each cell: a table of `infopro reproduce --list` "
                             "(needs --rows method --cols K)")
    parser.add_argument("--grids", default=None, metavar="YAML",
                        help="grid file that --paper's table is in (default: the bundled one)")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _diverged(history: Sequence[dict[str, Any]]) -> bool:
    for record in history:
        values = list(record.get("train_losses", [])) + [record[k] for k in ("test_error", "test_loss") if k in record]
        if not all(_finite(v) for v in values):
            return True
    return False


def read_run(path: str | Path) -> Run:
    """One run directory as compare sees it; one InfoProError line if `path` is not a run directory."""
    run_dir = RunDir(path)
    if run_dir.path.is_dir() and not run_dir.config.is_file() and run_dir.checkpoint.is_file():
        raise InfoProError(f"{path} has lost its config.yaml; `infopro train --resume {path}` writes it again from "
                           f"its checkpoint")
    if not run_dir.path.is_dir() or not run_dir.config.is_file():
        raise InfoProError(f"{path} is not a run directory (no config.yaml); give directories written by "
                           f"`infopro train --out DIR`")
    config = run_dir.read_config()
    history = run_dir.metric_records()
    summary = run_dir.read_summary()
    if _diverged(history):
        return Run(run_dir.path, config, history, "diverged")
    if summary is None:
        return Run(run_dir.path, config, history, "unfinished")
    measure = Run(run_dir.path, config, history, "").measure
    selected_on_val = summary.get("best_selected_on") == "val"
    epoch = summary.get("best_epoch") if selected_on_val else None
    record = next((r for r in history if r.get("epoch") == epoch), None) if selected_on_val else \
        (history[-1] if history else None)
    value = (record or {}).get(measure.key)
    error_at = f"best val epoch {summary.get('best_epoch')}" if selected_on_val else "final"
    if not _finite(value):
        return Run(run_dir.path, config, history, "diverged")
    val_value = (record or {}).get(measure.val_key)
    seconds = [r["epoch_seconds"] for r in history if _finite(r.get("epoch_seconds"))]
    return Run(run_dir.path, config, history, "finished", float(value), summary.get("peak_memory_bytes"),
               statistics.fmean(seconds) if seconds else None, error_at,
               float(val_value) if _finite(val_value) else None)


def table_measure(runs: Sequence[Run]) -> Measure:
    """The measure of runs of one task; InfoProError naming the tasks when they are of several."""
    by_task: dict[str, list[Run]] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    if len(by_task) > 1:
        listed = "; ".join(f"{task}: {', '.join(str(r.path) for r in members[:2])}"
                           + (f" and {len(members) - 2} more" if len(members) > 2 else "")
                           for task, members in by_task.items())
        raise InfoProError(f"these runs are of {len(by_task)} tasks ({listed}), which report different numbers "
                           f"(test error, mean IoU); compare each task's runs apart")
    return runs[0].measure if runs else ERROR


def _label(value: Any) -> str:
    return str(value)


def _check_keys(runs: Sequence[Run], rows: str, cols: str) -> None:
    for key in (rows, cols):
        for run in runs:
            if key not in run.config:
                raise InfoProError(f"unknown key {shown(key)}: {run.path}/config.yaml has no such setting; "
                                   f"choose among {', '.join(sorted(run.config))}")


def _differ(a: Run, b: Run) -> list[str]:
    """The settings in which two runs are different experiments (not the seed)."""
    return sorted(k for k in set(a.config) | set(b.config) if k not in NOT_AN_EXPERIMENT
                  and a.config.get(k) != b.config.get(k))


def _clashes(runs: Sequence[Run], rows: str, cols: str) -> set[str]:
    """The settings in which two finished runs that would share a cell differ."""
    first: dict[tuple[str, str], Run] = {}
    keys: set[str] = set()
    for run in runs:
        if run.status == "finished":
            keys.update(_differ(first.setdefault((_label(run.config[rows]), _label(run.config[cols])), run), run))
    return keys


def tabulate(runs: Sequence[Run], rows: str, cols: str) -> dict[tuple[str, str], Cell]:
    """(row value, column value) -> Cell. Two finished runs in one cell must differ only in their seed
    (`group_runs` puts runs that would not into separate tables)."""
    _check_keys(runs, rows, cols)
    cells: dict[tuple[str, str], Cell] = {}
    for run in runs:
        cell = cells.setdefault((_label(run.config[rows]), _label(run.config[cols])), Cell())
        if run.status != "finished":
            cell.marked.append(run)
            continue
        if cell.runs:
            first = cell.runs[0]
            differ = _differ(first, run)
            if differ:
                raise InfoProError(f"{first.path} and {run.path} share the cell {rows}={run.config[rows]}, "
                                   f"{cols}={run.config[cols]} but differ in {', '.join(differ)}, not only the seed; "
                                   f"compare them with --rows/--cols set to that key, or separately")
        cell.runs.append(run)
    return cells


@dataclass
class Group:
    """The runs of one table: `settings` are the values that set them apart from the other tables' runs."""

    settings: dict[str, str]
    runs: list[Run]

    @property
    def title(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items())


def group_runs(runs: Sequence[Run], rows: str, cols: str) -> list[Group]:
    """The runs in as few tables as can hold them: one, unless two finished runs of one cell differ in more than
    the seed (a folder of several experiments); then one table per value of the settings they differ in, split
    until no cell mixes experiments. Runs that differ only where they fall in other cells share a table."""
    _check_keys(runs, rows, cols)
    keys: list[str] = []
    while True:
        groups: dict[tuple[str, ...], list[Run]] = {}
        for run in runs:
            groups.setdefault(tuple(_label(run.config.get(k)) for k in keys), []).append(run)
        clashing = set().union(*(_clashes(members, rows, cols) for members in groups.values())) - set(keys)
        if not clashing:
            return [Group(dict(zip(keys, values)), members) for values, members in sorted(groups.items())]
        keys += sorted(clashing)


def _sorted_values(values: set[str]) -> list[str]:
    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)
    return sorted(values, key=key)


def _cell_text(cell: Cell) -> str:
    if not cell.runs:
        return "-" + (f" ({len(cell.marked)} not finished)" if cell.marked else "")
    text = f"{100 * cell.mean:.2f} ± {100 * cell.std:.2f} (n={len(cell.runs)})"
    val = [r.val_value for r in cell.runs]
    if all(v is not None for v in val):
        text += f", val {100 * statistics.fmean(val):.2f}"  # type: ignore[arg-type]
    memories = [r.peak_memory_bytes for r in cell.runs if r.peak_memory_bytes is not None]
    seconds = [r.seconds_per_epoch for r in cell.runs if r.seconds_per_epoch is not None]
    if memories:
        text += f", {max(memories) / 2**20:.0f} MiB"
    if seconds:
        text += f", {statistics.fmean(seconds):.2f} s/epoch"
    if cell.marked:
        text += f", +{len(cell.marked)} marked"
    return text


def _which_error(runs: Sequence[Run]) -> str:
    """Which test number the cells hold (the table's measure): the final epoch's, or the best validation
    epoch's (runs.csv: per run)."""
    name = table_measure(runs).name
    title = name[0].upper() + name[1:]
    kinds = {"final" if r.error_at == "final" else "best val" for r in runs if r.status == "finished"}
    if kinds == {"final"}:
        return f"Final {name}"
    if kinds == {"best val"}:
        return f"{title} at the best validation epoch"
    return (f"{title} (final, or at the best validation epoch for runs with a validation split; "
            f"runs.csv: error_at)")


def _paper_text(paper: PaperNumbers | None, key: tuple[str, str]) -> str:
    if paper is None:
        return ""
    value = paper.get(key, (None, ""))[0]
    return f"; paper {'–' if value is None else f'{100 * value:.2f}'}"


def markdown(cells: dict[tuple[str, str], Cell], rows: str, cols: str, runs: Sequence[Run],
             paper: PaperNumbers | None = None) -> str:
    row_values = _sorted_values({r for r, _ in cells})
    col_values = _sorted_values({c for _, c in cells})
    with_val = any(r.val_value is not None for r in runs)
    lines = [f"{_which_error(runs)} (%) as mean ± std over seeds, peak memory, seconds per epoch"
             + ("; val: the validation split's at the same epoch" if with_val else "")
             + ("; paper: the published error" if paper is not None else "") + f"; rows: {rows}, columns: {cols}.",
             "", "| " + " | ".join([f"{rows} \\ {cols}", *col_values]) + " |",
             "|" + "---|" * (len(col_values) + 1)]
    for r in row_values:
        lines.append("| " + " | ".join([r, *(_cell_text(cells[r, c]) + _paper_text(paper, (r, c)) if (r, c) in cells
                                             else "" for c in col_values)]) + " |")
    if paper is not None:
        sources = list(dict.fromkeys(paper[key][1] for key in cells if key in paper and paper[key][1]))
        lines += ["", *(f"Paper: {source}." for source in sources)]
        if any(paper.get(key, (None,))[0] is None for key in cells):
            lines.append("paper –: no published number is known for that cell.")
    marked = [run for run in runs if run.status != "finished"]
    if marked:
        lines += ["", "Not averaged:"] + [f"- {run.path}: {run.status} ({len(run.history)} epoch(s) recorded)"
                                          for run in marked]
    return "\n".join(lines) + "\n"


def _csv(header: Sequence[str], lines: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(lines)
    return out.getvalue()


def cells_csv(cells: dict[tuple[str, str], Cell], rows: str, cols: str, paper: PaperNumbers | None = None,
              measure: Measure = ERROR) -> str:
    """One line per cell (the measure's mean and std: test_error_mean, or e.g. test_miou_mean); with `paper`, two
    more columns: the published error (a fraction, as the others) and its source."""
    lines = []
    for (r, c), cell in sorted(cells.items()):
        memories = [x.peak_memory_bytes for x in cell.runs if x.peak_memory_bytes is not None]
        seconds = [x.seconds_per_epoch for x in cell.runs if x.seconds_per_epoch is not None]
        lines.append([r, c, len(cell.runs), cell.mean if cell.runs else "", cell.std if cell.runs else "",
                      max(memories) if memories else "", statistics.fmean(seconds) if seconds else "",
                      len(cell.marked)])
        if paper is not None:
            value, source = paper.get((r, c), (None, ""))
            lines[-1] += ["" if value is None else value, source if value is not None else ""]
    return _csv([rows, cols, "runs", f"{measure.key}_mean", f"{measure.key}_std", "peak_memory_bytes",
                 "seconds_per_epoch", "marked_runs", *(["paper_test_error", "paper_source"] if paper is not None else [])],
                lines)


def runs_csv(runs: Sequence[Run], rows: str, cols: str) -> str:
    """One line per run: its measure on test (test_error, or e.g. test_miou) and on validation at the same epoch
    (empty without a validation split), as fractions."""
    measure = table_measure(runs)
    return _csv(["run", rows, cols, "seed", "status", measure.key, "error_at", measure.val_key, "peak_memory_bytes",
                 "seconds_per_epoch"],
                [[r.path, r.config[rows], r.config[cols], r.config.get("seed"), r.status,
                  "" if r.value is None else r.value, r.error_at, "" if r.val_value is None else r.val_value,
                  r.peak_memory_bytes or "", "" if r.seconds_per_epoch is None else r.seconds_per_epoch]
                 for r in runs])


def figure(cells: dict[tuple[str, str], Cell], rows: str, cols: str, runs: Sequence[Run],
           paper: PaperNumbers | None = None) -> Figure:
    """compare.png as a Figure. Left: the table's measure (test error; a segmentation run's test mean IoU)
    against the column key, one line per row value (error bars: std over seeds; with `paper`, the published
    errors as crosses on dotted lines). Right: every run's test accuracy (mean IoU) against the epoch, coloured
    by row value (dashed: not averaged), with a legend of both."""
    from matplotlib.lines import Line2D

    from . import plots

    measure = table_measure(runs)
    row_values = _sorted_values({r for r, _ in cells})
    col_values = _sorted_values({c for _, c in cells})
    colours = {r: f"C{i % 10}" for i, r in enumerate(row_values)}
    markers = {r: plots.MARKERS[i % len(plots.MARKERS)] for i, r in enumerate(row_values)}
    fig = plots.new_figure(13, 4.2)
    err, acc = fig.subplots(1, 2)
    for i, r in enumerate(row_values):
        xs = [j for j, c in enumerate(col_values) if (r, c) in cells and cells[r, c].runs]
        offset = 0.03 * (i - (len(row_values) - 1) / 2)  # so that equal values do not hide each other
        err.errorbar([x + offset for x in xs], [100 * cells[r, col_values[x]].mean for x in xs],
                     yerr=[100 * cells[r, col_values[x]].std for x in xs], marker=markers[r], capsize=3,
                     color=colours[r], label=r)
        published = [(j, paper[r, c][0]) for j, c in enumerate(col_values)
                     if paper is not None and (r, c) in cells and paper.get((r, c), (None,))[0] is not None]
        if published:
            err.plot([j + offset for j, _ in published], [100 * v for _, v in published], ":x", color=colours[r],
                     label="paper (x, dotted)" if i == 0 else None)
    err.set_xticks(range(len(col_values)), col_values)
    err.set_xlim(-0.5, len(col_values) - 0.5)
    err.set(xlabel=cols, ylabel=f"{measure.name} (%)", title=f"{measure.name} against {cols}")
    plots.legend_outside(err, title=rows)
    drawn: dict[str, set[str]] = {}  # row value -> the line styles drawn for it
    for run in runs:
        points = [(h["epoch"], 100 * h[measure.curve_key]) for h in run.history if measure.curve_key in h]
        if points:
            r = _label(run.config[rows])
            style = "-" if run.status == "finished" else "--"
            acc.plot(*zip(*points), style, marker=markers[r], markersize=3, color=colours[r], alpha=0.7,
                     markevery=max(1, len(points) // 20))
            drawn.setdefault(r, set()).add(style)
    # One entry per row value (its runs share colour and marker), and one for the dashed unfinished runs.
    handles = [Line2D([], [], color=colours[r], marker=markers[r], markersize=3, label=r)
               for r in row_values if r in drawn]
    if any("--" in styles for styles in drawn.values()):
        handles.append(Line2D([], [], color="grey", linestyle="--", label="not averaged (unfinished, diverged)"))
    if handles:
        acc.legend(handles=handles, title=rows, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                   fontsize="small")
    plots.epoch_axis(acc)
    acc.set(xlabel="epoch", ylabel=f"{measure.curve_name} (%)", title=f"{measure.curve_name} of each run")
    return fig


def plot(cells: dict[tuple[str, str], Cell], rows: str, cols: str, runs: Sequence[Run],
         paper: PaperNumbers | None = None) -> bytes:
    """compare.png's bytes (see `figure`)."""
    from . import plots

    return plots.png(figure(cells, rows, cols, runs, paper))


def compare_runs(paths: Sequence[str | Path], out: str | Path, rows: str = "method", cols: str = "K",
                 paper: PaperNumbers | None = None) -> str:
    """Tabulate the runs in `paths`, write compare.md/.csv, runs.csv and compare.png into `out`, print the
    table and return it. `paper` adds the published numbers (its keys: row and column labels)."""
    out = check_output_dir(out)
    paths = list(dict.fromkeys(map(str, paths)))
    if not paths:
        raise InfoProError("no runs given; pass one or more run directories")
    runs = [read_run(p) for p in paths]
    measure = table_measure(runs)  # runs of one task only
    if paper is not None and measure != ERROR:
        raise InfoProError(f"--paper tables hold published test errors of image classification; these runs report "
                           f"their {measure.name}: compare them without --paper")
    groups = group_runs(runs, rows, cols)
    tables = [(group, tabulate(group.runs, rows, cols)) for group in groups]
    names = ["compare.md", "compare.csv", "runs.csv"]
    names += ["compare.png"] if len(groups) == 1 else [f"compare-{i}.png" for i in range(1, len(groups) + 1)]
    for name in names:
        refuse_run_file(out / name)
    out.mkdir(parents=True, exist_ok=True)
    if len(groups) == 1:
        cells = tables[0][1]
        table = markdown(cells, rows, cols, runs, paper) + _also_differ(runs, rows, cols)
        cells_text, runs_text = cells_csv(cells, rows, cols, paper, measure), runs_csv(runs, rows, cols)
        figures = ["compare.png"]
    else:  # one table per experiment: the settings that tell them apart lead each table and each csv line
        keys = list(groups[0].settings)
        figures = [f"compare-{i}.png" for i in range(1, len(groups) + 1)]
        table = (f"The runs are {len(groups)} experiments: runs that would share a cell differ in "
                 f"{', '.join(keys)}, not only the seed, so there is one table per "
                 f"{'value of ' + keys[0] if len(keys) == 1 else 'combination of ' + ', '.join(keys)}.\n")
        cells_text, runs_text = "", ""
        for i, ((group, cells), figure_name) in enumerate(zip(tables, figures)):
            table += (f"\n### {group.title} ({len(group.runs)} run{'s' if len(group.runs) > 1 else ''}; "
                      f"{figure_name})\n\n" + markdown(cells, rows, cols, group.runs, paper)
                      + _also_differ(group.runs, rows, cols))
            values = list(group.settings.values())
            cells_text += _with_columns(cells_csv(cells, rows, cols, paper, measure), keys, values, header=i == 0)
            runs_text += _with_columns(runs_csv(group.runs, rows, cols), keys, values, header=i == 0)
    atomic_write_text(out / "compare.md", table)
    atomic_write_text(out / "compare.csv", cells_text)
    atomic_write_text(out / "runs.csv", runs_text)
    for (group, cells), figure_name in zip(tables, figures):
        figure = plot(cells, rows, cols, group.runs, paper)
        atomic_write(out / figure_name, lambda f: f.write(figure))
    print(table, end="")
    print(f"Wrote {out / 'compare.md'}, compare.csv, runs.csv and {', '.join(figures)}")
    return table


def _also_differ(runs: Sequence[Run], rows: str, cols: str) -> str:
    """A line naming the settings that differ between runs of one table besides its rows, columns and seeds
    (e.g. a method's own epochs or weights), so that a table of unlike runs says so; empty when there are none."""
    keys = sorted({k for run in runs[1:] for k in _differ(runs[0], run)} - {rows, cols})
    return f"\nThe runs of this table also differ in: {', '.join(keys)} (runs.csv lists each run).\n" if keys else ""


def _with_columns(text: str, keys: Sequence[str], values: Sequence[str], header: bool) -> str:
    """A csv text with the columns `keys` (each line: `values`) in front; without its header line unless `header`."""
    lines = list(csv.reader(io.StringIO(text)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow([*keys, *lines[0]])
    writer.writerows([*values, *line] for line in lines[1:])
    return out.getvalue()


def compare_main(args: argparse.Namespace) -> int:
    paper = None
    if args.paper is not None:
        from .reproduce import get_table, paper_numbers

        if (args.rows, args.cols) != ("method", "K"):
            raise InfoProError(f"--paper numbers are by method and K: use --rows method --cols K "
                               f"(not --rows {args.rows} --cols {args.cols})")
        paper = paper_numbers(get_table(args.paper, args.grids))
    compare_runs(args.runs, args.out, args.rows, args.cols, paper)
    return 0

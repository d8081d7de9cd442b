"""`infopro reproduce TABLE`: a published table's grid (methods x K x seeds), one `infopro train` run per cell
and seed, each in its own run directory OUT/<config stem>-s<seed>, then `infopro compare` over them with the
paper's number beside each cell.

The grids are data (`grids/tables.yaml`): per table, each cell's method, K, config file (under configs/) and
published number. A second invocation finds the runs again by name: a finished run (summary.json) is
skipped, an unfinished one is continued with `--resume`, a missing one is started; a run directory that
holds a run with other settings is refused, never mixed in. `--jobs N` runs N cells side by side as
separate processes; `--dry-run` prints the commands instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import InfoProError, Interrupted, elide
from .files import check_output_dir, error_reason
from .flag_types import positive_int, seed as seed_number
from .train.run_dir import RunDir, read_yaml_mapping

TABLES_FILE = Path(__file__).with_name("grids") / "tables.yaml"
# Flags that reproduce sets itself for each cell: not to be given after `--`.
OWN_FLAGS = {"-c": "the cell's config", "--config": "the cell's config", "--seed": "--seeds", "--out": "--out",
             "--resume": "the run's state", "--test-only": "nothing (evaluate a run with infopro train --test-only)"}
# Settings a run directory's run may differ in from its cell and still be that cell's run (where it runs,
# not what it computes: as `infopro train --resume` allows; `epochs` is not among them here, so a short
# trial run is never stretched into a full one).
FREE_SETTINGS = ("out", "device", "data_dir", "cache_dir", "channels_last", "compile", "tf32")


@dataclass(frozen=True)
class GridCell:
    method: str
    K: int
    config: str  # relative to the configs directory
    paper: float | None  # the published test error (%); None where docs/METHOD.md lists none
    source: str  # where `paper` was published


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    source: str
    cells: tuple[GridCell, ...]

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(c.method for c in self.cells))

    @property
    def Ks(self) -> list[int]:
        return sorted({c.K for c in self.cells})


@dataclass
class Launch:
    """One cell and seed: its run directory and the `infopro train` arguments that start or continue it."""
    cell: GridCell
    seed: int
    run: RunDir
    argv: list[str]  # after `infopro train`
    state: str  # "start", "resume", "finished" or "mismatch"
    note: str = ""  # for finished: the test error; for mismatch: how the run differs

    @property
    def name(self) -> str:
        return self.run.path.name

    def command(self) -> str:
        return shlex.join(["infopro", "train", *self.argv])


# -- the grids --------------------------------------------------------------------------------------------

def load_tables(path: str | Path | None = None) -> dict[str, Table]:
    """The tables of a grid file (default: the bundled grids/tables.yaml); one line naming what is malformed."""
    path = Path(path) if path is not None else TABLES_FILE
    if not path.is_file():
        raise InfoProError(f"grid file {path} does not exist")
    tables = read_yaml_mapping(path).get("tables")
    if not isinstance(tables, dict) or not tables:
        raise InfoProError(f"grid file {path} needs a mapping `tables: {{NAME: {{title, source, cells}}}}`")
    return {str(name): _table(str(name), entry, path) for name, entry in tables.items()}


def _table(name: str, entry: Any, path: Path) -> Table:
    where = f"grid file {path}, table {name}"
    if not isinstance(entry, dict) or not isinstance(entry.get("cells"), list) or not entry["cells"]:
        raise InfoProError(f"{where}: needs a list `cells`")
    cells = []
    for i, c in enumerate(entry["cells"]):
        ok = (isinstance(c, dict) and isinstance(c.get("method"), str) and isinstance(c.get("config"), str)
              and isinstance(c.get("K"), int) and not isinstance(c.get("K"), bool)
              and (c.get("paper") is None or isinstance(c["paper"], (int, float)) and not isinstance(c["paper"], bool)))
        if not ok:
            raise InfoProError(f"{where}, cell {i + 1}: needs method (text), K (integer), config (path under "
                               f"configs/) and paper (number or null), got {c!r}")
        paper = None if c.get("paper") is None else float(c["paper"])
        cells.append(GridCell(c["method"], c["K"], c["config"], paper, str(c.get("source", entry.get("source", "")))))
    keys = [(c.method, c.K) for c in cells]
    if len(set(keys)) != len(keys):
        raise InfoProError(f"{where}: a method and K appear in more than one cell")
    return Table(name, str(entry.get("title", name)), str(entry.get("source", "")), tuple(cells))


def get_table(name: str, path: str | Path | None = None) -> Table:
    tables = load_tables(path)
    if name not in tables:
        raise InfoProError(f"unknown table {name!r}; choose among {', '.join(sorted(tables))} "
                           f"(infopro reproduce --list shows their cells)")
    return tables[name]


def paper_numbers(table: Table) -> dict[tuple[str, str], tuple[float | None, str]]:
    """(method, K as compare labels it) -> (published test error as a fraction or None, its source)."""
    return {(c.method, str(c.K)): (None if c.paper is None else round(c.paper / 100, 6), c.source) for c in table.cells}


def select(table: Table, methods: Sequence[str] | None, Ks: Sequence[int] | None) -> list[GridCell]:
    """The cells of `table` with one of `methods` and one of `Ks` (all when None); unknown ones refused."""
    unknown = [m for m in methods or [] if m not in table.methods]
    if unknown:
        raise InfoProError(f"{table.name} has no method {', '.join(unknown)}; choose among {', '.join(table.methods)}")
    unknown_K = [k for k in Ks or [] if k not in table.Ks]
    if unknown_K:
        raise InfoProError(f"{table.name} has no K={', '.join(map(str, unknown_K))}; choose among "
                           f"{', '.join(map(str, table.Ks))} (E2E is K=1)")
    cells = [c for c in table.cells if (methods is None or c.method in methods) and (Ks is None or c.K in Ks)]
    if not cells:
        raise InfoProError(f"--methods {' '.join(methods or [])} with --K {' '.join(map(str, Ks or []))} selects no "
                           f"cell of {table.name}; its cells: "
                           + ", ".join(f"{c.method} K={c.K}" for c in table.cells))
    return cells


def default_configs_dir() -> Path:
    """configs/ of the checkout this package runs from, else of the working directory."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    return checkout if checkout.is_dir() else Path("configs")


# -- the runs -------------------------------------------------------------------------------------------

def check_train_flags(flags: Sequence[str]) -> None:
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in OWN_FLAGS:
            raise InfoProError(f"{name} after `--` is set by reproduce for each cell; use {OWN_FLAGS[name]} instead")


def plan(table: Table, cells: Sequence[GridCell], seeds: Sequence[int], out: Path, configs: Path,
         train_flags: Sequence[str]) -> list[Launch]:
    """One Launch per cell and seed, with what its run directory says is to be done."""
    from .cli import get_args_parser
    from .train.args import check_args, resolved_config

    check_train_flags(train_flags)
    launches = []
    for cell in cells:
        config = (configs / cell.config).absolute()
        if not config.is_file():
            raise InfoProError(f"{table.name} {cell.method} K={cell.K}: config {config} does not exist; run from a "
                               f"checkout of infopro, or pass --configs DIR (the folder that holds {cell.config})")
        for seed in seeds:
            run = RunDir(out / f"{config.stem}-s{seed}")
            argv = ["-c", str(config), "--seed", str(seed), "--out", str(run.path), *train_flags]
            wanted = _parse_train(get_args_parser, argv, train_flags)
            check_args(wanted)  # bad values after `--` are said once, before anything runs
            launches.append(_launch(cell, seed, run, argv, resolved_config(wanted)))
    return launches


def _parse_train(get_args_parser: Any, argv: list[str], train_flags: Sequence[str]) -> argparse.Namespace:
    """`infopro train argv` as the train command reads it (its config file as defaults)."""
    full = ["train", *argv]
    refusal = io.StringIO()
    try:
        with contextlib.redirect_stderr(refusal):
            args, unknown = get_args_parser(full).parse_known_args(full)
    except SystemExit:  # argparse's one line, said as this command's
        said = (refusal.getvalue().strip().splitlines() or ["refused"])[-1]
        said = said.removeprefix("infopro train: error: ").removesuffix("; see infopro train --help")
        raise InfoProError(f"the flags after `--` are not valid `infopro train` flags: {elide(said, 200)}") from None
    if unknown:
        raise InfoProError(f"`infopro train` has no {shlex.join(unknown)} (after `--`); see infopro train --help")
    return args


def _launch(cell: GridCell, seed: int, run: RunDir, argv: list[str], wanted: dict[str, Any]) -> Launch:
    progress = run.progress()
    if progress == "fresh":
        return Launch(cell, seed, run, argv, "start")
    from .tasks.classify import DECIDED_AT_START

    saved = run.read_config() if run.config.is_file() else {}
    differ = [f"{k}={saved[k]!r} (the cell: {wanted[k]!r})" for k in sorted(set(saved) & set(wanted))
              if k not in FREE_SETTINGS and saved[k] != wanted[k]
              and not (k in DECIDED_AT_START and wanted[k] == DECIDED_AT_START[k])]
    if differ:
        return Launch(cell, seed, run, argv, "mismatch", f"holds a run with other settings: {', '.join(differ)}; "
                      f"remove it or choose another --out")
    if progress == "finished":
        summary = run.read_summary() or {}
        error = summary.get("final_test_error")
        return Launch(cell, seed, run, argv, "finished",
                      f"test error {100 * error:.2f}%" if isinstance(error, (int, float)) else "")
    return Launch(cell, seed, run, ["--resume", *argv], "resume")


def _child_env() -> dict[str, str]:
    """The environment of each `python -m infopro train`: this one, with this infopro first on the path."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _start(launch: Launch) -> tuple[subprocess.Popen, Any, float]:
    """`python -m infopro train ...` with its stdout and stderr appended to RUN/console.log."""
    launch.run.path.mkdir(parents=True, exist_ok=True)
    try:
        log = open(launch.run.console_log, "a", buffering=1)
    except OSError as error:
        raise InfoProError(f"cannot write {launch.run.console_log}: {error_reason(error)}") from None
    log.write(f"$ {launch.command()}\n")
    # Its own session: Ctrl-C reaches the runs once, through this process (see `_stop`).
    process = subprocess.Popen([sys.executable, "-m", "infopro", "train", *launch.argv], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env(),
                               start_new_session=True)
    return process, log, time.monotonic()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _result(launch: Launch, code: int, seconds: float) -> tuple[bool, str]:
    """(finished?, one line on how the run ended)."""
    took = f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    summary = launch.run.read_summary() if launch.run.summary.exists() else None
    if code == 0 and summary is not None:
        error = summary.get("final_test_error")
        return True, f"finished  test error {100 * error:.2f}%  ({took})" if isinstance(error, (int, float)) \
            else f"finished  ({took})"
    how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit {code}"
    return False, f"FAILED ({how}, {took}): {_last_line(launch.run.console_log)}"


def run_all(launches: Sequence[Launch], jobs: int, continue_with: str) -> list[tuple[Launch, str]]:
    """Run `launches`, `jobs` at a time; one line per run as it ends. Returns the failed ones with their line."""
    queue = deque(launches)
    running: dict[subprocess.Popen, tuple[Launch, Any, float]] = {}
    failed: list[tuple[Launch, str]] = []
    done = 0
    try:
        while queue or running:
            while queue and len(running) < jobs:
                launch = queue.popleft()
                process, log, started = _start(launch)
                running[process] = (launch, log, started)
            time.sleep(0.2)
            for process in [p for p in running if p.poll() is not None]:
                launch, log, started = running.pop(process)
                log.close()
                done += 1
                ok, line = _result(launch, process.returncode, time.monotonic() - started)
                print(f"[{done}/{len(launches)}] {launch.name}  {'resumed, ' if launch.state == 'resume' else ''}{line}",
                      flush=True)
                if not ok:
                    failed.append((launch, line))
    except KeyboardInterrupt as stop:
        _stop(running)
        raise Interrupted(f"{str(stop) or 'SIGINT'}; {len(running)} run(s) stopped after their last checkpoint; "
                          f"continue with: {continue_with}", getattr(stop, "exit_code", 130)) from None
    return failed


def _stop(running: dict[subprocess.Popen, tuple[Launch, Any, float]], wait_s: float = 60.0) -> None:
    """SIGTERM to every run still going (each stops cleanly, keeping its last checkpoint), then wait for them."""
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    for process, (_, log, _) in running.items():
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- the command ----------------------------------------------------------------------------------------

def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="?", help="the table to reproduce (--list shows them)")
    parser.add_argument("--list", action="store_true", help="show the tables, their cells and published numbers")
    parser.add_argument("--methods", nargs="+", default=None, metavar="M", help="only these rows (default: all)")
    parser.add_argument("--K", nargs="+", type=positive_int, default=None, metavar="K",
                        help="only these columns (default: all; E2E is K=1)")
    parser.add_argument("--seeds", nargs="+", type=seed_number, default=[0], metavar="S",
                        help="one run per cell and seed; the paper averages 5: --seeds 0 1 2 3 4")
    parser.add_argument("--out", default=None,
                        help="folder of the run directories (OUT/<config>-s<seed>) and OUT/compare (default: runs/TABLE)")
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="N", help="runs side by side, one process each")
    parser.add_argument("--dry-run", action="store_true",
                        help="print one `infopro train` command per run still to do (start or --resume) and run nothing")
    parser.add_argument("--configs", default=None, metavar="DIR",
                        help="the folder the grid's config paths are under (default: the checkout's configs/)")
    parser.add_argument("--grids", default=None, metavar="YAML",
                        help=f"grid file (default: the bundled {TABLES_FILE.parent.name}/{TABLES_FILE.name})")
    parser.usage = "%(prog)s [-h] [--list] TABLE [--methods M ...] [--K K ...] [--seeds S ...] [--out OUT] " \
                   "[--jobs N] [--dry-run] [--configs DIR] [--grids YAML] [-- INFOPRO-TRAIN-FLAGS ...]"
    # Filled by the CLI with what follows `--`: flags for every `infopro train`, e.g. -- --epochs 2 --device cpu
    parser.set_defaults(train_flags=[])
    parser.epilog = ("Flags after `--` go to every `infopro train` run and override the configs, e.g. "
                     "`infopro reproduce table2-resnet32 --seeds 0 1 -- --epochs 2 --train-subset 200 --device cpu`.")


def list_tables(tables: dict[str, Table]) -> str:
    lines = []
    for table in tables.values():
        lines += [f"{table.name}: {table.title}", f"  source: {table.source}"]
        for c in table.cells:
            paper = "-" if c.paper is None else f"{c.paper:.2f}"
            lines.append(f"  {c.method:<18} K={c.K:<3} paper {paper:>6}  {c.config}")
    return "\n".join(lines) + "\n"


def reproduce_main(args: argparse.Namespace) -> int:
    if args.list:
        print(list_tables(load_tables(args.grids)), end="")
        return 0
    if args.table is None:
        raise InfoProError(f"name a table: infopro reproduce TABLE, one of {', '.join(sorted(load_tables(args.grids)))}")
    if args.jobs < 1:
        raise InfoProError(f"--jobs must be >= 1, got {args.jobs}")
    if len(set(args.seeds)) != len(args.seeds):
        raise InfoProError(f"--seeds repeats a seed: {' '.join(map(str, args.seeds))}")
    table = get_table(args.table, args.grids)
    cells = select(table, args.methods, args.K)
    out = check_output_dir(args.out if args.out is not None else Path("runs", table.name))
    configs = Path(args.configs) if args.configs is not None else default_configs_dir()
    launches = plan(table, cells, args.seeds, out, configs, args.train_flags)
    to_run = [x for x in launches if x.state in ("start", "resume")]
    mismatched = [x for x in launches if x.state == "mismatch"]
    finished = [x for x in launches if x.state == "finished"]

    if args.dry_run:
        for launch in finished:
            print(f"# {launch.name}: finished, skipped", file=sys.stderr)
        for launch in mismatched:
            print(f"# {launch.name}: {launch.note}", file=sys.stderr)
        for launch in to_run:
            print(launch.command())
        return 0

    continue_with = shlex.join(getattr(args, "command_line", None) or ["infopro", "reproduce", table.name])
    resumed = sum(x.state == "resume" for x in to_run)
    print(f"{table.name}: {len(cells)} cell(s) x {len(args.seeds)} seed(s) = {len(launches)} run(s) in {out}: "
          f"{len(finished)} finished (skipped), {resumed} to resume, {len(to_run) - resumed} to start"
          + (f", {len(mismatched)} refused" if mismatched else "")
          + (f"; {args.jobs} at a time" if to_run else "") + "; each run's output in RUN/console.log", flush=True)
    for launch in finished:
        print(f"  skip {launch.name}: finished" + (f", {launch.note}" if launch.note else ""))
    refused = [(x, f"refused: {x.run.path} {x.note}") for x in mismatched]
    failed = run_all(to_run, args.jobs, continue_with)

    from .compare import compare_runs

    runs = [x.run.path for x in launches if x.state != "mismatch" and x.run.config.is_file()]
    if runs:
        print()
        compare_runs(runs, out / "compare", "method", "K", paper=paper_numbers(table))
    if failed or refused:
        print(f"\n{len(failed) + len(refused)} of {len(launches)} run(s) not finished:")
        for launch, line in [*refused, *failed]:
            print(f"  {launch.name}: {line}")
        # Finished runs are skipped and stopped ones resumed: the same command continues the grid.
        print(f"continue with: {continue_with}" if failed else f"then run again: {continue_with}")
        return 1
    return 0

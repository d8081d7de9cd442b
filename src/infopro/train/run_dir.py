"""The run directory of `infopro train`: the one module that knows its files, its lock and its states.

    RUN/config.yaml     the resolved settings, paths absolute: `infopro train --resume RUN` and
                        `--test-only RUN` take every setting from it
    RUN/metrics.jsonl   one JSON line per finished epoch, appended before that epoch's checkpoint
                        (so a resume drops the lines after its checkpoint, and a torn last line)
    RUN/checkpoint.pt   {model, optimizer, scheduler, epoch, args, history}, replaced atomically after each
                        epoch; `history` is the records of its epochs, what metrics.jsonl is rebuilt from
    RUN/summary.json    written after the last epoch
    RUN/model.pt        the plain backbone of the last epoch done, with what rebuilds it (`infopro.load_model`)
    RUN/model-best.pt   the same at the best validation epoch so far (runs with a validation split)
    RUN/metrics.csv     metrics.jsonl as a table, RUN/curves.png the curves (RUN/class_iou.png: a segmentation
                        run's test IoU per class, of its latest epoch), RUN/train.log what was printed,
                        RUN/tensorboard/ event files (when the tensorboard package is there), RUN/wandb/ the
                        files of Weights & Biases (--wandb): see run_log.py
    RUN/compile_cache/  inductor's caches of a `--compile` run, reused by `--resume` (`compile_cache.py`); not
                        a run file
    RUN/console.log     all a run printed (stdout and stderr), when `infopro reproduce` launched it; not a run
                        file: a directory holding only it is fresh
    RUN/.lock           `fcntl.flock`ed by the one process writing the run, and holding its pid; the OS
                        drops the lock when that process ends, however it ends (kill -9 included)

States: *fresh* (no run files: a new run may start), *started* (config.yaml but no checkpoint yet:
`--resume` starts it from epoch 1 with its own settings), *resumable* (a checkpoint before the last
epoch), *finished* (a checkpoint of the last epoch; `--resume` writes a missing summary.json, or
trains longer when --epochs is raised).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import shlex
import signal
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import InfoProError
from ..files import WriteError, atomic_write_text, error_reason
from ..model_file import BEST_MODEL_NAME, MODEL_NAME, save_model
from ..yaml_file import read_yaml_mapping
from .checkpoint import RESUME_KEYS, load_checkpoint

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", MODEL_NAME, BEST_MODEL_NAME,
             "metrics.csv", "curves.png", "class_iou.png", "train.log")
LOCK_NAME = ".lock"
CONSOLE_LOG_NAME = "console.log"
# Every name a run directory owns: the one list that other commands' outputs (export, compare, predict, probe,
# bench) are checked against (`refuse_run_file`), so that none overwrites a run's own file.
RUN_OWNED = (*RUN_FILES, LOCK_NAME, CONSOLE_LOG_NAME, "tensorboard", "wandb")
# Files whose presence makes a directory a run directory for that check (a folder of exported models is not one).
RUN_MARKERS = ("config.yaml", "checkpoint.pt", "metrics.jsonl", "summary.json", LOCK_NAME)
# The record of an epoch whose numbers are lost (metrics.jsonl rebuilt from a checkpoint that keeps no history).
REBUILT_KEY = "rebuilt"
# Test hook: INFOPRO_TEST_SIGNAL_AT="KILL@step 1.2" makes `infopro train` send itself SIGKILL at that
# point (see `fault_point`), so that tests can kill or stop a run at an exact moment.
TEST_SIGNAL_ENV = "INFOPRO_TEST_SIGNAL_AT"


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _valid_history(saved: Any, epochs: int) -> bool:
    """Whether a checkpoint's `history` is the records of its epochs 1..`epochs`."""
    return (isinstance(saved, list) and len(saved) == epochs
            and all(isinstance(r, dict) and r.get("epoch") == n for n, r in enumerate(saved, 1)))


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def json_record(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record as plain JSON values (what metrics.jsonl holds, and a checkpoint can keep under
    `torch.load(weights_only=True)`)."""
    return json.loads(json.dumps(record))


class RunInUse(InfoProError):
    """Another process holds the run directory's lock."""


def fault_point(*name: object) -> None:
    """A named moment of a run ("step 2.3" = before step 3 of epoch 2, "checkpoint 2" = after epoch 2's
    checkpoint is written, "summary" = before summary.json is written). Only for tests: when
    $INFOPRO_TEST_SIGNAL_AT is "SIG@moment" (SIG: KILL, STOP, TERM, INT), the process sends itself SIG here."""
    spec = os.environ.get(TEST_SIGNAL_ENV)
    if spec:
        sig, _, moment = spec.partition("@")
        if moment == " ".join(map(str, name)):
            os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))


def is_run_directory(path: str | Path) -> bool:
    """Whether `path` is a directory that holds a run (its config.yaml, checkpoint, metrics, summary or lock)."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in RUN_MARKERS)


def refuse_run_file(path: str | Path, flag: str = "--out") -> None:
    """Refuse to write `path` (one InfoProError line) when it is a file a run directory owns (`RUN_OWNED`), however
    it is spelled: through '..', '.', doubled slashes or a symbolic link (of the file or of a folder above it), or
    as another name of the same file (a case-insensitive file system)."""
    target = Path(os.path.realpath(path))
    folder = target.parent
    if not is_run_directory(folder):
        return
    owned = target.name in RUN_OWNED
    if not owned and target.exists():
        owned = any(_same_file(target, folder / name) for name in RUN_OWNED)
    if owned:
        shown = "" if str(target) == os.path.abspath(path) else f" (that is {target})"
        raise InfoProError(f"{flag} {path}{shown} is a file of the run directory {folder}, which writing it would "
                           f"replace; choose a path outside the run's own files")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def named_checkpoint(given: str | Path) -> Path:
    """The checkpoint a command names: RUN/checkpoint.pt for a run directory, else the file itself."""
    path = Path(given)
    return path / "checkpoint.pt" if path.is_dir() or not path.suffix else path


def checkpoint_to_read(args: argparse.Namespace) -> Path | None:
    """The checkpoint that --resume or --test-only reads (None for a new run)."""
    if args.resume is None and not args.test_only:
        return None
    named = next((g for g in (args.test_only, args.resume) if g not in (None, "auto")), args.out)
    if named is None:
        raise InfoProError("--resume or --test-only without a run needs one: --resume RUN, --test-only RUN or --out RUN")
    return named_checkpoint(named)


def run_to_continue(config: str | None, out: str | None, resume: str | None,
                    test_only: str | None) -> tuple[Path, Path] | None:
    """(run directory, checkpoint) whose settings a `--resume` or `--test-only` command takes (None for a new
    run): those named by --resume/--test-only, else --out, else the folder of `-c .../config.yaml`."""
    if resume is None and not test_only:
        return None
    named = next((g for g in (test_only, resume) if g not in (None, "auto")), None)
    if named is None:
        named = out if out is not None else Path(config).parent if config and Path(config).name == "config.yaml" else None
    if named is None:
        return None
    checkpoint = named_checkpoint(named)
    return checkpoint.parent, checkpoint


def read_run_settings(run: Path, checkpoint: Path, expected: set[str] | None = None
                      ) -> tuple[dict[str, Any], Path] | None:
    """(settings, file they came from) of the run in `run`: its config.yaml, else the `args` of
    `checkpoint` (a checkpoint file without its run directory); None if there is neither. A config.yaml that is
    missing or cut short (mid-line, or lacking settings of `expected` that the checkpoint holds) beside a
    checkpoint gives way to the checkpoint's `args`, said in one printed line (the run writes it again)."""
    config = run / "config.yaml"
    if not config.is_file():
        if not checkpoint.is_file():
            return None
        if checkpoint.parent == run:
            print(f"note: {config} is missing: the run's settings come from {checkpoint} (config.yaml is written "
                  f"again when the run continues)")
        return dict(load_checkpoint(checkpoint)["args"]), checkpoint
    text = _read_text(config)
    torn = bool(text) and not text.endswith("\n")
    empty = not text.strip()  # emptied (a full disk at the wrong moment): the checkpoint still knows
    values = None if torn or empty else read_yaml_mapping(config)
    if values is not None and (expected is None or expected <= values.keys()):
        return values, config
    if not checkpoint.is_file():
        if torn:
            raise InfoProError(f"{config} is cut short (its last line is incomplete) and there is no checkpoint to "
                               f"take the settings from; restore it from a copy, or start the run again")
        if empty:
            read_yaml_mapping(config)  # its own one-line refusal of an empty file
        return values, config
    saved = dict(load_checkpoint(checkpoint)["args"])
    if values is not None and saved.keys() <= values.keys():
        return values, config  # a run of an older infopro: it never had the newer settings
    print(f"note: {config} is cut short: the run's settings come from {checkpoint} (config.yaml is written again "
          f"when the run continues)")
    return saved, checkpoint


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise InfoProError(f"cannot read {path}: {error_reason(error)}") from None
    except UnicodeDecodeError as error:
        raise InfoProError(f"{path} is not valid YAML: {error_reason(error)}") from None


class RunDir:
    """One run directory. `with run.locked():` makes this process its only writer; every write is atomic
    (or an append of whole lines) and every OS error is one `InfoProError` naming the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(os.path.abspath(path))
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.model = self.path / MODEL_NAME
        self.best_model = self.path / BEST_MODEL_NAME
        self.metrics_csv = self.path / "metrics.csv"
        self.curves = self.path / "curves.png"
        self.class_iou = self.path / "class_iou.png"
        self.log = self.path / "train.log"
        self.tensorboard = self.path / "tensorboard"
        self.lock_file = self.path / LOCK_NAME
        self.console_log = self.path / CONSOLE_LOG_NAME
        self._lock_fd: int | None = None
        self._created = False
        self.saved_epoch = 0  # the epoch of the checkpoint on disk, as far as this process knows

    def files(self) -> list[str]:
        """The run files present (an empty list for a fresh directory)."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def progress(self) -> str:
        """"fresh" (no run files: start it), "finished" (summary.json written), else "unfinished"
        (config.yaml or a checkpoint but no summary: `--resume` continues it)."""
        if not self.files():
            return "fresh"
        return "finished" if self.summary.exists() else "unfinished"

    def writer_pid(self) -> str | None:
        """The pid of the process training this run now ("?" when it wrote none), or None when no process holds
        its lock. Probes the lock with a shared one, released at once (a writer starting in that instant would
        be told the run is in use)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None  # no lock file: nobody trains it (the writer removes it on its way out)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return holder if holder.isdigit() else "?"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    # -- the lock ------------------------------------------------------------------------------------

    def locked(self) -> RunDir:
        """Create the directory if needed and take its lock (refused with the holder's pid if another
        process has it); leftover temporary files of interrupted writes are removed. A context manager."""
        if self.path.exists() and not self.path.is_dir():
            raise InfoProError(f"--out {self.path} is a file, not a directory")
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InfoProError(f"cannot create run directory {self.path}: {error_reason(error)}") from None
        while True:
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                self._remove_if_created()
                raise InfoProError(f"cannot write in run directory {self.path} ({self.lock_file}): "
                                   f"{error_reason(error)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    who = f"process {holder}" if holder.isdigit() else "another process"
                    raise RunInUse(f"run directory {self.path} is in use by {who} (another infopro train writing "
                                   f"it); wait for it to end or stop it, or choose another --out") from None
                raise InfoProError(f"cannot lock {self.lock_file}: {error_reason(error)}") from None
            # Its last holder may have unlinked the file between our open and our lock: then lock the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._remove_temp_files()
        return self

    def unlock(self) -> None:
        if self._lock_fd is None:
            return
        try:
            self.lock_file.unlink(missing_ok=True)  # while still holding it (see `locked`)
        except OSError:
            pass  # e.g. the directory became read-only: the lock itself still goes with the descriptor
        os.close(self._lock_fd)
        self._lock_fd = None
        self._remove_if_created()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def _remove_if_created(self) -> None:
        """A directory this process created and left empty (a start that failed) is removed again."""
        if self._created:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def _remove_temp_files(self) -> None:
        for name in RUN_FILES:
            for tmp in self.path.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- states --------------------------------------------------------------------------------------

    def begin(self, resuming: bool, checkpoint: Path | None, map_location: torch.device,
              writer: bool = True) -> tuple[dict[str, Any] | None, str | None]:
        """(checkpoint state to continue from or None for epoch 1, a notice to print or None).

        A new run needs a fresh directory; `--resume` needs a checkpoint or at least the run's config.yaml
        (a run stopped before its first checkpoint starts again from epoch 1). The other ranks of a parallel
        run only read the checkpoint: the writer, which holds the lock, has checked the directory."""
        if not writer:
            checkpoint = checkpoint or self.checkpoint
            if resuming and checkpoint.is_file():
                return load_checkpoint(checkpoint, map_location=map_location, required=RESUME_KEYS), None
            return None, None
        if not resuming:
            if self.files():
                raise InfoProError(
                    f"run directory {self.path} already holds a run ({', '.join(self.files())}); pass --resume "
                    f"to continue it from its own checkpoint or choose another --out")
            return None, None
        checkpoint = checkpoint or self.checkpoint
        forks = Path(os.path.abspath(checkpoint)).parent != self.path
        if forks and self.files():
            raise InfoProError(
                f"run directory {self.path} already holds a run ({', '.join(self.files())}); resume a checkpoint "
                f"of another run only into a new --out")
        if checkpoint.is_file():
            state = load_checkpoint(checkpoint, map_location=map_location, required=RESUME_KEYS)
            self.saved_epoch = 0 if forks else state["epoch"]
            return state, None
        if not forks and self.config.is_file():
            return None, (f"{self.path} has no checkpoint yet (it stopped during its first epoch): "
                          f"starting it from epoch 1 with its own settings")
        if not forks:
            raise InfoProError(f"nothing to resume in {self.path}: it holds no checkpoint.pt and no config.yaml; "
                               f"start the run without --resume")
        raise InfoProError(f"no checkpoint at {checkpoint}; give the checkpoint file or the run directory that holds checkpoint.pt")

    def read_config(self) -> dict[str, Any]:
        return read_yaml_mapping(self.config)

    # -- writing -------------------------------------------------------------------------------------

    def write_config(self, config: dict[str, Any], header: str = "") -> None:
        """The settings; `header` (comment lines: how the run was made) goes above them."""
        atomic_write_text(self.config, header + yaml.safe_dump(config, sort_keys=True))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One whole line per epoch (a kill can tear at most the last one; `read_metrics` drops it)."""
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as error:
            raise WriteError(f"cannot write {self.metrics}: {error_reason(error)}") from None

    def read_metrics(self, epochs_done: int, saved: list[dict[str, Any]] | None = None
                     ) -> tuple[list[dict[str, Any]], str | None]:
        """(the records of epochs 1..`epochs_done`, those of the checkpoint being continued; a line to print or
        None), and metrics.jsonl made to hold exactly them. `saved` is the checkpoint's own history (None from an
        infopro that kept none): the file is rebuilt from it when missing, cut short or damaged. Lines of later
        epochs (written before a kill, after the checkpoint) and a torn last line are dropped silently: the
        epoch they describe is trained again. See `metrics_plan`."""
        records, text, notice = self.metrics_plan(epochs_done, saved)
        new_text = _jsonl(records)
        if new_text != text:
            atomic_write_text(self.metrics, new_text)
        return records, notice

    def metrics_plan(self, epochs_done: int, saved: list[dict[str, Any]] | None
                     ) -> tuple[list[dict[str, Any]], str, str | None]:
        """(the records of epochs 1..`epochs_done`, metrics.jsonl's text now, a line saying what was rebuilt or
        None). Never fewer records than the checkpoint's epochs: without a history in the checkpoint, an epoch
        missing from the file gets the record {"epoch": n, "rebuilt": true} (its numbers lost)."""
        present = self.metrics.exists()
        if not _valid_history(saved, epochs_done):
            saved = None
        text, records, damaged = self._parse_metrics(lenient=saved is not None)
        first: dict[int, dict[str, Any]] = {}
        for record in records:
            if record["epoch"] <= epochs_done:
                first.setdefault(record["epoch"], record)
        kept = list(first.values())
        if saved is not None:
            if not damaged and _jsonl(kept) == _jsonl(saved):
                return saved, text, None
            problem = ("was missing" if not present else
                       f"had {damaged} damaged line{'s' if damaged > 1 else ''}" if damaged else
                       f"held {len(kept)} of the {epochs_done} epochs"
                       if len(kept) < epochs_done else f"differed from {self.checkpoint.name}'s records")
            return saved, text, (f"note: {self.metrics} {problem}: rebuilt from the history in "
                                 f"{self.checkpoint.name} (epochs 1-{epochs_done})")
        by_epoch = {r["epoch"]: r for r in kept}
        lost = [n for n in range(1, epochs_done + 1) if n not in by_epoch]
        rebuilt = [by_epoch.get(n, {"epoch": n, REBUILT_KEY: True}) for n in range(1, epochs_done + 1)]
        if not lost:
            return rebuilt, text, None
        problem = "was missing" if not present else f"held {len(kept)} of the {epochs_done} epochs"
        return rebuilt, text, (
            f"note: {self.metrics} {problem}, and {self.checkpoint.name} (from an older infopro) keeps no history: "
            f"epoch{'s' if len(lost) > 1 else ''} {_ranges(lost)} rebuilt as {{\"epoch\": n, \"{REBUILT_KEY}\": true}}, "
            f"{'their' if len(lost) > 1 else 'its'} numbers lost")

    def metric_records(self) -> list[dict[str, Any]]:
        """Every whole epoch record, read only (a torn last line is skipped): for tools that read runs."""
        return self._parse_metrics()[1]

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None when the run has not written it (unfinished, or stopped by an error)."""
        if not self.summary.exists():
            return None
        problem = self.summary_problem()
        if problem is not None:
            raise InfoProError(f"{self.summary} {problem}; `infopro train --resume {self.path}` writes it again")
        return json.loads(self.summary.read_text())

    def summary_problem(self) -> str | None:
        """Why summary.json cannot be used ("is missing", "is damaged (...)"), or None when it can."""
        try:
            summary = json.loads(self.summary.read_text())
        except FileNotFoundError:
            return "is missing"
        except (OSError, UnicodeDecodeError, ValueError) as error:
            return f"cannot be read ({error_reason(error)})"
        return None if isinstance(summary, dict) else "is not a JSON object"

    def config_problem(self, saved: dict[str, Any] | None = None) -> str | None:
        """Why config.yaml is not the run's whole settings ("is missing", "is cut short": mid-line, or lacking
        settings that `saved`, the checkpoint's args, holds), or None."""
        try:
            text = self.config.read_text()
        except FileNotFoundError:
            return "is missing"
        except (OSError, UnicodeDecodeError):
            return None  # reading it for the settings says why, in one line
        if text and not text.endswith("\n"):
            return "is cut short"
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            return None
        if saved is not None and (not isinstance(values, dict) or not saved.keys() <= values.keys()):
            return "is cut short"
        return None

    def model_problem(self, path: Path, epoch: int) -> str | None:
        """Why the model file `path` is not the model of `epoch` or later ("is missing", "cannot be read", "holds
        epoch 3"), or None."""
        if not path.is_file():
            return "is missing"
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torn or foreign
            return f"cannot be read ({type(error).__name__})"
        saved_epoch = saved.get("epoch", 0) if isinstance(saved, dict) else 0
        return None if isinstance(saved_epoch, int) and saved_epoch >= epoch else f"holds epoch {saved_epoch}"

    def _parse_metrics(self, lenient: bool = False) -> tuple[str, list[dict[str, Any]], int]:
        """(the file's text, its whole records, the damaged lines skipped). A damaged last line is a torn append
        (dropped, not counted); another damaged line is refused, or with `lenient` skipped and counted."""
        if not self.metrics.exists():
            return "", [], 0
        try:
            text = self.metrics.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise InfoProError(f"cannot read {self.metrics}: {error_reason(error)}") from None
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        records, damaged = [], 0
        for i, (number, line) in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise ValueError("not a record with an integer epoch")
            except ValueError as error:
                if i == len(lines) - 1:
                    break  # torn by a kill or a full disk while it was appended
                if lenient:
                    damaged += 1
                    continue
                raise InfoProError(f"{self.metrics} line {number} is damaged ({error_reason(error)}); "
                                   f"delete that line to continue the run") from None
            records.append(record)
        return text, records, damaged

    def write_models(self, payload: dict[str, Any], best: bool) -> None:
        """model.pt of this epoch, and model-best.pt too when it is the best validation epoch so far.
        Written before the epoch's checkpoint, so a resume never lacks the model of an epoch it keeps."""
        save_model(payload, self.model)
        if best:
            save_model(payload, self.best_model)

    def drop_best_model_after(self, epoch: int) -> None:
        """A model-best.pt of an epoch later than the checkpoint being continued (written before a kill)
        describes an epoch that is trained again: remove it; the next best epoch writes it again."""
        if self.best_model.is_file():
            try:
                saved = torch.load(self.best_model, map_location="cpu", weights_only=True).get("epoch", 0)
            except Exception:  # torn or foreign: it cannot be trusted either
                saved = epoch + 1
            if saved > epoch:
                self.best_model.unlink(missing_ok=True)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary, json.dumps(summary, indent=2) + "\n")

    def drop_summary(self) -> None:
        try:
            self.summary.unlink(missing_ok=True)
        except OSError as error:
            raise WriteError(f"cannot remove {self.summary}: {error_reason(error)}") from None

    def best_model_problem(self, history: list[dict[str, Any]], score: str) -> tuple[int, str] | None:
        """(best epoch, why model-best.pt is not its model) when it is missing or unreadable, else None (also for
        a run without validation, which keeps no best model)."""
        scored = [r for r in history if isinstance(r.get(score), (int, float))]
        if not scored:
            return None
        best = max(scored, key=lambda r: (r[score], -r["epoch"]))["epoch"]
        problem = self.model_problem(self.best_model, best)
        return (best, problem) if problem is not None else None

    # -- saying how to continue ----------------------------------------------------------------------

    def continue_command(self, args: argparse.Namespace) -> str:
        """The command that continues this run with its own settings (the launcher too, for --parallel)."""
        command = ["infopro", "train"]
        if getattr(args, "parallel", "none") != "none":
            procs = str(args.K) if args.parallel == "pieces" else "N"
            command = ["torchrun", "--nproc-per-node", procs, "-m", "infopro", "train", "--parallel", args.parallel]
            if args.micro_batches != 1:
                command += ["--micro-batches", str(args.micro_batches)]
            if args.sync_pieces:
                command += ["--sync-pieces"]
        return shlex.join([*command, "--resume", str(self.path)])

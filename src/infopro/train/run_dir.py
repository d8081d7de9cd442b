"""The run directory of `infopro train`: the one module that knows its files, its lock and its states.

    RUN/config.yaml     the resolved settings, paths absolute: `infopro train --resume RUN` and
                        `--test-only RUN` take every setting from it
    RUN/metrics.jsonl   one JSON line per finished epoch, appended before that epoch's checkpoint
                        (so a resume drops the lines after its checkpoint, and a torn last line)
    RUN/checkpoint.pt   {model, optimizer, scheduler, epoch, args}, replaced atomically after each epoch
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
# Test hook: INFOPRO_TEST_SIGNAL_AT="KILL@step 1.2" makes `infopro train` send itself SIGKILL at that
# point (see `fault_point`), so that tests can kill or stop a run at an exact moment.
TEST_SIGNAL_ENV = "INFOPRO_TEST_SIGNAL_AT"


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


def read_run_settings(run: Path, checkpoint: Path) -> tuple[dict[str, Any], Path] | None:
    """(settings, file they came from) of the run in `run`: its config.yaml, else the `args` of
    `checkpoint` (a checkpoint file without its run directory); None if there is neither."""
    config = run / "config.yaml"
    if config.is_file():
        return read_yaml_mapping(config), config
    if checkpoint.is_file():
        return dict(load_checkpoint(checkpoint)["args"]), checkpoint
    return None


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

    def read_metrics(self, epochs_done: int) -> list[dict[str, Any]]:
        """The records of epochs 1..`epochs_done` (those of the checkpoint being continued). Lines of later
        epochs (written before a kill, after the checkpoint) and a torn last line are dropped, in the file too."""
        text, records = self._parse_metrics()
        kept = [r for r in records if r["epoch"] <= epochs_done]
        new_text = "".join(json.dumps(r) + "\n" for r in kept)
        if new_text != text:
            atomic_write_text(self.metrics, new_text)
        return kept

    def metric_records(self) -> list[dict[str, Any]]:
        """Every whole epoch record, read only (a torn last line is skipped): for tools that read runs."""
        return self._parse_metrics()[1]

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None when the run has not written it (unfinished, or stopped by an error)."""
        if not self.summary.exists():
            return None
        try:
            summary = json.loads(self.summary.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise InfoProError(f"cannot read {self.summary}: {error_reason(error)}") from None
        if not isinstance(summary, dict):
            raise InfoProError(f"{self.summary} is not a JSON object")
        return summary

    def _parse_metrics(self) -> tuple[str, list[dict[str, Any]]]:
        if not self.metrics.exists():
            return "", []
        try:
            text = self.metrics.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise InfoProError(f"cannot read {self.metrics}: {error_reason(error)}") from None
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        records = []
        for i, (number, line) in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise ValueError("not a record with an integer epoch")
            except ValueError as error:
                if i == len(lines) - 1:
                    break  # torn by a kill or a full disk while it was appended
                raise InfoProError(f"{self.metrics} line {number} is damaged ({error_reason(error)}); "
                                   f"delete that line to continue the run") from None
            records.append(record)
        return text, records

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

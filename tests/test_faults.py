"""Faults and recovery of `infopro train` (issue 12): kill -9 at named moments then one resume command,
bitwise against an uninterrupted run; two writers on one run directory; SIGTERM and Ctrl-C; read-only
and full file systems; non-finite losses and weights; unreadable files; copied run directories; input
that was accepted but wrong.

Runs are tiny (ResNet-20 cut in 2, 100 training images, 2 steps of 50 per epoch, 2 epochs). Killing at an
exact moment uses the test hook $INFOPRO_TEST_SIGNAL_AT ("KILL@step 1.2": the process sends itself SIGKILL
before step 2 of epoch 1; see `infopro.train.run_dir.fault_point`) in child processes (started with
`python -m infopro`: a fork of the test process could deadlock in OpenMP).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import infopro
import infopro.train.loop as loop
from infopro.cli import main
from infopro.errors import InfoProError
from infopro.files import atomic_write_text
from infopro.train import load_checkpoint
from infopro.train.run_dir import TEST_SIGNAL_ENV
from conftest import FAST, snapshot

SRC = Path(infopro.__file__).resolve().parents[1]
TINY = [*FAST, "--train-subset", "100", "--test-subset", "20"]  # FAST is 2 epochs of batches of 50


def train(*args) -> int:
    return main(["train", *TINY, *map(str, args)])


def resume(run: Path) -> int:
    """The one command that continues a run: every setting comes from the run itself."""
    return main(["train", "--resume", str(run)])


def assert_same_run(a: Path, b: Path) -> None:
    """Bitwise the same weights, optimiser state and test accuracies."""
    sa, sb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert sa["epoch"] == sb["epoch"]
    assert sa["model"].keys() == sb["model"].keys()
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    wa, wb = (torch.load(d / "model.pt", weights_only=True) for d in (a, b))  # the exported model follows
    assert wa["epoch"] == sa["epoch"] and all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
    ma, mb = sa["optimizer"]["state"], sb["optimizer"]["state"]
    assert all(torch.equal(ma[i]["momentum_buffer"], mb[i]["momentum_buffer"]) for i in ma)
    accuracy = lambda d: [json.loads(line)["test_accuracy"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert accuracy(a) == accuracy(b)
    assert json.loads((a / "summary.json").read_text())["epochs"] == json.loads((b / "summary.json").read_text())["epochs"]


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err
    return lines[-1]


def start_train(argv: list[str], signal_at: str, cache: Path, log: Path) -> subprocess.Popen:
    """`infopro train` in a child process, which the test hook kills or stops at `signal_at`. It computes with
    as many threads as this process (the runs are compared bit for bit, and the thread count can change the
    last bits of a convolution)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "INFOPRO_CACHE": str(cache), TEST_SIGNAL_ENV: signal_at,
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "infopro", *argv], env=env, stdout=f, stderr=subprocess.STDOUT)


def is_stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and three runs in child processes (started together) stopped by signals:
    killed before the first checkpoint, killed after the last checkpoint (before summary.json), and
    stopped (SIGSTOP, lock held) in the middle of epoch 2, for the concurrency test to kill.
    Yields (folder, {name: child process})."""
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFOPRO_CACHE", str(root / "cache"))
        assert train("--out", root / "straight") == 0  # also fills the cache the children read
    moments = {"before_first_checkpoint": "KILL@step 1.2", "before_summary": "KILL@summary",
               "mid_epoch_stopped": "STOP@step 2.2"}
    children = {name: start_train(["train", *TINY, "--out", str(root / name)], signal_at, root / "cache",
                                  root / f"{name}.log") for name, signal_at in moments.items()}
    stopped = children["mid_epoch_stopped"]
    deadline = time.monotonic() + 300
    try:
        for name in ("before_first_checkpoint", "before_summary"):
            children[name].wait(timeout=300)
        while stopped.poll() is None and not is_stopped(stopped.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield root, children
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()


@pytest.fixture(autouse=True)
def shared_cache(runs, monkeypatch):
    monkeypatch.setenv("INFOPRO_CACHE", str(runs[0] / "cache"))


# -- 1. dead ends: kill -9 at several moments, then one command continues the run bitwise -----------------


@pytest.mark.parametrize("moment", ["before_first_checkpoint", "before_summary"])
def test_killed_run_resumes_with_one_command_bitwise(runs, moment, capsys):
    root, children = runs
    assert children[moment].returncode == -signal.SIGKILL, (root / f"{moment}.log").read_text()
    run = root / moment
    assert (run / ".lock").read_text().strip() == str(children[moment].pid)  # the dead holder's pid: no stale lock
    if moment == "before_first_checkpoint":
        assert not (run / "checkpoint.pt").exists()
    else:
        assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2 and not (run / "summary.json").exists()
    (run / ".checkpoint.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # what a kill during a write leaves
    capsys.readouterr()
    assert train("--out", run) == 2  # a plain rerun is refused, and says how to continue
    assert "pass --resume" in capsys.readouterr().err
    assert resume(run) == 0
    out = capsys.readouterr().out
    if moment == "before_first_checkpoint":
        assert "no checkpoint yet" in out and "starting it from epoch 1 with its own settings" in out
    else:
        assert "writing summary.json" in out
    assert_same_run(root / "straight", run)
    assert sorted(p.name for p in run.iterdir() if p.name != "tensorboard") == [
        "checkpoint.pt", "config.yaml", "curves.png", "metrics.csv", "metrics.jsonl", "model.pt", "summary.json",
        "train.log"]


# -- 2. two writers, one directory -------------------------------------------------------------------------


def test_second_writer_is_refused_naming_the_holder_then_the_killed_run_resumes(runs, capsys):
    root, children = runs
    holder = children["mid_epoch_stopped"]
    pid, run = holder.pid, root / "mid_epoch_stopped"
    assert holder.poll() is None and is_stopped(pid), (root / "mid_epoch_stopped.log").read_text()
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1
    before = snapshot(run)
    capsys.readouterr()
    for command in (["train", "--resume", str(run)], ["train", *TINY, "--out", str(run)]):  # resume; a new run
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {pid}" in last_line(err) and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before
    holder.kill()  # kill -9 in the middle of epoch 2: the OS drops its lock
    assert holder.wait() == -signal.SIGKILL
    assert resume(run) == 0
    assert_same_run(root / "straight", run)


# -- SIGTERM and Ctrl-C: a clean stop, the last checkpoint kept, the continue command last --------------------


@pytest.mark.parametrize("signal_at, code, kept", [("TERM@step 2.1", 143, "checkpoint.pt keeps epoch 1"),
                                                   ("INT@step 1.2", 130, "no checkpoint was written yet")])
def test_sigterm_and_ctrl_c_print_the_command_that_continues(runs, tmp_path, monkeypatch, capsys, signal_at, code, kept):
    run = tmp_path / "run"
    monkeypatch.setenv(TEST_SIGNAL_ENV, signal_at)
    assert train("--out", run) == code
    monkeypatch.delenv(TEST_SIGNAL_ENV)
    line = last_line(capsys.readouterr().err)
    assert f"interrupted by SIG{signal_at.split('@')[0]}" in line and kept in line
    command = line.split("continue with: ")[1]
    assert command == f"infopro train --resume {run}"
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()
    assert main(shlex.split(command)[1:]) == 0
    assert_same_run(runs[0] / "straight", run)


# -- 3. a copy is itself; absolute paths; --test-only RUN uses the run's own settings ------------------------


def test_a_copied_run_directory_resumes_itself_from_any_directory(runs, tmp_path, monkeypatch, capsys):
    root = runs[0]
    original = tmp_path / "original"
    shutil.copytree(root / "straight", original)
    for name in ("summary.json", "checkpoint.pt"):
        (original / name).unlink()  # as if killed before its first checkpoint: nothing ties it to its path
    config = yaml.safe_load((original / "config.yaml").read_text())
    config["out"] = str(original)
    (original / "config.yaml").write_text(yaml.safe_dump(config))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = snapshot(original)
    monkeypatch.chdir(tmp_path.parent)  # another working directory
    assert main(["train", "-c", str(copy / "config.yaml"), "--resume"]) == 0
    assert snapshot(original) == before  # the original is untouched: the copy continued itself
    assert_same_run(root / "straight", copy)
    saved = yaml.safe_load((copy / "config.yaml").read_text())
    assert saved["out"] == str(copy) and Path(saved["out"]).is_absolute()
    capsys.readouterr()
    assert main(["train", "--test-only", str(copy)]) == 0  # the run's data and --test-subset 20, not the defaults
    assert "on 20 images" in capsys.readouterr().out


def test_a_run_without_checkpoint_keeps_its_settings(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    for name in ("summary.json", "checkpoint.pt"):
        (run / name).unlink()
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--seed", "1"]) == 2
    assert f"{run / 'config.yaml'} was trained with seed=0, this run has seed=1" in last_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_relative_out_is_stored_absolute(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert train("--out", "rel", "--epochs", "1") == 0
    assert yaml.safe_load((tmp_path / "rel" / "config.yaml").read_text())["out"] == str(tmp_path / "rel")
    monkeypatch.chdir(tmp_path.parent)
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "rel"), "--test-only"]) == 0
    assert "on 20 images" in capsys.readouterr().out


# -- 4. operating-system errors: one line naming the path, nothing already written lost --------------------


@contextlib.contextmanager
def read_only(path: Path):
    """Make a directory read-only. Root ignores permission bits, so as root the directory is made
    immutable (chattr +i) instead; skipped when neither works here."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root, where permission bits are ignored, and chattr +i does not work here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_parent_and_run_directory(runs, tmp_path, capsys):
    parent = tmp_path / "parent"
    parent.mkdir()
    with read_only(parent):
        assert train("--out", parent / "run") == 2
    line = last_line(capsys.readouterr().err)
    assert f"cannot create run directory {parent / 'run'}" in line
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    (run / "summary.json").unlink()
    before = snapshot(run)
    with read_only(run):
        assert resume(run) == 2
    line = last_line(capsys.readouterr().err)
    assert f"cannot write in run directory {run}" in line
    assert snapshot(run) == before


def test_run_directory_made_read_only_mid_run(runs, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_append = loop.RunDir.append_metrics
    with contextlib.ExitStack() as stack:
        def append_then_read_only(self, record):
            real_append(self, record)
            if record["epoch"] == 2:
                stack.enter_context(read_only(run))

        monkeypatch.setattr(loop.RunDir, "append_metrics", append_then_read_only)
        assert train("--out", run) == 2
    line = last_line(capsys.readouterr().err)
    assert f"cannot write {run / 'model.pt'}" in line  # the first file written after the metrics line
    assert "checkpoint.pt keeps epoch 1" in line and f"continue with: infopro train --resume {run}" in line
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and not list(run.glob(".*.tmp"))


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("a full file system needs a tiny tmpfs, and mounting one needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"running as root, but cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(runs, tmp_path, capsys):
    checkpoint, model = ((runs[0] / "straight" / name).stat().st_size for name in ("checkpoint.pt", "model.pt"))
    # Room for epoch 1's files and a second model.pt being written (then renamed), not a second checkpoint.
    size = checkpoint + 2 * model + (checkpoint - model) // 2
    with tiny_tmpfs(tmp_path / "small", f"{size // 4096 * 4096}") as small:
        run = small / "run"
        assert train("--out", run) == 2
        line = last_line(capsys.readouterr().err)
        assert f"cannot write {run / 'checkpoint.pt'}: No space left on device" in line
        assert "checkpoint.pt keeps epoch 1" in line and "continue with: infopro train --resume" in line
        assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and not list(run.glob(".*.tmp"))
        moved = tmp_path / "moved"
        shutil.copytree(run, moved)
    assert resume(moved) == 0  # moved to a disk with room, it continues where it stopped
    assert_same_run(runs[0] / "straight", moved)


def test_a_failed_write_is_one_line_and_an_os_error_and_leaves_no_temp_file(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "f.txt").write_text("old")
    with read_only(folder), pytest.raises(OSError, match=f"cannot write {folder / 'f.txt'}: ") as caught:
        atomic_write_text(folder / "f.txt", "new")
    assert isinstance(caught.value, InfoProError)  # one line in the CLI; a cache write failing is only a warning
    assert [p.name for p in folder.iterdir()] == ["f.txt"] and (folder / "f.txt").read_text() == "old"


def test_probe_and_bench_check_their_out_before_computing(runs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for command in (["probe", str(runs[0] / "straight"), "--out", str(blocker / "sub"), "--device", "cpu"],
                    ["bench", "--arch", "resnet20", "--out", str(blocker / "sub"), "--device", "cpu"]):
        assert main(command) == 2
        assert f"--out {blocker / 'sub'}: cannot create" in last_line(capsys.readouterr().err)


# -- 5. finite or stop --------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 2])
def test_inf_batchnorm_statistics_are_never_checkpointed(runs, tmp_path, monkeypatch, capsys, epochs):
    real_epoch = loop.train_one_epoch

    def epoch_with_inf_statistics(learner, optimizer, loader, epoch, args, device, **options):
        record = real_epoch(learner, optimizer, loader, epoch, args, device, **options)
        if epoch == epochs - 1:
            bn = next(m for m in learner.pieces[1].modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_var[3] = float("inf")
        return record

    monkeypatch.setattr(loop, "train_one_epoch", epoch_with_inf_statistics)
    run = tmp_path / "run"
    assert train("--out", run, "--epochs", epochs) == 2
    line = last_line(capsys.readouterr().err)
    assert "piece 2 (" in line and "running_var) holds inf values (1 of" in line and f"after epoch {epochs}" in line
    assert not (run / "summary.json").exists()
    if epochs == 1:
        assert "no checkpoint was written yet" in line and not (run / "checkpoint.pt").exists()
    else:
        assert "checkpoint.pt keeps epoch 1" in line and load_checkpoint(run / "checkpoint.pt")["epoch"] == 1
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("check_every", [1, 50])  # read at a step inside the epoch, or at its end
def test_diverging_loss_stops_the_run_naming_the_piece(runs, tmp_path, monkeypatch, capsys, check_every):
    monkeypatch.setattr(loop, "CHECK_EVERY", check_every)
    assert train("--out", tmp_path / "run", "--lr", "1e30", "--epochs", "1") == 2
    line = last_line(capsys.readouterr().err)
    assert "local loss became nan" in line and line.split("piece ")[1][0] in "12"
    assert ("by step 2 of epoch 1" if check_every == 1 else "during epoch 1") in line  # step 1 is still finite
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("flags, message", [
    (["--lr", "inf"], "--lr must be a finite number"), (["--momentum", "nan"], "--momentum must be a finite number"),
    (["--lambdas", "1", "nan", "0", "1"], "--lambdas must be a finite number"), (["--temperature", "nan"], "--temperature must be"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number"), (["--device", "mps"], "--device mps: this PyTorch"),
    (["--device", "meta"], "--device meta"),
])
def test_bad_values_are_refused_before_anything_is_written(runs, tmp_path, capsys, flags, message):
    assert train("--out", tmp_path / "run", *flags) == 2
    assert message in last_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


# -- 6. unreadable files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_damaged_checkpoint_is_one_line(runs, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    before = snapshot(run)
    for command in (["train", "--resume", str(run), "--epochs", "3"], ["train", "--test-only", str(run)],
                    ["probe", str(run), "--out", str(tmp_path / "probe"), "--device", "cpu"]):
        assert main(command) == 2
        line = last_line(capsys.readouterr().err)
        assert f"checkpoint {run / 'checkpoint.pt'}" in line
        assert ("is empty (0 bytes)" if damage == "empty" else "truncated or not a PyTorch file") in line
    assert snapshot(run) == before


def test_torn_and_damaged_metrics_lines(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    (run / "summary.json").unlink()
    lines = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(lines + '{"epoch": 3, "lr": 0.0')  # torn by a kill
    assert resume(run) == 0
    assert (run / "metrics.jsonl").read_text() == lines
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    (run / "summary.json").unlink()
    (run / "metrics.jsonl").write_text("not json\n" + lines)
    capsys.readouterr()
    assert resume(run) == 0  # the checkpoint keeps the records: the file is rebuilt from them (issue 23)
    assert (run / "metrics.jsonl").read_text() == lines
    assert "had 1 damaged line: rebuilt from the history in checkpoint.pt" in capsys.readouterr().out
    state = load_checkpoint(run / "checkpoint.pt")
    del state["history"]  # a checkpoint of an older infopro: the damaged line is the only record, refused
    torch.save(state, run / "checkpoint.pt")
    (run / "summary.json").unlink()
    (run / "metrics.jsonl").write_text("not json\n" + lines)
    assert resume(run) == 2
    assert f"{run / 'metrics.jsonl'} line 1 is damaged" in last_line(capsys.readouterr().err)


def test_damaged_config_yaml_is_one_line(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    (run / "config.yaml").write_text("epochs: [1\n")
    assert resume(run) == 2
    assert f"{run / 'config.yaml'} is not valid YAML" in last_line(capsys.readouterr().err)


# -- 7. accepted but wrong ----------------------------------------------------------------------------------


def test_yaml_values_are_type_checked_like_flags(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    for text, message in (("epochs: 1.7\n", "bad value 1.7 for epochs: expected an integer"),
                          ("lr: true\n", "bad value True for lr: expected a number"),
                          ("lambdas: [1, 2, 3]\n", "--lambdas takes 2 numbers")):
        config.write_text(text)
        assert main(["train", "-c", str(config), "--out", str(tmp_path / "run")]) == 2
        assert message in last_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_describe_refuses_batch_size_0_and_inputs_too_small(capsys):
    assert main(["describe", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in last_line(capsys.readouterr().err)
    blocks = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.Conv2d(8, 8, 5))
    backbone = infopro.SequentialBackbone(blocks, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10)))
    with pytest.raises(InfoProError, match=r"inputs of shape 3x6x6 are too small for this network: block 1"):
        infopro.LocalLearner(backbone, 2, "greedy", cuts=[0], input_shape=(3, 6, 6))


# -- 8. defaults: the umask, train longer -------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_train_a_finished_run_longer(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0] / "straight", run)
    assert resume(run) == 2  # finished: says how to evaluate it or train it longer
    assert "has finished all 2 epochs" in last_line(capsys.readouterr().err)
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 0
    assert "re-planned for 4 epochs from epoch 3" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    lr = 0.1 * 50 / 128
    planned = [lr * (1 + math.cos(math.pi * e / 4)) / 2 for e in (2, 3)]  # cosine over 4 epochs, from epoch 3 on
    assert [r["lr"] for r in records[2:]] == pytest.approx(planned, rel=1e-9)
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 4
    assert json.loads((run / "summary.json").read_text())["epochs"] == 4

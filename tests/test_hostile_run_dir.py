"""Issue 23, hostile run directories: (7) a run file missing or cut short is rebuilt from the checkpoint (which keeps
the epochs' records) or refused in one line, and the record of the run never shrinks; (8) no output of export,
compare, predict, probe or bench replaces a file a run owns, however its path is spelled; (9) a data-loading worker
that dies ends the run in one line that says so and how to continue.

One tiny finished run (ResNet-20 cut in 2, 100 bundled CIFAR images with a validation split, 2 epochs) is made
once per module; each test damages a copy of it."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import infopro.predict
from infopro.cli import main
from infopro.data import ArrayItems, StreamLoader
from infopro.data.stream import StreamDataset, WorkerDied, worker_death
from infopro.errors import InfoProError
from infopro.train import load_checkpoint
from infopro.train.run_dir import RUN_OWNED, refuse_run_file
from conftest import FAST, snapshot

TINY = [*FAST, "--train-subset", "100", "--test-subset", "20", "--val-split", "0.2"]


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err
    return lines[-1]


def notes(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("note:")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFOPRO_CACHE", str(root / "cache"))
        assert main(["train", *TINY, "--out", str(root / "run")]) == 0
    return root


@pytest.fixture
def run(finished, tmp_path, monkeypatch):
    """A copy of the finished run (the cache shared: no decoding again)."""
    monkeypatch.setenv("INFOPRO_CACHE", str(finished / "cache"))
    copy = tmp_path / "run"
    shutil.copytree(finished / "run", copy)
    return copy


def resume(run: Path, *flags: str) -> int:
    return main(["train", "--resume", str(run), *flags])


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def drop_history(run: Path) -> None:
    """Make the checkpoint one of an infopro before issue 23 (no history of the epochs' records)."""
    state = load_checkpoint(run / "checkpoint.pt")
    del state["history"]
    torch.save(state, run / "checkpoint.pt")


# -- 7. a run file missing or cut short -------------------------------------------------------------------------


def test_the_checkpoint_keeps_the_records_of_its_epochs(run):
    assert load_checkpoint(run / "checkpoint.pt")["history"] == records(run)
    assert [r["epoch"] for r in records(run)] == [1, 2]


def _cut_mid_line(text: str) -> str:
    return text[: text.index("\n") + 10]  # line 1 whole, line 2 cut


@pytest.mark.parametrize("damage, note, summary", [
    ("deleted", "was missing", "deleted"),  # the issue's case: the summary said one epoch
    ("deleted", "was missing", "kept"),
    ("cut mid-line", "held 1 of the 2 epochs", "kept"),
    ("first line only", "held 1 of the 2 epochs", "deleted"),
    ("empty", "held 0 of the 2 epochs", "kept"),
    ("damaged line", "had 1 damaged line", "kept"),
    ("epoch beyond", None, "deleted"),  # a line of an epoch after the checkpoint: trained again, dropped silently
])
def test_metrics_are_rebuilt_from_the_checkpoint_and_the_summary_counts_its_epochs(run, capsys, damage, note, summary):
    whole = (run / "metrics.jsonl").read_text()
    first = whole.splitlines(keepends=True)[0]
    damaged = {"deleted": None, "cut mid-line": _cut_mid_line(whole), "first line only": first, "empty": "",
               "damaged line": first + "{not json\n" + whole.splitlines(keepends=True)[1],
               "epoch beyond": whole + '{"epoch": 3, "lr": 0.1}\n'}[damage]
    if damaged is None:
        (run / "metrics.jsonl").unlink()
    else:
        (run / "metrics.jsonl").write_text(damaged)
    (run / "metrics.csv").unlink()
    if summary == "deleted":
        (run / "summary.json").unlink()
    assert resume(run) == 0
    out = capsys.readouterr().out
    assert (run / "metrics.jsonl").read_text() == whole  # exactly the file the run wrote
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header and two epochs, written again
    expected = [f"note: {run / 'metrics.jsonl'} {note}: rebuilt from the history in checkpoint.pt (epochs 1-2)"]
    assert notes(out) == (expected if note else [])


def test_a_finished_intact_run_is_still_refused(run, capsys):
    before = snapshot(run)
    assert resume(run) == 2
    assert "has finished all 2 epochs" in last_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_an_old_checkpoint_without_history_rebuilds_the_epochs_it_knows(run, capsys):
    kept_lines = 1
    drop_history(run)
    whole = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(whole[:kept_lines]))
    assert resume(run, "--epochs", "3") == 0
    out = capsys.readouterr().out
    [note] = notes(out)
    assert note == (f"note: {run / 'metrics.jsonl'} held 1 of the 2 epochs, and checkpoint.pt (from an older infopro) "
                    f"keeps no history: epoch 2 rebuilt as {{\"epoch\": n, \"rebuilt\": true}}, its numbers lost")
    got = records(run)
    assert [r["epoch"] for r in got] == [1, 2, 3]  # never fewer records than epochs trained
    assert got[:kept_lines] == [json.loads(line) for line in whole[:kept_lines]]
    assert all(r == {"epoch": n, "rebuilt": True} for n, r in enumerate(got[kept_lines:2], kept_lines + 1))
    assert "test_error" in got[2]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["epochs_without_metrics"] == 2 - kept_lines
    assert summary["final_test_error"] == got[2]["test_error"]
    assert load_checkpoint(run / "checkpoint.pt")["history"] == got  # kept from now on


def test_an_old_checkpoint_whose_last_epoch_is_lost_cannot_write_a_summary(run, capsys):
    drop_history(run)
    (run / "metrics.jsonl").unlink()
    (run / "summary.json").unlink()
    assert resume(run) == 2
    out, err = capsys.readouterr()
    line = last_line(err)
    assert "the numbers of epoch 2, the last, are lost" in line and f"--test-only {run}" in line
    assert f"was missing, and checkpoint.pt (from an older infopro) keeps no history: epochs 1-2 rebuilt as" in out
    assert [r["epoch"] for r in records(run)] == [1, 2]  # what is known is written, nothing dropped


@pytest.mark.parametrize("damage", ["deleted", "cut mid-line", "cut at a line", "emptied"])
def test_a_lost_config_yaml_comes_back_from_the_checkpoint(run, capsys, damage):
    config = run / "config.yaml"
    settings = yaml.safe_load(config.read_text())
    text = config.read_text()
    if damage == "deleted":
        config.unlink()
        assert main(["compare", str(run), "--out", str(run.parent / "cmp")]) == 2
        assert f"has lost its config.yaml; `infopro train --resume {run}` writes it again" in \
            last_line(capsys.readouterr().err)
    else:
        config.write_text({"cut mid-line": text[: len(text) // 2].rstrip("\n"),
                           "cut at a line": "".join(text.splitlines(keepends=True)[: text.count("\n") // 2]),
                           "emptied": ""}[damage])
    (run / "summary.json").unlink()
    assert resume(run) == 0
    out = capsys.readouterr().out
    how = "is missing" if damage == "deleted" else "is cut short"
    assert notes(out) == [f"note: {config} {how}: the run's settings come from {run / 'checkpoint.pt'} (config.yaml "
                          f"is written again when the run continues)"]
    again = yaml.safe_load(config.read_text())
    assert {k: v for k, v in again.items() if k != "out"} == {k: v for k, v in settings.items() if k != "out"}
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_a_config_yaml_cut_mid_line_without_a_checkpoint_is_refused(run, capsys):
    (run / "checkpoint.pt").unlink()
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[: len(text) // 2].rstrip("\n"))
    assert resume(run) == 2
    assert "config.yaml is cut short (its last line is incomplete) and there is no checkpoint" in \
        last_line(capsys.readouterr().err)


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_model_files_are_written_again_from_the_checkpoint(run, capsys, damage):
    original = torch.load(run / "model.pt", weights_only=True)
    best_epoch = json.loads((run / "summary.json").read_text())["best_epoch"]
    for name in ("model.pt", "model-best.pt"):
        if damage == "deleted":
            (run / name).unlink()
        else:
            data = (run / name).read_bytes()
            (run / name).write_bytes(data[: len(data) // 3])
    assert resume(run) == 0  # a finished run: its files are repaired, nothing trained
    out = capsys.readouterr().out
    how = "is missing" if damage == "deleted" else "cannot be read"
    assert f"note: {run / 'model.pt'} {how}" in out and "written again from checkpoint.pt (epoch 2)" in out
    again = torch.load(run / "model.pt", weights_only=True)
    assert again["epoch"] == 2 and again.keys() == original.keys()
    assert all(torch.equal(again["state_dict"][k], original["state_dict"][k]) for k in original["state_dict"])
    if best_epoch == 2:  # the checkpoint's epoch: its weights are there
        assert torch.load(run / "model-best.pt", weights_only=True)["epoch"] == 2
    else:
        assert not (run / "model-best.pt").exists()
        assert f"the weights of its epoch {best_epoch} are kept nowhere else" in out
    assert "its files are repaired and summary.json written again" in out


@pytest.mark.parametrize("damage", ["cut", "not an object"])
def test_a_damaged_summary_is_written_again(run, capsys, damage):
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2] if damage == "cut" else "[1, 2]\n")
    assert main(["compare", str(run), "--out", str(run.parent / "cmp")]) == 2
    assert f"`infopro train --resume {run}` writes it again" in last_line(capsys.readouterr().err)
    assert resume(run) == 0
    assert "but summary.json " in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


# -- 8. outputs over the run's own files -----------------------------------------------------------------------


OWNED = ["checkpoint.pt", "model-best.pt", "config.yaml", "metrics.jsonl", "metrics.csv", "summary.json",
         "curves.png", "train.log"]


@pytest.mark.parametrize("name", OWNED)
def test_export_refuses_each_run_file(run, capsys, name):
    before = snapshot(run)
    assert main(["export", str(run), "--out", str(run / name)]) == 2
    line = last_line(capsys.readouterr().err)
    assert f"is a file of the run directory {run}" in line and "choose a path outside" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("spelling", ["dotdot", "dot", "double slash", "file symlink", "folder symlink", "relative"])
def test_export_refuses_another_spelling_of_the_checkpoint(run, tmp_path, capsys, monkeypatch, spelling):
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(run / "checkpoint.pt")
    (tmp_path / "alias").symlink_to(run, target_is_directory=True)
    monkeypatch.chdir(tmp_path / "sub")
    out = {"dotdot": f"{run}/../{run.name}/checkpoint.pt", "dot": f"{run}/./checkpoint.pt",
           "double slash": f"{run}//checkpoint.pt", "file symlink": str(tmp_path / "link.pt"),
           "folder symlink": str(tmp_path / "alias" / "checkpoint.pt"), "relative": "../run/checkpoint.pt"}[spelling]
    before = snapshot(run)
    assert main(["export", str(run), "--out", out]) == 2
    assert f"is a file of the run directory {run}" in last_line(capsys.readouterr().err)
    assert snapshot(run) == before
    assert (tmp_path / "link.pt").is_symlink()


def test_export_beside_the_run_files_and_elsewhere_still_works(run, tmp_path, capsys):
    assert main(["export", str(run)]) == 0
    assert (run / "model-export.pt").is_file()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"old")  # a folder of exports is not a run directory
    assert main(["export", str(run), "--out", str(tmp_path / "models" / "model.pt")]) == 0
    assert torch.load(tmp_path / "models" / "model.pt", weights_only=True)["epoch"] == 2
    assert main(["export", str(run), "--out", str(tmp_path / "models")]) == 2
    assert "is a directory; give the file to write" in last_line(capsys.readouterr().err)


@pytest.mark.parametrize("output, target", [("compare.md", "summary.json"), ("compare.csv", "metrics.jsonl"),
                                            ("compare.png", "curves.png")])
def test_compare_into_a_run_directory_never_replaces_its_files(run, capsys, output, target):
    (run / output).symlink_to(run / target)
    before = snapshot(run)
    assert main(["compare", str(run), "--out", str(run)]) == 2
    assert f"--out {run / output} (that is {run / target}) is a file of the run directory" in \
        last_line(capsys.readouterr().err)
    assert snapshot(run) == before
    (run / output).unlink()
    assert main(["compare", str(run), "--out", str(run)]) == 0  # its own names beside the run's: fine
    assert (run / "compare.md").is_file()


@pytest.fixture
def segmenter(monkeypatch):
    """`infopro predict` with a 1x1 convolution as its model, whatever RUN is."""

    class Argmax(torch.nn.Module):
        classes, input_shape = ["a", "b", "c"], (3, 8, 8)

        def forward(self, x):
            return x

    monkeypatch.setattr(infopro.predict, "load_segmentation_model", lambda run, best, device: Argmax().eval())
    monkeypatch.setattr(infopro.predict, "unfinished_run_note", lambda run, best: None)


def test_predict_never_replaces_a_run_file(run, tmp_path, capsys, segmenter):
    image = tmp_path / "street.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (run / "street_overlay.png").symlink_to(run / "curves.png")
    before = snapshot(run)
    assert main(["predict", str(run), str(image), "--out", str(run), "--device", "cpu"]) == 2
    assert f"(that is {run / 'curves.png'}) is a file of the run directory" in last_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_probe_and_bench_never_replace_a_run_file(run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "probe.json").symlink_to(run / "config.yaml")
    (out / "bench.md").symlink_to(run / "summary.json")
    before = snapshot(run)
    assert main(["probe", str(run), "--out", str(out), "--device", "cpu"]) == 2
    assert f"(that is {run / 'config.yaml'}) is a file of the run directory" in last_line(capsys.readouterr().err)
    assert main(["bench", "--arch", "resnet20", "--out", str(out), "--device", "cpu", "--steps", "1"]) == 2
    assert f"(that is {run / 'summary.json'}) is a file of the run directory" in last_line(capsys.readouterr().err)
    assert snapshot(run) == before


@pytest.mark.parametrize("name", RUN_OWNED)
def test_every_owned_name_is_refused_and_other_names_are_not(run, name):
    with pytest.raises(InfoProError, match="is a file of the run directory"):
        refuse_run_file(run / name)
    refuse_run_file(run / f"other-{name}")
    refuse_run_file(run.parent / name)  # the folder above the run is not a run directory


# -- 9. a data-loading worker dies ------------------------------------------------------------------------------


@pytest.mark.parametrize("message, line", [
    ("DataLoader worker (pid 4242) is killed by signal: Killed. ", "worker (pid 4242) was killed by SIGKILL (Killed)"),
    ("DataLoader worker (pid 7) is killed by signal: Segmentation fault. ", "(pid 7) was killed by SIGSEGV"),
    ("DataLoader worker (pid 9) is killed by signal: Bus error. It is possible that dataloader's workers are out of "
     "shared memory.", "out of shared memory"),
    ("DataLoader worker (pid 12) exited unexpectedly with exit code 3. Details are lost due to multiprocessing.",
     "worker (pid 12) exited unexpectedly with status 3"),
    ("DataLoader worker (pid(s) 5, 6) exited unexpectedly", "worker (pid 5, 6) exited unexpectedly"),
])
def test_worker_deaths_are_read_from_torchs_messages(message, line):
    assert line in worker_death(RuntimeError(message))


def test_other_errors_are_not_worker_deaths():
    assert worker_death(RuntimeError("CUDA out of memory")) is None
    assert worker_death(ValueError("DataLoader worker")) is None


class _Dying:
    """Items whose image 3 ends the worker that decodes it: by `how`."""

    def __init__(self, how: str) -> None:
        self.inner = ArrayItems(np.zeros((8, 8, 8, 3), np.uint8), np.arange(8) % 2)
        self.labels, self.how = self.inner.labels, how

    def __len__(self) -> int:
        return 8

    def image(self, i: int):
        if i == 3:
            if self.how == "segfault":
                os.kill(os.getpid(), signal.SIGSEGV)
            if self.how == "exit":
                os._exit(3)
            raise ValueError("image 3 is broken")
        return self.inner.image(i)


@pytest.mark.parametrize("how, said", [("segfault", "was killed by SIGSEGV"), ("exit", "exited unexpectedly"),
                                       ("raises", "data-loading worker 0 failed: ValueError: image 3 is broken")])
def test_a_worker_that_crashes_is_one_line(how, said):
    loader = StreamLoader(_Dying(how), (8, 8), 3, "cpu", 2, [0.5] * 3, [0.5] * 3, train=False, workers=1)
    with pytest.raises(WorkerDied, match=said):
        list(loader)


def grey_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for k in range(2):
            (root / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(root / split / f"c{k}" / f"{i}.png")


def test_a_killed_worker_ends_the_run_in_one_line_naming_the_command_that_continues(tmp_path, capsys, monkeypatch):
    grey_folder(tmp_path / "d")
    run = tmp_path / "run"
    flags = ["train", "--arch", "resnet20", "--K", "2", "--method", "infopro-softmax", "--epochs", "2",
             "--batch-size", "6", "--device", "cpu", "--quiet", "--dataset", "folder", "--data-dir",
             str(tmp_path / "d"), "--data-path", "stream", "--workers", "1", "--image-size", "16", "--out", str(run)]
    real = StreamDataset.__getitem__

    def dies_in_epoch_2(self, key):
        if self.train and key[1] == 1 and key[2] == 4:  # epoch 2 (0-based 1), its 5th image
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, key)

    with monkeypatch.context() as patch:
        patch.setattr(StreamDataset, "__getitem__", dies_in_epoch_2)
        assert main(flags) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith("infopro train: error: a data-loading worker (pid ") and "was killed by SIGKILL" in line
    assert line.endswith(f"checkpoint.pt keeps epoch 1; continue with: infopro train --resume {run}")
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and [r["epoch"] for r in records(run)] == [1]

import json
from pathlib import Path

import pytest
import torch
import yaml

from infopro.cli import main
from infopro.train import load_checkpoint
from conftest import FAST, snapshot, stop_after_first_checkpoint


def train(*args):
    return main(["train", *FAST, *map(str, args)])


def test_run_directory_holds_config_metrics_summary_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert train("--out", out) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["arch"] == "resnet20" and config["K"] == 2 and config["lr"] == pytest.approx(0.1 * 50 / 128)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("lr", "train_losses", "train_accuracy", "test_accuracy", "test_error", "epoch_seconds",
                "images_per_second", "peak_memory_bytes"):
        assert key in lines[0]
    assert len(lines[0]["train_losses"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_error"] == lines[-1]["test_error"]
    assert summary["method"] == "infopro-contrast" and summary["K"] == 2 and summary["cuts"] == [4]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and {"model", "optimizer", "scheduler", "args"} <= state.keys()


def test_config_file_supplies_defaults_and_flags_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"arch": "resnet20", "epochs": 1, "method": "dgl", "weight_decay": 0.0}))
    out = tmp_path / "run"
    flags = ["--method", "infopro-contrast", "--K", "2", "--cuts", "even", "--train-subset", "200",
             "--test-subset", "100", "--batch-size", "50", "--device", "cpu", "--quiet"]
    assert main(["train", "-c", str(config), *flags, "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "infopro-contrast"  # the flag wins
    assert saved["weight_decay"] == 0.0  # from the file
    # The saved config reproduces the run's settings.
    out2 = tmp_path / "run2"
    assert main(["train", "-c", str(out / "config.yaml"), "--quiet", "--out", str(out2)]) == 0
    assert yaml.safe_load((out2 / "config.yaml").read_text()) == {**saved, "out": str(out2)}


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert train("--out", straight) == 0

    interrupted = tmp_path / "interrupted"
    stop_after_first_checkpoint(monkeypatch, lambda: train("--out", interrupted))  # killed right after epoch 1
    assert load_checkpoint(interrupted / "checkpoint.pt")["epoch"] == 1
    assert train("--out", interrupted, "--resume") == 0

    a = load_checkpoint(straight / "checkpoint.pt")["model"]
    b = load_checkpoint(interrupted / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    accuracy = lambda d: [json.loads(l)["test_accuracy"] for l in (d / "metrics.jsonl").read_text().splitlines()]
    assert accuracy(straight) == accuracy(interrupted)


def test_test_only_evaluates_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--out", out, "--epochs", "1") == 0
    before = snapshot(out)
    assert train("--out", out, "--test-only") == 0
    assert "test accuracy" in capsys.readouterr().out
    assert snapshot(out) == before


def test_short_run_learns_above_chance(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--train-subset", "1000",
                 "--test-subset", "200", "--batch-size", "64", "--lr", "0.05", "--epochs", "4",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_test_error"] < 0.8  # chance is 0.9 on 10 classes


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "0"], "--lr must be > 0"),
        (["--lr", "-0.1"], "--lr must be > 0"),
        (["--batch-size", "500"], "was trained with batch_size=50, this run has batch_size=500"),
        (["--data-dir", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--arch", "resnet21"], "unknown architecture"),
        (["--method", "infopro"], "unknown method"),
        (["--K", "0"], "--K must be >= 1"),
        (["--K", "3", "--cuts", "9,3"], "sorted"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert train("--out", out, "--epochs", "1") == 0
    before = snapshot(out)
    capsys.readouterr()
    assert train("--out", out, "--resume", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert snapshot(out) == before


def test_empty_data_dir(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train("--data-dir", tmp_path / "empty", "--out", tmp_path / "run") == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_config_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\nlearning_rate: 0.1\n")
    assert main(["train", "-c", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown key learning_rate (did you mean lr?)" in err and err.count("\n") == 1
    config.write_text("epochs: many\n")
    assert main(["train", "-c", str(config)]) == 2
    assert "bad value 'many' for epochs" in capsys.readouterr().err


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--out", out, "--epochs", "1") == 0
    before = snapshot(out)
    assert train("--out", out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert snapshot(out) == before


@pytest.mark.parametrize("change", [["--arch", "resnet32"], ["--K", "4"]])
def test_resume_with_another_arch_or_K_is_refused(tmp_path, capsys, change):
    out = tmp_path / "run"
    assert train("--out", out, "--epochs", "1") == 0
    before = snapshot(out)
    assert train("--out", out, "--resume", *change) == 2
    err = capsys.readouterr().err
    assert "was trained with" in err and ("arch=" in err or "K=" in err)
    assert snapshot(out) == before


def test_unreadable_image_in_a_class_folder(tmp_path, capsys):
    from PIL import Image
    import numpy as np

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            Image.fromarray(np.full((32, 32, 3), c * 20, dtype=np.uint8)).save(folder / "0.png")
    (root / "train" / "class3" / "broken.jpg").write_bytes(b"not an image")
    assert main(["train", "--data-dir", str(root), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.jpg" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_resume_from_a_run_directory_continues_it_in_place(tmp_path, monkeypatch):
    run = tmp_path / "run"
    stop_after_first_checkpoint(monkeypatch, lambda: train("--out", run))
    monkeypatch.chdir(tmp_path)  # a stray default run directory would land here
    assert train("--resume", run) == 0
    assert [json.loads(l)["epoch"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, key", [(["--weight-decay", "0"], "weight_decay"), (["--seed", "1"], "seed"),
                                         (["--lambdas", "1", "1", "1", "1"], "lambdas")])
def test_resume_with_other_training_settings_is_refused(tmp_path, capsys, change, key):
    out = tmp_path / "run"
    assert train("--out", out, "--epochs", "1") == 0
    before = snapshot(out)
    # (--epochs may change on resume: tests/test_faults.py trains a run longer)
    assert train("--out", out, "--epochs", "1", "--resume", *change) == 2
    assert f"was trained with {key}=" in capsys.readouterr().err
    assert snapshot(out) == before


def test_resume_into_another_finished_run_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train("--out", a, "--epochs", "1") == 0
    assert train("--out", b) == 0
    before = snapshot(b)
    assert train("--out", b, "--resume", a / "checkpoint.pt") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert snapshot(b) == before

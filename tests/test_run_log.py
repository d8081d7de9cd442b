"""Curves and logs in the run directory: metrics.csv, curves.png, train.log, TensorBoard, per-term losses,
evaluation metrics, progress lines without a terminal."""

import builtins
import csv
import json

import pytest
import torch
import yaml

import infopro
from infopro.cli import main
from infopro.epoch_metrics import EvalSums, evaluation_result
from infopro.train.parts import evaluate_metrics
from conftest import FAST

NOT_QUIET = [f for f in FAST if f != "--quiet"]


def test_run_directory_holds_table_curves_log_and_term_losses(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *NOT_QUIET, "--val-split", "0.2", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in records] == [1, 2]
    for row, record in zip(rows, records):
        assert float(row["test_accuracy"]) == record["test_accuracy"]
        assert [float(row[f"train_loss_{k}"]) for k in (1, 2)] == record["train_losses"]
        # piece 1 (InfoPro, lambdas 5, 1): its loss is 5 x reconstruction + task; the last piece's is its task loss
        recon, task = record["train_piece_terms"][0]["recon"], record["train_piece_terms"][0]["task"]
        assert record["train_losses"][0] == pytest.approx(5 * recon + task, rel=1e-5)
        assert record["train_losses"][1] == pytest.approx(record["train_piece_terms"][1]["task"], rel=1e-5)
        assert record["test_loss"] > 0 and record["val_loss"] > 0 and record["eval_seconds"] > 0
        assert "test_top5_accuracy" not in record  # 10 classes: top-5 says little
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (run / "train.log").read_text()
    assert log == printed and "done: final test error" in log
    # stderr is not a terminal here: progress lines replace the bar (4 steps per epoch: one line per step)
    assert "  epoch 1/2  step 2/4 (50%)" in printed
    # provenance: in summary.json, and as comments above config.yaml's settings
    summary = json.loads((run / "summary.json").read_text())
    made = summary["provenance"]
    assert made["command"].startswith("infopro train --arch resnet20 --K 2 --cuts even")
    assert made["torch"] == torch.__version__ and made["infopro"] == infopro.__version__ and made["host"]
    assert made["resolved"]["cuts"] == summary["cuts"] and made["resolved"]["device"] == "cpu"
    assert made["resolved"]["lambdas"] == [5.0, 1.0, 5.0, 1.0]  # infopro-contrast's defaults, resolved
    assert made["started"] <= made["ended"]
    config_text = (run / "config.yaml").read_text()
    assert config_text.startswith("# how this run was made") and f"# command: {made['command']}" in config_text
    assert "command" not in yaml.safe_load(config_text)


def test_top5_is_measured_above_ten_classes():
    backbone = infopro.build_backbone("resnet20", num_classes=12)
    learner = infopro.LocalLearner(backbone, K=2, method="greedy", cuts="even", num_classes=12)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 12
    args = type("Args", (), {"channels_last": False})()
    result = evaluate_metrics(learner, [(x[:10], y[:10]), (x[10:], y[10:])], args, torch.device("cpu"))
    logits = learner.eval()(x)
    assert result["top5_accuracy"] == (logits.topk(5, 1).indices == y[:, None]).any(1).float().mean().item()
    assert result["accuracy"] == (logits.argmax(1) == y).float().mean().item()
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    # Under --parallel each process of the last stage sums its slice; the writer adds the shares up.
    shares = [EvalSums(torch.device("cpu")) for _ in range(2)]
    for share, part in zip(shares, torch.arange(16).tensor_split(2)):
        share.add(logits[part], y[part])
    combined = evaluation_result([share.totals() for share in shares], seconds=0.0)
    assert combined["top5_accuracy"] == result["top5_accuracy"] and combined["accuracy"] == result["accuracy"]
    assert combined["loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_tensorboard_is_optional(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch.utils.tensorboard")
    assert main(["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "on")]) == 0
    assert list((tmp_path / "on" / "tensorboard").glob("events.out.tfevents.*"))
    assert main(["train", *FAST, "--epochs", "1", "--tensorboard", "off", "--out", str(tmp_path / "off")]) == 0
    assert not (tmp_path / "off" / "tensorboard").exists()


def test_tensorboard_on_without_the_package_is_one_line(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if "tensorboard" in name:
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert main(["train", *FAST, "--tensorboard", "on", "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'infopro[tensorboard]'" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["train", *FAST, "--epochs", "1", "--out", str(tmp_path / "auto")]) == 0  # auto: runs without
    assert not (tmp_path / "auto" / "tensorboard").exists()

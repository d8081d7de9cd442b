"""`infopro bench --task segment`: rows, synthetic masks, refused methods, checkpointing with the task's loss."""

import argparse
import json

import pytest
import torch

from infopro import LocalLearner, build_backbone
from infopro.bench.cli import _task_defaults, add_bench_arguments
from infopro.bench.step import build_step
from infopro.cli import main
from infopro.local import METHODS
from infopro.tasks import build_task

TINY = ["--task", "segment", "--arch", "deeplabv3_resnet18", "--input-shape", "3", "64", "64", "--num-classes", "3",
        "--batch-size", "2", "--K", "2", "--steps", "1", "--device", "cpu", "--quiet"]


def test_segment_bench_measures_rows_and_skips_a_refused_method(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", *TINY, "--methods", "e2e,infopro-softmax,infopro-contrast", "--cuts", "even",
                 "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["task"] == "segment" and report["num_classes"] == 3 and report["input_shape"] == [3, 64, 64]
    rows = report["rows"]
    assert [(r["method"], r["K"], r["cuts_preset"]) for r in rows] == [("e2e", 1, "-"), ("infopro-softmax", 2, "even")]
    for r in rows:
        assert r["peak_bytes"] > 0 and r["flops"] > 0 and r["memory_kind"] == "cpu_live_tensors"
        assert r["memory_ratio"] == pytest.approx(r["peak_bytes"] / rows[0]["peak_bytes"])
    assert rows[1]["cuts"] == [4]  # deeplabv3_resnet18's 9 blocks, cut in the middle
    reason = build_task("segment").refusal(METHODS.get("infopro-contrast"))
    assert report["skipped"] == [f"infopro-contrast (every K and cut): {reason}"]
    assert "no per-pixel objective" in reason
    assert f"skipped: infopro-contrast (every K and cut): {reason}" in (out / "bench.md").read_text()


def test_segment_bench_with_only_refused_methods_says_why(tmp_path, capsys):
    assert main(["bench", *TINY, "--methods", "predsim", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "nothing to measure" in err and "method 'predsim' has no per-pixel objective" in err
    assert not (tmp_path / "b").exists()  # no model was built, nothing written


def test_synthetic_masks_have_classes_and_ignored_pixels():
    task = build_task("segment", ignore_index=250)
    masks = task.example_targets(4, (3, 32, 48), 5, torch.Generator().manual_seed(0))
    assert masks.shape == (4, 32, 48) and masks.dtype == torch.int64
    ignored = masks == 250
    assert 0.05 < ignored.float().mean().item() < 0.15
    assert set(masks[~ignored].unique().tolist()) == {0, 1, 2, 3, 4}
    # Classification keeps one class index per image.
    labels = build_task("classify").example_targets(4, (3, 32, 32), 10, torch.Generator().manual_seed(0))
    assert labels.tolist() == [0, 1, 2, 3]


def test_segment_checkpoint_trains_e2e_loss_with_its_auxiliary_head():
    task = build_task("segment", aux_weight=0.4)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = task.example_targets(2, (3, 32, 32), 3, torch.Generator().manual_seed(2))
    step = build_step("deeplabv3_resnet18", "checkpoint", 4, "-", (3, 32, 32), 3, 2, torch.device("cpu"), task=task)
    torch.manual_seed(0)
    backbone = build_backbone("deeplabv3_resnet18", 3)
    e2e = LocalLearner(backbone, 1, "e2e", input_shape=(3, 32, 32), num_classes=3, task=task)
    e2e.load_state_dict(step.model.state_dict())
    torch.manual_seed(3)  # the same dropout masks in both (checkpointing restores the RNG when it recomputes)
    step.run(x, y)
    torch.manual_seed(3)
    e2e.train_step(x, y)
    grads = dict(step.model.named_parameters())
    assert any("aux_head" in name for name in grads)  # the FCN auxiliary head is part of the loss
    for name, p in e2e.named_parameters():
        assert grads[name].grad is not None, name
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_segment_defaults_and_explicit_flags():
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args(["--task", "segment", "--out", "x"])
    task = _task_defaults(args)
    assert (args.arch, args.input_shape, args.num_classes, args.K, args.methods, args.cuts) == (
        "deeplabv3_resnet101", [3, 512, 1024], 19, [2, 4], "e2e,checkpoint,infopro-softmax", "paper,balanced")
    assert task.ignore_index == 255 and task.aux_weight == 0.4
    args = parser.parse_args(["--task", "segment", "--arch", "fcn_resnet18", "--K", "3", "--ignore-index", "0",
                              "--out", "x"])
    task = _task_defaults(args)
    assert (args.arch, args.K, task.ignore_index) == ("fcn_resnet18", [3], 0)
    args = parser.parse_args(["--out", "x"])
    _task_defaults(args)
    assert (args.arch, args.batch_size, args.input_shape, args.methods) == (
        "resnet110", 1024, None, "e2e,checkpoint,infopro-contrast")

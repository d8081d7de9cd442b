"""The learning-rate schedule against the authors' formulas, and its trip through a run (metrics, resume)."""

import json
import math

import pytest
import torch

from infopro.cli import main
from infopro.train import load_checkpoint
from infopro.train.schedule import Schedule, build_lr_scheduler
from conftest import FAST, stop_after_first_checkpoint


def cifar_train_py(e: int, lr0: float, E: int) -> float:
    """The authors' CIFAR `adjust_learning_rate` (--cos_lr), restated: 1-based epoch e of E."""
    c = 0.5 * lr0 * (1 + math.cos(math.pi * e / E))
    return c * (e - 1) / 10 + 0.01 * (11 - e) / 10 if e <= 10 else c


def imagenet_ddp_py(t: int, lr0: float, E: int) -> float:
    """The authors' ImageNet `adjust_learning_rate`, restated: 0-based epoch t, no warm-up."""
    return 0.5 * lr0 * (1 + math.cos(math.pi * t / E))


def rates(schedule: Schedule, epochs: int) -> list[float]:
    """What torch's scheduler sets, epoch by epoch, as the loop steps it."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=schedule.lr)
    scheduler = build_lr_scheduler(optimizer, schedule)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("lr0,E", [(0.8, 160), (0.1, 160), (0.8, 400), (0.8, 20)])
def test_cifar_recipe_is_the_authors_formula(lr0, E):
    schedule = Schedule(lr=lr0, epochs=E, first_epoch=1, warmup_epochs=10, warmup_start=0.01)
    assert rates(schedule, E) == pytest.approx([cifar_train_py(e, lr0, E) for e in range(1, E + 1)], rel=1e-12, abs=1e-15)


def test_cifar_recipe_first_epochs_as_the_issue_states():
    got = rates(Schedule(lr=0.8, epochs=160, first_epoch=1, warmup_epochs=10), 12)
    assert [round(v, 3) for v in got[:3]] == [0.010, 0.089, 0.168]
    assert got[10] == pytest.approx(0.5 * 0.8 * (1 + math.cos(math.pi * 11 / 160)))  # the cosine from epoch 11


def test_imagenet_recipe_is_the_authors_formula_and_torchs_cosine():
    got = rates(Schedule(lr=0.4, epochs=90), 90)
    assert got == pytest.approx([imagenet_ddp_py(t, 0.4, 90) for t in range(90)], rel=1e-12)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=90)
    expected = []
    for _ in range(90):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        cosine.step()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_step_schedule_counts_epochs_as_the_authors():
    # train.py: lr *= 0.1 when the 1-based epoch is in changing_lr = [80, 120]
    got = rates(Schedule(lr=0.8, epochs=160, kind="step", first_epoch=1), 160)
    expected = [0.8 * 0.1 ** ((e >= 80) + (e >= 120)) for e in range(1, 161)]
    assert got == pytest.approx(expected, rel=1e-12)


def test_warmup_to_peak_is_timms_linear_warmup():
    s = Schedule(lr=1e-3, epochs=300, warmup_epochs=5, warmup_start=1e-6, warmup_to="peak", min_lr=1e-5)
    got = rates(s, 6)
    assert got[:5] == pytest.approx([1e-6 + t * (1e-3 - 1e-6) / 5 for t in range(5)], rel=1e-12)
    assert got[5] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 5 / 300)))


def test_lr_of_each_epoch_is_recorded_and_a_run_resumed_mid_warmup_continues_it(tmp_path, monkeypatch):
    flags = ["--epochs", "3", "--warmup-epochs", "2", "--schedule-first-epoch", "1", "--lr", "0.2"]
    straight = tmp_path / "straight"
    assert main(["train", *FAST, *flags, "--out", str(straight)]) == 0
    recorded = [json.loads(line)["lr"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    schedule = Schedule(lr=0.2, epochs=3, first_epoch=1, warmup_epochs=2)
    assert recorded == pytest.approx([schedule.learning_rate(t) for t in range(3)], rel=1e-12)
    assert "lr" in (straight / "metrics.csv").read_text().splitlines()[0].split(",")

    interrupted = tmp_path / "interrupted"
    # killed right after epoch 1, inside the warm-up
    stop_after_first_checkpoint(monkeypatch, lambda: main(["train", *FAST, *flags, "--out", str(interrupted)]))
    assert main(["train", "--out", str(interrupted), "--resume", "--quiet"]) == 0
    resumed = [json.loads(line)["lr"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert resumed == recorded
    a, b = (load_checkpoint(d / "checkpoint.pt")["model"] for d in (straight, interrupted))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags,message", [
    (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    (["--warmup-start", "0"], "--warmup-start must be > 0"),
    (["--warmup-start", "nan"], "--warmup-start must be a finite number"),
    (["--min-lr", "5"], "--min-lr must be in [0, --lr"),
])
def test_bad_schedule_settings_are_one_clear_line(tmp_path, capsys, flags, message):
    assert main(["train", *FAST, *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

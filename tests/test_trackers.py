"""--mlflow / --wandb: a run's settings, epochs and files reach the tracker. Neither package is installed in CI:
stand-in modules, put in sys.modules, record what the library would have been asked (no network, no files)."""

import sys
import types

import pytest

from infopro.cli import main
from conftest import FAST

ONE_EPOCH = list(FAST)
ONE_EPOCH[ONE_EPOCH.index("--epochs") + 1] = "1"


def fake_mlflow(calls: list) -> types.ModuleType:
    module = types.ModuleType("mlflow")
    for name in ("set_experiment", "start_run", "log_params", "log_metrics", "log_artifact", "end_run"):
        setattr(module, name, lambda *args, _name=name, **kwargs: calls.append((_name, args, kwargs)))
    return module


def fake_wandb(calls: list, fail: bool = False) -> types.ModuleType:
    module = types.ModuleType("wandb")

    class Run:
        def log(self, *args, **kwargs):
            calls.append(("log", args, kwargs))

        def save(self, *args, **kwargs):
            calls.append(("save", args, kwargs))

        def finish(self, *args, **kwargs):
            calls.append(("finish", args, kwargs))

    def init(**kwargs):
        if fail:
            raise RuntimeError("api_key not configured (no-tty)")
        calls.append(("init", (), kwargs))
        return Run()

    module.init = init
    return module


def named(calls: list, name: str) -> list:
    return [(args, kwargs) for n, args, kwargs in calls if n == name]


def test_mlflow_and_wandb_get_settings_epochs_and_files(tmp_path, monkeypatch):
    mlflow, wandb = [], []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(mlflow))
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(wandb))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run = tmp_path / "run"
    # interrupted after its first epoch's checkpoint: the trackers' runs are marked killed
    monkeypatch.setenv("INFOPRO_TEST_SIGNAL_AT", "INT@checkpoint 1")
    assert main(["train", *FAST, "--mlflow", "on", "--wandb", "on", "--out", str(run)]) == 130
    assert named(mlflow, "set_experiment") == [(("infopro",), {})]
    (_, start), = named(mlflow, "start_run")
    assert start["run_name"] == "run" and start["tags"]["infopro.run_dir"] == str(run)
    (params, _), = named(mlflow, "log_params")
    assert params[0]["arch"] == "resnet20" and params[0]["K"] == "2" and "tensorboard" not in params[0]
    assert named(mlflow, "log_metrics") == []  # stopped after epoch 1's checkpoint, before its numbers went out
    assert named(mlflow, "end_run") == [((), {"status": "KILLED"})]
    (_, init), = named(wandb, "init")
    assert init["project"] == "infopro" and init["name"] == "run" and init["dir"] == str(run)
    assert init["config"]["method"] == "infopro-contrast"
    assert named(wandb, "finish") == [((), {"exit_code": 1})]

    # resumed: a new tracker run that gets epoch 1 (from metrics.jsonl) too, then epoch 2, and the run's files
    mlflow.clear(), wandb.clear()
    monkeypatch.delenv("INFOPRO_TEST_SIGNAL_AT")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    assert main(["train", "--resume", str(run), "--mlflow", "on", "--wandb", "on", "--quiet"]) == 0
    assert named(mlflow, "set_experiment") == [(("mine",), {})]
    logged = named(mlflow, "log_metrics")
    assert [kwargs["step"] for _, kwargs in logged] == [1, 2]
    numbers = logged[-1][0][0]
    assert {"train_loss_1", "train_loss_2", "piece_1_recon", "piece_1_task", "test_accuracy", "lr"} <= set(numbers)
    assert all(isinstance(v, float) for v in numbers.values())
    artifacts = {args[0].rsplit("/", 1)[-1] for args, _ in named(mlflow, "log_artifact")}
    assert artifacts == {"config.yaml", "summary.json", "metrics.csv", "curves.png"}
    assert named(mlflow, "end_run") == [((), {"status": "FINISHED"})]
    assert [kwargs["step"] for _, kwargs in named(wandb, "log")] == [1, 2]
    assert named(wandb, "log")[-1][0][0] == numbers
    assert {kwargs["base_path"] for _, kwargs in named(wandb, "save")} == {str(run)}
    assert len(named(wandb, "save")) == 4 and named(wandb, "finish") == [((), {"exit_code": 0})]


def test_trackers_are_off_by_default_and_auto_needs_the_package(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "mlflow", fake_mlflow(calls))
    assert main(["train", *ONE_EPOCH, "--tensorboard", "off", "--out", str(tmp_path / "default")]) == 0
    assert calls == []  # installed, but not asked for
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["train", *ONE_EPOCH, "--tensorboard", "off", "--mlflow", "auto", "--out", str(tmp_path / "auto")]) == 0


@pytest.mark.parametrize("case", ["missing", "cannot start"])
def test_a_tracker_that_cannot_run_is_one_line(tmp_path, monkeypatch, capsys, case):
    if case == "missing":
        monkeypatch.setitem(sys.modules, "wandb", None)
    else:
        monkeypatch.setitem(sys.modules, "wandb", fake_wandb([], fail=True))
    run = tmp_path / "run"
    assert main(["train", *ONE_EPOCH, "--wandb", "on", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    if case == "missing":
        assert "pip install 'infopro[wandb]'" in err and not run.exists()
    else:
        assert "--wandb: wandb could not start a run (RuntimeError: api_key not configured" in err
        assert "--wandb off" in err
        assert not run.exists() or not [p for p in run.iterdir() if p.name != ".lock"], list(run.iterdir())

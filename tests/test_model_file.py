"""The trained model out of a run: model.pt / model-best.pt, infopro.load_model, infopro export."""

import builtins
import json

import numpy as np
import pytest
import torch

import infopro
from infopro.cli import main
from infopro.data import DataOptions, open_data
from conftest import FAST


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run with a validation split (so model-best.pt exists), cached in its own tmp dir."""
    root = tmp_path_factory.mktemp("model_file")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFOPRO_CACHE", str(root / "cache"))
        assert main(["train", *FAST, "--val-split", "0.2", "--out", str(root / "run")]) == 0
    return root / "run"


def _test_correct(model: torch.nn.Module, run) -> tuple[int, int]:
    """(correct, images) of the loaded model on the run's own test images, fed as raw uint8 images."""
    config = infopro.train.args.read_yaml_mapping(run / "config.yaml")
    data = open_data(config["dataset"], config["data_dir"], DataOptions(
        val_split=config["val_split"], train_subset=config["train_subset"], test_subset=config["test_subset"],
        seed=config["seed"], path="memory", cache_dir=str(run.parent / "cache"), progress=False))
    images = torch.from_numpy(np.ascontiguousarray(data.test.images)).permute(0, 3, 1, 2)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    return int((predicted == torch.from_numpy(data.test.labels)).sum()), len(predicted)


def test_loaded_model_reproduces_the_runs_test_accuracy(run):
    summary = json.loads((run / "summary.json").read_text())
    model = infopro.load_model(run)
    assert not model.training and isinstance(model.backbone, infopro.SequentialBackbone)
    assert model.classes[:2] == ["airplane", "automobile"] and model.input_shape == (3, 32, 32)
    assert not any(k.startswith("aux") for k in model.state_dict())
    correct, total = _test_correct(model, run)
    assert correct == round((1 - summary["final_test_error"]) * total)
    best = infopro.load_model(run, best=True)
    assert torch.load(run / "model-best.pt", weights_only=True)["epoch"] == summary["best_epoch"]
    correct, total = _test_correct(best, run)
    assert correct == round((1 - summary["test_error_at_best_epoch"]) * total)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "torchscript"])
def test_export_gives_the_same_logits(run, tmp_path, fmt, capsys, monkeypatch):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    expected = infopro.load_model(run)(x)
    loaded = torch.jit.load(str(out)) if fmt == "torchscript" else infopro.load_model(out)
    assert torch.equal(loaded(x), expected)
    if fmt == "torchscript":  # still there, behind a note said once per process
        monkeypatch.setattr(infopro.model_file, "_torchscript_noted", False)
        capsys.readouterr()
        for _ in range(2):
            assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        assert capsys.readouterr().err.count("TorchScript is deprecated") == 1


def test_pt2_export_runs_without_infopro_with_any_batch(run, tmp_path):
    out = tmp_path / "model.pt2"
    assert main(["export", str(run), "--format", "pt2", "--out", str(out)]) == 0
    extra = {infopro.model_file.PT2_INFO_FILE: ""}
    program = torch.export.load(out, extra_files=extra)
    info = json.loads(extra[infopro.model_file.PT2_INFO_FILE])
    assert info["arch"] == "resnet20" and info["classes"][0] == "airplane" and info["input_shape"] == [3, 32, 32]
    model = infopro.load_model(run)
    for batch in (1, 5):
        x = torch.rand(batch, 3, 32, 32)
        assert torch.allclose(program.module()(x), model(x), atol=1e-5, rtol=1e-5)


def test_onnx_export_gives_the_same_logits_in_onnxruntime(run, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    info = json.loads(session.get_modelmeta().custom_metadata_map[infopro.model_file.GRAPH_INFO_KEY])
    assert info["arch"] == "resnet20" and info["classes"][0] == "airplane"
    model = infopro.load_model(run)
    for batch in (1, 5):  # the batch dimension stays free
        x = torch.rand(batch, 3, 32, 32)
        (logits,) = session.run(["logits"], {"images": x.numpy()})
        np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_onnx_without_its_packages_is_one_line(run, tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name.startswith("onnxscript"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'infopro[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_export_and_load_say_what_is_wrong(run, tmp_path, monkeypatch, capsys):
    with pytest.raises(infopro.InfoProError, match="not an infopro model file"):
        infopro.load_model(run / "checkpoint.pt")
    with pytest.raises(infopro.InfoProError, match="has no model-best.pt"):
        infopro.load_model(tmp_path, best=True)
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "pip install 'infopro[safetensors]'" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_export_without_out_writes_beside_the_model_and_keeps_it(run, tmp_path):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "model.pt").read_bytes()
    assert main(["export", str(copy), "--format", "pt"]) == 0
    assert (copy / "model.pt").read_bytes() == before
    exported = infopro.load_model(copy / "model-export.pt")
    x = torch.rand(2, *exported.input_shape)
    assert torch.equal(exported(x), infopro.load_model(copy)(x))

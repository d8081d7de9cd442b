"""Every output of a segmentation run, on one tiny run made here (32x32 image + mask pairs of 3 classes, DeepLabV3 on
ResNet-18, 2 epochs): the model file and `load_model`, export, predict, curves.png and class_iou.png, compare,
--test-only, --resume, describe and the Hub card."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import infopro
from conftest import stop_after_first_checkpoint
from infopro.cli import main
from infopro.hub import model_card
from infopro.train.run_dir import RunDir
from infopro.train.run_log import RunLog, curves_figure

CLASSES = ["sky", "road", "car"]
SIZE = 32
SPLITS = {"train": 8, "val": 2, "test": 4}
SEG = ["--arch", "deeplabv3_resnet18", "--method", "infopro-softmax", "--K", "2", "--batch-size", "4",
       "--crop-size", str(SIZE), str(SIZE), "--epochs", "2", "--device", "cpu", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def write_pairs(root: Path) -> None:
    """SPLIT/images + SPLIT/masks: sky above, road below, a car box; each class has its own colour (plus noise),
    and a few unlabelled (255) pixels in every mask."""
    rng = np.random.default_rng(0)
    colours = np.array([[70, 130, 180], [128, 64, 128], [200, 20, 20]])
    for split, count in SPLITS.items():
        for k in range(count):
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[SIZE // 2 + k % 4:] = 1
            top, left = int(rng.integers(4, 20)), int(rng.integers(0, 20))
            mask[top:top + 8, left:left + 10] = 2
            image = np.clip(colours[mask] + rng.integers(-30, 30, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            mask[0, :3] = 255
            for folder, array in (("images", image), ("masks", mask)):
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / split / folder / f"{split}{k}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segdata")
    write_pairs(root)
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("segrun") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFOPRO_CACHE", str(out.parent / "cache"))
        assert main(["train", "--data-dir", str(data), *SEG, "--out", str(out)]) == 0
    return out


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def read_test_split(data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split as the PNGs hold it: (N, 3, H, W) uint8 images and (N, H, W) int64 masks."""
    names = sorted((data / "test" / "images").iterdir())
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1) for p in names])
    masks = torch.stack([torch.from_numpy(np.asarray(Image.open(data / "test" / "masks" / p.name)).astype(np.int64))
                         for p in names])
    return images, masks


def test_the_model_file_says_segment_and_load_model_gives_logits_at_the_input_size(run):
    payload = torch.load(run / "model.pt", weights_only=True)
    assert payload["task"] == "segment" and payload["ignore_index"] == 255
    assert payload["classes"] == CLASSES and payload["input_shape"] == [3, SIZE, SIZE]
    model = infopro.load_model(run)
    assert isinstance(model, infopro.ImageModel) and not model.training
    assert model.task == "segment" and model.classes == CLASSES and model.input_shape == (3, SIZE, SIZE)
    assert isinstance(model.backbone, infopro.SequentialBackbone)
    assert torch.equal(model.mean.flatten(), torch.tensor(payload["mean"]))
    x = torch.randint(0, 256, (2, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 3, SIZE, SIZE)
        assert torch.equal(model(x.float() / 255), logits)  # uint8 and [0, 1] floats alike
        assert model(torch.rand(1, 3, 24, 40)).shape == (1, 3, 24, 40)  # any size: logits at the input's
    best = torch.load(run / "model-best.pt", weights_only=True)  # the run has a val split
    assert best["task"] == "segment" and best["epoch"] == json.loads((run / "summary.json").read_text())["best_epoch"]


def test_the_loaded_model_reproduces_the_runs_test_loss_and_mean_iou(run, data):
    """Raw uint8 test images into `load_model`'s network give the run's own test loss and mean IoU: the model
    normalises exactly as training did, once."""
    images, masks = read_test_split(data)
    with torch.no_grad():
        logits = infopro.load_model(run)(images)
    labelled = masks != 255
    loss = F.cross_entropy(logits, masks, ignore_index=255, reduction="sum") / labelled.sum()
    last = records(run)[-1]
    assert loss.item() == pytest.approx(last["test_loss"], rel=1e-4)
    predicted = logits.argmax(1)[labelled]
    truth = masks[labelled]
    ious = []
    for c in range(len(CLASSES)):
        union = ((predicted == c) | (truth == c)).sum().item()
        ious.append(((predicted == c) & (truth == c)).sum().item() / union if union else None)
    assert ious == pytest.approx(last["test_class_iou"], abs=1e-9)
    defined = [v for v in ious if v is not None]
    assert sum(defined) / len(defined) == pytest.approx(last["test_miou"], abs=1e-9)


def test_predict_writes_the_masks_of_the_loaded_model(run, data, tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["predict", str(run), str(data / "test" / "images"), "--out", str(out), "--device", "cpu"]) == 0
    images, _ = read_test_split(data)
    with torch.no_grad():
        expected = infopro.load_model(run)(images).argmax(1)
    for k, name in enumerate(sorted(p.stem for p in (data / "test" / "images").iterdir())):
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.mode == "P" and np.array_equal(np.asarray(mask), expected[k].numpy())
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote 4 mask(s) and overlay(s) to {out}"
    assert main(["predict", str(run), str(data / "test" / "images"), "--out", str(tmp_path / "best"),
                 "--best"]) == 0


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_weight_exports_load_as_the_same_segmenter(run, tmp_path, fmt):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    exported, model = infopro.load_model(out), infopro.load_model(run)
    assert exported.task == "segment" and exported.classes == CLASSES
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))


def test_the_pt2_export_takes_any_batch_and_image_size(run, tmp_path):
    model = infopro.load_model(run)
    out = tmp_path / "model.pt2"
    assert main(["export", str(run), "--format", "pt2", "--out", str(out)]) == 0
    extra = {infopro.model_file.PT2_INFO_FILE: ""}
    program = torch.export.load(out, extra_files=extra)
    info = json.loads(extra[infopro.model_file.PT2_INFO_FILE])
    assert info["task"] == "segment" and info["ignore_index"] == 255 and info["classes"] == CLASSES
    for shape in ((1, 3, SIZE, SIZE), (3, 3, 24, 40)):
        x = torch.rand(*shape)
        with torch.no_grad():
            assert torch.allclose(program.module()(x), model(x), atol=1e-5)


def test_the_onnx_export_takes_any_batch_and_image_size(run, tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = infopro.load_model(run)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out))
    x = torch.rand(2, 3, 40, 24)
    [logits] = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        assert np.allclose(logits, model(x).numpy(), atol=1e-4)


def test_torchscript_that_cannot_compile_the_network_is_one_line(run, tmp_path, capsys):
    out = tmp_path / "model.torchscript.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "TorchScript cannot compile this network (deeplabv3_resnet18" in err
    assert "export --format pt2 (its replacement) or onnx" in err and "Traceback" not in err
    assert not out.exists()


def test_curves_have_a_mean_iou_panel_and_class_iou_png_the_last_epoch(run, tmp_path):
    history = records(run)
    fig = curves_figure(history, "title")
    panels = {ax.get_title(): ax for ax in fig.get_axes()}
    miou = panels["mean IoU (whole network)"]
    lines = {line.get_label(): list(line.get_ydata()) for line in miou.get_lines()}
    assert lines == {split: pytest.approx([100 * r[f"{split}_miou"] for r in history]) for split in ("val", "test")}
    assert "pixel accuracy" in panels
    assert (run / "curves.png").read_bytes()[:8] == PNG and (run / "class_iou.png").read_bytes()[:8] == PNG
    # A classification run's records: no mean IoU panel, no class_iou.png.
    plain = [{"epoch": 1, "lr": 0.1, "train_losses": [1.0], "train_accuracy": 0.5, "test_accuracy": 0.4,
              "test_loss": 1.2}]
    assert "mean IoU (whole network)" not in {ax.get_title() for ax in curves_figure(plain, "t").get_axes()}
    other = RunDir(tmp_path / "classify")
    other.path.mkdir()
    RunLog(other, "off", "t", classes=["a", "b"]).epoch(plain)
    assert other.curves.is_file() and not other.class_iou.exists()


def test_compare_shows_the_test_and_val_mean_iou(run, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(run), "--out", str(out)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    best = records(run)[summary["best_epoch"] - 1]
    table = (out / "compare.md").read_text()
    assert table.startswith("Test mean IoU at the best validation epoch (%)")
    assert f"{100 * best['test_miou']:.2f} ± 0.00 (n=1), val {100 * best['val_miou']:.2f}" in table
    cell = next(csv.DictReader(open(out / "compare.csv")))
    assert float(cell["test_miou_mean"]) == pytest.approx(best["test_miou"]) and "test_error_mean" not in cell
    by_run = next(csv.DictReader(open(out / "runs.csv")))
    assert float(by_run["test_miou"]) == pytest.approx(best["test_miou"])
    assert float(by_run["val_miou"]) == pytest.approx(best["val_miou"])
    assert (out / "compare.png").read_bytes()[:8] == PNG
    capsys.readouterr()
    assert main(["compare", str(run), "--out", str(out), "--paper", "table2-resnet32"]) == 2
    assert "--paper tables hold published test errors of image classification" in capsys.readouterr().err


def test_compare_refuses_runs_of_two_tasks(run, tmp_path, capsys):
    classifier = tmp_path / "classifier"
    shutil.copytree(run, classifier)
    config = re.sub(r"^task: .*$", "task: classify", (classifier / "config.yaml").read_text(), flags=re.M)
    (classifier / "config.yaml").write_text(config)
    assert main(["compare", str(run), str(classifier), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert f"these runs are of 2 tasks (segment: {run}; classify: {classifier})" in err
    assert "compare each task's runs apart" in err and not (tmp_path / "cmp").exists()


def test_test_only_prints_the_mean_iou(run, capsys):
    summary = json.loads((run / "summary.json").read_text())
    assert main(["train", "--test-only", str(run), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"{run / 'checkpoint.pt'}: test mean IoU {summary['test_miou']:.2f}% (pixel accuracy "
                           f"{summary['test_pixel_accuracy']:.2f}%) on 4 images")


def test_a_resumed_run_repeats_the_uninterrupted_one(run, data, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    stop_after_first_checkpoint(monkeypatch, lambda: main(["train", "--data-dir", str(data), *SEG,
                                                           "--out", str(out)]))
    assert len(records(out)) == 1 and not (out / "summary.json").exists()
    assert main(["train", "--resume", str(out)]) == 0
    timing = {"epoch_seconds", "images_per_second", "eval_seconds", "peak_memory_bytes"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in records(out)] == \
           [{k: v for k, v in r.items() if k not in timing} for r in records(run)]
    resumed, whole = (torch.load(p / "model.pt", weights_only=True)["state_dict"] for p in (out, run))
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
    assert (out / "class_iou.png").is_file()


def test_describe_a_segmentation_network(capsys):
    flags = ["describe", "--arch", "deeplabv3_resnet18", "--K", "2", "--input-shape", "3", "32", "32",
             "--batch-size", "2"]
    assert main([*flags, "--method", "infopro-softmax"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("deeplabv3_resnet18 · infopro-softmax · K=2")
    assert re.search(r"^\s+2\s+\S+\s+10x4x4\s", printed, flags=re.M)  # the last piece: a map of class logits
    assert main([*flags, "--method", "infopro-contrast"]) == 2  # the task decided from the output: segment
    assert "method 'infopro-contrast' has no per-pixel objective" in capsys.readouterr().err


def test_the_hub_card_reports_the_mean_iou(run):
    summary = json.loads((run / "summary.json").read_text())
    config = RunDir(run).read_config()
    card = model_card("me/seg", config, summary, 2, ["model.pt"])
    assert "pipeline_tag: image-segmentation" in card
    assert "| test mean IoU (%) | best epoch (chosen on) | test mean IoU at the best epoch (%) |" in card
    assert f"| {summary['test_miou']:.2f} | {summary['best_epoch']} (val) | {summary['test_miou_at_best_epoch']:.2f} |" \
           in card

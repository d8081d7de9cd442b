"""`infopro train` on data sets that are not CIFAR: folders written here with class-dependent synthetic
images, trained from the CLI on both data paths, and the bad inputs of the data side."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from infopro.cli import main

TRAIN = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "infopro-softmax", "--epochs", "3",
         "--batch-size", "25", "--lr", "0.05", "--device", "cpu", "--quiet"]


def grey_digits(root, per_class):
    """10 classes of 28x28 greyscale: a centred square on noise, of one of 5 sizes and 2 brightnesses (what
    tells the classes apart survives the training augmentation's crop and flip)."""
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k in range(10):
            (root / split / f"d{k}").mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 60, (28, 28), dtype=np.uint8)
                lo, hi = 12 - (k % 5), 16 + (k % 5)
                a[lo:hi, lo:hi] = 130 if k < 5 else 250
                Image.fromarray(a, "L").save(root / split / f"d{k}" / f"{i:03d}.png")


def coloured_photos(root, per_class):
    """7 classes of RGB images of random sizes and aspect ratios: a class-specific colour plus noise."""
    rng = np.random.default_rng(1)
    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220), (220, 220, 30), (30, 220, 220), (220, 30, 220),
               (128, 128, 128)]
    for split, n in per_class.items():
        for k, colour in enumerate(colours):
            (root / split / f"class{k}").mkdir(parents=True)
            for i in range(n):
                w, h = int(rng.integers(40, 100)), int(rng.integers(40, 100))
                a = np.clip(np.array(colour) + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a, "RGB").save(root / split / f"class{k}" / f"{i:03d}.jpg", quality=90)


def test_grey_28px_ten_class_folder_trains_with_a_validation_split(tmp_path):
    grey_digits(tmp_path / "d", {"train": 30, "test": 10})
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--val-split", "0.2",
                 "--epochs", "6", "--lr", "0.1", "--out", str(out)]) == 0  # 6 epochs: far from the threshold
    summary = json.loads((out / "summary.json").read_text())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["mean"] == pytest.approx([summary_mean(tmp_path / "d")], abs=1e-6) and len(config["std"]) == 1
    assert summary["best_selected_on"] == "val" and "best_test_error" not in summary
    assert summary["splits"]["val"].startswith("0.2 of train/ (300 images), stratified")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(metrics, key=lambda r: r["val_error"])
    assert summary["best_epoch"] == best["epoch"] and summary["test_error_at_best_epoch"] == best["test_error"]
    assert summary["test_error_at_best_epoch"] < 0.6  # chance: 0.9


def summary_mean(folder):
    """Mean pixel of the training images / 255, computed here independently."""
    pixels = [np.asarray(Image.open(p), dtype=np.float64) for p in sorted((folder / "train").rglob("*.png"))]
    return float(np.mean(pixels) / 255)


@pytest.mark.parametrize("path, size", [("memory", 64), ("stream", 32)])  # 32 on the stream path: half the time
def test_seven_class_folder_of_mixed_sizes_trains_at_image_size(tmp_path, path, size):
    coloured_photos(tmp_path / "d", {"train": 12, "val": 4})
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--image-size", str(size),
                 "--data-path", path, "--workers", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["test"] == "val/ (28 images)" and summary["best_selected_on"] == "test"
    assert yaml.safe_load((out / "config.yaml").read_text())["data_path"] == path
    assert summary["best_test_error"] < 0.5  # chance: 6/7


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--val-split", "1.5"], "--val-split must be a fraction in (0, 1)"),
        (["--val-split", "0"], "--val-split must be a fraction in (0, 1)"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--image-size", "3"], "too small for resnet20, which downsamples by 4"),
        (["--dataset", "folder", "--image-size", "0"], "--image-size must be >= 1"),
        (["--mean", "0.5"], "--mean and --std go together"),
        (["--mean", "0.5", "0.5", "--std", "0.2", "0.2"], "--mean and --std need one value per channel (1)"),
    ],
)
def test_bad_data_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, extra, message):
    grey_digits(tmp_path / "d", {"train": 2, "test": 1})
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--batch-size", "4",
                 *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_folder_splits_that_disagree_on_classes_stop_before_writing(tmp_path, capsys):
    grey_digits(tmp_path / "d", {"train": 2, "test": 1})
    (tmp_path / "d/test/d9/000.png").rename(tmp_path / "d/test/d8/001.png")
    (tmp_path / "d/test/d9").rmdir()
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing in test: ['d9']" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_given_normalisation_is_used_and_the_stream_path_measures_none(tmp_path, monkeypatch):
    grey_digits(tmp_path / "d", {"train": 4, "test": 1})

    def no_measuring(*args, **kwargs):
        raise AssertionError("the stream path measured mean/std although --mean/--std were given")

    monkeypatch.setattr("infopro.data.prepare._stream_stats", no_measuring)
    out = tmp_path / "run"
    assert main(["train", *TRAIN, "--dataset", "folder", "--data-dir", str(tmp_path / "d"), "--data-path", "stream",
                 "--workers", "0", "--mean", "0.25", "--std", "0.5", "--epochs", "1", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["mean"], config["std"], config["data_path"]) == ([0.25], [0.5], "stream")

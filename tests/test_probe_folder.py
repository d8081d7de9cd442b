"""`infopro probe` on folder runs: only the stratified subsets are decoded, at the run's own evaluation view."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from infopro.analysis import TrainSettings, open_run_data, read_run_config, restore_run, run_images
from infopro.analysis.command import probe_run, subset
from infopro.cli import main
from infopro.data import DataOptions, FileItems, load_dataset, make_loader, open_data, stratified_subset

SIZE = 16
TRAIN = ["train", "--dataset", "folder", "--image-size", str(SIZE), "--arch", "resnet20", "--K", "2",
         "--method", "greedy", "--epochs", "1", "--batch-size", "6", "--workers", "0", "--device", "cpu", "--quiet"]
N_TRAIN, N_TEST = 6, 3
PROBE = ["--probe", "linear", "--epochs", "1", "--depths", "2", "--train-subset", str(N_TRAIN),
         "--test-subset", str(N_TEST), "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory):
    """A folder of 3 classes (6 train / 3 test images each, 24x18, so resizing matters), and one run of it
    on each data path."""
    root = tmp_path_factory.mktemp("probe-folder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for k in range(3):
            (root / "data" / split / f"c{k}").mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (18, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels, "RGB").save(root / "data" / split / f"c{k}" / f"{i}.png")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFOPRO_CACHE", str(root / "cache"))
        for path in ("memory", "stream"):
            assert main([*TRAIN, "--data-dir", str(root / "data"), "--data-path", path,
                         "--out", str(root / path)]) == 0
    return root


def _subsets(run, data_dir=None):
    data = open_run_data(read_run_config(run), data_dir)
    return data, subset(data.train, N_TRAIN, 0, 0, "--train-subset"), subset(data.test, N_TEST, 0, 0, "--test-subset")


def test_stream_run_decodes_only_the_subsets_at_its_evaluation_view(folder_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("INFOPRO_CACHE", str(folder_runs / "cache"))
    run, copy = folder_runs / "stream", tmp_path / "copy"
    shutil.copytree(folder_runs / "data", copy)
    config = read_run_config(run)
    data, train, test = _subsets(run, copy)
    assert data.size == (SIZE, SIZE) and data.channels == 3 and list(data.mean) == config["mean"]
    assert len(train) == N_TRAIN and sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]

    # The images are those the run's own evaluation loader (stream path: resize + centre crop) gave it.
    trained = open_data("folder", folder_runs / "data", DataOptions(image_size=SIZE, path="stream", progress=False))
    assert trained.path == "stream" and trained.mean == data.mean
    x = torch.cat([x for x, _ in make_loader(trained, test, "cpu", 2, train=False, seed=0, workers=0)])
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (data.mean, data.std))
    images = torch.from_numpy(run_images(config, data, test)).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose((images - mean) / std, x)

    # Every other image of (a copy of) the folder becomes unreadable; the probe reads only its subsets.
    keep = {*train.paths, *test.paths}
    every = {*data.train.paths, *data.test.paths}
    assert len(every) == 27 and len(keep) == N_TRAIN + N_TEST
    for path in every - keep:
        with open(path, "wb") as f:
            f.write(b"not an image")
    decoded = []
    image = FileItems.image
    monkeypatch.setattr(FileItems, "image", lambda self, i: decoded.append(self.paths[i]) or image(self, i))
    assert main(["probe", str(run), *PROBE, "--data-dir", str(copy), "--out", str(tmp_path / "out")]) == 0
    assert sorted(decoded) == sorted(keep)
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert report["settings"]["train_images"] == N_TRAIN and report["settings"]["test_images"] == N_TEST
    assert [p["depth"] for p in report["runs"][0]["points"]] == [2]


def test_memory_run_gives_the_numbers_of_the_whole_set_in_memory(folder_runs, tmp_path, monkeypatch):
    """Subset first, decode second: the same images, normalisation and estimates as decoding the whole
    set into memory and taking the same stratified subset of it (what `infopro probe` did before)."""
    monkeypatch.setenv("INFOPRO_CACHE", str(folder_runs / "cache"))
    run = folder_runs / "memory"
    assert main(["probe", str(run), *PROBE, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "probe.json").read_text())

    whole = load_dataset("folder", folder_runs / "data", image_size=SIZE)
    keep_train = stratified_subset(whole.train_labels, N_TRAIN, seed=0)
    keep_test = stratified_subset(whole.test_labels, N_TEST, seed=0)
    config = read_run_config(run)
    data, train, test = _subsets(run)
    assert data.mean == whole.mean and data.std == whole.std
    assert np.array_equal(run_images(config, data, train), whole.train_images[keep_train])
    assert np.array_equal(train.labels, whole.train_labels[keep_train])

    restored = restore_run(run, data, torch.device("cpu"))
    points, _ = probe_run(restored, [2], data, (whole.train_images[keep_train], whole.train_labels[keep_train]),
                          (whole.test_images[keep_test], whole.test_labels[keep_test]), "linear",
                          TrainSettings(epochs=1), torch.device("cpu"), progress=False)
    assert report["runs"][0]["points"] == points


def test_runs_that_saw_their_images_differently_are_not_probed_together(folder_runs, tmp_path, capsys):
    assert main(["probe", str(folder_runs / "memory"), str(folder_runs / "stream"), *PROBE,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "were trained on different data" in err and "data_path memory vs stream" in err
    assert err.count("\n") == 1

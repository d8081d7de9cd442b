import json

import numpy as np
import pytest
import torch

from infopro import InfoProError, build_backbone
from infopro.analysis import (
    PROBES,
    TrainSettings,
    build_probe,
    check_depths,
    default_depths,
    estimate_i_hx,
    estimate_i_hy,
    extract_features,
    parse_depths,
)
from infopro.cli import main
from infopro.train import load_checkpoint, save_checkpoint

# A tiny trained run: ResNet-20 (10 blocks) cut in 2 after block 4 (a cut at depth 5), one epoch.
TRAIN = ["train", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "greedy", "--epochs", "1",
         "--train-subset", "200", "--test-subset", "100", "--batch-size", "50", "--device", "cpu", "--quiet"]
PROBE = ["--probe", "linear", "--epochs", "1", "--train-subset", "100", "--test-subset", "50", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFOPRO_CACHE", str(root / "cache"))
        assert main([*TRAIN, "--out", str(root / "greedy-run")]) == 0
    return root / "greedy-run"


def probe(*args):
    return main(["probe", *map(str, args)])


def test_probe_writes_json_and_plot_one_line_per_run(run_dir, tmp_path):
    out = tmp_path / "out"
    assert probe(run_dir, run_dir, "--names", "a,b", "--depths", "3,1", *PROBE, "--out", out) == 0
    report = json.loads((out / "probe.json").read_text())
    assert [r["run"] for r in report["runs"]] == ["a", "b"]
    for run in report["runs"]:
        assert [p["depth"] for p in run["points"]] == [1, 3]
        for point in run["points"]:
            assert set(point) == {"depth", "i_hx", "i_hy"}
            assert isinstance(point["i_hx"], float) and point["i_hx"] < 1
            assert 0 <= point["i_hy"] <= 1
        assert run["cut_depths"] == [5]
        assert [len(t["decoder"]) for t in run["train_losses"]] == [1, 1]
    # The same network probed twice with the same seed gives the same estimates.
    assert report["runs"][0]["points"] == report["runs"][1]["points"]
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_runs_are_named_by_their_directory(run_dir, tmp_path):
    assert probe(run_dir, "--depths", "10", *PROBE, "--out", tmp_path) == 0
    report = json.loads((tmp_path / "probe.json").read_text())
    assert report["runs"][0]["run"] == "greedy-run"


def test_depth_is_the_output_of_the_first_d_blocks():
    backbone = build_backbone("resnet20").eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 3
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    h, target, y = extract_features(backbone, 4, images, labels, mean, std, torch.device("cpu"), batch_size=4)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        assert torch.allclose(h, backbone.blocks[:4](x), atol=1e-5)
    assert torch.allclose(target, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    assert y.tolist() == labels.tolist()
    h_last, _, _ = extract_features(backbone, 10, images, labels, mean, std, torch.device("cpu"))
    assert h_last.shape == (6, 64, 8, 8)
    assert not any(p.requires_grad for p in [h, h_last])
    assert not any(m.training for m in backbone.modules())  # extraction leaves the modes as they were
    backbone.train()
    extract_features(backbone, 2, images, labels, mean, std, torch.device("cpu"))
    assert all(m.training for m in backbone.modules())


def test_default_depths_are_the_cuts_plus_evenly_spaced_blocks():
    assert default_depths(10, [5]) == [1, 4, 5, 7, 10]
    assert default_depths(16, [4, 8, 12]) == [1, 4, 6, 8, 11, 12, 16]
    assert parse_depths("5, 1,5") == [1, 5]
    assert check_depths([1, 16], 16) == [1, 16]


def synthetic_features(n=64, seed=0):
    """Features that hold the label (channel 0's sign pattern) and an image made from them."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    h = torch.randn(n, 8, 8, 8, generator=generator)
    h[:, 0] += labels.view(-1, 1, 1).float() - 1.5
    images = torch.sigmoid(torch.nn.functional.interpolate(h[:, :3], size=(16, 16), mode="bilinear"))
    return h, images, labels


def test_decoder_and_linear_probe_losses_fall():
    h, images, labels = synthetic_features()
    settings = TrainSettings(epochs=6, lr=1e-2, batch_size=16)
    i_hx = estimate_i_hx(h[:48], images[:48], h[48:], images[48:], settings)
    assert i_hx.train_losses[-1] < i_hx.train_losses[0]
    i_hy = estimate_i_hy(h[:48], labels[:48], h[48:], labels[48:], 4, "linear", settings)
    assert i_hy.train_losses[-1] < i_hy.train_losses[0]
    assert i_hy.value > 0.5  # the label is linearly readable from channel 0


def test_resnet32_probe_maps_any_feature_to_16_channels_at_32x32_and_learns():
    for shape in [(8, 8, 8), (64, 4, 4), (3, 32, 32)]:
        probe_net = build_probe("resnet32", shape, 10)
        assert probe_net(torch.randn(2, *shape)).shape == (2, 10)
    h, _, labels = synthetic_features(n=32)
    i_hy = estimate_i_hy(h, labels, h, labels, 4, "resnet32", TrainSettings(epochs=3, batch_size=32))
    assert i_hy.train_losses[-1] < i_hy.train_losses[0]
    assert sorted(PROBES) == ["linear", "resnet32"]


def test_identical_features_give_identical_estimates():
    h, images, labels = synthetic_features()
    settings = TrainSettings(epochs=2, batch_size=16, seed=3)
    first = (estimate_i_hx(h, images, h, images, settings), estimate_i_hy(h, labels, h, labels, 4, "linear", settings))
    again = (estimate_i_hx(h.clone(), images.clone(), h.clone(), images.clone(), settings),
             estimate_i_hy(h.clone(), labels.clone(), h.clone(), labels.clone(), 4, "linear", settings))
    assert [e.value for e in first] == [e.value for e in again]
    assert [e.train_losses for e in first] == [e.train_losses for e in again]


@pytest.mark.parametrize("args, message", [
    (["--depths", "0"], "depth(s) 0 out of range"),
    (["--depths", "1,11"], "valid depths are 1..10"),
    (["--depths", "1,x"], "--depths must be a comma list of integers"),
    (["--depths", "1.5"], "--depths must be a comma list of integers"),
    (["--probe", "mlp"], "unknown probe 'mlp'; choose one of: linear, resnet32"),
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--names", "a,b"], "--names gives 2 name(s) for 1 run(s)"),
    (["--train-subset", "0"], "--train-subset must be >= 1"),
])
def test_bad_arguments_are_one_line_errors(run_dir, tmp_path, capsys, args, message):
    assert probe(run_dir, *PROBE, "--out", tmp_path / "out", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("infopro probe: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_run_dir_or_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert probe(tmp_path / "nope", *PROBE) == 2
    err = capsys.readouterr().err
    assert f"run directory {tmp_path / 'nope'} does not exist" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert probe(empty, *PROBE) == 2
    err = capsys.readouterr().err
    assert f"run directory {empty} has no checkpoint.pt" in err and "infopro train --out" in err


def test_runs_of_different_data_sets_are_refused(run_dir, tmp_path, capsys):
    state = load_checkpoint(run_dir / "checkpoint.pt")
    state["args"]["dataset"] = "cifar100"
    other = tmp_path / "other"
    other.mkdir()
    save_checkpoint(state, other / "checkpoint.pt")
    assert probe(run_dir, other, *PROBE, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "were trained on different data" in err and "cifar10" in err and "cifar100" in err


def test_estimator_settings_are_checked():
    with pytest.raises(InfoProError, match="--lr must be > 0"):
        TrainSettings(lr=0)
    with pytest.raises(InfoProError, match="--batch-size must be >= 1"):
        TrainSettings(batch_size=0)


def test_out_that_is_a_file_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "probe.txt"
    out.write_text("")
    assert probe(run_dir, *PROBE, "--out", out) == 2
    assert f"--out {out} is a file, not a directory" in capsys.readouterr().err


def test_a_probe_that_would_not_fit_in_memory_stops_before_decoding_and_says_what_fits(run_dir, tmp_path, capsys,
                                                                                       monkeypatch):
    """Depth 1 of ResNet-20 on 32x32 images is 16x32x32 values: with room for 60 + 50 images' worth, the
    probe stops at once with the size it needs and a --train-subset that fits, and decodes nothing."""
    from infopro.analysis import command
    from infopro.analysis.features import probe_bytes

    n_train, n_test = 100, 50  # what PROBE asks for
    values = 16 * 32 * 32
    available = int(probe_bytes(60, n_test, values, (3, 32, 32)) / command.MEMORY_SHARE) + 10
    monkeypatch.setattr(command, "available_memory", lambda device: available)
    monkeypatch.setattr(command, "run_images", lambda *a: pytest.fail("decoded although it would not fit"))
    assert probe(run_dir, *PROBE, "--depths", "1", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    need = probe_bytes(n_train, n_test, values, (3, 32, 32))
    assert err.count("\n") == 1 and f"probing {n_train} + {n_test} images at depth 1" in err
    assert f"{need / 1e9:.1f} GB" in err and "use --train-subset 60 or fewer" in err
    assert not (tmp_path / "out").exists()

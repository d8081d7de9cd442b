from pathlib import Path

import pytest
import torch

# Small and fast training flags shared by the tests that train: ResNet-20 cut in 2,
# 200 bundled training images, batches of 50 (4 steps per epoch), 2 epochs.
FAST = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--method", "infopro-contrast",
        "--train-subset", "200", "--test-subset", "100", "--batch-size", "50", "--epochs", "2",
        "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _cache_in_session_tmp(tmp_path_factory):
    """Module- and session-scoped fixtures that train (set up before the per-test fixture below) cache in a
    temporary directory too: the suite never writes into the checkout or the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFOPRO_CACHE", str(tmp_path_factory.mktemp("session-cache")))
        yield


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    """Decoded data sets are cached per test, never in the user's cache."""
    monkeypatch.setenv("INFOPRO_CACHE", str(tmp_path / "cache"))


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (sub-folders too, e.g. tensorboard/) and its bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def stop_after_first_checkpoint(monkeypatch, train) -> None:
    """Run `train()` (an `infopro train` call returning its exit code) so that it is interrupted right after
    its first checkpoint is written (exit 130), as a killed run would be; the patch is undone after."""
    import infopro.train.loop as loop

    real_save = loop.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_checkpoint", save_then_die)
        assert train() == 130

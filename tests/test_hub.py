"""`infopro push` / `infopro pull` with a stand-in huggingface_hub (no network): what reaches the Hub repository,
its model card, and a pulled folder that loads as the run's own model."""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

import infopro
from infopro.cli import main
from conftest import FAST

ONE_EPOCH = list(FAST)
ONE_EPOCH[ONE_EPOCH.index("--epochs") + 1] = "1"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    assert main(["train", *ONE_EPOCH, "--tensorboard", "off", "--out", str(root / "run")]) == 0
    return root / "run"


def fake_hub(remote: Path, calls: list, fail: str | None = None) -> types.ModuleType:
    """huggingface_hub's HfApi.create_repo / upload_folder and snapshot_download, over a local folder per repo."""
    module = types.ModuleType("huggingface_hub")

    class HfApi:
        def create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
            calls.append(("create_repo", repo_id, private, exist_ok))
            if fail == "push":
                raise RuntimeError("401 Client Error: Unauthorized for url: https://huggingface.co/api/repos/create")
            (remote / repo_id).mkdir(parents=True, exist_ok=True)
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, commit_message=None, **kwargs):
            calls.append(("upload_folder", repo_id, commit_message))
            shutil.copytree(folder_path, remote / repo_id, dirs_exist_ok=True)

    def snapshot_download(repo_id, local_dir=None, revision=None, **kwargs):
        calls.append(("snapshot_download", repo_id, revision))
        if not (remote / repo_id).is_dir():
            raise RuntimeError(f"404 Client Error. Repository Not Found for url: https://huggingface.co/{repo_id}")
        shutil.copytree(remote / repo_id, local_dir, dirs_exist_ok=True)
        return local_dir

    module.HfApi, module.snapshot_download = HfApi, snapshot_download
    return module


def test_push_then_pull_gives_the_runs_model_and_a_card(run, tmp_path, monkeypatch, capsys):
    pytest.importorskip("safetensors")
    calls = []
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(tmp_path / "remote", calls))
    assert main(["push", str(run), "me/resnet20-infopro", "--format", "safetensors", "--private"]) == 0
    assert "pushed" in capsys.readouterr().out
    assert calls == [("create_repo", "me/resnet20-infopro", True, True),
                     ("upload_folder", "me/resnet20-infopro", "infopro push of run")]
    repo = tmp_path / "remote" / "me" / "resnet20-infopro"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "config.yaml", "curves.png", "metrics.csv",
                                                      "model.pt", "model.safetensors", "summary.json"]
    card = (repo / "README.md").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert card.startswith("---\nlibrary_name: infopro\n")
    assert f"| {100 * summary['final_test_error']:.2f} |" in card  # the results...
    assert "arch: resnet20" in card and "method: infopro-contrast" in card  # ...and the recipe
    assert "infopro pull me/resnet20-infopro model-dir" in card
    # what only holds on this machine stays here
    pushed = json.loads((repo / "summary.json").read_text())
    assert "host" not in pushed["provenance"] and "command" not in pushed["provenance"]
    assert pushed["final_test_error"] == summary["final_test_error"]
    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert config["arch"] == "resnet20" and config["out"] == "run"
    assert str(run) not in card and str(tmp_path) not in (repo / "config.yaml").read_text()

    out = tmp_path / "pulled"
    assert main(["pull", "me/resnet20-infopro", str(out), "--revision", "v1"]) == 0
    assert calls[-1] == ("snapshot_download", "me/resnet20-infopro", "v1")
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(infopro.load_model(out)(x), infopro.load_model(run)(x))
    assert torch.equal(infopro.load_model(out / "model.safetensors")(x), infopro.load_model(run)(x))


@pytest.mark.parametrize("case", ["no package", "push refused", "no such repo", "not a run"])
def test_push_and_pull_say_what_is_wrong_in_one_line(run, tmp_path, monkeypatch, capsys, case):
    remote = tmp_path / "remote"
    if case == "no package":
        monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    else:
        monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(remote, [], fail="push" if "push" in case else None))
    argv = {"no package": ["push", str(run), "me/m"], "push refused": ["push", str(run), "me/m"],
            "no such repo": ["pull", "me/none", str(tmp_path / "out")], "not a run": ["push", str(tmp_path), "me/m"]}
    assert main(argv[case]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    expected = {"no package": "pip install 'infopro[hub]'", "push refused": "push to me/m failed (RuntimeError: 401",
                "no such repo": "pull of me/none failed (RuntimeError: 404", "not a run": "is not a run directory"}
    assert expected[case] in err


def test_an_unfinished_run_is_pushed_with_a_card_that_says_so(run, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(tmp_path / "remote", []))
    assert main(["push", str(copy), "me/m"]) == 0
    assert "not finished (1 of 1 epochs)" in capsys.readouterr().out
    repo = tmp_path / "remote" / "me" / "m"
    assert "Not finished: 1 of 1 epochs done" in (repo / "README.md").read_text()
    assert not (repo / "summary.json").exists()

"""What a newcomer meets first: "did you mean" for flags, choices, names and config keys; choices shown once;
the recipe lines at the start of a run and the resume line (also with --quiet); the note when exporting an
unfinished run; folders with one class or no test split; a batch larger than a small set."""

import fcntl
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import FAST
from infopro import InfoProError
from infopro.analysis.restore import open_run_data
from infopro.cli import get_args_parser, main
from infopro.data import DataOptions, open_data
from infopro.train import loop

SMALL = [a for a in FAST]
SMALL[SMALL.index("--train-subset") + 1], SMALL[SMALL.index("--test-subset") + 1] = "100", "50"


def one_line_error(capsys, argv):
    """The exit status and the one error line of `infopro argv` (argparse's errors exit, ours return 2)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("infopro"), err
    return code, err


@pytest.mark.parametrize("argv, hint", [
    (["train", "--epocs", "3"], "unknown flag --epocs (did you mean --epochs?)"),
    (["train", "--learning-rate", "0.1", "--bach-size=8"],
     "unknown flags --learning-rate (did you mean --lr?), --bach-size (did you mean --batch-size?)"),
    (["describe", "--methd", "greedy"], "unknown flag --methd (did you mean --method?)"),
    (["export", "run", "--formt", "pt"], "unknown flag --formt (did you mean --format?)"),
    (["compare", "a", "--rowz", "K"], "unknown flag --rowz (did you mean --rows?)"),
    (["trian"], "invalid choice 'trian'; did you mean 'train'?"),
    (["train", "--data-path", "memroy"], "invalid choice 'memroy'; did you mean 'memory'?"),
    (["train", "--parallel", "pieces,dat"], "invalid choice 'pieces,dat'; did you mean 'pieces,data'?"),
])
def test_a_misspelt_flag_or_choice_names_the_closest_one(capsys, argv, hint):
    code, err = one_line_error(capsys, argv)
    assert code == 2 and hint in err and err.rstrip().endswith("--help")


@pytest.mark.parametrize("argv, hint", [
    (["describe", "--method", "infopro-contrat"], "unknown method 'infopro-contrat'; did you mean 'infopro-contrast'?"),
    (["describe", "--arch", "resnet-32"], "unknown architecture 'resnet-32'; did you mean 'resnet32'?"),
    (["train", "--dataset", "cifar1"], "unknown dataset 'cifar1'; did you mean 'cifar10'?"),
])
def test_a_misspelt_name_names_the_closest_one_before_anything_runs(tmp_path, capsys, argv, hint):
    code, err = one_line_error(capsys, [*argv, *(["--out", str(tmp_path / "run")] if argv[0] == "train" else [])])
    assert code == 2 and hint in err and "choose one of" in err
    assert not (tmp_path / "run").exists()


def test_a_config_typo_names_the_closest_key_not_all_of_them(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epoch: 1\nbatchsize: 8\nlearning_rate: 0.1\n")
    code, err = one_line_error(capsys, ["train", "-c", str(config)])
    assert code == 2 and err.startswith("infopro train: error: config file")
    assert ("unknown keys batchsize (did you mean batch_size?), epoch (did you mean epochs?), learning_rate (did you "
            "mean lr?)") in err
    assert "infopro train --help" in err and "warmup_start" not in err  # how to list the keys, not the list


def test_every_choice_is_shown_once_in_every_help():
    """argparse shows choices as {a,b,c}: a choice with a comma in it would read as two (--parallel's
    "pieces,data"), so such a flag needs a metavar; and no flag repeats a choice."""
    parser = get_args_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.choices is None:
                continue
            choices = [str(c) for c in action.choices]
            assert len(set(choices)) == len(choices), (name, action.dest)
            assert action.metavar is not None or not any("," in c for c in choices), (name, action.dest)
        assert "pieces,data,pieces,data" not in text
    assert "--parallel MODE" in commands["train"].format_help()


def test_run_lines_resume_line_and_export_notes(tmp_path, capsys, monkeypatch):
    """The recipe and data lines open every run, --quiet too; a resumed run says where it resumes; exporting a
    stopped or a running run says so."""
    run = tmp_path / "run"
    real_save = loop.save_checkpoint

    def save_then_stop(state, path):
        real_save(state, path)
        raise KeyboardInterrupt  # stopped right after epoch 1's checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    assert main(["train", *SMALL, "--out", str(run)]) == 130
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("train resnet20 · infopro-contrast K=2 cuts [4] (even) · 2 epochs · batch 50 · sgd "
                               "lr 0.0390625 cosine (epochs counted from 0) · cpu")
    assert lines[1].startswith("  on cifar10: 100 train / 50 test images, 32x32x3, memory path, ")
    assert lines[1].endswith(f"run dir {run}")

    assert main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert note == (f"note: {run} stopped after epoch 1 of 2 (unfinished): this is the model of epoch 1; finish the "
                    f"run with: infopro train --resume {run}")
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)  # as the process training it holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        assert main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
        assert f"note: {run} is still training (process 4242, 1 of 2 epochs done)" in capsys.readouterr().out
    finally:
        os.close(fd)
    (run / ".lock").unlink()

    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resuming from epoch 2 of 2 (checkpoint.pt holds epoch 1)"
    assert lines[1].startswith("train resnet20 · infopro-contrast K=2") and len(lines) == 3  # --quiet: no epoch lines
    assert main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
    assert "note" not in capsys.readouterr().out  # finished


def test_a_batch_larger_than_the_set_becomes_the_set(tmp_path, capsys):
    run = tmp_path / "run"
    flags = [a for a in SMALL]
    flags[flags.index("--batch-size") + 1], flags[flags.index("--epochs") + 1] = "500", "1"
    assert main(["train", *flags, "--out", str(run)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "note: --batch-size 500 is larger than the training set (100 images): training with batch 100 and lr "
        "0.078125 (sgd's default for that batch), one step per epoch; pass --batch-size N to choose another")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["batch_size"], config["lr"]) == (100, 0.078125)  # what ran, so that --resume continues it


# ---- folders ----------------------------------------------------------------------------------


def class_folders(root, counts, size=8):
    """A plain ImageFolder root: root/<class>/*.png, each image a class-and-index grey level."""
    for k, n in enumerate(counts):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(n):
            Image.new("L", (size, size), 40 * k + i).save(root / f"c{k}" / f"{i:02d}.png")


def test_class_folders_need_val_split_which_holds_out_the_test_set(tmp_path):
    class_folders(tmp_path / "d", [10, 20])
    with pytest.raises(InfoProError, match=r"has class folders but no test/ or val/ split; pass --val-split 0.2 to "
                                           r"hold out a stratified 20% of its images as the test set"):
        open_data("folder", tmp_path / "d", DataOptions(progress=False))
    data = open_data("folder", tmp_path / "d", DataOptions(val_split=0.2, path="memory", progress=False))
    assert data.val is None and data.test_is_held_out and data.classes == ["c0", "c1"]
    assert np.bincount(data.test.labels).tolist() == [2, 4] and len(data.train) == 24  # stratified
    seen = lambda items: {(int(y), int(x[0, 0, 0])) for x, y in zip(items.images, items.labels)}
    assert not seen(data.train) & seen(data.test) and len(seen(data.train) | seen(data.test)) == 30
    assert data.splits["test"].startswith("the --val-split 0.2 hold-out of the class folders (6 images)")
    # a train/ folder alone is the same case
    (tmp_path / "t").mkdir()
    (tmp_path / "d").rename(tmp_path / "t" / "train")
    assert len(open_data("folder", tmp_path / "t", DataOptions(val_split=0.2, progress=False)).test) == 6
    # a run's own data again (as `infopro probe` opens it): the same hold-out
    config = {"dataset": "folder", "data_dir": str(tmp_path / "t"), "val_split": 0.2, "seed": 0, "mean": [0.5],
              "std": [0.25]}
    assert np.array_equal(open_run_data(config).test.labels, data.test.labels)


def test_one_class_is_refused(tmp_path):
    class_folders(tmp_path / "plain", [3])
    for split in ("train", "test"):
        class_folders(tmp_path / "split" / split, [3])
    for root in (tmp_path / "plain", tmp_path / "split"):
        with pytest.raises(InfoProError, match=r"holds one class \(c0\); a classifier needs two or more: add a "
                                               r"folder of images per class beside c0/"):
            open_data("folder", root, DataOptions(val_split=0.2 if root.name == "plain" else None, progress=False))


def test_class_folders_train_from_the_cli(tmp_path, capsys):
    class_folders(tmp_path / "d", [6, 6])
    flags = ["--arch", "resnet20", "--K", "2", "--cuts", "even", "--epochs", "1", "--device", "cpu", "--quiet",
             "--dataset", "folder", "--data-dir", str(tmp_path / "d")]
    code, err = one_line_error(capsys, ["train", *flags, "--out", str(tmp_path / "refused")])
    assert code == 2 and "pass --val-split 0.2" in err and not (tmp_path / "refused").exists()
    assert main(["train", *flags, "--val-split", "0.34", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "batch 8 " in out and ("on folder: 8 train / 4 test images (test: the stratified --val-split 0.34 "
                                  "hold-out, as the set has no test split)") in out

"""`infopro reproduce`: a published table's grid as `infopro train` runs that are found again by name (finished
ones skipped, stopped ones resumed), `--dry-run` commands the train parser reads, and `infopro compare` with
the paper's numbers at the end."""

import json
import shlex
from pathlib import Path

import pytest
import yaml

from infopro.cli import get_args_parser, main
from infopro.reproduce import default_configs_dir, load_tables
from infopro.train.run_dir import TEST_SIGNAL_ENV, RunDir

# ResNet-20 cut in 2 on 60 bundled images, 2 epochs of 2 steps: the configs' recipe with a tiny data set.
TINY = ["--arch", "resnet20", "--cuts", "even", "--train-subset", "60", "--test-subset", "20", "--batch-size", "30",
        "--epochs", "2", "--device", "cpu", "--quiet", "--tensorboard", "off"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("infopro reproduce: error:"), err
    return err


def test_the_grids_name_configs_of_their_cells():
    """Every cell's config exists and trains that cell's method at its K; the published numbers are those of
    docs/METHOD.md (ResNet-110 InfoPro Softmax is not listed there: left empty)."""
    tables = load_tables()
    assert {"table2-resnet32", "table2-resnet110"} <= set(tables)
    for table in tables.values():
        for cell in table.cells:
            config = yaml.safe_load((default_configs_dir() / cell.config).read_text())
            assert (config["method"], config["K"]) == (cell.method, cell.K)
            assert cell.source
    r32 = {(c.method, c.K): c.paper for c in tables["table2-resnet32"].cells}
    assert (r32["e2e", 1], r32["greedy", 16], r32["dgl", 4], r32["infopro-softmax", 8], r32["infopro-contrast", 2]) \
        == (7.37, 24.59, 11.48, 11.40, 7.76)
    r110 = {(c.method, c.K): c.paper for c in tables["table2-resnet110"].cells}
    assert (r110["e2e", 1], r110["infopro-contrast", 16]) == (6.50, 9.90)
    assert all(r110["infopro-softmax", K] is None for K in (2, 4, 8, 16))


def test_dry_run_prints_commands_the_train_parser_reads(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["reproduce", "table2-resnet110", "--seeds", "0", "3", "--out", str(out), "--dry-run",
                 "--", "--epochs", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = load_tables()["table2-resnet110"]
    assert len(lines) == 2 * len(table.cells)
    seen = set()
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["infopro", "train"]
        args = get_args_parser(argv[1:]).parse_args(argv[1:])  # the config file's values as defaults
        assert (args.epochs, args.device, args.batch_size, args.arch) == (2, "cpu", 1024, "resnet110")
        assert Path(args.out) == out / f"{Path(args.config).stem}-s{args.seed}"
        seen.add((args.method, args.K, args.seed))
    assert seen == {(c.method, c.K, s) for c in table.cells for s in (0, 3)}
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("argv, says", [
    (["nope"], "unknown table 'nope'; choose among table2-resnet110, table2-resnet32"),
    (["table2-resnet32", "--methods", "dgl", "bp"], "has no method bp; choose among e2e, greedy, dgl, infopro-softmax"),
    (["table2-resnet32", "--K", "3"], "has no K=3; choose among 1, 2, 4, 8, 16"),
    (["table2-resnet32", "--methods", "e2e", "--K", "4"], "selects no cell of table2-resnet32"),
    (["table2-resnet32", "--", "--seed", "1"], "--seed after `--` is set by reproduce for each cell; use --seeds"),
    (["table2-resnet32", "--", "--out=x"], "--out after `--` is set by reproduce"),
    (["table2-resnet32", "--", "--no-such-flag"], "`infopro train` has no --no-such-flag"),
    (["table2-resnet32", "--", "--epochs", "0"], "--epochs must be >= 1"),
    (["table2-resnet32", "--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_input_is_one_line_naming_the_choices(tmp_path, capsys, argv, says):
    assert main(["reproduce", "--dry-run", "--out", str(tmp_path / "o"), *argv]) == 2
    assert says in one_line_error(capsys)


def test_a_tiny_grid_runs_is_resumed_and_skipped(tmp_path, monkeypatch, capsys):
    """2 methods x K=2 x 1 seed on the CPU: greedy is killed after its first epoch; the next invocation resumes
    it and starts DGL beside it (--jobs 2) and ends with the table holding the paper's numbers; a third runs
    nothing; one with other settings refuses the runs instead of mixing them in."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two runs side by side on a small machine
    out = tmp_path / "grid"
    grid = ["reproduce", "table2-resnet32", "--K", "2", "--out", str(out)]
    greedy, dgl = RunDir(out / "resnet32-greedy-K2-s0"), RunDir(out / "resnet32-dgl-K2-s0")

    monkeypatch.setenv(TEST_SIGNAL_ENV, "KILL@checkpoint 1")
    assert main([*grid, "--methods", "greedy", "--", *TINY]) == 1
    text = capsys.readouterr().out
    assert "[1/1] resnet32-greedy-K2-s0  FAILED (killed by SIGKILL" in text
    assert f"continue with: infopro reproduce {shlex.join(grid[1:])} --methods greedy -- " in text
    assert greedy.progress() == "unfinished" and greedy.console_log.is_file()
    monkeypatch.delenv(TEST_SIGNAL_ENV)

    both = [*grid, "--methods", "greedy", "dgl", "--jobs", "2", "--", *TINY]
    assert main([*both[:-len(TINY) - 1], "--dry-run", "--", *TINY]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert [c.split()[2] == "--resume" for c in commands] == [True, False]  # greedy continued, DGL started

    assert main(both) == 0
    text = capsys.readouterr().out
    assert "1 to resume, 1 to start" in text
    assert "resnet32-greedy-K2-s0  resumed, finished  test error" in text
    assert "resnet32-dgl-K2-s0  finished  test error" in text
    summary = json.loads(greedy.summary.read_text())
    assert summary["provenance"]["resumed_from_epoch"] == 1 and len(greedy.metric_records()) == 2
    table = (out / "compare" / "compare.md").read_text()
    assert "; paper 10.30 |" in table and "; paper 8.69 |" in table and "Table 2" in table
    assert table.split("\n\n")[1] in text  # the table printed at the end

    finished_at = {run.path: run.summary.stat().st_mtime_ns for run in (greedy, dgl)}
    assert main(both) == 0
    text = capsys.readouterr().out
    assert "2 finished (skipped), 0 to resume, 0 to start" in text and "[1/" not in text
    assert {run.path: run.summary.stat().st_mtime_ns for run in (greedy, dgl)} == finished_at

    assert main([*both, "--epochs", "3"]) == 1
    text = capsys.readouterr().out
    assert "holds a run with other settings: epochs=2 (the cell: 3)" in text and "then run again:" in text


def test_a_grid_file_of_ones_own(tmp_path, capsys):
    """--grids and --configs: a table of one's own is a few lines of YAML; a malformed one is one line."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "r20-greedy.yaml").write_text("arch: resnet20\nmethod: greedy\nK: 2\ncuts: even\n")
    grids = tmp_path / "grids.yaml"
    good = ("tables:\n  mine:\n    source: my notes\n    cells:\n"
            "      - {method: greedy, K: 2, config: r20-greedy.yaml, paper: 12.5}\n")
    grids.write_text(good)
    own = ["reproduce", "mine", "--grids", str(grids), "--configs", str(tmp_path / "configs"), "--out", str(tmp_path / "o")]
    assert main([*own, "--dry-run"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert f"-c {tmp_path / 'configs' / 'r20-greedy.yaml'} --seed 0 --out {tmp_path / 'o' / 'r20-greedy-s0'}" in line
    assert main([*own, "--list"]) == 0
    assert "greedy             K=2   paper  12.50  r20-greedy.yaml" in capsys.readouterr().out
    grids.write_text("tables:\n  mine:\n    cells:\n      - {method: greedy, config: r20-greedy.yaml}\n")
    assert main([*own, "--dry-run"]) == 2
    assert "table mine, cell 1: needs method (text), K (integer)" in one_line_error(capsys)
    grids.write_text(good)
    assert main([*own, "--configs", str(tmp_path), "--dry-run"]) == 2
    assert f"config {tmp_path / 'r20-greedy.yaml'} does not exist; run from a checkout" in one_line_error(capsys)

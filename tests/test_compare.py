"""`infopro compare`: the table's numbers are those of the runs' summaries, averaged over seeds only."""

import csv
import json
import re
import shutil
import statistics

import pytest

from conftest import FAST
from infopro.cli import main

# 1 epoch instead of FAST's 2; the method comes from each run.
ONE_EPOCH = [a for a in FAST if a not in ("--method", "infopro-contrast")]
ONE_EPOCH[ONE_EPOCH.index("--epochs") + 1] = "1"
METHODS = ("greedy", "infopro-contrast")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """2 methods x 2 seeds, finished, and one copy whose summary is gone (an unfinished run)."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for method in METHODS:
        for seed in (0, 1):
            out = root / f"{method}-s{seed}"
            assert main(["train", *ONE_EPOCH, "--method", method, "--seed", str(seed), "--out", str(out)]) == 0
            paths[method, seed] = out
    unfinished = root / "greedy-s2"
    shutil.copytree(paths["greedy", 0], unfinished)
    (unfinished / "summary.json").unlink()
    return paths, unfinished


def test_table_numbers_are_the_summaries_mean_and_std(runs, tmp_path):
    paths, unfinished = runs
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, paths.values()), str(unfinished), "--out", str(out)]) == 0
    cells = {(r["method"], r["K"]): r for r in csv.DictReader(open(out / "compare.csv"))}
    assert set(cells) == {(m, "2") for m in METHODS}
    for method in METHODS:
        summaries = [json.loads((paths[method, s] / "summary.json").read_text()) for s in (0, 1)]
        errors = [s["final_test_error"] for s in summaries]
        cell = cells[method, "2"]
        assert int(cell["runs"]) == 2
        assert float(cell["test_error_mean"]) == pytest.approx(sum(errors) / 2)
        assert float(cell["test_error_std"]) == pytest.approx(abs(errors[0] - errors[1]) / 2 ** 0.5)
        assert int(cell["peak_memory_bytes"]) == max(s["peak_memory_bytes"] for s in summaries)
        assert int(cell["marked_runs"]) == (1 if method == "greedy" else 0)
    table = (out / "compare.md").read_text()
    assert table.startswith("Final test error")
    greedy = [json.loads((paths["greedy", s] / "summary.json").read_text())["final_test_error"] for s in (0, 1)]
    assert f"{100 * statistics.fmean(greedy):.2f} ± {100 * statistics.stdev(greedy):.2f} (n=2)" in table
    assert f"{unfinished}: unfinished" in table
    by_run = {r["run"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    assert by_run[str(unfinished)]["status"] == "unfinished" and by_run[str(unfinished)]["test_error"] == ""
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_other_keys_and_runs_that_differ_in_more_than_the_seed(runs, tmp_path, capsys):
    paths, _ = runs
    out = tmp_path / "cmp"
    # Rows by seed, columns by method: each cell holds one run, its own error.
    assert main(["compare", *map(str, paths.values()), "--rows", "seed", "--cols", "method", "--out", str(out)]) == 0
    cells = {(r["seed"], r["method"]): r for r in csv.DictReader(open(out / "compare.csv"))}
    for (method, seed), path in paths.items():
        error = json.loads((path / "summary.json").read_text())["final_test_error"]
        assert float(cells[str(seed), method]["test_error_mean"]) == pytest.approx(error)
    # Rows by K and columns by seed would put both methods in one cell: one table per method, never averaged.
    capsys.readouterr()
    assert main(["compare", *map(str, paths.values()), "--rows", "K", "--cols", "seed", "--out", str(out)]) == 0
    assert "differ in method, not only the seed, so there is one table per value of method" in capsys.readouterr().out
    table = (out / "compare.md").read_text()
    assert "### method=greedy (2 runs; compare-1.png)" in table and "### method=infopro-contrast (2 runs" in table
    cells = {(r["method"], r["seed"]): r for r in csv.DictReader(open(out / "compare.csv"))}
    for (method, seed), path in paths.items():
        error = json.loads((path / "summary.json").read_text())["final_test_error"]
        assert int(cells[method, str(seed)]["runs"]) == 1
        assert float(cells[method, str(seed)]["test_error_mean"]) == pytest.approx(error)
    assert (out / "compare-2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["not a run", "unknown key", "out is a file"])
def test_bad_input_is_one_line(runs, tmp_path, capsys, case):
    paths, _ = runs
    run = str(paths["greedy", 0])
    (tmp_path / "file").write_text("x")
    argv = {"not a run": [str(tmp_path), "--out", str(tmp_path / "o")],
            "unknown key": [run, "--cols", "nope", "--out", str(tmp_path / "o")],
            "out is a file": [run, "--out", str(tmp_path / "file")]}[case]
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("infopro compare: error:")
    assert not (tmp_path / "o").exists()


def test_a_diverged_run_is_marked_not_averaged(runs, tmp_path):
    paths, _ = runs
    diverged = tmp_path / "greedy-nan"
    shutil.copytree(paths["greedy", 0], diverged)
    record = json.loads((diverged / "metrics.jsonl").read_text().splitlines()[0])
    record["train_losses"][0] = float("nan")
    (diverged / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    out = tmp_path / "cmp"
    assert main(["compare", str(paths["greedy", 1]), str(diverged), "--out", str(out)]) == 0
    cell = next(csv.DictReader(open(out / "compare.csv")))
    assert (cell["runs"], cell["marked_runs"]) == ("1", "1")
    error = json.loads((paths["greedy", 1] / "summary.json").read_text())["final_test_error"]
    assert float(cell["test_error_mean"]) == pytest.approx(error)
    assert f"{diverged}: diverged" in (out / "compare.md").read_text()


def test_runs_with_a_validation_split_are_compared_at_their_best_validation_epoch(tmp_path):
    """A run that selected its best epoch on validation is compared by the test error at that epoch, and the
    table says so; the final error is not used (made different below so that the test can tell them apart)."""
    run = tmp_path / "val-run"
    flags = [a for a in FAST if a != "--quiet"]
    assert main(["train", *flags, "--val-split", "0.25", "--quiet", "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_selected_on"] == "val"
    summary["final_test_error"] = 0.999  # not the number a best-validation comparison may report
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "cmp"
    assert main(["compare", str(run), "--out", str(out)]) == 0
    cell = next(csv.DictReader(open(out / "compare.csv")))
    assert float(cell["test_error_mean"]) == pytest.approx(summary["test_error_at_best_epoch"])
    by_run = next(csv.DictReader(open(out / "runs.csv")))
    assert by_run["error_at"] == f"best val epoch {summary['best_epoch']}"
    assert (out / "compare.md").read_text().startswith("Test error at the best validation epoch")


def test_paper_numbers_beside_each_cell(runs, tmp_path, capsys):
    """--paper TABLE: the published error beside each cell (markdown) and as a column (compare.csv); the
    table without it is unchanged."""
    paths, _ = runs
    plain, with_paper = tmp_path / "plain", tmp_path / "paper"
    assert main(["compare", *map(str, paths.values()), "--out", str(plain)]) == 0
    assert main(["compare", *map(str, paths.values()), "--out", str(with_paper), "--paper", "table2-resnet32"]) == 0
    table = (with_paper / "compare.md").read_text()
    assert "; paper 10.30 |" in table and "; paper 7.76 |" in table  # greedy and InfoPro Contrast at K=2
    assert "Paper: InfoPro (Wang et al., ICLR 2021), Table 2" in table
    cells = {r["method"]: r for r in csv.DictReader(open(with_paper / "compare.csv"))}
    assert float(cells["greedy"]["paper_test_error"]) == pytest.approx(0.1030)
    assert float(cells["infopro-contrast"]["paper_test_error"]) == pytest.approx(0.0776)
    assert "paper" not in (plain / "compare.md").read_text() + (plain / "compare.csv").read_text()
    capsys.readouterr()
    assert main(["compare", *map(str, paths.values()), "--out", str(with_paper), "--paper", "table9"]) == 2
    assert "unknown table 'table9'; choose among" in capsys.readouterr().err
    assert main(["compare", *map(str, paths.values()), "--out", str(with_paper), "--paper", "table2-resnet32",
                 "--rows", "seed"]) == 2
    assert "--paper numbers are by method and K" in capsys.readouterr().err


def _copy_with(run, to, **settings):
    """A copy of a finished run whose config.yaml says other settings (as another experiment's run would)."""
    shutil.copytree(run, to)
    config = (to / "config.yaml").read_text()
    for key, value in settings.items():
        config = re.sub(rf"^{key}: .*$", f"{key}: {value}", config, count=1, flags=re.M)
    (to / "config.yaml").write_text(config)
    return to


def test_a_folder_of_several_experiments_is_one_table_per_experiment(runs, tmp_path, capsys):
    """`compare runs/*` on a folder that also holds another experiment's run (the README's first command beside
    the first hour's runs): one table per value of what tells them apart, instead of a refusal."""
    paths, unfinished = runs
    longer = _copy_with(paths["greedy", 0], tmp_path / "greedy-longer", epochs=5, arch="resnet32")
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, paths.values()), str(unfinished), str(longer), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "runs that would share a cell differ in arch, epochs" in printed and "combination of arch, epochs" in printed
    table = (out / "compare.md").read_text()
    assert "### arch=resnet20, epochs=1 (5 runs; compare-1.png)" in table
    assert "### arch=resnet32, epochs=5 (1 run; compare-2.png)" in table
    cells = list(csv.DictReader(open(out / "compare.csv")))
    assert [(c["arch"], c["epochs"], c["method"], c["runs"]) for c in cells] == [
        ("resnet20", "1", "greedy", "2"), ("resnet20", "1", "infopro-contrast", "2"), ("resnet32", "5", "greedy", "1")]
    by_run = {r["run"]: r for r in csv.DictReader(open(out / "runs.csv"))}
    assert (by_run[str(longer)]["arch"], by_run[str(longer)]["epochs"]) == ("resnet32", "5")
    assert all((out / f"compare-{i}.png").is_file() for i in (1, 2)) and not (out / "compare.png").exists()


def test_a_table_says_what_else_differs_between_its_runs(runs, tmp_path):
    """Runs that fall in different cells share a table; a line names the settings in which they also differ."""
    paths, _ = runs
    longer = _copy_with(paths["infopro-contrast", 0], tmp_path / "infopro-longer", epochs=5)
    out = tmp_path / "cmp"
    assert main(["compare", str(paths["greedy", 0]), str(longer), "--out", str(out)]) == 0
    table = (out / "compare.md").read_text()
    assert "###" not in table and "The runs of this table also differ in: epochs (runs.csv" in table
    assert main(["compare", str(paths["greedy", 0]), str(paths["greedy", 1]), "--out", str(out)]) == 0
    assert "also differ" not in (out / "compare.md").read_text()

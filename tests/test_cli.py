import pytest

from infopro.cli import main


def test_describe_prints_one_row_per_piece(capsys):
    assert main(["describe", "--arch", "resnet32", "--method", "infopro-contrast", "--K", "4",
                 "--lambdas", "6", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "cuts [3, 7, 11] (auto: paper)" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert [r[1] for r in rows] == ["0-3", "4-7", "8-11", "12-15"]
    assert rows[0][2] == "16x32x32" and rows[-1][2] == "10"
    assert "backbone 0.467 M parameters" in out


def test_errors_are_one_line_and_exit_2(capsys):
    assert main(["describe", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infopro describe: error: unknown method 'nope'") and err.count("\n") == 1


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "infopro" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--dataset", "--data-dir", "--arch", "--method", "--K", "--cuts", "--lambdas", "--epochs",
                 "--batch-size", "--lr", "--schedule", "--momentum", "--nesterov", "--weight-decay", "--seed",
                 "--device", "--train-subset", "--test-subset", "--out", "--resume", "--test-only", "--quiet",
                 "--amp", "--channels-last", "--aux-widen", "--aux-feature-dim", "--aux-head"):
        assert flag in out


def test_describe_other_input_shapes(capsys):
    assert main(["describe", "--arch", "resnet20", "--K", "2", "--cuts", "even", "--input-shape", "1", "28", "28"]) == 0
    assert "32x14x14" in capsys.readouterr().out  # after block 4, the first of stage 2


def test_describe_balanced_cuts_shows_piece_memory(capsys):
    def largest_piece(cuts):
        assert main(["describe", "--arch", "resnet20", "--K", "3", "--cuts", cuts, "--batch-size", "8"]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
        return max(float(r[-2]) for r in rows)  # "saved MiB (aux)": total, then (aux)

    assert largest_piece("balanced") <= largest_piece("even")

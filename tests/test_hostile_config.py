"""Hostile settings (issue 23): config files built to explode or to confuse, and numbers that are not numbers.

Every one is refused with one line (exit 2, no traceback) before anything is read or written; a value echoed in
a message is bounded (`infopro.errors.shown`). The property tests drive `infopro.cli.main` with generated flag
words and config values, each command stopped (`Passed`) where it would first read data or a run: every input
either gets there or is refused with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infopro.cli import get_args_parser, main
from infopro.errors import elide, shown
from infopro.flag_types import BadNumber, Number, positive_int, probability
from infopro.train.args import RUNTIME_KEYS
from infopro.yaml_file import MAX_BYTES, MAX_DEPTH

MAX_LINE = 300  # an error line, path of a temporary file included


class Passed(Exception):
    """The command got past every check, to where it would read data, a run or write its output."""


def _stop(*args, **kwargs):
    raise Passed


@pytest.fixture(scope="module")
def checks_only(tmp_path_factory):
    """Each command stops with `Passed` at its first read of data or a run; the working directory is a temporary
    one, so a generated --out or --data-dir never lands in the checkout."""
    import infopro.analysis.command as probe_command
    import infopro.bench.cli as bench_cli
    import infopro.describe as describe
    import infopro.predict as predict
    import infopro.reproduce as reproduce
    from infopro.tasks import TASKS

    with pytest.MonkeyPatch.context() as patch:
        for name in TASKS:
            patch.setattr(TASKS.get(name), "open_data", _stop)
        patch.setattr(describe, "LocalLearner", _stop)
        patch.setattr(bench_cli, "pick_device", _stop)
        patch.setattr(probe_command, "read_run_config", _stop)
        patch.setattr(predict, "check_output_dir", _stop)
        patch.setattr(reproduce, "check_output_dir", _stop)
        cwd = tmp_path_factory.mktemp("cwd")
        patch.chdir(cwd)
        patch.setenv("INFOPRO_CACHE", str(cwd / "cache"))
        yield cwd


def outcome(argv: list[str]) -> str | None:
    """None when `infopro argv` got past its checks; else its one error line (checked to be one short line)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except Passed:
        return None
    text = err.getvalue()
    assert code == 2, (code, text[:500])
    assert text.count("\n") == 1 and text.startswith(f"infopro {argv[0]}: error: "), text[:2000]
    assert len(text) < MAX_LINE + 100, text  # the limit on the line, plus the prefix and "; see ... --help"
    return text.strip()


def refusal(tmp_path: Path, name: str, content: bytes | str, *flags: str) -> str:
    """The one line `infopro train -c FILE` refuses a config file with; nothing is written."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return refused_path(tmp_path, path, *flags)


def refused_path(tmp_path: Path, path: Path, *flags: str) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "-c", str(path), "--out", str(tmp_path / "run"), *flags])
    line = err.getvalue()
    assert code == 2 and line.count("\n") == 1 and line.startswith("infopro train: error: "), line[:2000]
    assert len(line) < MAX_LINE, line
    assert not (tmp_path / "run").exists()
    return line


# -- shown: no value floods a message -----------------------------------------------------------------------


def test_shown_bounds_any_value_and_keeps_one_line():
    assert shown(1.7) == "1.7" and shown(float("nan")) == "nan" and shown(True) == "True" and shown("lr") == "'lr'"
    long = shown("x" * 1_000_000)
    assert len(long) <= 80 and long.startswith("'xxx") and "..." in long
    assert "\n" not in shown("a\nb" * 100) and len(shown("a\nb" * 100, 40)) <= 40
    assert "digits" in shown(10**5000)  # repr refuses it; the message does not
    laughs = ["lol"] * 9
    for _ in range(9):  # 9**10 strings when walked, shared as YAML aliases share them
        laughs = [laughs] * 9
    assert len(shown(laughs)) <= 80  # a walk of every string would not end: shown stops at its limit
    assert elide("ab\x00\u202ecd") == "ab\\x00\\u202ecd"


# -- config files built to explode ----------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9)}]")
    return "\n".join(lines) + f"\nlr: *{chr(96 + levels)}\n"


def test_an_alias_bomb_is_one_short_line(tmp_path):
    line = refusal(tmp_path, "bomb.yaml", billion_laughs())
    assert "expands to more than 10,000 values through its aliases" in line and len(line) < MAX_LINE
    doubling = "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 15))  # 2**14 copies, 28 aliases
    line = refusal(tmp_path, "doubling.yaml", "l0: &l0 [1, 2]\n" + doubling + "lr: *l14\n")
    assert "alias bomb" in line and len(line) < MAX_LINE
    assert "refers to a value that holds it" in refusal(tmp_path, "self.yaml", "lr: &a [1, *a]\n")
    assert "more than 100 aliases" in refusal(tmp_path, "many.yaml", "a: &a 1\nb: [" + ", ".join(["*a"] * 150) + "]\n")


@pytest.mark.parametrize("text", [
    "lr: " + "[" * 10_000 + "]" * 10_000 + "\n",  # would overflow Python's stack while composing
    "lr: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n",
    "lr:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
    "a: &a " + "[" * 20 + "1" + "]" * 20 + "\nb: &b " + "[*a, " * 20 + "1" + "]" * 20 + "\n",  # deep only through aliases
])
def test_a_depth_bomb_is_one_line(tmp_path, text):
    line = refusal(tmp_path, "deep.yaml", text)
    assert f"is nested more than {MAX_DEPTH} levels deep" in line


def test_a_file_too_big_for_settings_is_refused_before_it_is_parsed(tmp_path):
    line = refusal(tmp_path, "big.yaml", "# " + "x" * MAX_BYTES + "\nlr: 0.1\n")
    assert "is larger than 1 MB" in line
    assert "holds more than 10,000 values" in refusal(tmp_path, "long.yaml", "mean: [" + "0.5, " * 20_000 + "0.5]\n")


@pytest.mark.parametrize("content, says", [
    (b"lr: 0.1\n\x00\x01\x02\x03", "is a binary file (it holds NUL bytes)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
    ("lr: 0.1  # café\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 14)"),
    ("lr: 0.1\n".encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"# only a comment\n", "is empty"),
    (b"- lr\n- 0.1\n", "must be a mapping of setting names to values (`key: value` lines), got a list"),
    (b"0.1\n", "must be a mapping of setting names to values (`key: value` lines), got a number"),
    (b"just words\n", "got a string"),
    (b"lr: 0.1\nepochs: 3\nlr: 0.2\n", "gives key 'lr' twice (lines 1 and 3); keep one"),
    (b"batch-size: 4\nbatch_size: 8\n", "keys 'batch-size' and 'batch_size' name the same setting; keep one"),
    (b"lr: 0.1\n---\nlr: 0.2\n", "is not valid YAML: but found another document"),
    (b"epochs: [1\n", "is not valid YAML: expected ',' or ']'"),
    (b"lr: *nowhere\n", "is not valid YAML: found undefined alias"),
    (b"lr: !!python/object:os.system {}\n", "is not valid YAML: could not determine a constructor"),
    (b"epochs: " + b"9" * 5000 + b"\n", "holds a value YAML cannot read: a number of thousands of digits"),
    (b"epochs: 2024-13-45\n", "holds a value YAML cannot read: month must be in 1..12"),
    (b"lr: .nan\n", "bad value nan for lr: expected a finite number > 0"),
    (b"mean: []\nstd: []\n", "bad value [] for mean: expected a list of one or more values, got 0"),
    (b"crop_size: [1, 2, 3]\n", "bad value [1, 2, 3] for crop_size: expected a list of 2 values, got 3"),
    (b"epochs: " + b"x" * 100_000 + b"\n", "bad value 'xxxxx"),
    (b"".join(b"k%d: 1\n" % i for i in range(500)), "unknown keys k0, k1, k10, k100, k101 and 495 more"),
    (b"? " + b"x" * 50_000 + b"\n: 1\n", "unknown key 'xxxx"),
])
def test_each_kind_of_bad_file_is_one_line(tmp_path, content, says):
    assert says in refusal(tmp_path, "bad.yaml", content)


def test_a_directory_a_fifo_and_a_missing_file_are_one_line(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    assert "is a directory; give a YAML file" in refused_path(tmp_path, tmp_path / "dir.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would wait for a writer forever
    assert "is a FIFO, not a file" in refused_path(tmp_path, tmp_path / "fifo.yaml")
    assert "does not exist" in refused_path(tmp_path, tmp_path / "nope.yaml")


def test_a_merge_key_may_be_overridden(tmp_path):
    """`<<: *base` then a key of its own is YAML's way to override: not a duplicate."""
    from infopro.yaml_file import read_yaml_mapping

    path = tmp_path / "c.yaml"
    path.write_text("base: &base {lr: 0.1, epochs: 3}\nrun:\n  <<: *base\n  lr: 0.2\n")
    assert read_yaml_mapping(path)["run"] == {"lr": 0.2, "epochs": 3}


def test_a_hostile_config_yaml_of_a_run_and_a_grid_file_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(billion_laughs())
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'config.yaml'} expands to more than" in err and len(err) < MAX_LINE
    (tmp_path / "grids.yaml").write_bytes(b"\xff\xfe\x00")
    assert main(["reproduce", "--list", "--grids", str(tmp_path / "grids.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is UTF-16 text" in err


# -- numbers that are not numbers -----------------------------------------------------------------------------


def numeric_actions() -> list[tuple[str, argparse.Action]]:
    """(subcommand, action) of every flag that takes numbers, in every subcommand."""
    parser = get_args_parser([])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action) for name, p in sub.choices.items() for action in p._actions
            if action.type in (int, float) or isinstance(action.type, Number)]


NUMERIC = numeric_actions()
# The words before the flag under test: what each command needs to get as far as its checks.
BASE = {"train": ["train", "--out", "run"], "describe": ["describe"], "bench": ["bench", "--out", "bench"],
        "probe": ["probe", "run"], "predict": ["predict", "run", "a.png", "--out", "masks"],
        "reproduce": ["reproduce", "table2-resnet32", "--dry-run"]}


def test_every_numeric_flag_is_checked_when_it_is_read():
    """No flag takes a bare int or float: each has a `Number` type (finite, in range, said in the message)."""
    bare = [f"{name} {action.option_strings[0]}" for name, action in NUMERIC if not isinstance(action.type, Number)]
    assert not bare, f"flags typed int/float without a range check: {bare}"
    assert {name for name, _ in NUMERIC} <= set(BASE)
    assert len(NUMERIC) > 60


def test_every_numeric_train_flag_refuses_nan_inf_and_words_with_its_name(checks_only):
    for name, action in NUMERIC:
        if name != "train":
            continue
        flag = action.option_strings[0]
        count = action.nargs if isinstance(action.nargs, int) else 1
        for word in ("nan", "-inf", "many", "1e999"):
            line = outcome([*BASE[name], flag, *[word] * count])
            assert line is not None and flag in line, (flag, word, line)
            assert "must be" in line or "invalid choice" in line or "expected" in line, line


def test_a_config_value_gets_the_check_of_its_flag(tmp_path):
    for text, says in (("val_split: 1.0\n", "bad value 1.0 for val_split: expected a fraction in (0, 1)"),
                       ("seed: -1\n", "bad value -1 for seed: expected an integer in [0, 4294967295]"),
                       ("mix_prob: .inf\n", "bad value inf for mix_prob: expected a probability in [0, 1]"),
                       ("epochs: 0\n", "bad value 0 for epochs: expected an integer >= 1"),
                       ("lambdas: [1, .nan]\n", "bad value nan for lambdas: expected a finite number >= 0"),
                       ("K: 1.5\n", "bad value 1.5 for K: expected an integer >= 1"),
                       ("mean: [2]\n", "bad value 2 for mean: expected a number in [0, 1]"),
                       ("mean: [0.5, 0.5, 0.5, 0.5]\nstd: [0.2, 0.2, 0.2, 0.2]\n", "got 4 and 4"),
                       ("mean: [0.5]\nstd: [0.2, 0.2, 0.2]\n", "the same number each; got 1 and 3")):
        assert says in refusal(tmp_path, "c.yaml", text)


def test_number_types():
    assert positive_int("7") == 7 and probability("0.25") == 0.25
    with pytest.raises(BadNumber, match=r"must be an integer >= 1, got '1.5'"):
        positive_int("1.5")
    with pytest.raises(BadNumber, match=r"must be at most 2147483647, got 1"):
        positive_int("1" * 30)
    with pytest.raises(BadNumber, match=r"must be a probability in \[0, 1\], got nan"):
        probability("nan")
    with pytest.raises(BadNumber, match=r"must be in \(0, 1\], got 0.0"):
        Number(float, 0, 1, low_open=True)("0")


# Words a user (or a fuzzer) might give where a number goes.
SPECIAL_WORDS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-400", "-0", "0", "1", "2", "3",
                 "0.5", "1.5", "-1", "255", "65536", "4294967296", "9" * 40, "9" * 5000, "1_000", "0x10", "", " ",
                 "٣", "１", "true", "None", "[1, 2]", "x" * 3000, "\x00", "\u202e1"]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
WORDS = st.one_of(st.sampled_from(SPECIAL_WORDS), st.floats().map(repr), st.integers().map(str),
                  st.integers(min_value=-(10**40), max_value=10**40).map(str), TEXT)


def check_flag(name: str, flag: str, words: list[str]) -> None:
    """`infopro NAME ... FLAG WORDS` gets past the checks with finite numbers in range, or is one line."""
    words = [w for w in words if w not in ("-h", "--help", "--version")] or ["1"]
    if len(words) > 1:  # after a flag of several values a word like "-c" is the next option, by argparse's design
        words = [w for w in words if not w.startswith("-") or re.fullmatch(r"-\d+|-\d*\.\d+", w)] or ["1"] * len(words)
    # FLAG=WORD keeps a word that starts with "-" the flag's value; several words follow the flag
    argv = [*BASE[name], *([f"{flag}={words[0]}"] if len(words) == 1 else [flag, *words])]
    if outcome(argv) is None:
        parsed = get_args_parser(argv).parse_args(argv)
        action = next(a for n, a in NUMERIC if n == name and flag in a.option_strings)
        values = getattr(parsed, action.dest)
        for value in values if isinstance(values, list) else [values]:
            assert action.type(repr(value)) == value, (flag, value)


@pytest.mark.parametrize("name, flag, words", [
    ("train", "--mean", ["nan"]), ("train", "--epochs", ["9" * 5000]), ("train", "--crop-size", ["1"]),
    ("bench", "--K", ["0", "1"]), ("describe", "--input-shape", ["3", "1", "1"]), ("predict", "--alpha", ["1e999"]),
    ("reproduce", "--seeds", ["1", "1"]), ("probe", "--lr", ["-1e-9"]), ("train", "--lr", ["1e308"]),
])
def test_chosen_numeric_flags_pass_or_are_one_line(checks_only, name, flag, words):
    check_flag(name, flag, words)


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_numeric_flags_pass_or_are_one_line(checks_only, data):
    name, action = data.draw(st.sampled_from(NUMERIC), label="flag")
    wanted = action.nargs if isinstance(action.nargs, int) else data.draw(st.integers(1, 4), label="count")
    count = data.draw(st.sampled_from([wanted, wanted, wanted, max(wanted - 1, 1), wanted + 1]), label="given")
    check_flag(name, action.option_strings[0], data.draw(st.lists(WORDS, min_size=count, max_size=count)))


def train_parser() -> argparse.ArgumentParser:
    parser = get_args_parser(["train"])
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]


KEYS = sorted({a.dest for a in train_parser()._actions} - RUNTIME_KEYS - {"help"})  # every key a config may hold
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**60), max_value=10**60),
                    st.floats(), TEXT, st.sampled_from([0, 1, 2, 0.5, 1e-3, 255, "auto", "none", "nan", "1,2"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=8)


@settings(max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), TEXT), VALUES,
                              min_size=1, max_size=4))
def test_config_values_pass_or_are_one_line(checks_only, config):
    path = checks_only / "hostile.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    outcome(["train", "-c", str(path), "--out", "run"])

"""Defaults that work: --cuts auto, e2e alone sets K=1, two lambdas, --help lists the registries and defaults."""

import pytest

import infopro
from infopro.cli import main
from infopro.data import DATASETS


def describe(capsys, *flags):
    code = main(["describe", "--batch-size", "8", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def cuts_line(out: str) -> str:
    return out.splitlines()[0]


def test_auto_cuts_are_the_papers_where_they_exist_else_balanced(capsys):
    code, auto, _ = describe(capsys, "--arch", "resnet32", "--K", "4")
    assert code == 0 and "(auto: paper)" in cuts_line(auto)
    _, paper, _ = describe(capsys, "--arch", "resnet32", "--K", "4", "--cuts", "paper")
    assert cuts_line(auto).split("cuts ")[1].split(" (")[0] == cuts_line(paper).split("cuts ")[1].split(" (")[0]
    # ResNet-20 has no published cuts: `paper` is refused, `auto` (the default) falls back to balanced
    assert describe(capsys, "--arch", "resnet20", "--K", "4", "--cuts", "paper")[0] == 2
    code, auto, _ = describe(capsys, "--arch", "resnet20", "--K", "4")
    assert "(auto: balanced)" in cuts_line(auto)
    _, balanced, _ = describe(capsys, "--arch", "resnet20", "--K", "4", "--cuts", "balanced")
    assert code == 0
    assert cuts_line(auto).split("cuts ")[1].split(" (")[0] == cuts_line(balanced).split("cuts ")[1].split(" (")[0]


def test_e2e_alone_means_one_piece_and_an_explicit_other_K_is_refused(capsys):
    code, out, _ = describe(capsys, "--arch", "resnet20", "--method", "e2e")
    assert code == 0 and "K=1" in cuts_line(out)
    code, _, err = describe(capsys, "--arch", "resnet20", "--method", "e2e", "--K", "4")
    assert code == 2 and "use K=1" in err
    code, out, _ = describe(capsys, "--arch", "resnet20")
    assert "K=4" in cuts_line(out)  # other methods keep 4 pieces


def test_lambdas_take_two_or_four_numbers(capsys):
    code, out, _ = describe(capsys, "--arch", "resnet20", "--K", "3", "--lambdas", "2", "0.5")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[3:6]]
    assert [(r[5], r[6]) for r in rows[:2]] == [("2", "0.5"), ("2", "0.5")]
    code, _, err = describe(capsys, "--arch", "resnet20", "--lambdas", "1", "2", "3")
    assert code == 2 and "--lambdas takes 2 numbers" in err and "got 3" in err


def test_help_lists_the_registries_and_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for registry in (infopro.ARCHITECTURES, infopro.METHODS, infopro.HEADS, DATASETS):
        for name in registry:
            assert name.replace("-", "- ") in text or name in text, name
    for shown in ("--momentum MOMENTUM SGD momentum (default: 0.9)", "--seed SEED", "(default: 0)",
                  "--cuts CUTS", "(default: auto)", "--weight-decay WEIGHT_DECAY L2 weight decay (default: 0.0001)", "--optimizer {sgd,adamw}",
                  "(default: sgd)", "--label-smoothing F", "--mixup A", "--randaugment N M", "--model-ema DECAY"):
        assert shown in text, shown


def test_registries_print_their_names():
    assert repr(infopro.METHODS) == f"method registry: {', '.join(infopro.METHODS.names())}"
    assert "infopro-contrast" in str(infopro.METHODS) and len(infopro.METHODS) == len(infopro.METHODS.names())

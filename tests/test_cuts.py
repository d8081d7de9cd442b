import pytest

from infopro import InfoProError, LocalLearner, build_backbone
from infopro.local import even_cuts, piece_ranges, resolve_cuts


def piece_sizes(arch, K, preset):
    backbone = build_backbone(arch)
    return [len(r) for r in piece_ranges(resolve_cuts(preset, backbone, K), len(backbone.blocks))]


# Block counts (stem counted as a block) worked out by hand from the
# (stage, block) cut positions of METHOD.md / the reference configs.
@pytest.mark.parametrize(
    "arch, K, preset, sizes",
    [
        ("resnet32", 2, "paper", [8, 8]),
        ("resnet32", 4, "paper", [4, 4, 4, 4]),
        ("resnet32", 8, "paper", [2] * 8),
        ("resnet32", 16, "paper", [1] * 16),
        ("resnet110", 2, "paper", [28, 27]),
        ("resnet110", 4, "paper", [13, 14, 14, 14]),
        ("resnet110", 8, "paper", [6, 7, 7, 7, 7, 7, 7, 7]),
        ("resnet110", 16, "paper", [3] * 9 + [4] * 7),
        ("resnet110", 2, "paper-balanced", [16, 39]),
        ("resnet110", 3, "paper-balanced", [11, 11, 33]),
        ("resnet110", 4, "paper-balanced", [8, 8, 12, 27]),
    ],
)
def test_paper_presets(arch, K, preset, sizes):
    assert piece_sizes(arch, K, preset) == sizes


def test_paper_resnet32_k4_cut_indices():
    # (1,2) (2,1) (3,0) -> stem + 5 blocks per stage: 1+2, 1+5+1, 1+10+0
    assert resolve_cuts("paper", build_backbone("resnet32"), 4) == [3, 7, 11]


def test_even_cuts():
    assert even_cuts(10, 3) == [3, 6]  # 4, 3, 3
    assert even_cuts(16, 4) == [3, 7, 11]
    assert even_cuts(5, 1) == []
    assert even_cuts(5, 5) == [0, 1, 2, 3]
    assert piece_sizes("resnet110", 4, "even") == [14, 14, 14, 13]


def test_explicit_cuts_as_list_or_comma_string():
    backbone = build_backbone("resnet32")
    assert resolve_cuts([2, 9], backbone, 3) == [2, 9]
    assert resolve_cuts("2, 9", backbone, 3) == [2, 9]


def test_missing_preset_names_what_exists():
    with pytest.raises(InfoProError, match=r"no 'paper' cuts for arch 'resnet20' at K=4.*resnet32 K=2,4,8,16.*even"):
        resolve_cuts("paper", build_backbone("resnet20"), 4)
    with pytest.raises(InfoProError, match=r"'paper-balanced'.*resnet110 K=2,3,4"):
        resolve_cuts("paper-balanced", build_backbone("resnet110"), 8)


@pytest.mark.parametrize(
    "K, cuts, message",
    [
        (0, "even", r"K must be at least 1"),
        (-2, "even", r"K must be at least 1"),
        (17, "even", r"K=17 pieces is more than the 16 blocks"),
        (4, [7, 3, 11], r"sorted"),
        (4, [3, 3, 11], r"must not repeat"),
        (4, [3, 7, 15], r"out of range.*from 0 to 14"),
        (4, [-1, 7, 11], r"out of range"),
        (4, [3, 7], r"need 3 cuts, got 2"),
        (4, "3,x,7", r"neither a preset"),
        (4, "fancy", r"neither a preset"),
        (2, [1.5], r"integers"),
    ],
)
def test_bad_cuts_give_clear_errors(K, cuts, message):
    with pytest.raises(InfoProError, match=message):
        LocalLearner(build_backbone("resnet32"), K, "infopro-contrast", cuts=cuts)


def test_a_single_int_is_one_cut():
    assert resolve_cuts(5, build_backbone("resnet32"), 2) == [5]

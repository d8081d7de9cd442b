"""Where to cut: `cuts` is the sorted list of block indices after which a piece ends.

K pieces need K-1 cuts. Presets are looked up by name in `CUT_PRESETS`;
the published positions are written as in the paper, (stage, block within
stage) with stage 0 the stem, and mapped to block indices by the backbone.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import InfoProError, shown
from ..models.backbone import SequentialBackbone
from ..registry import Registry
from .balance import CutContext, balanced_cuts

StagePosition = tuple[int, int]

# InfoPro (ICLR 2021) reference cuts, CIFAR ResNets. K=1 (end-to-end) needs none.
PAPER_CUTS: dict[str, dict[int, list[StagePosition]]] = {
    "resnet32": {
        2: [(2, 1)],
        4: [(1, 2), (2, 1), (3, 0)],
        8: [(1, 0), (1, 2), (1, 4), (2, 1), (2, 3), (3, 0), (3, 2)],
        16: [(0, 0)] + [(s, b) for s in (1, 2, 3) for b in range(5)][:-1],
    },
    "resnet110": {
        2: [(2, 8)],
        4: [(1, 11), (2, 7), (3, 3)],
        8: [(1, 4), (1, 11), (2, 0), (2, 7), (2, 14), (3, 3), (3, 10)],
        16: [(1, 1), (1, 4), (1, 7), (1, 10), (1, 13), (1, 16),
             (2, 1), (2, 4), (2, 7), (2, 11), (2, 15),
             (3, 1), (3, 5), (3, 9), (3, 13)],
    },
    # ImageNet, InfoPro* K=2 (authors' ImageNet code, paper tables 20-21): inside layer2, whose
    # 28x28 output at 224 px is the paper's conv3_x ("stage 3" when the stem counts as stage 1).
    "resnet101": {2: [(2, 0)]},
    "resnet152": {2: [(2, 5)]},
    "resnext101_32x8d": {2: [(2, 2)]},
    # Cityscapes, DeepLabV3 (IJCV 2025; the authors' mmseg fork, mmseg/models/backbones/resnet.py 671-672):
    # inside layer3, after its first 13 blocks (0-based blocks 0-12 in piece 1).
    "deeplabv3_resnet101": {2: [(3, 12)]},
}

# "Balanced memory" cuts (InfoPro*, CIFAR-10): earlier than even, so that each
# piece holds about the same activation memory.
PAPER_BALANCED_CUTS: dict[str, dict[int, list[StagePosition]]] = {
    "resnet110": {
        2: [(1, 14)],
        3: [(1, 9), (2, 2)],
        4: [(1, 6), (1, 14), (2, 8)],
    },
}

# STL-10's balanced cuts (the authors' networks/configs.py, InfoPro_balanced_memory['resnet110']['stl10']):
# its 96 px images shift the memory balance, so K=3 differs from CIFAR-10's.
PAPER_BALANCED_STL10_CUTS: dict[str, dict[int, list[StagePosition]]] = {
    "resnet110": {2: [(1, 14)], 3: [(1, 8), (2, 1)], 4: [(1, 6), (1, 14), (2, 8)]},
}

# (backbone, K, context) -> cuts; the context (input shape, batch, aux nets) is None outside a LocalLearner.
CutPreset = Callable[[SequentialBackbone, int, "CutContext | None"], list[int]]
CUT_PRESETS: Registry[CutPreset] = Registry("cut preset")


def _published(name: str, table: dict[str, dict[int, list[StagePosition]]]) -> CutPreset:
    def preset(backbone: SequentialBackbone, K: int, context: CutContext | None = None) -> list[int]:
        if K == 1:
            return []
        positions = table.get(backbone.arch or "", {}).get(K)
        if positions is None:
            known = "; ".join(f"{arch} K={','.join(map(str, sorted(ks)))}" for arch, ks in table.items())
            raise InfoProError(
                f"no {name!r} cuts for arch {backbone.arch!r} at K={K}; {name!r} exists for: {known}. "
                f"Use cuts='even' (any arch, any K up to the number of blocks) or an explicit list"
            )
        return [backbone.block_index(stage, block) for stage, block in positions]

    return preset


def even_cuts(num_blocks: int, K: int) -> list[int]:
    """Cuts giving K pieces whose block counts differ by at most one (larger pieces first)."""
    check_K(K, num_blocks)
    base, extra = divmod(num_blocks, K)
    cuts, end = [], -1
    for k in range(K - 1):
        end += base + (1 if k < extra else 0)
        cuts.append(end)
    return cuts


CUT_PRESETS.add("paper", _published("paper", PAPER_CUTS))
CUT_PRESETS.add("paper-balanced", _published("paper-balanced", PAPER_BALANCED_CUTS))
CUT_PRESETS.add("paper-balanced-stl10", _published("paper-balanced-stl10", PAPER_BALANCED_STL10_CUTS))
CUT_PRESETS.add("even", lambda backbone, K, context=None: even_cuts(len(backbone.blocks), K))


def _balanced(backbone: SequentialBackbone, K: int, context: CutContext | None = None) -> list[int]:
    if context is None:
        raise InfoProError(
            "cuts='balanced' profiles activation memory with the pieces' auxiliary nets, "
            "so it is resolved inside LocalLearner; pass cuts='balanced' to LocalLearner (or --cuts balanced)"
        )
    return balanced_cuts(backbone.blocks, backbone.head, K, context)


CUT_PRESETS.add("balanced", _balanced)


def auto_preset(arch: str | None, K: int) -> str:
    """What `auto` stands for: the paper's cuts where they exist for this arch and K, else balanced ones."""
    return "paper" if K == 1 or K in PAPER_CUTS.get(arch or "", {}) else "balanced"


def cuts_label(spec: object, arch: str | None, K: int) -> str:
    """How a cut setting is shown beside the cuts it gave: "paper", "auto: balanced", "3,7,11"."""
    return f"auto: {auto_preset(arch, K)}" if spec == "auto" else str(spec)


def _auto(backbone: SequentialBackbone, K: int, context: CutContext | None = None) -> list[int]:
    preset = auto_preset(backbone.arch, K)
    if preset == "balanced" and context is None:
        preset = "even"  # balanced profiles with the pieces' auxiliary nets: only LocalLearner has them
    return CUT_PRESETS.get(preset)(backbone, K, context)


CUT_PRESETS.add("auto", _auto)


def check_K(K: int, num_blocks: int) -> None:
    if not isinstance(K, int) or isinstance(K, bool):
        raise InfoProError(f"K must be an integer number of pieces, got {shown(K)}")
    if K < 1:
        raise InfoProError(f"K must be at least 1 (K=1 is end-to-end training), got K={K}")
    if K > num_blocks:
        raise InfoProError(
            f"K={K} pieces is more than the {num_blocks} blocks of this network; "
            f"use K between 1 and {num_blocks}"
        )


def validate_cuts(cuts: Sequence[int], num_blocks: int, K: int) -> list[int]:
    """Check that `cuts` splits `num_blocks` blocks into K non-empty pieces; return it as a list."""
    check_K(K, num_blocks)
    cuts = list(cuts)
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in cuts):
        raise InfoProError(f"cuts must be block indices (integers), got {shown(cuts)}")
    if len(cuts) != K - 1:
        raise InfoProError(f"K={K} pieces need {K - 1} cuts, got {len(cuts)}: {shown(cuts)}")
    if len(set(cuts)) != len(cuts):
        raise InfoProError(f"cuts must not repeat a block index, got {shown(cuts)}")
    if cuts != sorted(cuts):
        raise InfoProError(f"cuts must be sorted in increasing order, got {shown(cuts)}")
    bad = [c for c in cuts if not 0 <= c <= num_blocks - 2]
    if bad:
        raise InfoProError(
            f"cut(s) {shown(bad)} out of range: a cut is the index of the block a piece ends after, "
            f"from 0 to {num_blocks - 2} for {num_blocks} blocks (the last piece may not be empty)"
        )
    return cuts


def resolve_cuts(spec: str | int | Sequence[int], backbone: SequentialBackbone, K: int,
                 context: CutContext | None = None) -> list[int]:
    """Turn a preset name, a comma list ("3,7,11") or a list of indices into validated cuts.

    `context` is what memory-aware presets ('balanced') need; LocalLearner passes it.
    """
    num_blocks = len(backbone.blocks)
    check_K(K, num_blocks)
    if isinstance(spec, str):
        if spec in CUT_PRESETS:
            cuts = CUT_PRESETS.get(spec)(backbone, K, context)
        else:
            try:
                cuts = [int(part) for part in spec.split(",") if part.strip()]
            except ValueError:
                raise InfoProError(
                    f"cuts {shown(spec)} is neither a preset ({', '.join(CUT_PRESETS.names())}) "
                    f"nor a comma-separated list of block indices"
                ) from None
    elif isinstance(spec, int):
        cuts = [spec]  # one cut, e.g. `cuts: 5` in a YAML file
    else:
        cuts = spec
    return validate_cuts(cuts, num_blocks, K)


def piece_ranges(cuts: Sequence[int], num_blocks: int) -> list[range]:
    """Block indices of each piece: cuts [3, 7] over 10 blocks -> [0..3], [4..7], [8..9]."""
    bounds = [-1, *cuts, num_blocks - 1]
    return [range(start + 1, end + 1) for start, end in zip(bounds, bounds[1:])]

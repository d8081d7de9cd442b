"""The method: cut placement, auxiliary nets, local losses and the LocalLearner.

Takes tensors, never datasets; knows nothing of the loop, the command line or files.
"""

from .aux_families import AUX_FAMILIES, AuxFamily, aux_family_for
from .aux_nets import HEADS, AuxOptions, Decoder, Feature, build_head
from .cuts import CUT_PRESETS, PAPER_BALANCED_CUTS, PAPER_CUTS, even_cuts, piece_ranges, resolve_cuts, validate_cuts
from .learner import LocalLearner, LocalPair, PieceInfo, check_compiler, local_step, pair_step
from .losses import TASK_LOSSES, reconstruction_loss, supervised_contrastive_loss
from .methods import METHODS, Lambdas, LocalMethod
from .objective import LocalObjective, Objective
from .pieces import feature_shapes, split_blocks

__all__ = [
    "AUX_FAMILIES", "AuxFamily", "AuxOptions", "CUT_PRESETS", "Feature", "Decoder", "HEADS", "Lambdas",
    "LocalLearner", "LocalMethod", "LocalObjective", "LocalPair", "METHODS", "Objective", "PAPER_BALANCED_CUTS",
    "PAPER_CUTS", "PieceInfo", "TASK_LOSSES", "aux_family_for", "build_head", "check_compiler", "even_cuts",
    "feature_shapes", "local_step", "pair_step", "piece_ranges", "reconstruction_loss", "resolve_cuts", "split_blocks",
    "supervised_contrastive_loss", "validate_cuts",
]

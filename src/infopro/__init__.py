"""infopro: locally supervised deep learning (E2E, Greedy SL, DGL, InfoPro) in PyTorch."""

from .errors import InfoProError
from .registry import Registry
from .models import ARCHITECTURES, SequentialBackbone, build_backbone
from .local import (
    CUT_PRESETS,
    HEADS,
    METHODS,
    TASK_LOSSES,
    Lambdas,
    LocalLearner,
    LocalObjective,
    local_step,
    resolve_cuts,
)
from .bench import SavedActivationMeter

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "CUT_PRESETS", "HEADS", "InfoProError", "Lambdas", "LocalLearner",
    "LocalObjective", "METHODS", "Registry", "SavedActivationMeter", "SequentialBackbone",
    "TASK_LOSSES", "build_backbone", "local_step", "resolve_cuts", "__version__",
]

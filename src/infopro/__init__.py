"""infopro: locally supervised deep learning (E2E, Greedy SL, DGL, InfoPro) in PyTorch."""

from .errors import InfoProError
from .registry import Registry
from .models import ARCHITECTURES, SequentialBackbone, TokenLayout, backbone_from_module, build_backbone
from .local import (
    AUX_FAMILIES,
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
from .model_file import ImageClassifier, ImageModel, load_model

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "AUX_FAMILIES", "CUT_PRESETS", "HEADS", "InfoProError", "Lambdas", "LocalLearner",
    "LocalObjective", "METHODS", "Registry", "SavedActivationMeter", "SequentialBackbone",
    "TASK_LOSSES", "TokenLayout", "ImageClassifier", "ImageModel", "load_model", "backbone_from_module", "build_backbone", "local_step", "resolve_cuts", "__version__",
]

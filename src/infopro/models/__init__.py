"""Backbones as a sequence of blocks (stem first) plus a head. Knows nothing of cuts."""

from .backbone import ClassifierHead, SequentialBackbone
from .registry import ARCHITECTURES, build_backbone
from . import resnet_cifar  # noqa: F401  (registers the CIFAR ResNets)
from .resnet_cifar import BasicBlock, cifar_resnet

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "ClassifierHead",
    "SequentialBackbone",
    "build_backbone",
    "cifar_resnet",
]

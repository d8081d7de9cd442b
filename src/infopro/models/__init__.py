"""Backbones as a sequence of blocks (stem first) plus a head. Knows nothing of cuts."""

from .backbone import ClassifierHead, SequentialBackbone, TokenLayout
from .registry import ARCHITECTURES, build_backbone, native_input_shape
from . import resnet_cifar  # noqa: F401  (registers the CIFAR ResNets)
from . import resnet_imagenet  # noqa: F401  (ImageNet ResNets and ResNeXts)
from . import densenet  # noqa: F401  (DenseNet-BC)
from . import vit  # noqa: F401  (vision transformers)
from . import segmentation  # noqa: F401  (DeepLabV3 / FCN on dilated ResNets)
from .segmentation import fcn_aux_head, segmentation_model
from .custom import backbone_from_module
from .pretrained import WeightReport, load_backbone_weights
from .resnet_cifar import BasicBlock, cifar_resnet

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "ClassifierHead",
    "SequentialBackbone",
    "TokenLayout",
    "WeightReport",
    "backbone_from_module",
    "build_backbone",
    "cifar_resnet",
    "fcn_aux_head",
    "load_backbone_weights",
    "native_input_shape",
    "segmentation_model",
]

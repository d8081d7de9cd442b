"""Data: readers (CIFAR pickles, image folders, zips), a decode cache, named data sets,
stratified subsets, and a device-resident loader with batched augmentation."""

from .augment import augment_batch, crop_flip
from .cache import default_cache_dir
from .datasets import BUNDLED_DIR, DATASETS, DatasetSpec, ImageDataset, load_dataset
from .image_folder import decode_image, read_image_folder
from .cifar import read_cifar10, read_cifar100
from .layouts import LAYOUTS, Layout
from .loader import DeviceLoader, epoch_generator
from .splits import Splits
from .subset import stratified_subset

__all__ = [
    "BUNDLED_DIR",
    "DATASETS",
    "DatasetSpec",
    "DeviceLoader",
    "ImageDataset",
    "LAYOUTS",
    "Layout",
    "Splits",
    "augment_batch",
    "crop_flip",
    "decode_image",
    "default_cache_dir",
    "epoch_generator",
    "load_dataset",
    "read_cifar10",
    "read_cifar100",
    "read_image_folder",
    "stratified_subset",
]

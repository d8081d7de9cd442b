"""Data: named data sets (one reader per file in `sets/`), a decode cache, stratified subsets and
validation splits, and two paths with one interface: the device-resident loader (memory) and
DataLoader workers decoding per sample (stream)."""

from .augment import ExtraAugment, augment_batch, crop_flip
from .cache import default_cache_dir
from .datasets import BUNDLED_DIR, DATASETS, DatasetSpec, RawSet, Reader, detect_target
from .items import ArrayItems, FileItems, Items
from .loader import DeviceLoader, epoch_generator
from .prepare import (DATA_PATHS, Data, DataOptions, ImageDataset, available_memory, channel_stats, decode_for_eval,
                      load_dataset, make_loader, open_data)
from .segmentation import (SegmentationData, SegmentationEvalLoader, SegmentationOptions, SegmentationSplit,
                           SegmentationTrainLoader, make_segmentation_loader, open_segmentation)
from .stream import StreamLoader, default_workers
from .subset import stratified_subset

__all__ = [
    "available_memory",
    "ArrayItems",
    "BUNDLED_DIR",
    "DATASETS",
    "DATA_PATHS",
    "Data",
    "DataOptions",
    "DatasetSpec",
    "DeviceLoader",
    "ExtraAugment",
    "FileItems",
    "ImageDataset",
    "Items",
    "RawSet",
    "Reader",
    "SegmentationData",
    "SegmentationEvalLoader",
    "SegmentationOptions",
    "SegmentationSplit",
    "SegmentationTrainLoader",
    "StreamLoader",
    "augment_batch",
    "channel_stats",
    "crop_flip",
    "decode_for_eval",
    "default_cache_dir",
    "default_workers",
    "detect_target",
    "epoch_generator",
    "load_dataset",
    "make_loader",
    "make_segmentation_loader",
    "open_data",
    "open_segmentation",
    "stratified_subset",
]

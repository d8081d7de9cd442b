"""Semantic segmentation data: a set of image + mask pairs opened, checked and decoded in memory
(`open_segmentation`), and its loaders (`make_segmentation_loader`), with `DeviceLoader`'s interface.

What the data decides, the data decides: the classes (classes.txt, the set's
own list, or the largest train mask value + 1), the channel count (the
majority of the train images: grey -> 1, else 3), the crop the model is
built for (the smallest train image's height and width) and the
normalisation (the train images' per-channel mean/std). Every pair is
checked once: an unpaired file, a mask of another size than its image, a
value that is neither a class nor the ignore index, and a colour mask are
refused with the file's name. Images may differ in size: each split is a
list of per-image arrays.

Training batches run mmsegmentation's pipeline per sample on the device
(`seg_augment`); evaluation batches are whole images in order, unaugmented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import InfoProError
from . import sets  # noqa: F401  (registers every data set)
from .datasets import DATASETS, SPLIT_NAMES, DatasetSpec, SetShape, accepted, find_source
from .prepare import channel_stats
from .progress import progress_map, say
from .items import convert, to_array
from .listing import check_class_names
from .loader import EpochBatches, epoch_generator, normalise
from .pairs import PairItems
from .seg_augment import CAT_MAX_RATIO, FLIP_PROB, RATIO_RANGE, augment_pair, pad_pair
from .transforms import Size

IGNORE_INDEX = 255  # mmseg's default: the mask value of unlabelled pixels, scored by nothing


@dataclass(frozen=True)
class SegmentationOptions:
    crop: Size | None = None  # (h, w) the model is built for and trained on; None: the smallest train image's
    channels: int | None = None  # 1 or 3; None: the majority of the train images
    train_subset: int | None = None  # a seeded random choice of this many train pairs, kept in stem order
    test_subset: int | None = None
    seed: int = 0
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, ...] | None = None  # a known normalisation (a trained run's): none is measured
    std: tuple[float, ...] | None = None
    progress: bool = True


@dataclass
class SegmentationSplit:
    """The decoded pairs of one split: uint8 images (H, W, C) and their masks (H, W) of class indices (uint8,
    or int32 for 16-bit masks; `ignore_index` where unlabelled), sizes free to differ between pairs."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str]  # the image files

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: Sequence[int]) -> "SegmentationSplit":
        return SegmentationSplit([self.images[i] for i in index], [self.masks[i] for i in index],
                                 [self.names[i] for i in index])


@dataclass
class SegmentationData(SetShape):
    """A segmentation set ready to iterate, with the attributes the training loop reads from `Data`."""

    name: str
    source: str
    classes: list[str]
    size: Size  # (crop_h, crop_w): the training crop the model is built for
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: SegmentationSplit
    val: SegmentationSplit | None
    test: SegmentationSplit
    ignore_index: int = IGNORE_INDEX
    splits: dict[str, str] = field(default_factory=dict)  # role -> where its pairs come from
    test_is_held_out: bool = False  # never: a segmentation set brings its own val or test split
    path: str = "memory"



def _pick(n: int | None, total: int, seed: int, flag: str) -> list[int]:
    """The indices a subset keeps: all, or `n` chosen with `seed`, in their (stem) order."""
    if n is None:
        return list(range(total))
    if not 1 <= n <= total:
        raise InfoProError(f"{flag} {n} must be between 1 and the split's {total} pairs")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(total, size=n, replace=False))


def _decode_masks(items: PairItems, index: list[int], desc: str, progress: bool) -> list[np.ndarray]:
    return progress_map(items.mask, index, desc, "mask", progress)


def _decode_images(items: PairItems, index: list[int], channels: int, desc: str,
                   progress: bool) -> list[np.ndarray]:
    return progress_map(lambda i: to_array(convert(items.image(i), channels)), index, desc, "img", progress)


def _count_classes(items: PairItems, masks: list[np.ndarray], ignore_index: int) -> list[str]:
    """Names class0, class1, .. up to the largest train mask value (the ignore index aside)."""
    top = -1
    for m in masks:
        labelled = m[m != ignore_index]
        if labelled.size:
            top = max(top, int(labelled.max()))
    if top < 0:
        raise InfoProError(f"every train mask of {Path(items.masks[0]).parent} is the ignore index {ignore_index} "
                           "throughout; label the masks, or pass the ignore index they use")
    return [f"class{k}" for k in range(top + 1)]


def _check_pair(items: PairItems, i: int, image: np.ndarray, mask: np.ndarray, num_classes: int,
                ignore_index: int, counted: bool) -> None:
    if mask.shape != image.shape[:2]:
        raise InfoProError(f"mask {items.masks[i]} is {mask.shape[1]}x{mask.shape[0]} but its image {items.images[i]} "
                           f"is {image.shape[1]}x{image.shape[0]}; give the mask its image's size (resize it with "
                           "nearest neighbour)")
    bad = (mask >= num_classes) & (mask != ignore_index)
    if bad.any():
        value = int(mask[bad].max())
        where = ("the train masks hold 0.." + str(num_classes - 1) + " only; add a classes.txt naming every class"
                 if counted else f"there are {num_classes} classes (0..{num_classes - 1})")
        raise InfoProError(f"mask {items.masks[i]} holds the value {value}, neither a class index nor the ignore "
                           f"index {ignore_index}: {where}; fix the mask or pass the ignore index the set uses")


def open_segmentation(name_or_spec: str | DatasetSpec, data_dir: str | Path | None,
                      options: SegmentationOptions = SegmentationOptions()) -> SegmentationData:
    """Find, read, check and decode a registered segmentation set (see the module docstring)."""
    spec = DATASETS.get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if spec.target != "mask":
        raise InfoProError(f"{spec.name} is an image classification set (a class per image), not segmentation; "
                           "pass --dataset segfolder with a folder of image + mask pairs")
    if data_dir is None:
        raise InfoProError(f"{spec.name} has no bundled copy; pass --data-dir with {accepted(spec)}")
    if options.channels not in (None, 1, 3):
        raise InfoProError(f"--channels must be 1 or 3, got {options.channels}")
    if options.crop is not None and (len(options.crop) != 2 or min(options.crop) < 1):
        raise InfoProError(f"the crop size must be two sizes >= 1 (height, width), got {options.crop}")
    if options.ignore_index < 0:
        raise InfoProError(f"the ignore index must be >= 0 (a mask value), got {options.ignore_index}")
    reader, root = find_source(spec, Path(data_dir).expanduser())
    raw = reader.read(root)
    check_class_names(raw.classes, root, kind="class name")  # before anything is written: never at a run's end
    ignore = options.ignore_index
    present = [s for s in SPLIT_NAMES if s in raw.splits]
    if "train" not in present or len(present) < 2:
        raise InfoProError(f"{root} has {' and '.join(present) or 'no'} split(s); segmentation needs train pairs "
                           "and val and/or test pairs to measure on")
    roles = {"train": "train", "test": "test" if "test" in present else "val"}
    if "val" in present and "test" in present:
        roles["val"] = "val"

    classes = list(raw.classes)
    counted = not classes
    picks = {role: _pick(options.train_subset if role == "train" else options.test_subset if role == "test"
                         else None, len(raw.splits[split]), options.seed,
                         f"--{role}-subset")
             for role, split in roles.items()}
    train_items = raw.splits["train"]
    assert isinstance(train_items, PairItems)
    masks: dict[str, list[np.ndarray]] = {}
    if counted:  # the class count is the whole train split's, also under --train-subset
        say(options.progress, f"counting the classes in the {len(train_items)} train masks of {root} (no classes.txt)")
        every = _decode_masks(train_items, list(range(len(train_items))), "train masks", options.progress)
        classes = _count_classes(train_items, every, ignore)
        masks["train"] = [every[i] for i in picks["train"]]
    if spec.num_classes is not None and len(classes) != spec.num_classes:
        raise InfoProError(f"{root} has {len(classes)} classes but {spec.name} has {spec.num_classes}; point the "
                           f"data dir at a {spec.name} copy or pass --dataset segfolder")
    if len(classes) < 2:
        raise InfoProError(f"{root} has {len(classes)} class ({', '.join(classes)}); segmentation needs two or "
                           "more (name them one a line in classes.txt)")
    if ignore < len(classes):
        raise InfoProError(f"the ignore index {ignore} is one of the {len(classes)} class indices "
                           f"0..{len(classes) - 1}; pass an ignore index outside them (255 by default)")

    if options.channels is not None:
        channels = options.channels
    else:  # the majority of the train images; a tie goes to colour (as the classification path)
        grey = sum(train_items.header(i)[2] == 1 for i in picks["train"])
        channels = 1 if 2 * grey > len(picks["train"]) else 3

    n = sum(len(p) for p in picks.values())
    say(options.progress, f"decoding {n} image + mask pairs of {root}, {channels} channel(s)")
    decoded: dict[str, SegmentationSplit] = {}
    for role, split in roles.items():
        items = raw.splits[split]
        assert isinstance(items, PairItems)
        index = picks[role]
        images = _decode_images(items, index, channels, f"decoding {split}", options.progress)
        split_masks = masks.get(role) or _decode_masks(items, index, f"{split} masks", options.progress)
        for image, mask, i in zip(images, split_masks, index):
            _check_pair(items, i, image, mask, len(classes), ignore, counted)
        decoded[role] = SegmentationSplit(images, split_masks, [items.images[i] for i in index])

    train = decoded["train"]
    size = options.crop or (min(a.shape[0] for a in train.images), min(a.shape[1] for a in train.images))
    if options.mean is not None:
        if len(options.mean) != channels or options.std is None or len(options.std) != channels:
            raise InfoProError(f"--mean and --std need one value per channel ({channels}), "
                               f"got {options.mean} and {options.std}")
        mean, std = tuple(options.mean), tuple(options.std)
    else:
        mean, std = channel_stats(train.images)

    splits = {}
    for role, split in roles.items():
        total = len(raw.splits[split])
        text = f"the {split} split ({total} image + mask pairs)"
        subset = options.train_subset if role == "train" else options.test_subset if role == "test" else None
        if subset is not None:
            text += f", a seeded random subset of {len(decoded[role])} (seed {options.seed})"
        splits[role] = text
    return SegmentationData(name=spec.name, source=str(root.resolve()), classes=classes, size=tuple(size),
                            channels=channels, mean=mean, std=std, train=train, val=decoded.get("val"),
                            test=decoded["test"], ignore_index=ignore, splits=dict(sorted(splits.items())))


def _on_device(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """uint8 images as (C, H, W) and masks as (H, W) tensors on `device`, one per pair."""
    if len(images) == 0:
        raise InfoProError("the split is empty; a loader needs at least one image + mask pair")
    if len(images) != len(masks):
        raise InfoProError(f"need one mask per image: {len(images)} images but {len(masks)} masks")
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        if image.dtype != np.uint8 or image.ndim != 3 or mask.shape != image.shape[:2]:
            raise InfoProError(f"need uint8 images (H, W, C) and (H, W) masks of the same size, got "
                               f"{image.dtype} {image.shape} and {mask.shape}")
        out_images.append(torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).contiguous())
        out_masks.append(torch.from_numpy(np.ascontiguousarray(mask)).to(device))
    return out_images, out_masks


def _check_normalisation(channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise InfoProError(f"mean and std need one value per channel ({channels}) and std > 0, got mean={mean}, "
                           f"std={std}")


class SegmentationTrainLoader(EpochBatches):
    """Training batches `(x, y)`: x float32 (B, C, h, w) normalised, y int64 (B, h, w) class indices
    (`ignore_index` where unlabelled or padded), (h, w) = `crop`.

    Each epoch shuffles the pairs and augments each sample on `device` with
    mmseg's pipeline (`seg_augment.augment_pair`, then `pad_pair`); the order
    and every random draw come from `epoch_generator(seed, epoch)`, so an
    epoch is the same on CPU and GPU and a resumed run repeats it exactly.
    Each pass is one epoch and advances to the next; `set_epoch(e)` makes the
    next pass epoch e.
    """

    train = True

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], device: torch.device | str,
                 batch_size: int, mean: Sequence[float], std: Sequence[float], crop: Size, seed: int = 0,
                 ignore_index: int = IGNORE_INDEX, scale: tuple[int, int] | None = None,
                 ratio_range: tuple[float, float] = RATIO_RANGE, cat_max_ratio: float = CAT_MAX_RATIO,
                 flip_prob: float = FLIP_PROB, photometric: bool = True, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise InfoProError(f"batch size must be at least 1, got {batch_size}")
        if len(crop) != 2 or min(crop) < 1:
            raise InfoProError(f"the crop size must be two sizes >= 1 (height, width), got {crop}")
        if not 0 < ratio_range[0] <= ratio_range[1]:
            raise InfoProError(f"the scale ratio range must be 0 < low <= high, got {ratio_range}")
        self.device = torch.device(device)
        self.images, self.masks = _on_device(images, masks, self.device)
        _check_normalisation(self.images[0].shape[0], mean, std)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self.batch_size = batch_size
        self.crop = (int(crop[0]), int(crop[1]))
        self.seed = seed
        self.ignore_index = ignore_index
        self.scale = scale
        self.ratio_range = ratio_range
        self.cat_max_ratio = cat_max_ratio
        self.flip_prob = flip_prob
        self.photometric = photometric
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.images)


    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def sample(self, i: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair i augmented, normalised and padded: (C, h, w) float32 and (h, w) int64."""
        image, mask = augment_pair(self.images[i], self.masks[i], generator, self.crop, self.ignore_index,
                                   self.scale, self.ratio_range, self.cat_max_ratio, self.flip_prob,
                                   self.photometric)
        image = (image / 255 - self.mean) / self.std
        return pad_pair(image, mask, self.crop, self.ignore_index)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.seed, epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        for step in range(len(self)):
            pairs = [self.sample(i, generator) for i in order[step * self.batch_size : (step + 1) * self.batch_size]]
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


class SegmentationEvalLoader:
    """Evaluation batches `(x, y)` of whole images in order, unaugmented: x float32 (B, C, H, W) normalised,
    y int64 (B, H, W). A batch holds up to `batch_size` consecutive pairs of one size (batch 1 where every
    size differs)."""

    train = False
    shard = None
    drop_last = False

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], device: torch.device | str,
                 batch_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        if batch_size < 1:
            raise InfoProError(f"batch size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images, self.masks = _on_device(images, masks, self.device)
        _check_normalisation(self.images[0].shape[0], mean, std)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.groups: list[list[int]] = []
        for i, image in enumerate(self.images):
            last = self.groups[-1] if self.groups else None
            if last and len(last) < batch_size and self.images[last[0]].shape == image.shape:
                last.append(i)
            else:
                self.groups.append([i])
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # evaluation draws nothing: every pass is the same

    def __len__(self) -> int:
        return len(self.groups)

    def global_batch_size(self, step: int) -> int:
        return len(self.groups[step])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for group in self.groups:
            x = torch.stack([self.images[i] for i in group])
            y = torch.stack([self.masks[i] for i in group]).long()
            yield normalise(x, self.mean, self.std), y


def make_segmentation_loader(data: SegmentationData, split: SegmentationSplit, device: torch.device | str,
                             batch_size: int, train: bool, seed: int = 0, scale: tuple[int, int] | None = None,
                             photometric: bool = True,
                             drop_last: bool = False) -> SegmentationTrainLoader | SegmentationEvalLoader:
    """The loader of `split` (one of data.train/val/test): training crops of `data.size` (`scale`: mmseg's
    img_scale (long, short) the ratio multiplies; None: each image's own size), or whole images for evaluation."""
    if train:
        return SegmentationTrainLoader(split.images, split.masks, device, batch_size, data.mean, data.std,
                                       data.size, seed=seed, ignore_index=data.ignore_index, scale=scale,
                                       photometric=photometric, drop_last=drop_last)
    return SegmentationEvalLoader(split.images, split.masks, device, batch_size, data.mean, data.std)

"""From a data set's name and folder to what training iterates: `open_data` and `make_loader`.

What the data decides, the data decides: the class count (the class names),
the channel count (the majority of the training images: grayscale -> 1,
anything else -> 3; `channels` overrides), the image size (the images' own, if
they share one; `image_size` resizes to S x S) and the normalisation (the
training split's per-channel mean/std, cached with the decoded data; CIFAR
keeps the paper's constants). Then one of two paths:

- memory: every image decoded once at the final size into one uint8 array
  (cached on disk), held on the device by `DeviceLoader`;
- stream: the files decoded per sample by `StreamLoader`'s worker processes,
  with ImageNet's random-resized crop + flip for training and resize + centre
  crop for evaluation.

`auto` picks memory when the decoded set takes at most half the memory
available (host, and the GPU's when training there).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..errors import InfoProError
from . import sets  # noqa: F401  (registers every data set)
from .cache import cached, default_cache_dir
from .datasets import BUNDLED_DIR, DATASETS, SPLIT_NAMES, DatasetSpec, RawSet, Reader, SetShape, accepted, find_source
from .progress import progress_map, say
from .archive import MAX_IMAGE_MB, max_bytes_of, screen_archive, skipped_line
from .items import ArrayItems, FileItems, Items
from .listing import check_class_names
from .augment import ExtraAugment
from .loader import DeviceLoader
from .stream import StreamLoader
from .subset import stratified_split, stratified_subset
from .transforms import EVAL_VIEWS, Size, eval_array, prepare_array

DATA_PATHS = ("auto", "memory", "stream")
MEMORY_FRACTION = 0.5  # `auto` keeps a set in memory when it takes at most this share of what is free
STATS_SAMPLE = 2000  # stream path: training images the mean/std are measured on


class NoTestSplit(InfoProError):
    """A set of class folders only, opened without --val-split (which would hold out its test set)."""


@dataclass(frozen=True)
class DataOptions:
    image_size: int | None = None
    channels: int | None = None
    val_split: float | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    path: str = "auto"
    cache_dir: str | Path | None = None
    device: str = "cpu"  # where the memory path would hold the set (for `auto`)
    progress: bool = True
    # A known normalisation (a trained run's): the stream path then measures none.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # Images inside a .zip: the most one member may inflate to (MB), and whether members that cannot be read
    # (encrypted, an unsupported compression method, over the limit) are left out instead of refused.
    max_image_mb: float = MAX_IMAGE_MB
    skip_unreadable: bool = False


@dataclass
class Data(SetShape):
    """A data set ready to iterate: the images of each role as `Items` (decoded arrays on the memory path,
    the files on the stream path), and what the model needs to know."""

    name: str
    source: str
    classes: list[str]
    path: str  # "memory" or "stream"
    size: Size
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Items
    val: Items | None
    test: Items
    splits: dict[str, str] = field(default_factory=dict)  # role -> where its images come from
    test_is_held_out: bool = False  # the test set is --val-split's hold-out (a set with no test or val split)



def _data_dir(spec: DatasetSpec, data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if spec.bundled is None:
        raise InfoProError(f"{spec.name} has no bundled copy; pass --data-dir with {accepted(spec)}")
    path = BUNDLED_DIR / spec.bundled
    if not path.is_file():
        raise InfoProError(f"the bundled {spec.name} subset {path} is missing; rebuild it with "
                           "scripts/make_bundled_subset.py or pass --data-dir")
    return path


def _check_labels(spec: DatasetSpec, raw: RawSet, root: Path) -> None:
    k = len(raw.classes)
    if spec.num_classes is not None and k != spec.num_classes:
        hint = " (for your own image folder pass --dataset folder)" if spec.name != "folder" else ""
        raise InfoProError(f"{root} has {k} classes but {spec.name} has {spec.num_classes}; "
                           f"point the data dir at a {spec.name} copy{hint}")
    for split, items in raw.splits.items():
        labels = items.labels
        if len(labels) == 0:
            raise InfoProError(f"{root}: the {split} split holds no images")
        if labels.min() < 0 or labels.max() >= k:
            raise InfoProError(f"{root}: {split} labels run from {labels.min()} to {labels.max()}, outside "
                               f"0..{k - 1} for {k} classes; point the data dir at a {spec.name} copy")


def _screen_archives(raw: RawSet, options: DataOptions) -> tuple[RawSet, str]:
    """The set without the archive members that cannot be read (refused unless options.skip_unreadable; see
    `archive.screen_archive`), every FileItems given the per-image limit; and a cache-key tag of what was left
    out ("" when nothing was), so that the cached headers and arrays match the items kept."""
    max_bytes = max_bytes_of(options.max_image_mb)
    by_archive: dict[str, dict[str, FileItems]] = {}
    splits = dict(raw.splits)
    for split in sorted(raw.splits, key=lambda s: SPLIT_NAMES.index(s) if s in SPLIT_NAMES else len(SPLIT_NAMES)):
        items = raw.splits[split]  # train, val, test: the order the lines name them in
        if isinstance(items, FileItems):
            splits[split] = items = FileItems(items.paths, items.labels, items.archive, max_bytes)
            if items.archive is not None:
                by_archive.setdefault(items.archive, {})[split] = items
    tag = []
    for archive, items_by_split in by_archive.items():
        kept, skipped = screen_archive(archive, {s: i.paths for s, i in items_by_split.items()}, max_bytes,
                                       options.skip_unreadable)
        for split, items in items_by_split.items():
            if skipped[split]:
                print(skipped_line(split, skipped[split]), file=sys.stderr, flush=True)
                splits[split] = items.take(np.array(kept[split], dtype=np.int64))
                tag += [f"{split}:{name}" for name, _ in skipped[split]]
    return RawSet(raw.classes, splits), ("skipped=" + "\0".join(tag)) if tag else ""


def _headers(raw: RawSet, reader: Reader, root: Path, options: DataOptions, tag: str = "") -> dict[str, np.ndarray]:
    """split -> (N, 3) (width, height, channels) of every image, read from the file headers once and cached."""
    if all(isinstance(items, ArrayItems) for items in raw.splits.values()):
        return {split: items.headers() for split, items in raw.splits.items()}

    def scan() -> dict[str, np.ndarray]:
        say(options.progress, f"reading the image headers of {root} (once; cached)")
        return {split: items.headers(options.progress, f"scanning {split}") for split, items in raw.splits.items()}

    if reader.files is None:
        return scan()
    return cached(scan, f"{reader.name}-headers", root, tag, reader.files(root), _cache_dir(options))


def _cache_dir(options: DataOptions) -> Path:
    return Path(options.cache_dir).expanduser() if options.cache_dir is not None else default_cache_dir()


def _describe_size(wh: np.ndarray) -> str:
    return f"{wh[0]}x{wh[1]}"


def _choose_shape(spec: DatasetSpec, read_headers: Callable[[], dict[str, np.ndarray]], raw: RawSet, root: Path,
                  options: DataOptions) -> tuple[Size, int]:
    """(size, channels): the options', else what the image headers say (read only when needed: a
    million-file set given --image-size and --channels opens no file here)."""
    if options.channels is not None and options.image_size is not None:
        return (options.image_size, options.image_size), options.channels
    headers = read_headers()
    train = headers["train"]
    if options.channels is not None:
        channels = options.channels
    else:  # the majority of the training images; a tie goes to colour
        channels = 1 if 2 * int((train[:, 2] == 1).sum()) > len(train) else 3
    if options.image_size is not None:
        return (options.image_size, options.image_size), channels
    sizes = np.concatenate([h[:, :2] for h in headers.values()])
    unique, counts = np.unique(sizes, axis=0, return_counts=True)
    if len(unique) > 1:
        common = unique[counts.argmax()]
        names = [items.name(i) for items in raw.splits.values() for i in range(len(items))]
        odd = int(np.flatnonzero((sizes != common).any(1))[0])
        usual = int(np.flatnonzero((sizes == common).all(1))[0])
        raise InfoProError(f"{root}: the images differ in size ({names[usual]} is {_describe_size(common)}, "
                           f"{names[odd]} is {_describe_size(sizes[odd])}); pass --image-size S to train on "
                           "S x S images")
    width, height = (int(v) for v in unique[0])
    if spec.image_size is not None and (width, height) != (spec.image_size, spec.image_size):
        raise InfoProError(f"{root}: the images are {width}x{height}, {spec.name}'s are {spec.image_size}x"
                           f"{spec.image_size}; pass --dataset folder for another data set, or --image-size")
    return (height, width), channels


def available_memory(device: str | torch.device) -> int:
    """Bytes a process of this machine may still use for a data set (its share under torchrun),
    and no more than the GPU has free when the set would live there."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        host = info.get("MemAvailable", info["MemFree"])
    except (OSError, KeyError, ValueError, IndexError):
        host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    budget = host // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        budget = min(budget, torch.cuda.mem_get_info(device)[0])
    return budget


def _choose_path(options: DataOptions, decoded_bytes: int) -> str:
    if options.path not in DATA_PATHS:
        raise InfoProError(f"--data-path must be one of {', '.join(DATA_PATHS)}, got {options.path!r}")
    if options.path != "auto":
        return options.path
    return "memory" if decoded_bytes <= MEMORY_FRACTION * available_memory(options.device) else "stream"


def _decode(items: Items, size: Size, channels: int, desc: str, progress: bool,
            view: Callable[..., np.ndarray] = prepare_array) -> np.ndarray:
    """Every image of `items` as uint8 (N, H, W, C) at `size` with `channels`, through `view` (`fit` by default)."""
    if view is prepare_array and isinstance(items, ArrayItems) and items.images.shape[1:] == (*size, channels):
        return items.images  # `fit` to its own size is the image itself
    out = np.empty((len(items), *size, channels), dtype=np.uint8)
    with tqdm(range(len(items)), desc=desc, unit="img", disable=not progress, mininterval=1.0) as bar:
        for i in bar:  # inside the with: an unreadable image closes the bar before its error is printed
            out[i] = view(items.image(i), size, channels)
    return out


def decode_for_eval(items: Items, size: Size, channels: int, path: str, progress: bool = False) -> np.ndarray:
    """The images of `items`, and only those, as uint8 (N, H, W, C): what the evaluation loader of a run
    trained on data path `path` showed it (memory: the stored `fit` image; stream: `eval_view`)."""
    if path not in EVAL_VIEWS:
        raise InfoProError(f"data path must be one of {', '.join(EVAL_VIEWS)}, got {path!r}")
    return _decode(items, size, channels, f"decoding {len(items)} images", progress, EVAL_VIEWS[path])


def channel_stats(images: np.ndarray | Sequence[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, (N, H, W, C) or a list of (H, W, C) of any sizes, as fractions
    of 255."""
    c = images[0].shape[-1]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    # float64 sums, a chunk (or an image) at a time
    chunks = (images[s : s + 4096] for s in range(0, len(images), 4096)) if isinstance(images, np.ndarray) else images
    for chunk in chunks:
        chunk = chunk.reshape(-1, c).astype(np.float64)
        total += chunk.sum(0)
        total_sq += np.square(chunk).sum(0)
        count += len(chunk)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: leave it unscaled
    return tuple(float(v) for v in mean / 255), tuple(float(v) for v in std / 255)


def _prepare_memory(raw: RawSet, reader: Reader, root: Path, size: Size, channels: int, spec: DatasetSpec,
                    options: DataOptions, tag: str = "") -> tuple[dict[str, Items], tuple[float, ...], tuple[float, ...]]:
    def decode() -> dict[str, np.ndarray]:
        n = sum(len(items) for items in raw.splits.values())
        say(options.progress, f"decoding {n} images of {root} at {size[1]}x{size[0]}, {channels} channel(s) (once; cached)")
        arrays = {split: _decode(items, size, channels, f"decoding {split}", options.progress)
                  for split, items in raw.splits.items()}
        mean, std = channel_stats(arrays["train"])
        return {**arrays, "mean": np.array(mean), "std": np.array(std)}

    if reader.files is None:  # arrays already (CIFAR pickles, .mat, .bin, idx): fast to read, not cached
        arrays = {split: _decode(items, size, channels, f"resizing {split}", options.progress)
                  for split, items in raw.splits.items()}
        if spec.mean is None:
            mean, std = channel_stats(arrays["train"])
            arrays.update(mean=np.array(mean), std=np.array(std))
    else:
        settings = f"size={size} channels={channels}{tag}"
        arrays = cached(decode, reader.name, root, settings, reader.files(root), _cache_dir(options))
    prepared: dict[str, Items] = {split: ArrayItems(arrays[split], items.labels, f"{root}/{split}")
                                  for split, items in raw.splits.items()}
    mean, std = spec.mean, spec.std
    if mean is None:
        mean, std = tuple(float(v) for v in arrays["mean"]), tuple(float(v) for v in arrays["std"])
    return prepared, mean, std


def _stream_stats(raw: RawSet, reader: Reader, root: Path, size: Size, channels: int,
                  options: DataOptions, tag: str = "") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of up to STATS_SAMPLE training images (seeded), at the evaluation view, cached."""
    train = raw.splits["train"]

    def measure() -> dict[str, np.ndarray]:
        n = min(STATS_SAMPLE, len(train))
        pick = np.sort(np.random.default_rng(0).choice(len(train), size=n, replace=False))
        say(options.progress, f"measuring the mean/std of {n} training images of {root} (once; cached)")
        images = np.stack(progress_map(lambda i: eval_array(train.image(int(i)), size, channels), pick,
                                       "mean/std", "img", options.progress))
        mean, std = channel_stats(images)
        return {"mean": np.array(mean), "std": np.array(std)}

    files = reader.files(root) if reader.files is not None else []
    stats = cached(measure, f"{reader.name}-stats", root, f"size={size} channels={channels}{tag}", files,
                   _cache_dir(options))
    return tuple(float(v) for v in stats["mean"]), tuple(float(v) for v in stats["std"])


def _subset(items: Items, n: int | None, seed: int, flag: str) -> Items:
    if n is None:
        return items
    if n > len(items):
        raise InfoProError(f"{flag} {n} is larger than the split ({len(items)} images); use at most {len(items)}")
    return items.take(stratified_subset(items.labels, n, seed))


def open_data(name: str, data_dir: str | Path | None = None, options: DataOptions = DataOptions()) -> Data:
    """Find, read, check and prepare a registered data set (see the module docstring)."""
    if options.channels not in (None, 1, 3):
        raise InfoProError(f"--channels must be 1 or 3, got {options.channels}")
    if options.image_size is not None and options.image_size < 1:
        raise InfoProError(f"--image-size must be >= 1, got {options.image_size}")
    if options.val_split is not None and not 0 < options.val_split < 1:
        raise InfoProError(f"--val-split must be a fraction in (0, 1), got {options.val_split}")
    if options.path not in DATA_PATHS:
        raise InfoProError(f"--data-path must be one of {', '.join(DATA_PATHS)}, got {options.path!r}")
    spec = DATASETS.get(name)
    if spec.target != "class":
        raise InfoProError(f"{name} is a semantic segmentation set (a class per pixel), not image classification; "
                           "open it with infopro.data.open_segmentation")
    reader, root = find_source(spec, _data_dir(spec, data_dir))
    raw, tag = _screen_archives(reader.read(root), options)
    check_class_names(raw.classes, root, kind="class name")  # before anything is written: never at a run's end
    _check_labels(spec, raw, root)
    own_val = "val" in raw.splits and "test" in raw.splits
    if own_val and options.val_split is not None:
        raise InfoProError(f"{root} has its own val/ split (beside test/), which is the validation set; "
                           "drop --val-split")
    # Class folders only (a plain ImageFolder root, or train/ alone): --val-split's stratified hold-out is the test
    # set, and with no validation set the best epoch is picked on it, as for any set without one.
    train_only = not {"val", "test"} & set(raw.splits)
    if train_only and options.val_split is None:
        raise NoTestSplit(f"{root} has class folders but no test/ or val/ split; pass --val-split 0.2 to hold out "
                           f"a stratified 20% of its images as the test set (or add test/<class>/ folders)")
    test_name = "test" if "test" in raw.splits else "val"

    size, channels = _choose_shape(spec, lambda: _headers(raw, reader, root, options, tag), raw, root, options)
    decoded_bytes = sum(len(items) for items in raw.splits.values()) * size[0] * size[1] * channels
    path = _choose_path(options, decoded_bytes)
    if path == "memory":
        prepared, mean, std = _prepare_memory(raw, reader, root, size, channels, spec, options, tag)
    else:
        prepared = dict(raw.splits)
        mean, std = spec.mean, spec.std
        if mean is None and options.mean is None:
            mean, std = _stream_stats(raw, reader, root, size, channels, options, tag)
    if options.mean is not None:
        if len(options.mean) != channels or len(options.std) != channels:
            raise InfoProError(f"--mean and --std need one value per channel ({channels}), "
                               f"got {list(options.mean)} and {list(options.std)}")
        mean, std = options.mean, options.std
    if len(mean) != channels:  # a fixed normalisation (CIFAR's) is for its own channel count
        raise InfoProError(f"{root} trains as {channels}-channel images but {spec.name} expects {len(mean)}; "
                           f"point the data dir at a {spec.name} copy or pass --channels {len(mean)}")

    train, val = prepared["train"], None
    train_desc = f"{_where(reader, 'train')} ({len(train)} images)"
    splits = {}
    if train_only:
        held = stratified_split(train.labels, options.val_split, options.seed)
        rest = np.setdiff1d(np.arange(len(train)), held)
        prepared["test"], train, test_name = train.take(held), train.take(rest), "test"
        train_desc = f"the class folders ({len(held) + len(rest)} images) minus the test hold-out"
        test_desc = (f"the --val-split {options.val_split:g} hold-out of the class folders ({len(held)} images), "
                    f"stratified, seed {options.seed}")
    elif options.val_split is not None:
        held = stratified_split(train.labels, options.val_split, options.seed)
        rest = np.setdiff1d(np.arange(len(train)), held)
        val, train = train.take(held), train.take(rest)
        splits["val"] = f"{options.val_split:g} of {train_desc}, stratified, seed {options.seed}"
        train_desc += f" minus the validation hold-out"
    elif own_val:
        val = prepared["val"]
        splits["val"] = f"{_where(reader, 'val')} ({len(val)} images)"
    train = _subset(train, options.train_subset, options.seed, "--train-subset")
    test = _subset(prepared[test_name], options.test_subset, options.seed, "--test-subset")
    splits["train"] = train_desc + (f", stratified subset of {len(train)}" if options.train_subset else "")
    if not train_only:
        test_desc = f"{_where(reader, test_name)} ({len(prepared[test_name])} images)"
    splits["test"] = test_desc + (f", stratified subset of {len(test)}" if options.test_subset else "")
    return Data(name=name, source=str(root.resolve()), classes=list(raw.classes), path=path, size=size,
                channels=channels, mean=tuple(mean), std=tuple(std), train=train, val=val, test=test,
                splits=dict(sorted(splits.items())), test_is_held_out=train_only)


def _where(reader: Reader, split: str) -> str:
    return f"{split}/" if reader.files is not None else f"the {split} split"


def make_loader(data: Data, items: Items, device: torch.device | str, batch_size: int, train: bool, seed: int,
                workers: int | None = None, drop_last: bool = False,
                shard: tuple[int, int] | None = None, extra: ExtraAugment | None = None) -> DeviceLoader | StreamLoader:
    """The loader of `items` (one of data.train/val/test) on the data's path; `extra`: a training loader's
    augmentation beyond crop and flip."""
    if data.path == "memory":
        assert isinstance(items, ArrayItems)
        spec = DATASETS.get(data.name)
        return DeviceLoader(items.images, items.labels, device, batch_size, data.mean, data.std, train=train,
                            seed=seed, drop_last=drop_last, pad=min(spec.pad, min(data.size) - 1),
                            flip=spec.flip, padding=spec.padding, extra=extra)
    return StreamLoader(items, data.size, data.channels, device, batch_size, data.mean, data.std, train=train,
                        seed=seed, workers=workers, drop_last=drop_last, shard=shard, extra=extra)


@dataclass
class ImageDataset:
    """A data set decoded in memory: uint8 images (N, H, W, C), int64 labels, class names, normalisation."""

    name: str
    source: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the shape a model sees."""
        _, h, w, c = self.train_images.shape
        return (c, h, w)


def load_dataset(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 image_size: int | None = None, channels: int | None = None, progress: bool = False) -> ImageDataset:
    """A registered data set's train and test splits decoded in memory (`open_data` on the memory path)."""
    options = DataOptions(image_size=image_size, channels=channels, path="memory", cache_dir=cache_dir,
                          progress=progress)
    data = open_data(name, data_dir, options)
    assert isinstance(data.train, ArrayItems) and isinstance(data.test, ArrayItems)
    return ImageDataset(name, data.source, data.classes, data.train.images, data.train.labels, data.test.images,
                        data.test.labels, data.mean, data.std)

"""The data side of `infopro train`: the data set from the flags, its loaders, and the checks
that need both the data and the network (image size, normalisation)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

from ..data import Data, DataOptions, ExtraAugment, make_loader, open_data
from ..errors import InfoProError
from ..local.pieces import feature_shapes
from ..models import build_backbone

EVAL_BATCH_MEMORY = 1024  # evaluation batch on the memory path (the stream path uses --batch-size)
_PROBE_SIZE = 256  # input size at which a network's total downsampling is measured


# Settings whose "decide for me" value (here) `open_training_data` replaces by what it decided, in config.yaml:
# a run's config.yaml differs from the command that made it in these keys.
DECIDED_AT_START: dict[str, Any] = {"mean": None, "std": None, "data_path": "auto"}


def open_training_data(args: argparse.Namespace, device: torch.device) -> Data:
    """The data set the flags describe. Sets args.mean/std and args.data_path to the normalisation and the
    path used, so config.yaml records them and a resumed run cannot silently switch (auto may choose
    differently when the free memory differs)."""
    options = DataOptions(image_size=args.image_size, channels=args.channels, val_split=args.val_split,
                          train_subset=args.train_subset, test_subset=args.test_subset, seed=args.seed,
                          path=args.data_path, cache_dir=args.cache_dir, device=str(device),
                          progress=not args.quiet,
                          # a given normalisation: the stream path then measures none
                          mean=None if args.mean is None else tuple(args.mean),
                          std=None if args.std is None else tuple(args.std))
    data = open_data(args.dataset, args.data_dir, options)
    args.mean, args.std = list(data.mean), list(data.std)
    args.data_path = data.path
    return data


def check_image_size(args: argparse.Namespace, data: Data) -> None:
    """The images must be at least as large as the network's total downsampling (else its last
    stages would run on padding only), and the network must take them at all."""
    backbone = build_backbone(args.arch, data.num_classes, data.channels)
    blocks = list(backbone.blocks)
    try:
        feature_shapes(blocks, data.image_shape)
    except RuntimeError as error:
        raise InfoProError(f"{args.arch} cannot take {data.size[1]}x{data.size[0]} images "
                           f"({str(error).splitlines()[0]}); choose another --image-size") from None
    try:  # the downsampling, measured at a size every such network takes
        maps = [s for s in feature_shapes(blocks, (data.channels, _PROBE_SIZE, _PROBE_SIZE)) if len(s) == 3]
    except RuntimeError:
        return  # a network made for one input size only: the check above was the whole check
    factor = _PROBE_SIZE // min(s[-1] for s in maps) if maps else 1
    if min(data.size) < factor:
        raise InfoProError(f"images of {data.size[1]}x{data.size[0]} are too small for {args.arch}, which "
                           f"downsamples by {factor}; pass --image-size {factor} or more")


@dataclass
class Loaders:
    train: Any
    val: Any | None
    test: Any


def make_loaders(data: Data, args: argparse.Namespace, device: torch.device, drop_last: bool,
                 shard: tuple[int, int] | None) -> Loaders:
    """train (shuffled, augmented), val and test loaders on the data's path; `shard` = (slice, slices) along
    the data dimension of --parallel data or pieces,data, so that each process decodes only its slice."""
    eval_batch = EVAL_BATCH_MEMORY if data.path == "memory" else args.batch_size
    extra = extra_augment(args, data.num_classes)

    def loader(items: Any, train: bool) -> Any:
        return make_loader(data, items, device, args.batch_size if train else eval_batch, train, args.seed,
                           workers=args.workers, drop_last=drop_last and train, shard=shard,
                           extra=extra if train else None)

    return Loaders(loader(data.train, True), loader(data.val, False) if data.val is not None else None,
                   loader(data.test, False))


def extra_augment(args: argparse.Namespace, num_classes: int) -> ExtraAugment | None:
    """The training batches' augmentation beyond crop and flip from the flags (--randaugment, --random-erasing,
    --mixup, --cutmix), or None when all are off (the loaders then run exactly as before)."""
    ops, magnitude = (int(args.randaugment[0]), args.randaugment[1]) if args.randaugment else (0, 9.0)
    extra = ExtraAugment(randaugment_ops=ops, randaugment_magnitude=magnitude, randaugment_std=args.randaugment_std,
                         erasing=args.random_erasing, mixup=args.mixup, cutmix=args.cutmix, mix_prob=args.mix_prob,
                         mix_switch_prob=args.mix_switch_prob, num_classes=num_classes)
    return extra if ops > 0 or extra.erasing > 0 or extra.mixes else None

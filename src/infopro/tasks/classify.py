"""Image classification: one class index per image, logits (classes,), cross-entropy, top-1 (and top-5)
accuracy. The data come from `infopro.data.open_data` with the paper's crop and flip (and the DeiT extras)."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import torch

from ..data import Data, DataOptions, ExtraAugment, make_loader, open_data
from ..epoch_metrics import EvalSums, evaluation_result
from .base import TASKS, Loaders, Task

EVAL_BATCH_MEMORY = 1024  # evaluation batch on the memory path (the stream path uses --batch-size)

# Settings whose "decide for me" value (here) `open_data` replaces by what it decided, in config.yaml:
# a run's config.yaml differs from the command that made it in these keys.
DECIDED_AT_START: dict[str, Any] = {"mean": None, "std": None, "data_path": "auto"}


class Classification(Task):
    """One class index per image (`LocalTask`'s defaults for the learning side)."""

    name = "classify"
    description = "image classification: a class per image, top-1 accuracy"
    target = "class"
    score = "accuracy"
    score_label = "accuracy"
    default_arch = "resnet32"
    default_method = "infopro-contrast"
    bench_defaults = {"arch": "resnet110", "batch_size": 1024, "input_shape": None, "num_classes": 10,
                      "K": [2, 3, 4, 8, 16], "methods": "e2e,checkpoint,infopro-contrast",
                      "cuts": "paper,even,balanced"}  # the paper's Table 3 (CIFAR-10)

    def open_data(self, args: argparse.Namespace, device: torch.device) -> Data:
        """The data set the flags describe. Sets args.mean/std and args.data_path to the normalisation and the
        path used, so config.yaml records them and a resumed run cannot silently switch (auto may choose
        differently when the free memory differs)."""
        options = DataOptions(image_size=args.image_size, channels=args.channels, val_split=args.val_split,
                              train_subset=args.train_subset, test_subset=args.test_subset, seed=args.seed,
                              path=args.data_path, cache_dir=args.cache_dir, device=str(device),
                              progress=not args.quiet,
                              # a given normalisation: the stream path then measures none
                              mean=None if args.mean is None else tuple(args.mean),
                              std=None if args.std is None else tuple(args.std),
                              max_image_mb=args.max_image_mb, skip_unreadable=args.skip_unreadable)
        data = open_data(args.dataset, args.data_dir, options)
        args.mean, args.std = list(data.mean), list(data.std)
        args.data_path = data.path
        return data

    def make_loaders(self, data: Data, args: argparse.Namespace, device: torch.device, drop_last: bool,
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

    def train_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        # Soft targets (mixup, cutmix) count their largest class.
        hard = targets.argmax(1) if targets.is_floating_point() else targets
        return (logits.argmax(1) == hard).sum(), len(targets)

    def eval_sums(self, num_classes: int, device: torch.device) -> EvalSums:
        return EvalSums(device)

    def eval_result(self, shares: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
        return evaluation_result(shares, seconds)


def extra_augment(args: argparse.Namespace, num_classes: int) -> ExtraAugment | None:
    """The training batches' augmentation beyond crop and flip from the flags (--randaugment, --random-erasing,
    --mixup, --cutmix), or None when all are off (the loaders then run exactly as before)."""
    ops, magnitude = (int(args.randaugment[0]), args.randaugment[1]) if args.randaugment else (0, 9.0)
    extra = ExtraAugment(randaugment_ops=ops, randaugment_magnitude=magnitude, randaugment_std=args.randaugment_std,
                         erasing=args.random_erasing, mixup=args.mixup, cutmix=args.cutmix, mix_prob=args.mix_prob,
                         mix_switch_prob=args.mix_switch_prob, num_classes=num_classes)
    return extra if ops > 0 or extra.erasing > 0 or extra.mixes else None


TASKS.add("classify", Classification)

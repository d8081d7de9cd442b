"""Restoring a trained run: run directory (checkpoint.pt) -> trained backbone, cut points, and its data set
as the run saw it (image size, channels, normalisation, evaluation view), decoding only the images asked for."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Data, DataOptions, Items, decode_for_eval, open_data
from ..data.archive import MAX_IMAGE_MB
from ..data.prepare import NoTestSplit
from ..errors import InfoProError
from ..files import error_reason
from ..models import SequentialBackbone
from ..train.checkpoint import load_checkpoint
from ..train.args import add_train_arguments
from ..train.parts import build_learner


@dataclass
class RestoredRun:
    """A trained network, frozen: its backbone, where it was cut, and the settings it was trained with."""

    name: str
    path: Path
    config: dict[str, Any]
    backbone: SequentialBackbone
    cuts: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_blocks(self) -> int:
        return len(self.backbone.blocks)

    @property
    def cut_depths(self) -> list[int]:
        """The depths (see `features.py`) at which the pieces end: a cut after block c is depth c + 1."""
        return [c + 1 for c in self.cuts]


def checkpoint_path(run_dir: str | Path) -> Path:
    """`run_dir/checkpoint.pt`, or an error saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InfoProError(
            f"run directory {run_dir} does not exist (or is not a directory); "
            f"give the --out directory of a finished `infopro train` run"
        )
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise InfoProError(
            f"run directory {run_dir} has no checkpoint.pt; train it first with `infopro train --out {run_dir}` "
            f"(or resume it with --resume) and probe it afterwards"
        )
    return path


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The resolved training settings stored in the run's checkpoint (the `args` entry)."""
    return dict(load_checkpoint(checkpoint_path(run_dir))["args"])


def restore_run(run_dir: str | Path, data: Data, device: torch.device, name: str | None = None) -> RestoredRun:
    """Rebuild the run's learner from its checkpoint's settings, load the weights, return the frozen backbone.

    `data` gives the image shape, class count and normalisation the network was built for.
    """
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path, map_location=device)
    config = dict(state["args"])
    if config.get("dataset") != data.name:
        raise InfoProError(f"run {run_dir} was trained on {config.get('dataset')!r}, the probe data set is {data.name!r}")
    # Settings added after the run was trained take their defaults.
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(config)
    learner = build_learner(args, data.image_shape, data.num_classes, data.mean, data.std, device)
    try:
        learner.load_state_dict(state["model"])
    except RuntimeError as error:
        raise InfoProError(f"checkpoint {path} does not fit the model its own config describes: "
                           f"{error_reason(error)}") from None
    backbone = learner.export().float().eval()
    backbone.requires_grad_(False)
    return RestoredRun(
        name=name or Path(run_dir).resolve().name, path=Path(run_dir), config=config, backbone=backbone,
        cuts=list(learner.cuts), mean=data.mean, std=data.std,
    )


def open_run_data(config: dict[str, Any], data_dir: str | Path | None = None) -> Data:
    """The data set a run was trained on (its `dataset`, `data_dir` and `cache_dir`; or `data_dir` instead),
    opened without decoding any image: its items (file list or arrays, and labels), with the run's image
    size, channel count and normalisation. Decode what you use with `run_images`."""
    mean, std = config.get("mean"), config.get("std")  # recorded by every run that can have a folder data set
    channels = config.get("channels") or (len(mean) if mean else None)
    options = DataOptions(image_size=config.get("image_size"), channels=channels, path="stream",
                          cache_dir=config.get("cache_dir"), progress=False,
                          mean=tuple(mean) if mean else None, std=tuple(std) if std else None,
                          max_image_mb=config.get("max_image_mb", MAX_IMAGE_MB),
                          skip_unreadable=config.get("skip_unreadable", False))
    where = data_dir if data_dir is not None else config.get("data_dir")
    try:
        return open_data(config["dataset"], where, options)
    except NoTestSplit:  # class folders only: the run's test set is its own --val-split hold-out
        if config.get("val_split") is None:
            raise
        return open_data(config["dataset"], where, replace(options, val_split=config["val_split"],
                                                           seed=config.get("seed", 0)))


def run_images(config: dict[str, Any], data: Data, items: Items, progress: bool = False) -> np.ndarray:
    """uint8 (N, H, W, C) of `items` (of `open_run_data`), and only those, as the run's evaluation loader
    showed them: the stored image on the memory path, resize + centre crop on the stream path."""
    return decode_for_eval(items, data.size, data.channels, config.get("data_path") or "memory", progress)

"""A data loader that keeps the whole set on the device (airbench style): no workers, no host copies.

The set is stored once as uint8 (N, C, H, W); each batch is gathered,
augmented (train only) and normalised on the device. The shuffle and the
augmentation of epoch e come from a CPU generator seeded from (seed, e)
alone, so they are the same on CPU and GPU, and a run resumed at epoch e
sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import InfoProError
from .augment import ExtraAugment, augment_batch


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, with mean and std shaped (1, C, 1, 1)."""
    return images.float().div_(255).sub_(mean).div_(std)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch)."""
    if seed < 0 or epoch < 0:
        raise InfoProError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    # SeedSequence mixes the pair, so neighbouring seeds/epochs give unrelated streams.
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def step_generator(seed: int, epoch: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator whose state depends only on (seed, epoch, step, stream): for what a loader draws per
    batch apart from its epoch's order (`stream`: e.g. the data slice a process decodes)."""
    state = np.random.SeedSequence([seed, epoch, step, stream, 1]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def fill_colour(mean: torch.Tensor) -> list[float]:
    """The normalisation mean (1, C, 1, 1) in [0, 1] as a 0..255 colour: where RandAugment's geometric ops
    uncover the image (DeiT: the mean colour)."""
    return [min(255.0, round(255 * float(m))) for m in mean.flatten()]


class EpochBatches:
    """The epoch bookkeeping of a loader that holds its set on the device: `num_samples` items in batches of
    `batch_size` (the last partial one dropped with `drop_last`), one epoch per pass, `set_epoch` like
    DistributedSampler's. Subclasses set `batch_size`, `drop_last`, `epoch` and `num_samples`."""

    batch_size: int
    drop_last: bool
    epoch: int
    shard = None  # every process gets whole batches (data parallel slices them itself)

    @property
    def num_samples(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch `epoch`: its order and augmentation depend only on (seed, epoch)."""
        if epoch < 0:
            raise InfoProError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def global_batch_size(self, step: int) -> int:
        return min(self.batch_size, self.num_samples - step * self.batch_size)


class DeviceLoader(EpochBatches):
    """Batches `(x, y)` of a whole set held on `device`: x float32 (B, C, H, W) normalised, y int64.

    train=True: shuffled, pad `pad` (`padding`: reflect or zeros) + random crop +
    random horizontal flip (if `flip`), then `extra`'s steps if given (y: float32 soft targets
    (B, classes) when it mixes). train=False: in order, unaugmented. The last partial
    batch is kept unless `drop_last`. Each pass over the loader is one epoch
    and advances to the next; `set_epoch(e)` makes the next pass epoch e
    (call it every epoch, like DistributedSampler, to resume exactly).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        device: torch.device | str,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        seed: int = 0,
        pad: int = 4,
        flip: bool = True,
        drop_last: bool = False,
        padding: str = "reflect",
        extra: ExtraAugment | None = None,
    ) -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise InfoProError(f"images must be uint8 (N, H, W, C), got {images.dtype} of shape {images.shape}")
        if labels.shape != (len(images),):
            raise InfoProError(f"need one label per image: {len(images)} images but labels of shape {labels.shape}")
        if len(images) == 0:
            raise InfoProError("the image set is empty; load a data set with at least one image")
        if batch_size < 1:
            raise InfoProError(f"batch size must be at least 1, got {batch_size}")
        channels = images.shape[-1]
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise InfoProError(
                f"mean and std need one value per channel ({channels}) and std > 0, got mean={mean}, std={std}"
            )
        if train and not 0 <= pad < min(images.shape[1:3]):
            raise InfoProError(f"pad must be in [0, {min(images.shape[1:3]) - 1}] for these images, got {pad}")
        self.device = torch.device(device)
        if not images.flags.writeable:  # torch.from_numpy warns on read-only arrays
            images = images.copy()
        # Move first, then lay out as NCHW on the device, where the copy is fast.
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.pad = pad
        self.flip = flip
        self.padding = padding
        self.drop_last = drop_last
        self.extra = extra if train else None
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.labels)


    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return normalise(images, self.mean, self.std)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stop = len(self) * self.batch_size
        if not self.train:
            for start in range(0, stop, self.batch_size):
                end = start + self.batch_size
                yield self.normalise(self.images[start:end]), self.labels[start:end]
            return
        generator = epoch_generator(self.seed, epoch)
        order = torch.randperm(self.num_samples, generator=generator).to(self.device)
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size]
            x = augment_batch(self.images[index], generator, pad=self.pad, flip=self.flip,
                              padding=self.padding)
            if self.extra is None:
                yield self.normalise(x), self.labels[index]
                continue
            # The epoch's generator goes on drawing, so the whole epoch depends on (seed, epoch) alone.
            x = self.normalise(self.extra.on_uint8(x, generator, fill_colour(self.mean)))
            yield self.extra.on_normalised(x, self.labels[index], generator)

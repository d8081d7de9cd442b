"""The stream path: images decoded per sample in `torch.utils.data.DataLoader` worker processes.

For sets that do not fit in memory (ImageNet: 150 GB of JPEG). The order of
epoch e is a permutation seeded from (seed, e) alone, and each sample's
augmentation from (seed, e, position in the epoch), so the batches do not
depend on the number of workers and a run resumed at epoch e sees exactly the
batches an uninterrupted run would. With `shard=(rank, world)` each rank
decodes only its slice (`tensor_split`) of every global batch, as
DistributedSampler would, and `global_batch_size(step)` gives the whole
batch's size for weighting.
"""

from __future__ import annotations

import math
import os
import re
import signal
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import InfoProError
from .items import Items, convert, to_array
from .augment import ExtraAugment
from .loader import epoch_generator, fill_colour, normalise, step_generator
from .transforms import Size, eval_array, train_view


def default_workers() -> int:
    """The cores this process may use, shared among the ranks of this machine under torchrun."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


class StreamDataset(Dataset):
    """dataset[(i, epoch, position)] -> (uint8 (C, H, W) tensor, label): image i, converted to `channels`
    and transformed to `size` (train: random-resized crop + flip seeded by (seed, epoch, position);
    eval: resize + centre crop)."""

    def __init__(self, items: Items, size: Size, channels: int, train: bool, seed: int) -> None:
        self.items, self.size, self.channels, self.train, self.seed = items, size, channels, train, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        i, epoch, position = key
        img = self.items.image(i)
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, position])
            array = to_array(train_view(convert(img, self.channels), self.size, rng))
        else:
            array = eval_array(img, self.size, self.channels)
        # CHW in numpy: a torch op per sample would start its thread pool per image (slow under load).
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), int(self.items.labels[i])


class _EpochBatches:
    """The batch sampler: lists of (index, epoch, position) for the loader's current epoch."""

    def __init__(self, loader: "StreamLoader") -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        loader = self.loader
        epoch = loader.current_epoch
        n, b = loader.num_samples, loader.batch_size
        if loader.train:
            order = torch.randperm(n, generator=epoch_generator(loader.seed, epoch)).tolist()
        else:
            order = list(range(n))
        for step in range(len(loader)):
            positions = torch.arange(step * b, min((step + 1) * b, n))
            if loader.shard is not None:
                rank, world = loader.shard
                positions = positions.tensor_split(world)[rank]
            yield [(order[p], epoch, p) for p in positions.tolist()]


class StreamLoader:
    """Batches `(x, y)` decoded by `workers` processes: x float32 (B, C, H, W) normalised on `device`, y int64.

    The interface of `DeviceLoader` (`set_epoch`, `len`, `num_samples`, iteration = one epoch). `extra`
    (training only) runs on the device per batch, its random numbers seeded by (seed, epoch, step, data
    slice): with `shard`, each slice is mixed within itself (as DistributedDataParallel runs of timm do).
    """

    def __init__(self, items: Items, size: Size, channels: int, device: torch.device | str, batch_size: int,
                 mean: Sequence[float], std: Sequence[float], train: bool, seed: int = 0,
                 workers: int | None = None, drop_last: bool = False, shard: tuple[int, int] | None = None,
                 extra: ExtraAugment | None = None) -> None:
        if len(items) == 0:
            raise InfoProError("the image set is empty; load a data set with at least one image")
        if batch_size < 1:
            raise InfoProError(f"batch size must be at least 1, got {batch_size}")
        workers = default_workers() if workers is None else workers
        if workers < 0:
            raise InfoProError(f"--workers must be >= 0, got {workers}")
        self.device = torch.device(device)
        self.batch_size, self.train, self.seed, self.drop_last, self.shard = batch_size, train, seed, drop_last, shard
        self.extra = extra if train else None
        self.num_samples = len(items)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.epoch = 0
        self.current_epoch = 0
        self.workers = workers
        self._loader = DataLoader(
            StreamDataset(items, size, channels, train, seed),
            batch_sampler=_EpochBatches(self),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0 and train,  # eval loaders run once an epoch: no idle workers
            worker_init_fn=_one_thread,
            prefetch_factor=4 if workers > 0 else None,
        )

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def global_batch_size(self, step: int) -> int:
        """Images in global batch `step` of an epoch (all ranks' slices together)."""
        return min(self.batch_size, self.num_samples - step * self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise InfoProError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.current_epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches()

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for step, (x, y) in enumerate(self._loader):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                if self.extra is None:
                    yield normalise(x, self.mean, self.std), y
                    continue
                generator = step_generator(self.seed, self.current_epoch, step, self.shard[0] if self.shard else 0)
                x = normalise(self.extra.on_uint8(x, generator, fill_colour(self.mean)), self.mean, self.std)
                yield self.extra.on_normalised(x, y, generator)
        except InfoProError as error:
            # Raised in a worker, it arrives with the worker's traceback in its message: keep the last line.
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise InfoProError(lines[-1].split("InfoProError: ", 1)[-1]) from None
        except Exception as error:
            death = worker_death(error)
            if death is None:
                raise
            raise WorkerDied(death) from None


class WorkerDied(InfoProError):
    """A data-loading worker process died (killed by a signal, crashed, or failed with an exception)."""


# torch's messages for a worker that died: killed by a signal ("Killed", "Segmentation fault": strsignal's
# words), exited with a status, gone without one, or an exception raised in it (re-raised with its traceback).
_KILLED = re.compile(r"DataLoader worker \(pid (\d+)\) is killed by signal: ([^.]+)\.")
_EXITED = re.compile(r"DataLoader worker \(pid (\d+)\) exited unexpectedly with exit code (-?\d+)")
_GONE = re.compile(r"DataLoader worker \(pid\(s\) ([\d, ]+)\) exited unexpectedly")
_RAISED = re.compile(r"Caught (\w+) in DataLoader worker process (\d+)")


def _signal_name(description: str) -> str:
    """"Killed" -> "SIGKILL" (strsignal's words back to the signal's name; the words themselves if unknown)."""
    for number in signal.Signals:
        if signal.strsignal(number) == description:
            return number.name
    return description


def worker_death(error: BaseException) -> str | None:
    """One line for an error that says a DataLoader worker died (which worker, how, what to do), else None. The
    error it was raised from counts too: torch's "exited unexpectedly" is raised from the one naming the signal."""
    chain, link = [], error
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    text = "\n".join(str(link) for link in reversed(chain))  # the cause first: the most telling message
    how = None
    if match := _KILLED.search(text):
        pid, words = match.groups()
        name = _signal_name(words.strip())
        how = f"a data-loading worker (pid {pid}) was killed by {name}" + (f" ({words.strip()})" if name != words.strip() else "")
        if name == "SIGBUS":
            how += ": it may be out of shared memory (/dev/shm)"
        elif name == "SIGKILL":
            how += ": the system may be out of memory (fewer --workers need less)"
    elif match := _EXITED.search(text):
        how = f"a data-loading worker (pid {match[1]}) exited unexpectedly with status {match[2]}"
    elif match := _GONE.search(text):
        how = f"a data-loading worker (pid {match[1]}) exited unexpectedly"
    elif match := _RAISED.search(text):
        lines = [line for line in text.splitlines() if line.strip()]
        how = (f"data-loading worker {match[2]} failed: {lines[-1].strip() if len(lines) > 1 else match[1]} "
               f"(--workers 0 decodes in this process and shows where)")
    return how


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # each worker decodes one image at a time; threads would only contend

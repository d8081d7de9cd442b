"""Count every tensor alive during a step, without a GPU: a CPU stand-in for the CUDA allocator's peak.

`LiveTensorMeter` is a `TorchDispatchMode`: each storage an operator creates
is counted (once, however many views share it) from its creation until
Python's weak reference to it dies. Unlike `SavedActivationMeter` it also
sees gradients, temporaries and what gradient checkpointing recomputes
during backward. Storages that exist before the meter starts (parameters,
optimiser state, the batch) are not counted: pass them as `exclude` so an
in-place update of one is not mistaken for a new allocation, and add their
size yourself. No allocator rounding or fragmentation is modelled.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _key(storage: torch.UntypedStorage) -> tuple[str, int]:
    return (storage.device.type, storage.data_ptr())


class LiveTensorMeter(TorchDispatchMode):
    """`with LiveTensorMeter(exclude=tensors) as m: step(); m.peak_bytes`."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._excluded = {_key(t.untyped_storage()) for t in exclude}
        self._live: dict[tuple[str, int], int] = {}
        self._refs: dict[tuple[str, int], weakref.ref] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = _key(storage)
        if key in self._live or key in self._excluded or storage.nbytes() == 0:
            return  # a view, an in-place result, or a storage that was there before
        self._live[key] = storage.nbytes()
        self.current_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[key] = weakref.ref(storage, lambda _, key=key: self._release(key))

    def _release(self, key: tuple[str, int]) -> None:
        self.current_bytes -= self._live.pop(key, 0)
        self._refs.pop(key, None)

"""Count the activation memory autograd keeps for backward, without a GPU.

`SavedActivationMeter` hooks `torch.autograd.graph.saved_tensors_hooks`: every
tensor saved for backward is counted by its storage (views and in-place
results share one), from the moment it is saved until backward frees it.
Measure steps that run backward: a graph dropped without backward keeps the
tensors it saved as outputs counted (the holder and the graph node refer to
each other outside Python's garbage collector). Parameters, and any other
tensors passed as `exclude`, are not counted. `peak_bytes` is the largest
total alive at one time: a device-independent count, not a timing.
"""

from __future__ import annotations

import sys
from typing import Iterable

import torch


def _storage_key(t: torch.Tensor) -> tuple[str, int | None, int]:
    return (t.device.type, t.device.index, t.untyped_storage().data_ptr())


class _Saved:
    """Holds a saved tensor; when autograd drops it, the meter is told."""

    __slots__ = ("tensor", "_meter", "_key")

    def __init__(self, tensor: torch.Tensor, meter: "SavedActivationMeter", key: tuple) -> None:
        self.tensor, self._meter, self._key = tensor, meter, key

    def __del__(self) -> None:
        self._meter._release(self._key)


class SavedActivationMeter:
    """Context manager: `with SavedActivationMeter(exclude=model.parameters()) as m: ...; m.peak_bytes`."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._excluded = {_storage_key(t) for t in exclude}
        self._refs: dict[tuple, int] = {}
        self._bytes: dict[tuple, int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        pack, unpack = self._pack, self._unpack
        if "torch._dynamo" in sys.modules:  # something may be compiled: keep the bookkeeping out of its graphs
            pack, unpack = torch.compiler.disable(pack), torch.compiler.disable(unpack)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, unpack)

    def __enter__(self) -> "SavedActivationMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def reset_peak(self) -> None:
        self.peak_bytes = self.current_bytes

    def _pack(self, tensor: torch.Tensor) -> object:
        key = _storage_key(tensor)
        if key in self._excluded:
            return tensor
        count = self._refs.get(key, 0)
        if count == 0:
            size = tensor.untyped_storage().nbytes()
            self._bytes[key] = size
            self.current_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[key] = count + 1
        return _Saved(tensor, self, key)

    @staticmethod
    def _unpack(packed: object) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Saved) else packed

    def _release(self, key: tuple) -> None:
        count = self._refs[key] - 1
        if count:
            self._refs[key] = count
        else:
            del self._refs[key]
            self.current_bytes -= self._bytes.pop(key)

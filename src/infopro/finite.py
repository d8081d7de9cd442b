"""Finite or stop: non-finite losses and weights end a run before they reach a checkpoint.

Losses are checked every step without a host sync per step: each step ORs "is nan" and "is inf"
flags into small tensors on the losses' device, and the flags are read only at the logging points
(every `CHECK_EVERY` steps and at the end of the epoch). On a mesh of processes each process flags the
losses of the pieces it computes and the flags are combined over the processes at those same points, so
every process stops there with the same line. Every parameter and buffer (BatchNorm
statistics included) is checked before each checkpoint write.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .errors import InfoProError

CHECK_EVERY = 50  # steps between two reads of the loss flags (each read is one host sync)


class NonFiniteError(InfoProError):
    """A loss, weight or buffer became nan or inf: the run stops, its last good checkpoint stays."""


def _kind(nan: bool, inf: bool) -> str:
    return " and ".join(k for k, bad in (("nan", nan), ("inf", inf)) if bad)


class LossWatch:
    """Per-piece flags of non-finite step losses, accumulated where the losses are."""

    def __init__(self) -> None:
        self.nan: torch.Tensor | None = None
        self.inf: torch.Tensor | None = None

    def add(self, losses: torch.Tensor | Sequence[float]) -> None:
        """One step's losses (one per piece): a tensor (no sync) or the floats `train_step` returns."""
        t = losses.detach() if isinstance(losses, torch.Tensor) else torch.tensor(losses, dtype=torch.float64)
        nan, inf = t.isnan(), t.isinf()
        self.nan = nan if self.nan is None else self.nan | nan
        self.inf = inf if self.inf is None else self.inf | inf

    def check(self, where: str, combine: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Raise `NonFiniteError` naming the first piece whose loss was non-finite at some step so far.
        `combine` (e.g. a max all-reduce over processes) merges the 2 x pieces int flags of all processes."""
        if self.nan is None:
            return
        flags = torch.stack([self.nan, self.inf]).int()
        if combine is not None:
            flags = combine(flags)
        flags = flags.tolist()  # the one host sync
        for k, (nan, inf) in enumerate(zip(*flags)):
            if nan or inf:
                raise NonFiniteError(f"piece {k + 1}'s local loss became {_kind(nan, inf)} {where}")


def piece_of(key: str) -> str:
    """`pieces.1.blocks.3.bn1.running_var` -> "piece 2 (blocks.3.bn1.running_var)", `aux.0.x` -> piece 1's aux nets."""
    parts = key.split(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[0] in ("pieces", "aux"):
        owner = f"piece {int(parts[1]) + 1}" + ("'s auxiliary nets" if parts[0] == "aux" else "")
        return f"{owner} ({parts[2]})"
    return key


def check_finite_state(model_state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise `NonFiniteError` naming the first parameter or buffer of `model_state` with nan or inf values."""
    for key, value in model_state.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        if not bool(torch.isfinite(value).all()):
            nan, inf = bool(value.isnan().any()), bool(value.isinf().any())
            count = int((~torch.isfinite(value)).sum())
            raise NonFiniteError(f"{piece_of(key)} holds {_kind(nan, inf)} values ({count} of {value.numel()}) {where}")

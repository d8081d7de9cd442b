"""Checkpoints as one dict {model, optimizer, scheduler, epoch, args, history (the epochs' metrics records; not in
checkpoints of older versions)}, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import InfoProError
from ..files import atomic_write, atomic_write_text, error_reason

__all__ = ["atomic_write", "atomic_write_text", "load_checkpoint", "save_checkpoint"]

# What a checkpoint must hold to be evaluated; to be resumed it also needs these.
EVALUATE_KEYS = {"model", "epoch", "args"}
RESUME_KEYS = EVALUATE_KEYS | {"optimizer", "scheduler"}


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Save `state` with `torch.save`, atomically (the previous file stays whole until the new one is)."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: set[str] = EVALUATE_KEYS) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (tensors and plain containers only); anything that is not
    a readable infopro checkpoint holding `required` is one `InfoProError` naming the file and the cause."""
    path = Path(path)
    if not path.is_file():
        raise InfoProError(f"no checkpoint at {path}; give the checkpoint file or the run directory that holds checkpoint.pt")
    try:
        size = path.stat().st_size
        if size == 0:
            raise InfoProError(f"checkpoint {path} is empty (0 bytes): it was cut short while being copied or written; "
                               f"restore it from a copy, or delete it to train the run again from epoch 1")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except InfoProError:
        raise
    except OSError as error:
        raise InfoProError(f"cannot read checkpoint {path}: {error_reason(error)}") from None
    except Exception as error:  # a truncated or foreign file: say which, not a pickle traceback
        raise InfoProError(f"cannot read checkpoint {path} ({size} bytes): {type(error).__name__}: "
                           f"{error_reason(error)}; it is truncated or not a PyTorch file: restore it from a copy, "
                           f"or delete it to train the run again from epoch 1") from None
    if not isinstance(state, dict) or not required <= state.keys():
        raise InfoProError(f"{path} is not an infopro checkpoint (expected a dict with {', '.join(sorted(required))})")
    return state

"""Checkpoints as one dict {model, optimizer, scheduler, epoch, args}, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from ..errors import InfoProError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(file)` into a temporary file in the same folder, then rename it over `path`:
    a crash never leaves half a file, and the old one stays until the new one is complete."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Save `state` with `torch.save`, atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise InfoProError(f"no checkpoint at {path}; give the checkpoint file or the run directory that holds checkpoint.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which, not a pickle traceback
        raise InfoProError(f"cannot read checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or not {"model", "epoch", "args"} <= state.keys():
        raise InfoProError(f"{path} is not an infopro checkpoint (expected a dict with model, epoch and args)")
    return state

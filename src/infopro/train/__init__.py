"""The training loop: optimiser and schedule, run directory, metrics, checkpoints, resume."""

from .args import add_train_arguments, apply_config_file, read_config
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import train_main

__all__ = ["add_train_arguments", "apply_config_file", "load_checkpoint", "read_config", "save_checkpoint", "train_main"]

"""Measuring memory, compute and time of a training step."""

from .activation_memory import SavedActivationMeter

__all__ = ["SavedActivationMeter"]

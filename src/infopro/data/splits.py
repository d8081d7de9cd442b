"""What a reader returns: decoded train/test arrays and class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Splits:
    """uint8 images (N, H, W, C), int64 labels (N,), and class names in label order."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]

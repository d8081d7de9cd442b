"""A segmentation network's evaluation, measured as `epoch_metrics.EvalSums` measures a classifier's: sums kept
as device tensors while batches are evaluated (no host sync per batch), turned into plain numbers once (a
process's share), and shares of disjoint parts of a split added up by `segmentation_result`.

The sums are one K x K confusion matrix (rows: the true class, columns: the predicted one) over the pixels
that carry a label, and the summed per-pixel cross-entropy over the same pixels. Pixels whose label is the
ignore index, or any value outside 0..K-1, are not counted (MMSegmentation's rule).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

DEFAULT_IGNORE_INDEX = 255  # Cityscapes' and CamVid's "no label" value in the masks


class ConfusionSums:
    """Sums over evaluated batches of a segmentation network's logits: the confusion matrix of its per-pixel
    argmax against the masks, the summed cross-entropy and the labelled pixels, all on `device`."""

    def __init__(self, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX,
                 device: str | torch.device = "cpu") -> None:
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        # Flat, with one extra bin past K*K where the unlabelled pixels land (dropped in `totals`): a scatter
        # into a fixed size needs no boolean indexing, which would sync with the host to learn its size.
        self.confusion = torch.zeros(self.num_classes ** 2 + 1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.pixels = torch.zeros((), dtype=torch.long, device=device)

    def add(self, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """(N, K, H, W) logits at the size of the (N, H, W) int64 masks (upsampled by the caller)."""
        if logits.dim() != 4 or logits.shape[1] != self.num_classes or logits.shape[2:] != masks.shape[1:] \
                or logits.shape[0] != masks.shape[0]:
            raise ValueError(f"logits {tuple(logits.shape)} do not fit masks {tuple(masks.shape)} with "
                             f"{self.num_classes} classes: want (N, K, H, W) and (N, H, W)")
        k = self.num_classes
        logits = logits.float()
        masks = masks.long()
        labelled = (masks >= 0) & (masks < k) & (masks != self.ignore_index)
        target = torch.where(labelled, masks, -100)  # cross_entropy's own ignore value, whatever ignore_index is
        self.loss += F.cross_entropy(logits, target, ignore_index=-100, reduction="sum").double()
        cell = torch.where(labelled, masks * k + logits.argmax(1), k * k)
        # torch.bincount would sync on CUDA (it reads the largest value to size its output); this does not.
        self.confusion.scatter_add_(0, cell.flatten(), torch.ones_like(cell.flatten()))
        self.pixels += labelled.sum()

    def totals(self) -> dict[str, Any]:
        """The sums as plain numbers (this process's share of an evaluation): {"confusion": K x K nested list
        (row = true class, column = predicted class), "loss": summed cross-entropy, "pixels": labelled pixels}."""
        k = self.num_classes
        confusion = self.confusion[: k * k].view(k, k).tolist()
        return {"confusion": confusion, "loss": self.loss.item(), "pixels": int(self.pixels.item())}


def segmentation_result(shares: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """{miou, class_iou, pixel_accuracy, mean_accuracy, accuracy, loss, seconds} from the `ConfusionSums.totals`
    of the processes that evaluated disjoint parts of a split (one share in one process).

    Class c's IoU is TP / (TP + FP + FN); it is undefined (None in `class_iou`, listed in class order) for a
    class that appears neither in the masks nor in the predictions. `miou` is the mean over the classes whose
    IoU is defined (MMSegmentation's nanmean), `mean_accuracy` the mean of TP / (TP + FN) over the classes that
    appear in the masks, `pixel_accuracy` the fraction of labelled pixels predicted right (`accuracy` is the
    same number, for code that reads a classifier's results), `loss` the mean cross-entropy per labelled pixel.
    Without any labelled pixel every number is 0 and every class IoU None.
    """
    if not shares:
        raise ValueError("segmentation_result needs at least one share")
    sizes = {len(s["confusion"]) for s in shares}
    if len(sizes) != 1:
        raise ValueError(f"shares hold confusion matrices of different sizes {sorted(sizes)}")
    k = sizes.pop()
    confusion = sum(np.asarray(s["confusion"], dtype=np.int64).reshape(k, k) for s in shares)
    pixels = sum(int(s["pixels"]) for s in shares)
    loss = sum(float(s["loss"]) for s in shares)
    hits = np.diag(confusion).astype(np.float64)
    truth, predicted = confusion.sum(1), confusion.sum(0)
    union = truth + predicted - hits
    class_iou = [float(h / u) if u > 0 else None for h, u in zip(hits, union)]
    defined = [v for v in class_iou if v is not None]
    recalls = [float(h / t) for h, t in zip(hits, truth) if t > 0]
    pixel_accuracy = float(hits.sum() / pixels) if pixels else 0.0
    return {"miou": math.fsum(defined) / len(defined) if defined else 0.0,
            "class_iou": class_iou,
            "pixel_accuracy": pixel_accuracy,
            "mean_accuracy": math.fsum(recalls) / len(recalls) if recalls else 0.0,
            "accuracy": pixel_accuracy,
            "loss": loss / max(pixels, 1),
            "seconds": seconds}

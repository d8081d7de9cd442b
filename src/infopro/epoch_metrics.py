"""The per-epoch numbers every trainer measures the same way, in one process or on a mesh of them: each
piece's loss split into its terms, the whole network's evaluation (accuracy, cross-entropy, top-5), and
the progress shown while an epoch runs (a bar on a terminal, a line every ~10 % otherwise).

Sums are kept as device tensors (no host sync per step) and turned into plain numbers once, so that a
process of a mesh can send its share to the writing process, which adds the shares up with the same
arithmetic one process uses on its own. Used by `train/` and `parallel/`; imports neither.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

PROGRESS_LINES = 10  # lines per epoch when the bar cannot be drawn (about every 10 %)
TOP5_ABOVE_CLASSES = 10  # top-5 accuracy is recorded for data sets with more classes than this


class PieceTerms:
    """Sums of each piece's unweighted loss terms (reconstruction, task) over an epoch, from the objectives'
    `last_terms` after each step (device tensors: no host sync per step)."""

    def __init__(self, objectives: Sequence[Any]) -> None:
        self.objectives = list(objectives)
        self.sums: list[dict[str, torch.Tensor]] = [{} for _ in self.objectives]

    def add(self, batch: int) -> None:
        for sums, objective in zip(self.sums, self.objectives):
            for name, value in getattr(objective, "last_terms", {}).items():
                sums[name] = sums.get(name, 0) + value.float() * batch

    def totals(self) -> list[dict[str, float]]:
        """Per objective, {term: sum over the images seen} as plain numbers (one host sync)."""
        return [{name: value.item() for name, value in sums.items()} for sums in self.sums]

    def record(self, seen: int) -> dict[str, Any]:
        return piece_terms_record(self.totals(), seen)


def piece_terms_record(totals: Sequence[dict[str, float]], seen: int) -> dict[str, Any]:
    """{"train_piece_terms": [{"recon": mean, "task": mean}, ...]} from each piece's term sums over `seen`
    images (empty dicts for pieces whose method does not split its loss), or nothing when no piece does."""
    if not any(totals):
        return {}
    return {"train_piece_terms": [{name: value / seen for name, value in sums.items()} for sums in totals]}


class EvalSums:
    """Sums over evaluated batches of the whole network's logits: correct top-1, correct top-5 (more than
    10 classes only), summed cross-entropy, images."""

    def __init__(self, device: torch.device) -> None:
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.top5 = torch.zeros((), dtype=torch.long, device=device)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.total, self.classes = 0, 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()
        self.classes = logits.shape[1]
        self.correct += (logits.argmax(1) == labels).sum()
        self.loss += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").double()
        if self.classes > TOP5_ABOVE_CLASSES:
            self.top5 += (logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum()
        self.total += len(labels)

    def totals(self) -> dict[str, float]:
        """The sums as plain numbers (one host sync): this process's share of an evaluation."""
        return {"correct": self.correct.item(), "top5": self.top5.item(), "loss": self.loss.item(),
                "total": self.total, "classes": self.classes}


def evaluation_result(shares: Sequence[dict[str, float]], seconds: float) -> dict[str, float]:
    """{accuracy, loss (mean cross-entropy), top5_accuracy (more than 10 classes only), seconds} from the
    `EvalSums.totals` of the processes that evaluated disjoint parts of a split (one share in one process)."""
    total = max(sum(s["total"] for s in shares), 1)
    result = {"accuracy": sum(s["correct"] for s in shares) / total, "loss": sum(s["loss"] for s in shares) / total}
    if max(s["classes"] for s in shares) > TOP5_ABOVE_CLASSES:
        result["top5_accuracy"] = sum(s["top5"] for s in shares) / total
    result["seconds"] = seconds
    return result


def evaluation_record(results: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per split, every number of its evaluation but the accuracy (which the loop records with its error):
    {split}_loss, {split}_top5_accuracy (when measured), a segmentation's {split}_miou, {split}_class_iou...;
    eval_seconds over all splits."""
    record: dict[str, Any] = {}
    for split, result in results.items():
        record.update({f"{split}_{key}": value for key, value in result.items() if key not in ("accuracy", "seconds")})
    record["eval_seconds"] = sum(r["seconds"] for r in results.values())
    return record


class EpochProgress:
    """When stderr is not a terminal (a cluster log), a line about every 10 % of an epoch instead of a bar.
    `loss_label` says whose loss the line shows (a process of a mesh may not hold the last piece)."""

    def __init__(self, epoch: int, epochs: int, steps: int, enabled: bool, loss_label: str = "loss") -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.every = max(1, -(-steps // PROGRESS_LINES))
        self.enabled = enabled and steps > 1
        self.loss_label = loss_label
        self.start = time.perf_counter()

    def step(self, done: int, loss: float | torch.Tensor, seen: int) -> None:
        """After step `done` of the epoch, `seen` images in all; `loss` may be a device tensor (read only when
        a line is printed)."""
        if self.enabled and (done % self.every == 0) and done < self.steps:
            rate = seen / max(time.perf_counter() - self.start, 1e-9)
            print(f"  epoch {self.epoch + 1}/{self.epochs}  step {done}/{self.steps} ({100 * done // self.steps}%)  "
                  f"{self.loss_label} {float(loss):.3f}  {rate:.0f} img/s", flush=True)


def epoch_progress(batches: Iterable[Any], steps: int, epoch: int, epochs: int, show: bool,
                   loss_label: str = "loss") -> tuple[tqdm, EpochProgress]:
    """(the batches wrapped in a tqdm bar, drawn when `show` and stderr is a terminal; progress lines, printed
    when `show` and it is not)."""
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True,
               disable=not show or not sys.stderr.isatty())
    return bar, EpochProgress(epoch, epochs, steps, enabled=show and bar.disable, loss_label=loss_label)

"""What a task is to the layers above `local/`: targets, evaluation, metrics and the data it trains on.

`Task` extends `infopro.local.LocalTask` (the loss of the last piece, the local task terms, the methods that
fit), so that one object answers every layer's question. `TASKS` maps a name to a factory taking the run's
settings (e.g. the ignore index of segmentation masks).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from ..errors import InfoProError
from ..local.task import LocalTask
from ..registry import Registry


@dataclass
class Loaders:
    """A run's loaders: train (shuffled, augmented), val (None without a validation set) and test."""

    train: Any
    val: Any | None
    test: Any


class Task(LocalTask):
    """A task: `LocalTask`'s learning side plus what the training loop, evaluation and the run files need."""

    description: ClassVar[str]
    target: ClassVar[str]  # what a data set's targets must be for it: "class" (one per image) or "mask" (per pixel)
    score: ClassVar[str]  # the metric the best epoch is picked on, higher is better ("accuracy", "miou")
    score_label: ClassVar[str]  # how a line printed for a person names it
    default_arch: ClassVar[str]  # --arch and --method where not given
    default_method: ClassVar[str]
    # Whether the network takes images of any height and width (a fully convolutional segmenter): graph exports
    # (`infopro export --format onnx / pt2`) then leave them free, not only the batch.
    any_image_size: ClassVar[bool] = False
    # `infopro bench`'s settings where the command line gives none: arch, batch_size, input_shape (None: the
    # architecture's own), num_classes, K, methods, cuts.
    bench_defaults: ClassVar[dict[str, Any]]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Task":
        """The task with the run's settings (flags or config)."""
        return cls()

    def settings(self) -> dict[str, Any]:
        """The task's own settings, saved with a model (`model_info`) so that it is rebuilt alike."""
        return {}

    # --- data ---------------------------------------------------------------------------------------------
    def open_data(self, args: argparse.Namespace, device: torch.device) -> Any:
        """The data set the flags describe (`infopro.data.Data` or a task's own), normalisation decided."""
        raise NotImplementedError

    def make_loaders(self, data: Any, args: argparse.Namespace, device: torch.device, drop_last: bool,
                     shard: tuple[int, int] | None) -> Any:
        """train (shuffled, augmented), val and test loaders (`Loaders`)."""
        raise NotImplementedError

    # --- metrics ------------------------------------------------------------------------------------------
    def train_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        """(correct predictions, predictions counted) of a training batch: device tensors (or a plain count),
        so that the loop reads nothing back from the device per step."""
        raise NotImplementedError

    def eval_sums(self, num_classes: int, device: torch.device) -> Any:
        """An accumulator with `add(logits, targets)` and `totals()` (a share `eval_result` merges)."""
        raise NotImplementedError

    def eval_logits(self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The whole network's output for an evaluation batch, in the targets' layout."""
        return model(x)

    def eval_result(self, shares: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
        """{accuracy, loss, <score>, ..., seconds} from the `totals()` of the processes' shares."""
        raise NotImplementedError

    def summary(self, history: Sequence[dict[str, Any]], best: int) -> dict[str, Any]:
        """The task's own entries of summary.json (beyond the errors every task has)."""
        return {}

    def epoch_text(self, record: dict[str, Any], split: str) -> str:
        """The task's numbers of `split` for the line printed after each epoch."""
        return f"{split} acc {100 * record[f'{split}_accuracy']:5.2f}%  "

    def done_text(self, summary: dict[str, Any]) -> str:
        """The last line of a finished run, before its time and directory."""
        return (f"final test error {100 * summary['final_test_error']:.2f}%, best epoch {summary['best_epoch']} "
                f"on {summary['best_selected_on']}: test error {100 * summary['test_error_at_best_epoch']:.2f}%")

    def inference(self, network: nn.Module) -> nn.Module:
        """The network as `load_model` hands it out (segmentation: logits at the input size)."""
        return network


TaskFactory = Callable[..., Task]
TASKS: Registry[TaskFactory] = Registry("task")


def build_task(name: str, **settings: Any) -> Task:
    """The task `name` with its settings (e.g. `build_task("segment", ignore_index=255)`)."""
    return TASKS.get(name)(**settings)


def task_of(model: nn.Module) -> Task:
    """The task a learner (or a network evaluated like one) was built for: its `task` where that is a `Task`,
    else classification (a `LocalLearner` made without one)."""
    task = getattr(model, "task", None)
    return task if isinstance(task, Task) else TASKS.get("classify")()


def task_for_output(output_shape: Sequence[int], num_classes: int) -> str:
    """The name of the first task (in registry order) whose networks give outputs of `output_shape` (per image)
    for `num_classes` classes: how `infopro describe` knows a segmentation network without --task."""
    for name in TASKS:
        try:
            TASKS.get(name)().check_output(output_shape, num_classes)
        except InfoProError:
            continue
        return name
    raise InfoProError(f"no task takes a network whose output is {tuple(output_shape)} for {num_classes} classes; "
                       f"tasks: {', '.join(TASKS.names())}")


def task_for_data(target: str) -> str:
    """The name of the task whose targets are `target` ("class", "mask"): how a data folder picks its task
    when --task is not given."""
    for name in TASKS:
        if TASKS.get(name).target == target:
            return name
    raise InfoProError(f"no task trains on targets of kind {target!r}; tasks: {', '.join(TASKS.names())}")

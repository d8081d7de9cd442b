"""Tasks by name (`TASKS`): what a target is, the network's output and loss, the metrics, and the data with its
augmentation. One file per task, one registry line each; the loop, the learner and the methods consult the
task object and never test its name."""

from .base import TASKS, Loaders, Task, build_task, task_for_data, task_for_output, task_of
from . import classify, segment  # noqa: F401  (each registers itself)

__all__ = ["TASKS", "Loaders", "Task", "build_task", "task_for_data", "task_for_output", "task_of"]

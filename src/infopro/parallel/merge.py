"""One checkpoint from K pieces: each rank's piece and optimiser state, renumbered into the
single-process layout, so `--resume` and `--test-only` read it in either mode."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InfoProError
from ..local import LocalLearner


def piece_keys(k: int) -> tuple[str, str]:
    """State-dict prefixes of piece k and its objective in `LocalLearner.state_dict()`."""
    return f"pieces.{k}.", f"aux.{k}."


def piece_state_dict(learner: LocalLearner, k: int) -> dict[str, torch.Tensor]:
    """The weights and buffers of piece k and its auxiliary nets, on the CPU, under the learner's keys."""
    prefixes = piece_keys(k)
    return {key: value.detach().cpu() for key, value in learner.state_dict().items() if key.startswith(prefixes)}


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The parameters in the order the optimiser's state dict numbers them: its groups' in turn."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def global_indices(order: list[nn.Parameter], params: list[nn.Parameter]) -> list[int]:
    """Positions of `params` in `order`: the single-process optimiser's `optimizer_parameters` over the whole
    learner, the numbering a checkpoint uses."""
    index = {id(p): i for i, p in enumerate(order)}
    return [index[id(p)] for p in params]


def _cpu(value: Any) -> Any:
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def optimizer_state_to_global(state: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """A rank's optimiser state dict with its parameters renumbered as in the whole learner."""
    return {
        "state": {indices[i]: {name: _cpu(v) for name, v in s.items()} for i, s in state["state"].items()},
        "param_groups": [{**group, "params": [indices[i] for i in group["params"]]} for group in state["param_groups"]],
    }


def merge_optimizer_states(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The single-process optimiser state dict from every rank's renumbered one (group g from every rank's
    group g; each rank has the same groups, some maybe empty)."""
    groups = [{**group, "params": sorted(i for p in parts for i in p["param_groups"][g]["params"])}
              for g, group in enumerate(parts[0]["param_groups"])]
    state = {i: s for part in parts for i, s in part["state"].items()}
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def optimizer_state_for(full: dict[str, Any], indices: list[int], group_sizes: list[int] | None = None
                        ) -> dict[str, Any]:
    """The part of a single-process optimiser state dict that belongs to `indices` (this rank's parameters in
    its optimiser's order), numbered 0.. again; `group_sizes`: how many of them each of its groups holds
    (default: one group)."""
    sizes = group_sizes if group_sizes is not None else [len(indices)]
    if len(sizes) != len(full["param_groups"]):
        raise InfoProError(f"the checkpoint's optimiser has {len(full['param_groups'])} parameter groups, "
                         f"this one {len(sizes)}")
    starts = [sum(sizes[:g]) for g in range(len(sizes))]
    return {
        "state": {i: full["state"][g] for i, g in enumerate(indices) if g in full["state"]},
        "param_groups": [{**group, "params": list(range(start, start + size))}
                         for group, start, size in zip(full["param_groups"], starts, sizes)],
    }

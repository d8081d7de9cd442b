"""One checkpoint from K pieces: each rank's piece and optimiser state, renumbered into the
single-process layout, so `--resume` and `--test-only` read it in either mode."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..local import LocalLearner


def piece_keys(k: int) -> tuple[str, str]:
    """State-dict prefixes of piece k and its objective in `LocalLearner.state_dict()`."""
    return f"pieces.{k}.", f"aux.{k}."


def piece_state_dict(learner: LocalLearner, k: int) -> dict[str, torch.Tensor]:
    """The weights and buffers of piece k and its auxiliary nets, on the CPU, under the learner's keys."""
    prefixes = piece_keys(k)
    return {key: value.detach().cpu() for key, value in learner.state_dict().items() if key.startswith(prefixes)}


def global_indices(learner: LocalLearner, params: list[nn.Parameter]) -> list[int]:
    """Positions of `params` in `learner.parameters()`, the order a single-process optimiser numbers them."""
    index = {id(p): i for i, p in enumerate(learner.parameters())}
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
    """The single-process optimiser state dict from every rank's renumbered one (one param group)."""
    merged = {**parts[0]["param_groups"][0], "params": sorted(i for p in parts for i in p["param_groups"][0]["params"])}
    state = {i: s for part in parts for i, s in part["state"].items()}
    return {"state": dict(sorted(state.items())), "param_groups": [merged]}


def optimizer_state_for(full: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """The part of a single-process optimiser state dict that belongs to `indices`, numbered 0.. again."""
    group = full["param_groups"][0]
    return {
        "state": {i: full["state"][g] for i, g in enumerate(indices) if g in full["state"]},
        "param_groups": [{**group, "params": list(range(len(indices)))}],
    }

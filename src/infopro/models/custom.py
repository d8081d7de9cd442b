"""Your own model as a `SequentialBackbone`, without rewriting it: name its submodules in order.

    backbone = backbone_from_module(
        model,
        blocks=[["conv1", "bn1", "relu", "maxpool"], "layer1.*", "layer2.*", "layer3.*", "layer4.*"],
        head=["avgpool", nn.Flatten(1), "fc"],
    )

Each entry of `blocks` is one block (a place a cut may follow): a submodule's
dotted name, a list of entries run in order (grouped into one block), or
"name.*" for every child of `name` as a block of its own. Entries may also be
modules or plain callables (glue such as a flatten or a reshape; they must not
hold parameters of their own). The blocks *are* the model's modules, shared,
not copied: training the backbone trains `model` in place and
`model.state_dict()` keeps its names. Every trainable parameter of `model`
must be in exactly one block or the head, so that nothing is silently left
untrained or trained by two pieces.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

from ..errors import InfoProError
from .backbone import SequentialBackbone, TokenLayout

Entry = Union[str, nn.Module, Callable[[torch.Tensor], torch.Tensor], Sequence["Entry"]]


class Call(nn.Module):
    """A plain function as a module (glue between the model's own modules)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise InfoProError(
            f"the model has no submodule {name!r}; its top-level children are: {children} "
            f"(name nested ones with dots, e.g. 'layer1.0')"
        ) from None


def _module(model: nn.Module, entry: Entry) -> nn.Module:
    """One entry as a module: a name, a module, a callable, or a list of entries (an nn.Sequential)."""
    if isinstance(entry, str):
        return _submodule(model, entry)
    if isinstance(entry, nn.Module):
        return entry
    if callable(entry):
        return Call(entry)
    if isinstance(entry, (list, tuple)):
        return nn.Sequential(*(_module(model, e) for e in _expand(model, entry)))
    raise InfoProError(f"a block entry must be a submodule name, a module, a callable or a list of them, got {entry!r}")


def _expand(model: nn.Module, entries: Sequence[Entry]) -> list[Entry]:
    """'name.*' -> the children of `name`, in order; every other entry as it is."""
    out: list[Entry] = []
    for entry in entries:
        if isinstance(entry, str) and entry.endswith(".*"):
            parent = _submodule(model, entry[:-2])
            names = [f"{entry[:-2]}.{n}" for n, _ in parent.named_children()]
            if not names:
                raise InfoProError(f"{entry!r}: {entry[:-2]!r} has no children to expand")
            out += names
        else:
            out.append(entry)
    return out


def backbone_from_module(
    model: nn.Module,
    blocks: Sequence[Entry],
    head: Entry,
    stage_sizes: Sequence[int] | None = None,
    arch: str | None = None,
    image_size: int | None = None,
    tokens: TokenLayout | None = None,
) -> SequentialBackbone:
    """`model` as a `SequentialBackbone` whose blocks are its own submodules (see the module docstring).

    `tokens` declares token-sequence features (N, L, D) between blocks, e.g.
    `TokenLayout(patch_size=4, prefix_tokens=0)` for a transformer without class token.
    """
    if not isinstance(model, nn.Module):
        raise InfoProError(f"model must be an nn.Module, got {type(model).__name__}")
    entries = _expand(model, [blocks] if isinstance(blocks, str) else list(blocks))
    if not entries:
        raise InfoProError("blocks is empty; name the model's submodules in the order its forward runs them")
    modules = [_module(model, e) for e in entries]
    head_module = _module(model, head)
    _check_parameters(model, [*modules, head_module])
    try:
        return SequentialBackbone(modules, head_module, stage_sizes=stage_sizes, arch=arch,
                                  image_size=image_size, tokens=tokens)
    except ValueError as error:
        raise InfoProError(str(error)) from None


def _check_parameters(model: nn.Module, parts: Sequence[nn.Module]) -> None:
    """Every trainable parameter of `model` in exactly one part; no part brings parameters of its own."""
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    seen: dict[int, int] = {}
    for i, part in enumerate(parts):
        for p in part.parameters():
            if not p.requires_grad:
                continue
            if id(p) not in names:
                raise InfoProError(
                    f"block {i} holds a parameter that is not the model's (shape {tuple(p.shape)}); "
                    f"name the model's own submodules, and give new modules only for parameter-free glue"
                )
            if id(p) in seen and seen[id(p)] != i:
                raise InfoProError(
                    f"parameter {names[id(p)]!r} is in blocks {seen[id(p)]} and {i}: a module with parameters may "
                    f"appear once, or two gradient-isolated pieces would train it"
                )
            seen[id(p)] = i
    missing = [n for i, n in names.items() if i not in seen]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise InfoProError(
            f"parameters {shown} of the model are in no block and not in the head, so they would never train; "
            f"name the submodules that hold them (parameters on the model itself need a submodule that uses them), "
            f"or freeze them with requires_grad_(False)"
        )

"""Initial weights from a state dict the user has (nothing downloads): torchvision's, timm's or mmseg's ResNets.

Names are matched by structure, then checked by shape:

* residual blocks: `layer{s}.{j}.<rest>` is block `j` of stage `s` of our
  blocks, with `downsample` read as our `shortcut` (torchvision, timm and
  mmcv/mmseg name them alike);
* the stem: its convs and BatchNorms in the file's order are paired with
  ours in order, when the two stems have the same sequence of them
  (torchvision's `conv1`/`bn1`; mmseg ResNetV1c's `stem.0 ... stem.7`;
  timm's deep stems `conv1.0 ... conv1.6` + `bn1`);
* mmseg's `decode_head.*` is our `head.*` (the same names for ASPP/FCN heads);
  the file's classifier (`fc.*`) is set aside; a key spelt as ours is ours.

A `backbone.` or `module.` prefix is stripped, and a checkpoint that wraps
the weights in "state_dict" or "model" is unwrapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import torch

from ..errors import InfoProError
from .backbone import SequentialBackbone

PREFIXES = ("module.", "backbone.")
CLASSIFIER = re.compile(r"^(fc|head\.fc|classifier)\.")
RESIDUAL = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")
COUNTER = "num_batches_tracked"  # BatchNorm's step counter: older torchvision files lack it, and nothing reads it


@dataclass
class WeightReport:
    """What `load_backbone_weights` did. Keys are ours in `matched`/`missing`, the file's in `unused`/`ignored`;
    `mismatched` holds (our key, the file's key, our shape, the file's shape), left as initialised."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One or two lines: how much loaded, and the first few of what did not."""
        total = len(self.matched) + len(self.missing) + len(self.mismatched)
        line = f"loaded {len(self.matched)} of the model's {total} tensors"
        if self.ignored:
            line += f" (the file's classifier {', '.join(self.ignored)} set aside)"
        notes = []
        if self.mismatched:
            ours, theirs, a, b = self.mismatched[0]
            notes.append(f"{len(self.mismatched)} of another shape, left as initialised "
                         f"({ours} {tuple(a)} vs {theirs} {tuple(b)}{', ...' if len(self.mismatched) > 1 else ''})")
        if self.missing:
            notes.append(f"{len(self.missing)} not in the file, left as initialised ({_first(self.missing)})")
        if self.unused:
            notes.append(f"{len(self.unused)} of the file's unused ({_first(self.unused)})")
        return line + ("\n" + "; ".join(notes) if notes else "")


def _first(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _unwrap(state_dict: Mapping[str, object]) -> dict[str, torch.Tensor]:
    for wrapper in ("state_dict", "model"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping):
            state_dict = inner
            break
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        changed = True
        while changed:  # e.g. "module.backbone.layer1.0.conv1.weight"
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        tensors[key] = value
    return tensors


def _layers(keys: list[str], is_conv: Mapping[str, bool]) -> list[tuple[str, str]]:
    """(module name, "conv" or "bn") of the modules that own `keys`, in order; a key's module is its
    name up to the last dot. `is_conv` says whether a module's weight is 4-D."""
    seen: dict[str, str] = {}
    for key in keys:
        module = key.rsplit(".", 1)[0]
        seen.setdefault(module, "conv" if is_conv.get(module, False) else "bn")
    return list(seen.items())


def _stem_pairs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict[str, str]:
    """our stem key -> the file's, pairing the stems' conv/BN modules in order when their sequences agree."""
    def stem_layers(state: dict[str, torch.Tensor], keys: list[str]) -> list[tuple[str, str]]:
        is_conv = {k.rsplit(".", 1)[0]: v.dim() == 4 for k, v in state.items() if k.endswith(".weight")}
        return _layers(keys, is_conv)

    our_keys = [k for k in ours if k.startswith("blocks.0.")]
    their_keys = [k for k in theirs if not RESIDUAL.match(k) and not CLASSIFIER.match(k)
                  and not k.startswith(("decode_head.", "auxiliary_head.", "blocks.", "head."))]
    our_layers, their_layers = stem_layers(ours, our_keys), stem_layers(theirs, their_keys)
    if [kind for _, kind in our_layers] != [kind for _, kind in their_layers]:
        return {}
    modules = {a: b for (a, _), (b, _) in zip(our_layers, their_layers)}
    return {key: f"{modules[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}" for key in our_keys}


def _block_names(backbone: SequentialBackbone) -> dict[str, str]:
    """The file's `layer{s}.{j}` -> our `blocks.{i}`, for every residual block (stages after the stem)."""
    names = {}
    for stage, size in enumerate(backbone.stage_sizes[1:], start=1):
        for j in range(size):
            names[f"layer{stage}.{j}"] = f"blocks.{backbone.block_index(stage, j)}"
    return names


def _their_key_for_ours(backbone: SequentialBackbone, ours: dict[str, torch.Tensor],
                        theirs: dict[str, torch.Tensor]) -> dict[str, str]:
    """our key -> the file's key it should take, by structure (the shapes are checked by the caller)."""
    mapping = _stem_pairs(ours, theirs)
    blocks = {v: k for k, v in _block_names(backbone).items()}  # our "blocks.i" -> "layer{s}.{j}"
    for key in theirs:
        if key in ours:
            mapping.setdefault(key, key)  # spelt as ours (e.g. our own saved backbone)
            continue
        if key.startswith("decode_head.") and f"head.{key[len('decode_head.'):]}" in ours:
            mapping.setdefault(f"head.{key[len('decode_head.'):]}", key)
    for key in ours:
        if key in mapping or not key.startswith("blocks."):
            continue
        index, rest = key.split(".", 2)[1:]
        layer = blocks.get(f"blocks.{index}")
        if layer is not None:
            mapping[key] = f"{layer}.{rest.replace('shortcut.', 'downsample.', 1)}"
    return {ours_key: their_key for ours_key, their_key in mapping.items() if their_key in theirs}


def load_backbone_weights(backbone: SequentialBackbone, state_dict: Mapping[str, object]) -> WeightReport:
    """Copy a ResNet state dict (torchvision, timm, mmcv/mmseg ResNetV1c; see the module docstring) into
    `backbone` in place, by structure and shape; returns what matched, what did not, and why."""
    theirs = _unwrap(state_dict)
    ours = backbone.state_dict()
    mapping = _their_key_for_ours(backbone, ours, theirs)
    report = WeightReport()
    for key, tensor in ours.items():
        their_key = mapping.get(key)
        if their_key is None:
            if not key.endswith(COUNTER):
                report.missing.append(key)
        elif theirs[their_key].shape != tensor.shape:
            report.mismatched.append((key, their_key, tuple(tensor.shape), tuple(theirs[their_key].shape)))
        else:
            report.matched.append(key)
    used = set(mapping.values())
    for key in theirs:
        if key not in used:
            (report.ignored if CLASSIFIER.match(key) else report.unused).append(key)
    if all(key.endswith(COUNTER) for key in report.matched):  # nothing is loaded before the file is known to fit
        raise InfoProError(
            f"none of the file's {len(theirs)} tensors fit this backbone (the file has e.g. {_first(list(theirs), 2)}; "
            f"the model has {_first(list(ours), 2)}); give a ResNet state dict from torchvision, timm or mmseg")
    with torch.no_grad():
        for key in report.matched:
            ours[key].copy_(theirs[mapping[key]])
    return report

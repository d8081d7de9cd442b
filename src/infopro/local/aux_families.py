"""Auxiliary nets follow the feature at the cut, not the architecture's name.

`AUX_FAMILIES` maps a family name to what it builds; `aux_family_for(feature)`
picks the one family whose `matches` accepts the feature:
- "small-map": (C, H, W) maps of inputs under 128 px: the CIFAR decoder and heads (aux_nets.py);
- "large-map": (C, H, W) maps of inputs of 128 px and more: the authors' ImageNet decoder and head;
- "tokens": (L, D) token sequences of vision transformers: the IJCV ViT decoder and head;
- "dense-map": (C, H, W) maps of a task with per-pixel targets (`Feature.dense`, segmentation):
  the authors' DeepLab-v3 decoder and per-pixel head (aux_dense.py).
The first three serve classification features only (`not feature.dense`).
A new family is one file with its builders and one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import InfoProError
from ..registry import Registry
from .aux_dense import dense_map_decoder, dense_map_head
from .aux_imagenet import large_map_decoder, large_map_head
from .aux_nets import AuxOptions, Feature, small_map_decoder, small_map_head
from .aux_tokens import token_decoder, token_head

# The paper uses its ImageNet auxiliary nets for 224 px (and STL-10's 96 px keeps the CIFAR ones).
LARGE_INPUT = 128


@dataclass(frozen=True)
class AuxFamily:
    """A family of auxiliary nets: which features it serves, its decoder w and its heads psi by name."""

    description: str
    matches: Callable[[Feature], bool]
    decoder: Callable[[Feature, AuxOptions], nn.Module]
    head: Callable[[str, Feature, int, AuxOptions], nn.Module]
    embeddings: bool = True  # whether its heads can give a contrastive embedding (one vector per sample)


def _is_map(feature: Feature) -> bool:
    return len(feature.shape) == 3


def _is_large(feature: Feature) -> bool:
    return min(feature.image_shape[1:]) >= LARGE_INPUT


AUX_FAMILIES: Registry[AuxFamily] = Registry("auxiliary-net family")
AUX_FAMILIES.add("small-map", AuxFamily("CIFAR decoder and heads (paper tables 18-19)",
                                        lambda f: _is_map(f) and not f.dense and not _is_large(f),
                                        small_map_decoder, small_map_head))
AUX_FAMILIES.add("large-map", AuxFamily("ImageNet decoder and head (paper tables 20-21)",
                                        lambda f: _is_map(f) and not f.dense and _is_large(f),
                                        large_map_decoder, large_map_head))
AUX_FAMILIES.add("tokens", AuxFamily("ViT MLP decoder per patch token, conv + transformer head (IJCV)",
                                     lambda f: len(f.shape) == 2 and not f.dense, token_decoder, token_head))
AUX_FAMILIES.add("dense-map", AuxFamily("DeepLab-v3 decoder and per-pixel head (authors' segmentation code)",
                                        lambda f: _is_map(f) and f.dense, dense_map_decoder, dense_map_head, False))


def aux_family_for(feature: Feature) -> AuxFamily:
    """The family of auxiliary nets for `feature`; a clear error when no family (or several) fits."""
    fits = [name for name in AUX_FAMILIES if AUX_FAMILIES.get(name).matches(feature)]
    if len(fits) != 1:
        kinds = "; ".join(f"{n}: {AUX_FAMILIES.get(n).description}" for n in AUX_FAMILIES)
        what = "no auxiliary-net family fits" if not fits else f"several auxiliary-net families ({', '.join(fits)}) fit"
        raise InfoProError(
            f"{what} a feature of shape {tuple(feature.shape)} for {'x'.join(map(str, feature.image_shape))} inputs; "
            f"families: {kinds}. "
            + ("Per-pixel targets need a (C, H, W) map at every cut" if feature.dense
               else "Cut where the feature is a (C, H, W) map or an (L, D) token sequence")
        )
    return AUX_FAMILIES.get(fits[0])


def check_embedding_head(family: AuxFamily, feature: Feature) -> None:
    """Refuse a contrastive embedding head where the family has none (per-pixel heads give logits maps)."""
    if not family.embeddings:
        raise InfoProError(
            f"a contrastive (supcon) head needs one embedding per sample, but features of shape "
            f"{tuple(feature.shape)} with per-pixel targets get per-pixel heads only: use a cross-entropy method "
            f"(e.g. infopro-softmax instead of infopro-contrast)"
        )

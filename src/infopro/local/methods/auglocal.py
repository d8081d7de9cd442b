"""AugLocal (Ma et al., ICLR 2024): each piece's auxiliary net is shaped like the later network.

Piece k ends after layer l (a block index, the stem is layer 0) of a network of L
layers. Its auxiliary net is d_k newly initialised residual blocks whose widths are
those of the layers at indices round(l + (L - l - 1) / d_k * i), i = 1..d_k (all
later layers when d_k >= L - 1 - l), with stride 2 wherever the width doubles
(the widened width of the block before, as the reference compares; option `strides`),
then global average pooling (+ BatchNorm1d when d_k <= 1) and a linear classifier;
loss: cross-entropy. With the pyramid option (coefficient c > 0) the depth shrinks
along the network: d_k = max(1, round(d (1 - c k / (K - 2)) + c k / (K - 2))).
The paper's ResNet runs cut after every layer but the last d (K = L - d pieces).

What crosses a cut: only the *shapes* of the later layers (their widths, read
once when the net is built); no weight is copied or shared and no gradient
reaches another piece, so the pieces stay fully gradient-isolated.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping

from torch import nn

from ...errors import InfoProError
from ...models.resnet_cifar import BasicBlock
from ..losses import CrossEntropyTerm
from ..objective import LocalObjective, Objective
from .base import METHODS, Lambdas, LocalMethod, PieceContext, reinitialise_, require_map


def sampled_layers(layer: int, num_layers: int, depth: int) -> list[int]:
    """Indices of the later layers an auxiliary net of `depth` blocks imitates (uniform sampling)."""
    if depth >= num_layers - 1 - layer:
        return list(range(layer + 1, num_layers))
    return [round(layer + (num_layers - layer - 1) / depth * i) for i in range(1, depth + 1)]


def pyramid_depth(depth: int, k: int, K: int, coefficient: float) -> int:
    """AugLocal's depth of piece k's auxiliary net; coefficient 0 keeps `depth` for every piece."""
    if coefficient == 0:
        return depth
    t = coefficient * k / (K - 2) if K > 2 else 0.0
    return max(1, round(depth * (1 - t) + t))


STRIDE_RULES = ("reference", "layers")


def augmented_net(channels: int, widths: list[int], num_classes: int, widen: int, depth: int | None = None,
                  strides: str = "reference") -> nn.Sequential:
    """Blocks of the given widths (times `widen`) from a feature of `channels`, stride 2 per width doubling.

    `depth` is the depth asked for (default: len(widths)); as in the reference
    (`auxiliary_nets.py` 237-245) a BatchNorm1d precedes the classifier when it is <= 1, even where
    fewer later layers were left to imitate. Strides ("reference", lines 226-236): a block's width is
    compared with its input's, the widened width of the block before, so with `widen` > 1 a doubling
    of the imitated layers no longer downsamples, and a later layer narrower than the widened one
    before it is refused (the reference asserts). "layers": compared with the imitated layer before, so
    the aux net downsamples where the imitated layers do, whatever `widen` (identical at widen 1).
    """
    if strides not in STRIDE_RULES:
        raise InfoProError(f"auglocal's strides must be one of {', '.join(STRIDE_RULES)}, got {strides!r}")
    layers: list[nn.Module] = []
    previous, in_channels, pending_halvings = channels, channels, 0
    for width in widths:
        compared = in_channels if strides == "reference" else previous
        if width < compared:
            raise InfoProError(
                f"auglocal imitates later layers that are at least as wide as the {'input' if strides == 'reference' else 'ones'} "
                f"before them; a layer of width {width} follows one of {compared}"
                + (" (the widened block before it, as in the reference; with --aux-widen > 1 use "
                   "--aux-strides layers)" if strides == "reference" and widen != 1 else ""))
        pending_halvings += int(math.log2(width // compared))
        stride = 2 if pending_halvings >= 1 else 1
        pending_halvings -= stride == 2
        layers.append(BasicBlock(in_channels, width * widen, stride))
        previous, in_channels = width, width * widen
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if (len(widths) if depth is None else depth) <= 1:
        layers.append(nn.BatchNorm1d(in_channels))
    layers.append(nn.Linear(in_channels, num_classes))
    return nn.Sequential(*layers)


class AugLocal(LocalMethod):
    """Auxiliary nets of d blocks shaped like uniformly sampled later layers; cross-entropy."""

    name = "auglocal"
    description = "AugLocal: aux net = d new blocks shaped like uniformly sampled later layers, CE"
    option_defaults = {"depth": 2, "pyramid": 0.5, "strides": "reference"}
    crossings = (
        "shapes only: each auxiliary net is built once from the widths of later layers; no weight is copied "
        "or shared and no gradient crosses a cut",
    )

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        depth, pyramid = options["depth"], options["pyramid"]
        if int(depth) != depth or depth < 1:
            raise InfoProError(f"auglocal's depth (--aux-depth) must be an integer >= 1, got {depth}")
        if not 0 <= pyramid <= 1:
            raise InfoProError(f"auglocal's pyramid coefficient (--aux-pyramid) must be in [0, 1] (0: off), got {pyramid}")
        if options["strides"] not in STRIDE_RULES:
            raise InfoProError(f"auglocal's strides (--aux-strides) must be one of {', '.join(STRIDE_RULES)}, "
                               f"got {options['strides']!r}")

    def depth_of(self, k: int, K: int, options: Mapping[str, Any]) -> int:
        return pyramid_depth(int(options["depth"]), k, K, float(options["pyramid"]))

    def objective_kind(self, k: int, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> Hashable:
        return "last" if k == K - 1 else self.depth_of(k, K, options)

    def objective(self, ctx: PieceContext) -> Objective:
        require_map(ctx, self.name)
        if ctx.head is not None:
            raise InfoProError(f"--aux-head does not apply to method {self.name!r}: its auxiliary net is built from later layers' shapes")
        depth = self.depth_of(ctx.k, ctx.K, ctx.options)
        later = sampled_layers(ctx.cut, len(ctx.block_shapes), depth)
        shapes = [ctx.block_shapes[i] for i in later]
        if any(len(s) != 3 for s in shapes):
            raise InfoProError("auglocal imitates later layers that give feature maps; this network's later "
                               "layers include other outputs")
        net = augmented_net(ctx.feature_shape[0], [s[0] for s in shapes], ctx.num_classes, ctx.aux.widen, depth,
                            ctx.options["strides"])
        _, task_weight = ctx.weights
        return LocalObjective(CrossEntropyTerm(), head=reinitialise_(net), task_weight=task_weight)


METHODS.add(AugLocal.name, AugLocal())

"""PredSim (Nokland & Eidnes, ICML 2019), as AugLocal's code re-implements it for CIFAR ResNets.

Piece k's objective: lambda2 * CE(linear(pool(h)), y) + lambda1 * sim(conv3x3(h), y), with
sim the MSE between two batch x batch similarity matrices: of the conv output
(each channel summarised by its standard deviation over positions, centred and
L2-normalised per sample) and of the one-hot labels (centred, normalised).
The pool shrinks h until it has at most `pool_dim` (512) values per sample.
Defaults (beta = 0.99): lambda1 = 0.99, lambda2 = 0.01 for every piece.
Nothing crosses a cut: both nets read h, the targets are the labels.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InfoProError
from ..losses import CrossEntropyTerm
from ..objective import Objective
from .base import METHODS, Lambdas, LocalMethod, PieceContext, reinitialise_, require_map


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity, over the batch, of centred per-sample vectors; a feature map is first
    summarised by each channel's standard deviation over its positions (when it has > 3 channels and > 1 position)."""
    x = x.float()
    if x.dim() == 4 and x.shape[1] > 3 and x.shape[2] > 1:
        x = x.flatten(2).std(dim=2)
    else:
        x = x.flatten(1)
    centred = x - x.mean(dim=1, keepdim=True)
    unit = centred / (1e-8 + centred.pow(2).sum(dim=1).sqrt()).unsqueeze(1)
    return (unit @ unit.T).clamp(-1, 1)


def similarity_matching_loss(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    one_hot = labels.float() if labels.is_floating_point() else F.one_hot(labels, num_classes).float()  # soft: as is
    return F.mse_loss(similarity_matrix(features), similarity_matrix(one_hot))


def pool_to_at_most(channels: int, height: int, width: int, limit: int) -> nn.Module:
    """Average pooling whose kernel doubles (height first, then width) until C x h x w <= limit.

    Where the kernel does not tile the map, the map is zero-padded on both sides to ceil(size / kernel)
    windows and the zeros count in the average, as AugLocal's `utils/others.py` (`get_pool_layer`, lines
    17-20) pools (its square maps, per side here); on maps that tile (CIFAR's) there is no padding.
    """
    kh = kw = 1
    oh, ow = height, width
    while channels * oh * ow > limit and kh < height:
        kh *= 2
        oh = math.ceil(height / kh)
        if channels * oh * ow > limit:
            kw *= 2
            ow = math.ceil(width / kw)
    if kh == kw == 1:
        return nn.Identity()
    padding = ((kh * (oh - height // kh)) // 2, (kw * (ow - width // kw)) // 2)
    return nn.AvgPool2d((kh, kw), padding=padding)

class PredSimObjective(Objective):
    def __init__(self, feature_shape: tuple[int, ...], num_classes: int, sim_weight: float, task_weight: float,
                 pool_dim: int) -> None:
        super().__init__()
        c, h, w = feature_shape
        pool = pool_to_at_most(c, h, w, pool_dim)
        with torch.no_grad():
            flat = pool(torch.zeros(1, c, h, w)).numel()
        self.classifier = nn.Sequential(pool, nn.Flatten(), nn.Linear(flat, num_classes))
        self.similarity_conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.ce = CrossEntropyTerm()
        self.num_classes = num_classes
        self.recon_weight, self.task_weight = float(sim_weight), float(task_weight)

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        loss = h.new_zeros((), dtype=torch.float32)
        if self.recon_weight:
            loss = loss + self.recon_weight * similarity_matching_loss(self.similarity_conv(h), labels, self.num_classes)
        if self.task_weight:
            loss = loss + self.task_weight * self.ce(self.classifier(h), labels)
        return loss


class PredSim(LocalMethod):
    """(1 - beta) CE + beta similarity matching per piece, beta = 0.99; pieces fully gradient-isolated."""

    name = "predsim"
    description = "PredSim: pooled linear classifier (CE) + conv3x3 similarity matching, beta 0.99"
    second_term = "similarity"
    default_lambdas = Lambdas(0.99, 0.01, 0.99, 0.01)
    option_defaults = {"pool_dim": 512}

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        if int(options["pool_dim"]) < 1:
            raise InfoProError(f"predsim's pool_dim must be >= 1, got {options['pool_dim']}")

    def objective(self, ctx: PieceContext) -> Objective:
        require_map(ctx, self.name)
        if ctx.head is not None:
            raise InfoProError(f"--aux-head does not apply to method {self.name!r}: its auxiliary nets are fixed "
                               f"(a pooled linear classifier and a conv3x3)")
        sim_weight, task_weight = ctx.weights
        return reinitialise_(PredSimObjective(ctx.feature_shape, ctx.num_classes, sim_weight, task_weight,
                                              int(ctx.options["pool_dim"])))


METHODS.add(PredSim.name, PredSim())

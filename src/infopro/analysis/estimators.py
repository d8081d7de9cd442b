"""The two estimates of the paper's appendix, each a small net trained on frozen features h.

- I(h, x) ~ 1 - mean per-pixel BCE of a decoder (the shape of InfoPro's w)
  that reconstructs the image in [0, 1] from h, measured on the test set.
- I(h, y) ~ test accuracy of a probe classifier trained on h.

Both train with Adam on the features as they are: no augmentation, since a
random crop or flip of h would not be the feature of any image, and the
question asked is what h itself holds. Training is seeded (initial weights
and batch order), so identical features give identical estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import InfoProError
from ..local import AuxOptions, Feature, aux_family_for, reconstruction_loss
from ..models import TokenLayout
from .probes import build_probe


@dataclass(frozen=True)
class TrainSettings:
    """How an estimator's net is trained: Adam at `lr` for `epochs` over batches of `batch_size`."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InfoProError(f"--epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise InfoProError(f"--lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise InfoProError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class Estimate:
    """One estimate and the mean training loss of each epoch that produced it."""

    value: float
    train_losses: list[float] = field(default_factory=list)


def fit(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        inputs: torch.Tensor, targets: torch.Tensor, settings: TrainSettings, desc: str = "") -> list[float]:
    """Train `model` on (inputs, targets) with Adam; returns the mean loss of every epoch."""
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise InfoProError(f"need one target per input and at least one input, got {len(inputs)} and {len(targets)}")
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    n, batch = len(inputs), min(settings.batch_size, len(inputs))
    # A last batch of one sample would break BatchNorm in training mode: drop it in that case only.
    stop = n - 1 if n % batch == 1 and n > 1 else n
    history = []
    model.train()
    for _ in tqdm(range(settings.epochs), desc=desc, leave=False, disable=not settings.progress):
        order = torch.randperm(n, generator=generator).to(inputs.device)
        total = torch.zeros((), device=inputs.device)
        for start in range(0, stop, batch):
            index = order[start:min(start + batch, stop)]
            loss = loss_fn(model(inputs[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(index)
        history.append(total.item() / stop)
    model.eval()
    return history


@torch.no_grad()
def _batched(model: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])


def estimate_i_hx(train_h: torch.Tensor, train_images: torch.Tensor, test_h: torch.Tensor,
                  test_images: torch.Tensor, settings: TrainSettings, tokens: TokenLayout | None = None) -> Estimate:
    """I(h, x) as 1 - mean per-pixel BCE, on the test set, of a decoder trained on (train_h -> train_images).

    The decoder is InfoPro's w for this kind of feature (`aux_family_for`): the CIFAR `Decoder`
    for small maps, the ImageNet decoder for large inputs, the per-token MLP for `tokens`.
    """
    torch.manual_seed(settings.seed)
    feature = Feature(tuple(train_h.shape[1:]), tuple(train_images.shape[1:]), tokens)
    decoder = aux_family_for(feature).decoder(feature, AuxOptions()).to(train_h.device)
    losses = fit(decoder, reconstruction_loss, train_h, train_images, settings, desc="decoder")
    bce = reconstruction_loss(_batched(decoder, test_h, settings.batch_size), test_images).item()
    return Estimate(1.0 - bce, losses)


def estimate_i_hy(train_h: torch.Tensor, train_labels: torch.Tensor, test_h: torch.Tensor,
                  test_labels: torch.Tensor, num_classes: int, probe: str, settings: TrainSettings) -> Estimate:
    """I(h, y) as the test accuracy of the probe `probe` (a name in `PROBES`) trained on (train_h -> labels)."""
    torch.manual_seed(settings.seed)
    classifier = build_probe(probe, train_h.shape[1:], num_classes).to(train_h.device)
    losses = fit(classifier, F.cross_entropy, train_h, train_labels, settings, desc=f"{probe} probe")
    predictions = _batched(classifier, test_h, settings.batch_size).argmax(1)
    return Estimate((predictions == test_labels).float().mean().item(), losses)

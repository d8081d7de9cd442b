"""A piece's auxiliary nets and its local loss, as one module that can live beside its piece."""

from __future__ import annotations

import torch
from torch import nn

from .losses import reconstruction_loss
from .recompute import checkpointed


class Objective(nn.Module):
    """Base of every piece objective: `forward(h, labels, image=None) -> scalar loss`.

    Hooks a method may use (the defaults do nothing):
    - `needs_image`: the learner passes the un-normalised image.
    - `needs_cascade`: the learner passes `cascade=(previous piece, this piece, previous piece's input)`,
      so the loss can run through both pieces (gradients then reach the previous piece). For piece 1 the
      "previous piece" is piece 0 without its first block and its input is that block's output with its
      graph kept: the stem runs once per step (HPFF's code), so piece 0 must have no loss of its own.
    - `after_backward()`: called once per step, after this piece's backward pass(es) and before the
      optimiser step (`LocalLearner.train_step` calls it right after the piece's backward, where MAN's and
      MAN++'s reference code moves its EMA copies).
    - `after_optimizer_step()`: called by `LocalLearner.after_optimizer_step()` after every optimiser step.
    - `follows`: a module of the next piece whose weights this objective reads in `after_backward` (MAN), or
      None; `--parallel pieces` sends those weights from rank k+1 to rank k.
    `recon_weight` and `task_weight` are the piece's (lambda1, lambda2), for `describe`.
    """

    recon_weight: float = 0.0
    task_weight: float = 1.0
    needs_cascade: bool = False
    # The unweighted terms of the last loss computed ({"recon": ..., "task": ...}, detached), for the
    # per-epoch metrics; objectives that do not split their loss leave it empty.
    last_terms: dict[str, torch.Tensor] = {}

    @property
    def needs_image(self) -> bool:
        return False

    def after_backward(self) -> None:
        return None

    def after_optimizer_step(self) -> None:
        return None

    @property
    def follows(self) -> nn.Module | None:
        return None


class LocalObjective(Objective):
    """`recon_weight * BCE(decoder(h), image) + task_weight * task_loss(head(h), y)`.

    A term whose weight is 0 has no net and costs nothing. The last piece's
    objective has no decoder and no head: its h already is the logits.
    `recompute_decoder` (set by `LocalLearner(recompute_aux=True)`): the decoder and its loss run under
    checkpoint, so their full-resolution activations exist only during their own backward.
    """

    recompute_decoder: bool = False

    def __init__(
        self,
        task_loss: nn.Module,
        head: nn.Module | None = None,
        decoder: nn.Module | None = None,
        recon_weight: float = 0.0,
        task_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if (decoder is None) != (recon_weight == 0):
            raise ValueError("a decoder needs a non-zero recon_weight and a non-zero recon_weight needs a decoder")
        self.decoder = decoder
        self.head = head
        self.task_loss = task_loss if task_weight != 0 else None
        self.recon_weight = float(recon_weight)
        self.task_weight = float(task_weight)

    @property
    def needs_image(self) -> bool:
        return self.decoder is not None

    def forward(self, h: torch.Tensor, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        loss = h.new_zeros((), dtype=torch.float32)
        terms = {}
        if self.decoder is not None:
            if image is None:
                raise ValueError("this objective reconstructs the image: pass image=")
            if self.recompute_decoder and torch.is_grad_enabled():
                terms["recon"] = checkpointed(self._reconstruction, [self.decoder], h, image)
            else:
                terms["recon"] = self._reconstruction(h, image)
            loss = loss + self.recon_weight * terms["recon"]
        if self.task_loss is not None:
            out = self.head(h) if self.head is not None else h
            terms["task"] = self.task_loss(out, labels)
            loss = loss + self.task_weight * terms["task"]
        self.last_terms = {name: value.detach() for name, value in terms.items()}
        return loss

    def _reconstruction(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(self.decoder(h), image)

    def extra_repr(self) -> str:
        return f"recon_weight={self.recon_weight:g}, task_weight={self.task_weight:g}"


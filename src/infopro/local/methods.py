"""Local learning methods by name, and the lambda schedule across pieces.

A method says which auxiliary nets the pieces before the last one get and
which loss trains them; the last piece always trains on cross-entropy
through the network's own head.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InfoProError
from ..registry import Registry


@dataclass(frozen=True)
class Lambdas:
    """(lambda1, lambda2) = (reconstruction weight, task weight) of the first piece and of piece K-1.

    Pieces in between move linearly from the first pair to the last; with K=2
    the only local piece uses the first pair.
    """

    recon_first: float
    task_first: float
    recon_last: float
    task_last: float

    @classmethod
    def parse(cls, values: "Lambdas | tuple[float, ...] | list[float]") -> "Lambdas":
        if isinstance(values, Lambdas):
            return values
        values = list(values)
        if len(values) == 2:
            values = values * 2
        if len(values) != 4:
            raise InfoProError(
                f"lambdas takes four numbers (lambda1, lambda2 of the first piece, then of piece K-1) "
                f"or two (the same for every piece), got {values}"
            )
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise InfoProError(f"lambdas must be numbers, got {values}") from None
        if any(v < 0 for v in numbers):
            raise InfoProError(f"lambdas must be >= 0, got {numbers}")
        return cls(*numbers)

    def for_piece(self, k: int, K: int) -> tuple[float, float]:
        """(lambda1, lambda2) of local piece k (0-based, k < K-1)."""
        t = k / (K - 2) if K > 2 else 0.0
        return (
            self.recon_first + t * (self.recon_last - self.recon_first),
            self.task_first + t * (self.task_last - self.task_first),
        )


@dataclass(frozen=True)
class LocalMethod:
    """What trains the pieces before the last: `head` + `task_loss`, and a decoder if `decoder`."""

    name: str
    head: str | None  # None: no local pieces at all (end-to-end)
    task_loss: str
    decoder: bool
    default_lambdas: Lambdas
    description: str

    @property
    def end_to_end(self) -> bool:
        return self.head is None


METHODS: Registry[LocalMethod] = Registry("method")
for _method in (
    LocalMethod("e2e", None, "cross-entropy", False, Lambdas(0, 1, 0, 1),
                "end-to-end back-propagation (K must be 1)"),
    LocalMethod("greedy", "0c1f", "cross-entropy", False, Lambdas(0, 1, 0, 1),
                "Greedy supervised learning: pool + linear head, cross-entropy"),
    LocalMethod("dgl", "1c2f", "cross-entropy", False, Lambdas(0, 1, 0, 1),
                "DGL: conv + 2 fc head, cross-entropy"),
    LocalMethod("infopro-softmax", "1c2f", "cross-entropy", True, Lambdas(5, 1, 5, 1),
                "InfoPro: decoder BCE + cross-entropy head"),
    LocalMethod("infopro-contrast", "1c2f", "supcon", True, Lambdas(5, 1, 5, 1),
                "InfoPro: decoder BCE + supervised contrastive head"),
):
    METHODS.add(_method.name, _method)


def get_method(name: str, K: int) -> LocalMethod:
    method = METHODS.get(name)
    if method.end_to_end and K != 1:
        raise InfoProError(f"method 'e2e' trains the whole network as one piece: use K=1, got K={K}")
    return method

"""InfoPro (Wang et al., ICLR 2021): decoder BCE (I(h, x)) + a task head (I(h, y)), Softmax or Contrast."""

from typing import Any, Mapping

from ...errors import InfoProError
from ..losses import SUPCON_MEANS
from .base import METHODS, HeadMethod, Lambdas


class InfoPro(HeadMethod):
    """Each piece: lambda1 * BCE(decoder(h), image) + lambda2 * task loss of a conv + 2 fc head.

    Pieces are fully gradient-isolated: the decoder's target is the input image, not another piece.
    """

    head = "1c2f"
    second_term = "reconstruction"
    default_lambdas = Lambdas(5, 1, 5, 1)

    def __init__(self, name: str, task_loss: str, description: str) -> None:
        self.name, self.task_loss, self.description = name, task_loss, description
        # Contrast: how SupCon averages its anchors (see `supervised_contrastive_loss`); the authors' by default.
        self.option_defaults = {"supcon_mean": "all-anchors"} if task_loss == "supcon" else {}

    def check(self, K: int, lambdas: Lambdas, options: Mapping[str, Any]) -> None:
        super().check(K, lambdas, options)
        if "supcon_mean" in options and options["supcon_mean"] not in SUPCON_MEANS:
            raise InfoProError(f"{self.name}'s supcon_mean (--supcon-mean) must be one of {', '.join(SUPCON_MEANS)}, "
                               f"got {options['supcon_mean']!r}")


METHODS.add("infopro-softmax", InfoPro("infopro-softmax", "cross-entropy", "InfoPro: decoder BCE + cross-entropy head"))
METHODS.add("infopro-contrast", InfoPro("infopro-contrast", "supcon", "InfoPro: decoder BCE + supervised contrastive head"))

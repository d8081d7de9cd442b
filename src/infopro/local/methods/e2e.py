"""End-to-end back-propagation: one piece (K=1), cross-entropy on the logits."""

from .base import METHODS, LocalMethod


class EndToEnd(LocalMethod):
    """Plain back-propagation through the whole network; nothing is cut, so nothing crosses."""

    name = "e2e"
    description = "end-to-end back-propagation (K must be 1)"
    end_to_end = True


METHODS.add(EndToEnd.name, EndToEnd())

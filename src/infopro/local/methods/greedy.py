"""Greedy supervised learning (Belilovsky et al. 2019; InfoPro's Greedy SL rows)."""

from .base import METHODS, HeadMethod


class Greedy(HeadMethod):
    """Each piece: global pool + linear head, cross-entropy. Pieces are fully gradient-isolated."""

    name = "greedy"
    description = "Greedy supervised learning: pool + linear head, cross-entropy"
    head = "0c1f"


METHODS.add(Greedy.name, Greedy())

"""DGL (Belilovsky et al. 2020) as InfoPro's tables run it: InfoPro's conv + 2 fc head, cross-entropy."""

from .base import METHODS, HeadMethod


class DGL(HeadMethod):
    """Each piece: conv-BN-ReLU, pool, 2 fc layers, cross-entropy. Pieces are fully gradient-isolated."""

    name = "dgl"
    description = "DGL: conv + 2 fc head, cross-entropy"
    head = "1c2f"


METHODS.add(DGL.name, DGL())

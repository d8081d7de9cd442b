"""Local learning methods by name: one file per method, one registry line each (see base.py for the interface)."""

from .base import METHODS, HeadMethod, Lambdas, LocalMethod, PieceContext, get_method, head_objective
from . import e2e, greedy, dgl, infopro, predsim, auglocal, man, hpff  # noqa: F401  (each registers itself)

__all__ = ["METHODS", "HeadMethod", "Lambdas", "LocalMethod", "PieceContext", "get_method", "head_objective"]

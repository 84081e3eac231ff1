"""Explanation methods. Each registers itself by name and returns a PairExplanation."""

from .base import (
    Explainer,
    PairExplanation,
    PointToPoint,
    explain,
    get_method,
    list_methods,
    register_method,
)
from . import decomposition  # noqa: F401  (registers "decomposition")
from .decomposition import ActivationDecomposition, position_contributions

__all__ = [
    "explain",
    "list_methods",
    "get_method",
    "register_method",
    "Explainer",
    "PairExplanation",
    "PointToPoint",
    "ActivationDecomposition",
    "position_contributions",
]

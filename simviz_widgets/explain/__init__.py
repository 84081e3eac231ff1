"""Explanation methods. Each registers itself by name and returns a PairExplanation."""

from . import (  # noqa: F401  (register the other methods)
    decomposition,  # noqa: F401  (registers "decomposition")
    feature_occlusion,  # noqa: F401  (registers "feature_occlusion")
    gradients,
    perturbation,
    sfam,
    shared_content,  # noqa: F401  (registers "shared_content")
    similarity_map,
)
from .base import (
    Explainer,
    PairExplanation,
    PointToPoint,
    explain,
    get_method,
    list_methods,
    register_method,
)
from .decomposition import ActivationDecomposition, position_contributions
from .gradients import GradCAM, RGradCAM, SimilarityAttention, similarity_gradients
from .perturbation import RISE, ExplanationCancelled, RiseMasks, SlidingWindow
from .sfam import SFAM
from .similarity_map import SimilarityMap
from .target import SimilarityTarget

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
    "GradCAM",
    "RGradCAM",
    "SimilarityAttention",
    "similarity_gradients",
    "RISE",
    "SlidingWindow",
    "RiseMasks",
    "ExplanationCancelled",
    "SFAM",
    "SimilarityMap",
    "SimilarityTarget",
]

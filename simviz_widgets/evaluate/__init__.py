"""Metrics on explanations. Each metric declares its category, what it needs, and whether higher
is better (:class:`Metric`); :func:`compare` runs methods x metrics over many pairs."""

from .compare import Comparison, ComparisonTable, compare, default_metrics
from .correspondence import CorrespondencePCK, CorrespondenceResult, correspondence_rate, display_mapping
from .metrics import (
    CATEGORIES,
    NEEDS,
    EvalContext,
    Metric,
    get_metric,
    list_metrics,
    make_metric,
    mask_to_display,
    pixel_map,
    register_metric,
)
from .perturbation_curves import (
    CurveSummary,
    Deletion,
    Insertion,
    PerturbationCurve,
    average_curves,
    deletion_curve,
    insertion_curve,
    perturbation_curve,
)
from .pointing import EnergyPointing, PointingGame, energy_pointing, pointing_game
from .sanity import SanityRandomization, SanityResult, randomizable_layers, sanity_randomization

__all__ = [
    "Metric", "EvalContext", "register_metric", "list_metrics", "get_metric", "make_metric",
    "CATEGORIES", "NEEDS", "mask_to_display", "pixel_map",
    "CorrespondenceResult", "correspondence_rate", "display_mapping", "CorrespondencePCK",
    "PerturbationCurve", "CurveSummary", "perturbation_curve", "deletion_curve", "insertion_curve",
    "average_curves", "Deletion", "Insertion",
    "pointing_game", "energy_pointing", "PointingGame", "EnergyPointing",
    "sanity_randomization", "SanityResult", "randomizable_layers", "SanityRandomization",
    "compare", "Comparison", "ComparisonTable", "default_metrics",
]

"""Correspondence of point-specific maps with known geometry (docs/methods.md, "Correspondence with known geometry").

For a pair whose true pixel mapping is known (a mirror, a crop, a homography), the argmax of the
point-specific map of a query point should land near the point's true match in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..checks import (
    InputTypeError,
    Option,
    check_array,
    check_callable,
    check_choice,
    check_float,
    check_instance,
    check_sequence,
)
from ..explain.base import READINGS, PairExplanation
from ..images import PreparedImage
from .metrics import EvalContext, Metric, register_metric

__all__ = ["CorrespondenceResult", "correspondence_rate", "display_mapping", "CorrespondencePCK", "UNITS"]

UNITS = ("cells", "pixels")

Mapping = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class CorrespondenceResult:
    """``rate``: fraction of points whose argmax cell is within ``tolerance`` of the true match
    (``unit="cells"``: Chebyshev distance in reference cells; ``unit="pixels"``: Euclidean distance in
    reference display pixels from the argmax cell's centre); ``chance``: the same rate for an argmax
    drawn uniformly over cells. Higher is better."""

    rate: float
    chance: float
    n_points: int
    hits: np.ndarray
    distances: np.ndarray  # per point, in ``unit``
    higher_is_better = True
    unit: str = "cells"

    def __repr__(self):
        return f"CorrespondenceResult(rate={self.rate:.3f}, chance={self.chance:.3f}, n_points={self.n_points})"


def display_mapping(query: PreparedImage, reference: PreparedImage, source_mapping: Mapping) -> Mapping:
    """Lift a mapping between *source* images to one between the model's display crops."""

    def mapping(rows, cols):
        sr, sc = query.to_source(rows, cols)
        tr, tc, valid = source_mapping(sr, sc)
        dr, dc = reference.from_source(tr, tc)
        h, w = reference.size
        inside = (dr >= -0.5) & (dr <= h - 0.5) & (dc >= -0.5) & (dc <= w - 0.5)
        return dr, dc, np.asarray(valid) & inside

    return mapping


def correspondence_rate(explanation: PairExplanation, mapping: Mapping, *, points=None,
                        reading: str = "correspondence", tolerance: float = 1.0,
                        unit: str = "cells") -> CorrespondenceResult:
    """Measure how often the point-specific map's argmax lands within ``tolerance`` of the true
    match (PCK at a radius). ``mapping``: display query (rows, cols) -> display reference (rows,
    cols, valid). ``points``: (rows, cols) arrays in query pixels; default: the query grid's cell
    centres. ``unit``: ``"cells"`` (Chebyshev, reference cells) or ``"pixels"`` (Euclidean,
    reference display pixels, measured from the argmax cell's centre)."""
    check_instance(explanation, "explanation", PairExplanation)
    check_callable(mapping, "mapping")
    check_choice(unit, "unit", UNITS)
    check_choice(reading, "reading", READINGS)
    tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    p2p = explanation._require_p2p()
    H, W = explanation.query_size
    Hr, Wr = explanation.reference_size
    h, w = p2p.query_grid
    hr, wr = p2p.reference_grid
    if points is None:
        ci, cj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        rows = (ci.ravel() + 0.5) * H / h - 0.5
        cols = (cj.ravel() + 0.5) * W / w - 0.5
    else:
        points = check_sequence(points, "points")
        if len(points) != 2:
            raise InputTypeError(f"points has {len(points)} items; expected (rows, cols) arrays of query pixels")
        rows, cols = (check_array(p, f"points[{k}]", kinds="iuf", finite=True).astype(float).ravel()
                      for k, p in enumerate(points))
    tr, tc, valid = mapping(rows, cols)
    tr, tc, valid = np.asarray(tr), np.asarray(tc), np.asarray(valid, bool)
    # True match in fractional reference-cell coordinates (half-pixel centres).
    ur = (tr + 0.5) * hr / Hr - 0.5
    uc = (tc + 0.5) * wr / Wr - 0.5
    cell_r, cell_c = np.meshgrid(np.arange(hr), np.arange(wr), indexing="ij")
    # Cell centres in reference display pixels (half-pixel centres), for unit="pixels".
    centre_r = (cell_r + 0.5) * Hr / hr - 0.5
    centre_c = (cell_c + 0.5) * Wr / wr - 0.5
    dists, chance = [], []
    for r, c, u, v, pr, pc, ok in zip(rows, cols, ur, uc, tr, tc, valid):
        if not ok:
            continue
        m = explanation.from_query(r, c, reading=reading)
        k = int(np.argmax(m))
        if unit == "cells":
            dists.append(max(abs(k // wr - u), abs(k % wr - v)))
            chance.append(np.mean(np.maximum(np.abs(cell_r - u), np.abs(cell_c - v)) <= tolerance))
        else:
            dists.append(float(np.hypot(centre_r.flat[k] - pr, centre_c.flat[k] - pc)))
            chance.append(np.mean(np.hypot(centre_r - pr, centre_c - pc) <= tolerance))
    d = np.asarray(dists)
    hits = d <= tolerance
    return CorrespondenceResult(
        rate=float(hits.mean()) if len(d) else float("nan"),
        chance=float(np.mean(chance)) if chance else float("nan"),
        n_points=len(d),
        hits=hits,
        distances=d,
        unit=unit,
    )


@register_metric("correspondence_pck")
class CorrespondencePCK(Metric):
    """PCK of point-specific maps for pairs with a known pixel mapping: the fraction of query grid
    points whose map's argmax lands within ``tolerance`` (cells or pixels) of the true match.
    NaN for methods without point-to-point maps, or when no grid point has a valid match."""

    category = "correspondence"
    higher_is_better = True
    needs = frozenset({"mapping"})
    description = "argmax of a point's map lands on its true match"
    unit = "PCK"
    options = {
        "tolerance": Option.number(1.0, "radius, in `unit`", minimum=0.0),
        "unit": Option.choice("cells", "'cells' (Chebyshev, reference cells) or 'pixels' (Euclidean)", UNITS),
        "reading": Option.choice("correspondence", "'correspondence' or 'contribution' point-specific maps",
                                 READINGS),
    }

    def evaluate(self, explanation: PairExplanation, context: EvalContext) -> float:
        if explanation.point_to_point is None:
            return float("nan")
        result = correspondence_rate(
            explanation, context.mapping, reading=self.config["reading"],
            tolerance=self.config["tolerance"], unit=self.config["unit"],
        )
        return result.rate

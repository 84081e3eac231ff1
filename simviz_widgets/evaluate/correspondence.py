"""Correspondence of point-specific maps with known geometry (METHODS.md "Evaluation").

For a pair whose true pixel mapping is known (a mirror, a crop, a homography), the argmax of the
point-specific map of a query point should land near the point's true match in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..explain.base import PairExplanation
from ..images import PreparedImage

__all__ = ["CorrespondenceResult", "correspondence_rate", "display_mapping"]

Mapping = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class CorrespondenceResult:
    """``rate``: fraction of points whose argmax cell is within ``tolerance`` cells (Chebyshev) of the
    true match; ``chance``: the same rate for an argmax drawn uniformly over cells. Higher is better."""

    rate: float
    chance: float
    n_points: int
    hits: np.ndarray
    distances: np.ndarray  # Chebyshev distance in cells, per point
    higher_is_better = True

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
                        reading: str = "correspondence", tolerance: float = 1.0) -> CorrespondenceResult:
    """Measure how often the point-specific map's argmax lands within ``tolerance`` cells of the true
    match. ``mapping``: display query (rows, cols) -> display reference (rows, cols, valid).
    ``points``: (rows, cols) arrays in query pixels; default: the query grid's cell centres."""
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
        rows, cols = (np.asarray(p, dtype=float).ravel() for p in points)
    tr, tc, valid = mapping(rows, cols)
    tr, tc, valid = np.asarray(tr), np.asarray(tc), np.asarray(valid, bool)
    # True match in fractional reference-cell coordinates (half-pixel centres).
    ur = (tr + 0.5) * hr / Hr - 0.5
    uc = (tc + 0.5) * wr / Wr - 0.5
    cell_r, cell_c = np.meshgrid(np.arange(hr), np.arange(wr), indexing="ij")
    dists, chance = [], []
    for r, c, u, v, ok in zip(rows, cols, ur, uc, valid):
        if not ok:
            continue
        m = explanation.from_query(r, c, reading=reading)
        k = int(np.argmax(m))
        dists.append(max(abs(k // wr - u), abs(k % wr - v)))
        chance.append(np.mean(np.maximum(np.abs(cell_r - u), np.abs(cell_c - v)) <= tolerance))
    d = np.asarray(dists)
    hits = d <= tolerance
    return CorrespondenceResult(
        rate=float(hits.mean()) if len(d) else float("nan"),
        chance=float(np.mean(chance)) if chance else float("nan"),
        n_points=len(d),
        hits=hits,
        distances=d,
    )

"""Why a region scored as it did: the decomposition's terms summed over the region, on the hit's
cells (which part of the hit answered the region) or on the query's (docs/retrieval.md, "Scores")."""

from __future__ import annotations

import numpy as np

from ..checks import InputError
from ..explain.point_to_point import PointToPoint

__all__ = ["region_reference_map", "region_query_map"]


def _point_to_point(explanation) -> PointToPoint:
    if explanation.point_to_point is None:
        raise InputError(f"the {explanation.method!r} explanation has no point-to-point part; region maps "
                         "need the decomposition (method='decomposition')")
    return explanation.point_to_point


def _region_vector(p2p: PointToPoint, weights: np.ndarray | None, side: str) -> np.ndarray:
    factors = p2p.query_factors if side == "query" else p2p.reference_factors
    w = np.ones(factors.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != factors.shape[0]:
        raise InputError(f"region weights have {w.shape[0]} cells; the explanation's query grid has "
                         f"{factors.shape[0]}")
    return w @ factors


def region_reference_map(explanation, weights: np.ndarray | None) -> np.ndarray:
    """Which cells of the hit answered the region: ``sum_i w_i D(i, j)`` over the reference's cells
    (h_r, w_r) float64; ``explanation.reference_map`` when ``weights`` is None. Its sum is the region
    score."""
    p2p = _point_to_point(explanation)
    out = p2p.scale * (p2p.reference_factors @ _region_vector(p2p, weights, "query"))
    return out.reshape(p2p.reference_grid)


def region_query_map(explanation, weights: np.ndarray | None) -> np.ndarray:
    """The query's map restricted to the region: ``w_i sum_j D(i, j)`` (h_q, w_q) float64."""
    p2p = _point_to_point(explanation)
    rows = p2p.scale * (p2p.query_factors @ p2p.reference_factors.sum(0))
    w = np.ones(rows.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    return (w * rows).reshape(p2p.query_grid)

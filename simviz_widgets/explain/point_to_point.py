"""Sides of a pair, cell geometry and the factorised point-to-point scores ``D``.

``D[i, j] = scale * G_q[i] . G_r[j]`` is stored as its two factors; a hover asks for one bilinearly
interpolated row (half-pixel centres), O(N_other * K) work, never the pixel-by-pixel 4-D tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..checks import InputError, InputTypeError, check_choice, check_pixel

__all__ = ["READINGS", "SIDES", "Side", "check_side", "other_side", "cell_weights", "PointToPoint"]

READINGS = ("contribution", "correspondence")

#: The two images of a pair, in this order everywhere (maps, canvases, pins, tables).
SIDES = ("query", "reference")
Side = Literal["query", "reference"]


def check_side(side, label: str = "side") -> str:
    """``side`` if it is 'query' or 'reference', else an :class:`~simviz_widgets.checks.InputError`
    (a ValueError) naming ``label`` (no abbreviations: 'ref' is refused, with a suggestion)."""
    return check_choice(side, label, SIDES)


def other_side(side: str) -> str:
    """The other image of the pair: 'query' <-> 'reference'."""
    return SIDES[1 - SIDES.index(check_side(side))]


def _refuse_array(side: str, what: str, row, col) -> None:
    """A clear message for an array (or tensor) where one coordinate is expected; everything else
    is left to :func:`~simviz_widgets.checks.check_pixel`."""
    for axis, value in (("row", row), ("col", col)):
        if hasattr(value, "shape") and not isinstance(value, np.generic):
            label = " ".join(part for part in (side, what, axis) if part)
            raise InputTypeError(
                f"{label} is an array of shape {tuple(value.shape)}; expected one number (one pixel at "
                "a time)"
            )


def cell_weights(pixel: float, n_pixels: int, n_cells: int) -> tuple[int, int, float]:
    """Bilinear weights of an image coordinate in a grid of cells, half-pixel centres.

    Returns (lower cell, upper cell, weight of the upper cell). ``u = (p + 0.5) * n / N - 0.5``,
    clamped to the outer cell centres (align_corners=False convention).
    """
    u = (float(pixel) + 0.5) * n_cells / n_pixels - 0.5
    u = min(max(u, 0.0), n_cells - 1.0)
    lo = int(np.floor(u))
    hi = min(lo + 1, n_cells - 1)
    return lo, hi, u - lo


@dataclass
class PointToPoint:
    """Factorised point-to-point scores ``D[i, j] = scale * G_q[i] . G_r[j]``.

    ``query_factors`` (N_q, K), ``reference_factors`` (N_r, K): row-major cell order of the grids
    ``query_grid`` / ``reference_grid`` = (h, w). ``query_vectors`` / ``reference_vectors`` are the
    per-position embedding contributions e_i (N, D) used by the "correspondence" reading (cosine of
    e_i and e_j); for cosine and dot metrics they are the factors themselves.
    """

    query_factors: np.ndarray
    reference_factors: np.ndarray
    scale: float
    query_grid: tuple[int, int]
    reference_grid: tuple[int, int]
    query_vectors: np.ndarray | None = None
    reference_vectors: np.ndarray | None = None
    _unit_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # float64 keeps exact identities exact (the Euclidean form subtracts large self terms);
        # the factors are small, and the maps handed out are float32.
        self.query_factors = np.ascontiguousarray(self.query_factors, dtype=np.float64)
        self.reference_factors = np.ascontiguousarray(self.reference_factors, dtype=np.float64)
        nq = self.query_grid[0] * self.query_grid[1]
        nr = self.reference_grid[0] * self.reference_grid[1]
        if self.query_factors.shape[0] != nq or self.reference_factors.shape[0] != nr:
            raise InputError("factor rows must match the number of grid cells")
        if self.query_factors.shape[1] != self.reference_factors.shape[1]:
            raise InputError("query and reference factors must have the same width")
        if self.query_vectors is None:
            self.query_vectors = self.query_factors
        if self.reference_vectors is None:
            self.reference_vectors = self.reference_factors

    def matrix(self) -> np.ndarray:
        """The full (N_q, N_r) matrix D (float64) — for tests and small grids; hover never needs it."""
        return self.scale * (self.query_factors @ self.reference_factors.T)

    def transposed(self) -> "PointToPoint":
        return PointToPoint(
            self.reference_factors,
            self.query_factors,
            self.scale,
            self.reference_grid,
            self.query_grid,
            self.reference_vectors,
            self.query_vectors,
        )

    def _unit(self, which: str) -> np.ndarray:
        if which not in self._unit_cache:
            v = self.query_vectors if which == "query" else self.reference_vectors
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            self._unit_cache[which] = v / np.maximum(norm, 1e-12)
        return self._unit_cache[which]

    def row(self, source: str, cell_row: float, cell_col: float, reading: str = "contribution") -> np.ndarray:
        """Interpolated row of D for a fractional *cell* position in ``source`` ('query' or
        'reference'); returns the map over the other image's grid, (h, w) float32."""
        source = check_side(source, "source")
        reading = check_choice(reading, "reading", READINGS)
        grid = self.query_grid if source == "query" else self.reference_grid
        _refuse_array(source, "cell", cell_row, cell_col)
        cell_row, cell_col = check_pixel(cell_row, cell_col, grid, name=f"{source} cell")
        if source == "query":
            grid, other_grid = self.query_grid, self.reference_grid
            if reading == "contribution":
                mine, other, scale = self.query_factors, self.reference_factors, self.scale
            else:
                mine, other, scale = self._unit("query"), self._unit("reference"), 1.0
        elif source == "reference":
            grid, other_grid = self.reference_grid, self.query_grid
            if reading == "contribution":
                mine, other, scale = self.reference_factors, self.query_factors, self.scale
            else:
                mine, other, scale = self._unit("reference"), self._unit("query"), 1.0
        h, w = grid
        r = min(max(float(cell_row), 0.0), h - 1.0)
        c = min(max(float(cell_col), 0.0), w - 1.0)
        r0, c0 = int(np.floor(r)), int(np.floor(c))
        r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
        fr, fc = r - r0, c - c0
        # Interpolating the factor rows first, then one product, is the same bilinear map (D is
        # linear in G_q) at a quarter of the cost.
        vec = (
            (1 - fr) * (1 - fc) * mine[r0 * w + c0]
            + (1 - fr) * fc * mine[r0 * w + c1]
            + fr * (1 - fc) * mine[r1 * w + c0]
            + fr * fc * mine[r1 * w + c1]
        )
        return (scale * (other @ vec)).astype(np.float32).reshape(other_grid)

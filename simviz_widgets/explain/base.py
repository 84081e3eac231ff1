"""The one result type every method returns, the method registry, and ``explain()``.

A :class:`PairExplanation` holds the model's score, both display images, one float32 map per image
at feature resolution (row, col), and optionally the point-to-point part stored factorised:
``D[i, j] = scale * G_q[i] . G_r[j]``. A pixel-by-pixel 4-D tensor is never built: a hover asks for
one interpolated row of ``D``, which is O(N_other * K) work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from ..checks import Option, check_options
from ..registry import REGISTRIES

__all__ = [
    "PairExplanation",
    "PointToPoint",
    "Explainer",
    "register_method",
    "list_methods",
    "get_method",
    "explain",
    "cell_weights",
    "SIDES",
    "Side",
    "other_side",
    "check_side",
]

READINGS = ("contribution", "correspondence")

#: The two images of a pair, in this order everywhere (maps, canvases, pins, tables).
SIDES = ("query", "reference")
Side = Literal["query", "reference"]


def check_side(side, label: str = "side") -> str:
    """``side`` if it is 'query' or 'reference', else a clear error (no abbreviations)."""
    if not isinstance(side, str) or side not in SIDES:
        raise ValueError(f"{label} is {side!r}; expected 'query' or 'reference'")
    return side


def other_side(side: str) -> str:
    """The other image of the pair: 'query' <-> 'reference'."""
    return SIDES[1 - SIDES.index(check_side(side))]


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
            raise ValueError("factor rows must match the number of grid cells")
        if self.query_factors.shape[1] != self.reference_factors.shape[1]:
            raise ValueError("query and reference factors must have the same width")
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
        if reading not in READINGS:
            raise ValueError(f"reading {reading!r} is not known; expected one of {READINGS}")
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
        else:
            raise ValueError(f"source must be 'query' or 'reference', got {source!r}")
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


@dataclass
class PairExplanation:
    """Why a similarity model scores ``query`` and ``reference`` as it does.

    ``query_map`` / ``reference_map``: float32 (h, w) maps at feature resolution, raw values
    (``signed`` says whether negative values carry meaning). ``score``: the model's own similarity.
    ``point_to_point``: optional factorised pairwise scores; ask for one pixel's map with
    :meth:`from_query` / :meth:`from_reference` (image pixel coordinates of the *display* images).
    ``completeness_error``: |sum of the decomposition - score| relative to the metric's natural
    scale (1 for cosine, |g_X||g_Y| for dot, |g_X|^2 + |g_Y|^2 for Euclidean) where the method is a
    decomposition, else None. ``info``: method details (layer, pooling, head, notes).
    """

    method: str
    score: float
    query: np.ndarray
    reference: np.ndarray
    query_map: np.ndarray
    reference_map: np.ndarray
    signed: bool
    metric: str = "cosine"
    point_to_point: PointToPoint | None = None
    completeness_error: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    runtime_s: float | None = None
    missing_maps: tuple[str, ...] = ()

    def __post_init__(self):
        self.query_map = np.asarray(self.query_map, dtype=np.float32)
        self.reference_map = np.asarray(self.reference_map, dtype=np.float32)
        for label, m in (("query_map", self.query_map), ("reference_map", self.reference_map)):
            if m.ndim != 2:
                raise ValueError(f"{label} must be 2-D (h, w), got shape {m.shape}")
        self.missing_maps = tuple(check_side(s, "missing_maps entry") for s in self.missing_maps)

    @property
    def maps(self) -> dict[str, np.ndarray]:
        return {"query": self.query_map, "reference": self.reference_map}

    def map(self, side: str) -> np.ndarray:
        """The overall map of ``side`` ('query' | 'reference')."""
        return self.query_map if check_side(side) == "query" else self.reference_map

    def image(self, side: str) -> np.ndarray:
        """The display image of ``side``."""
        return self.query if check_side(side) == "query" else self.reference

    def size(self, side: str) -> tuple[int, int]:
        """(rows, cols) of ``side``'s display image."""
        image = self.image(side)
        return image.shape[0], image.shape[1]

    def has_map(self, side: str) -> bool:
        """Whether the method computed a map for ``side`` (RISE and sliding window explain the
        query only by default: their reference map is a placeholder of zeros)."""
        return check_side(side) not in self.missing_maps

    @property
    def sums_to_score(self) -> bool:
        """Whether each overall map sums to the score (a decomposition): only then does "how the
        score splits over cells" mean anything."""
        return self.completeness_error is not None

    @property
    def query_size(self) -> tuple[int, int]:
        return self.query.shape[0], self.query.shape[1]

    @property
    def reference_size(self) -> tuple[int, int]:
        return self.reference.shape[0], self.reference.shape[1]

    def _require_p2p(self) -> PointToPoint:
        if self.point_to_point is None:
            raise ValueError(
                f"method {self.method!r} gives overall maps only; point-to-point maps need a "
                "method with a pairwise decomposition such as 'decomposition'"
            )
        return self.point_to_point

    def pixel_to_cell(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Image pixel (row, col) of ``source`` -> fractional cell position (half-pixel centres)."""
        p2p = self._require_p2p()
        size = self.query_size if source == "query" else self.reference_size
        grid = p2p.query_grid if source == "query" else p2p.reference_grid
        for label, value, limit in (("row", row, size[0]), ("col", col, size[1])):
            if not np.isfinite(value):
                raise ValueError(f"{source} {label} is {value}; expected a finite pixel coordinate")
            if value < -0.5 or value > limit - 0.5:
                raise ValueError(
                    f"{source} {label} {value} is outside the image (0 .. {limit - 1})"
                )
        u = (float(row) + 0.5) * grid[0] / size[0] - 0.5
        v = (float(col) + 0.5) * grid[1] / size[1] - 0.5
        return min(max(u, 0.0), grid[0] - 1.0), min(max(v, 0.0), grid[1] - 1.0)

    def from_query(self, row: float, col: float, *, reading: str = "contribution") -> np.ndarray:
        """Map over the reference grid for query pixel (row, col).

        ``reading='contribution'``: D(i*, .) — what each reference cell adds to the score together
        with this point (exact; over all points it sums to the score). ``'correspondence'``: cosine of
        the two positions' embedding contributions — where the thing at this point is in the other
        image, without the pull toward high-norm cells.
        """
        p2p = self._require_p2p()
        u, v = self.pixel_to_cell("query", row, col)
        return p2p.row("query", u, v, reading)

    def from_reference(self, row: float, col: float, *, reading: str = "contribution") -> np.ndarray:
        """Map over the query grid for reference pixel (row, col); see :meth:`from_query`."""
        p2p = self._require_p2p()
        u, v = self.pixel_to_cell("reference", row, col)
        return p2p.row("reference", u, v, reading)

    def point_map(self, side: str, row: float, col: float, *, reading: str = "contribution") -> np.ndarray:
        """Map over the other image for display pixel (row, col) of ``side``: :meth:`from_query`
        or :meth:`from_reference`."""
        if check_side(side) == "query":
            return self.from_query(row, col, reading=reading)
        return self.from_reference(row, col, reading=reading)

    def swapped(self) -> "PairExplanation":
        """The same explanation with query and reference exchanged (D transposed)."""
        return PairExplanation(
            method=self.method,
            score=self.score,
            query=self.reference,
            reference=self.query,
            query_map=self.reference_map,
            reference_map=self.query_map,
            signed=self.signed,
            metric=self.metric,
            point_to_point=None if self.point_to_point is None else self.point_to_point.transposed(),
            completeness_error=self.completeness_error,
            info=dict(self.info),
            runtime_s=self.runtime_s,
            missing_maps=tuple(other_side(s) for s in self.missing_maps),
        )

    def to_figure(self, *, points=None, cmap: str | None = None, alpha: float = 0.5, reading="contribution"):
        """A matplotlib figure: both photos, both overall maps and a few point-specific maps."""
        # render/ is pure numpy/matplotlib; imported lazily so explain/ does not need matplotlib.
        from ..render.figure import explanation_figure

        return explanation_figure(self, points=points, cmap=cmap, alpha=alpha, reading=reading)

    def _repr_png_(self):
        import io

        import matplotlib.pyplot as plt

        fig = self.to_figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    def __repr__(self) -> str:
        grid_q = self.query_map.shape
        grid_r = self.reference_map.shape
        extra = "" if self.completeness_error is None else f", completeness_error={self.completeness_error:.2e}"
        return (
            f"PairExplanation(method={self.method!r}, metric={self.metric!r}, score={self.score:.4f}, "
            f"query_grid={grid_q}, reference_grid={grid_r}, signed={self.signed}, "
            f"point_to_point={'yes' if self.point_to_point is not None else 'no'}{extra})"
        )


# --------------------------------------------------------------------------------------------
# Registry

_METHODS = REGISTRIES["method"]


class Explainer:
    """Base class: one subclass per method, registered by name.

    Subclasses set ``name``, ``paper`` and ``options`` (name -> :class:`~simviz_widgets.checks.Option`,
    which declares each option's type, so values are checked, never coerced), and implement
    :meth:`compute` — the single hook — which receives prepared images and returns a PairExplanation.
    """

    name: str = ""
    paper: str = ""
    deviations: str = ""
    options: dict[str, Option] = {}
    #: Whether a run takes long (hundreds of forward passes or more): widgets run slow methods in
    #: the background and never block on them.
    slow: bool = False

    def passes(self, query_size: tuple[int, int], reference_size: tuple[int, int]) -> int | None:
        """Forward passes a run on inputs of these (rows, cols) takes, for progress bars; None
        where it is not known ahead (the fast methods: one or two)."""
        return None

    def __init__(self, **options):
        self.config = check_options(self.name, self.options, options)

    def compute(self, model, query, reference) -> PairExplanation:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, model, query, reference) -> PairExplanation:
        start = time.perf_counter()
        result = self.compute(model, query, reference)
        result.runtime_s = time.perf_counter() - start
        return result


def register_method(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: ``@register_method("decomposition")`` (the package's one registry design,
    :mod:`simviz_widgets.registry`; a name taken by another class is an error)."""

    def deco(cls: type[Explainer]) -> type[Explainer]:
        cls.name = name
        return _METHODS.register(name, cls, (cls.__doc__ or "").strip().split("\n")[0])

    return deco


def list_methods() -> list[str]:
    return _METHODS.names()


def get_method(name: str) -> type[Explainer]:
    """The method class registered as ``name`` (an error lists the known names otherwise)."""
    return _METHODS.get(name)


def explain(model, query, reference, *, method: str = "decomposition", **options) -> PairExplanation:
    """Explain why ``model`` finds ``query`` and ``reference`` similar.

    ``model``: a :class:`~simviz_widgets.adapters.SimilarityModel` (or a torch module, wrapped with
    defaults). ``query`` / ``reference``: path, PIL image, numpy array or torch tensor.
    """
    from ..adapters import SimilarityModel

    if not isinstance(model, SimilarityModel):
        model = SimilarityModel.wrap(model)
    explainer = get_method(method)(**options)
    q = model.prepare(query, name="query")
    r = model.prepare(reference, name="reference")
    return explainer(model, q, r)

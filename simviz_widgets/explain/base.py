"""The one result type every method returns, the method registry, and ``explain()``.

A :class:`PairExplanation` holds the model's score, both display images, one float32 map per image
at feature resolution (row, col), and optionally the point-to-point part stored factorised:
``D[i, j] = scale * G_q[i] . G_r[j]``. A pixel-by-pixel 4-D tensor is never built: a hover asks for
one interpolated row of ``D``, which is O(N_other * K) work.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..checks import InputError, Option, check_bool, check_choice, check_options, check_pixel
from ..registry import REGISTRIES
from .point_to_point import READINGS, SIDES, PointToPoint, Side, _refuse_array, cell_weights, check_side, other_side

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
    "zero_embeddings",
]

def zero_embeddings(method: str, metric: str, query, reference, *, what: str = "embedding") -> tuple[str, ...]:
    """The sides whose ``what`` (a tensor or array) is exactly zero when ``metric`` is 'cosine'.

    The cosine of a zero vector is undefined. The project follows torch's ``cosine_similarity``
    (with eps), which gives 0: the score is 0, and so every contribution must be 0 for the maps to
    still sum to it. Methods call this with the two vectors and, when it returns sides, report
    all-zero maps; it warns once (UserWarning) naming ``method`` and the image(s). Other metrics are
    defined at 0 (an empty tuple is returned, no warning).
    """
    if metric != "cosine":
        return ()
    sides = tuple(side for side, g in zip(SIDES, (query, reference)) if not bool(g.any()))
    if sides:
        images = "the query and reference images have" if len(sides) == 2 else f"the {sides[0]} image has"
        plural = "s" if len(sides) == 2 else ""
        warnings.warn(
            f"{method}: {images} an all-zero {what}{plural}, whose cosine similarity is undefined: the "
            "score is 0 (torch's convention) and every contribution is set to 0",
            UserWarning,
            stacklevel=3,
        )
    return sides


@dataclass
class PairExplanation:
    """Why a similarity model scores ``query`` and ``reference`` as it does.

    ``query_map`` / ``reference_map``: float32 (h, w) maps at feature resolution, raw values
    (``signed`` says whether negative values carry meaning). ``score``: the model's own similarity.
    ``point_to_point``: optional factorised pairwise scores; ask for one pixel's map with
    :meth:`from_query` / :meth:`from_reference` (image pixel coordinates of the *display* images).
    ``completeness_error``: |sum of the decomposition - score| relative to the metric's natural
    scale (1 for cosine, |g_X||g_Y| for dot, |g_X|^2 + |g_Y|^2 for Euclidean) where the method is a
    decomposition, else None; for a float16 / bfloat16 model, against the float64 score of the
    decomposed embeddings, the model's own rounding being reported apart (``info['precision']``,
    docs/models.md, "Dtypes and devices"). ``info``: method details (layer, pooling, head, notes;
    ``info['zero_embedding']`` names the images whose all-zero embedding left a cosine score
    undefined: then the score is 0 and the maps are all 0, see :func:`zero_embeddings`).
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
                raise InputError(f"{label} must be 2-D (h, w), got shape {m.shape}")
        self.missing_maps = tuple(check_side(s, "missing_maps entry") for s in self.missing_maps)
        self.signed = check_bool(self.signed, "signed")

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
            raise InputError(
                f"method {self.method!r} gives overall maps only; point-to-point maps need a "
                "method with a pairwise decomposition such as 'decomposition'"
            )
        return self.point_to_point

    def check_point(self, side: str, row: float, col: float, *, label: str = "side") -> tuple[str, float, float]:
        """(side, row, col) checked: ``side`` exactly 'query' or 'reference'; row and col real
        numbers (numpy scalars too; bools, strings and arrays refused) inside ``side``'s display
        image, with the half-pixel margin (-0.5 .. rows - 0.5). Errors name the image's size."""
        side = check_side(side, label)
        _refuse_array(side, "", row, col)
        size = self.size(side)
        try:
            row, col = check_pixel(row, col, size, name=side)
        except InputError as err:
            raise InputError(f"{err} (the {side} image is {size[0]}x{size[1]} px)") from None
        return side, row, col

    def pixel_to_cell(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Image pixel (row, col) of ``source`` -> fractional cell position (half-pixel centres)."""
        p2p = self._require_p2p()
        source, row, col = self.check_point(source, row, col, label="source")
        size = self.size(source)
        grid = p2p.query_grid if source == "query" else p2p.reference_grid
        u = (row + 0.5) * grid[0] / size[0] - 0.5
        v = (col + 0.5) * grid[1] / size[1] - 0.5
        return min(max(u, 0.0), grid[0] - 1.0), min(max(v, 0.0), grid[1] - 1.0)

    def from_query(self, row: float, col: float, *, reading: str = "contribution") -> np.ndarray:
        """Map over the reference grid for query pixel (row, col).

        ``reading='contribution'``: D(i*, .) — what each reference cell adds to the score together
        with this point (exact; over all points it sums to the score). ``'correspondence'``: cosine of
        the two positions' embedding contributions — where the thing at this point is in the other
        image, without the pull toward high-norm cells.
        """
        p2p = self._require_p2p()
        reading = check_choice(reading, "reading", READINGS)
        u, v = self.pixel_to_cell("query", row, col)
        return p2p.row("query", u, v, reading)

    def from_reference(self, row: float, col: float, *, reading: str = "contribution") -> np.ndarray:
        """Map over the query grid for reference pixel (row, col); see :meth:`from_query`."""
        p2p = self._require_p2p()
        reading = check_choice(reading, "reading", READINGS)
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

    def to_html(self, path=None, *, size: int = 320, cmap: str | None = None, alpha: float = 0.8,
                reading: str = "contribution"):
        """The explanation as one self-contained HTML page: both images, their maps and the
        point-to-point data with js/ inlined; hover, both readings, colormaps and pins work offline
        (double-click the file). Returns the page, or writes it to ``path`` and returns that Path.
        ``size``: display pixels of each image's longer side; ``alpha``: peak map opacity."""
        from ..web.export import write_explanation_page

        return write_explanation_page(self, path, size=size, cmap=cmap, alpha=alpha, reading=reading)

    def _repr_html_(self):
        # The same page in an <iframe srcdoc> over a PNG: live in a notebook and in nbconvert HTML;
        # JupyterLab's sanitiser keeps only the PNG in an untrusted (reopened) notebook.
        from ..web.export import explanation_iframe

        return explanation_iframe(self)

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

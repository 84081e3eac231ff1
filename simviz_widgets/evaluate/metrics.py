"""The metric protocol: every metric declares what it measures and how to read it.

A :class:`Metric` scores one :class:`~simviz_widgets.explain.PairExplanation` and declares

* ``name`` — the registry key;
* ``higher_is_better`` — so tables and plots sort and draw arrows without special cases;
* ``category`` — one of :data:`CATEGORIES` (faithfulness, localisation, correspondence,
  robustness/sanity), so panels can group and colour;
* ``needs`` — the inputs beyond the explanation, from :data:`NEEDS`: ``"model"`` (runs forward
  passes), ``"mask"`` (a ground-truth region), ``"mapping"`` (a known pixel correspondence).

This follows Quantus' idea of metrics that carry their own reading instructions. A metric is called
on one explanation with the extra inputs in display coordinates (the pixels of ``explanation.query``
/ ``explanation.reference``):

>>> from simviz_widgets.evaluate import get_metric, list_metrics
>>> "pointing_game" in list_metrics()
True
>>> metric = get_metric("deletion")
>>> metric.higher_is_better, metric.category, sorted(metric.needs)
(False, 'faithfulness', ['model'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..checks import check_choice
from ..explain.base import PairExplanation
from ..registry import REGISTRIES

__all__ = [
    "Metric",
    "EvalContext",
    "register_metric",
    "list_metrics",
    "get_metric",
    "make_metric",
    "CATEGORIES",
    "NEEDS",
    "check_display_mask",
    "pixel_map",
    "mask_to_display",
]

CATEGORIES = ("faithfulness", "localisation", "correspondence", "robustness/sanity")
NEEDS = ("model", "mask", "mapping")


def check_display_mask(mask, size: tuple[int, int], label: str) -> np.ndarray:
    """A ground-truth mask as a new bool (H, W) array matching the display image ``size``."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{label} has shape {arr.shape}; expected a 2-D (H, W) mask")
    if tuple(arr.shape) != tuple(size):
        raise ValueError(
            f"{label} is {arr.shape[0]}x{arr.shape[1]} but the explained image is {size[0]}x{size[1]}; "
            "masks must be in display coordinates (map source-image masks with "
            "simviz_widgets.evaluate.mask_to_display)"
        )
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{label} has dtype {arr.dtype}; expected bool or 0/1 numbers")
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{label} has values other than 0 and 1; expected a binary mask")
        arr = arr.astype(bool)
    else:
        arr = arr.copy()
    if not arr.any():
        raise ValueError(f"{label} is empty (no True pixel); the ground-truth region must be non-empty")
    return arr


def pixel_map(explanation: PairExplanation, side: str = "query") -> np.ndarray:
    """The ``side`` ('query' | 'reference') map at the display image's pixels, float32 (H, W).

    Maps at feature resolution are upsampled bilinearly (half-pixel centres, like the viewer);
    maps already at the pixel grid come back unchanged (the same resampling is then the identity).
    """
    from ..render.resize import upsample_bilinear

    if side == "query":
        values, size = explanation.query_map, explanation.query_size
    elif side == "reference":
        values, size = explanation.reference_map, explanation.reference_size
    else:
        raise ValueError(f"side must be 'query' or 'reference', got {side!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the {side} map of method {explanation.method!r} has NaN or infinite values")
    return upsample_bilinear(values, size)


def mask_to_display(mask, prepared, *, name: str = "mask") -> np.ndarray:
    """A mask over the *source* image -> bool mask over ``prepared``'s display crop.

    Each display pixel takes the value of the source pixel under its centre (nearest neighbour,
    through :meth:`PreparedImage.to_source`), so it follows any resize and centre crop the model's
    preprocessing applied.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} has shape {arr.shape}; expected a 2-D (H, W) mask")
    if tuple(arr.shape) != tuple(prepared.source_size):
        raise ValueError(
            f"{name} is {arr.shape[0]}x{arr.shape[1]} but its image is "
            f"{prepared.source_size[0]}x{prepared.source_size[1]}; expected a mask over the image"
        )
    if arr.dtype != bool:
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{name} has values other than 0 and 1; expected a binary mask")
        arr = arr.astype(bool)
    H, W = prepared.size
    rows, _ = prepared.to_source(np.arange(H), np.zeros(H))
    _, cols = prepared.to_source(np.zeros(W), np.arange(W))
    src_r = np.clip(np.round(rows).astype(np.intp), 0, arr.shape[0] - 1)
    src_c = np.clip(np.round(cols).astype(np.intp), 0, arr.shape[1] - 1)
    return arr[np.ix_(src_r, src_c)]


@dataclass
class EvalContext:
    """What a metric may use besides the explanation. Masks and mapping are in *display* pixels.

    ``mapping``: display query (rows, cols) -> display reference (rows, cols, valid).
    ``method_options``: the options the explanation was computed with (sanity checks re-run the
    method). ``cache``: per-pair scratch space shared by metrics (e.g. the reference embedding).
    """

    model: Any = None
    query_mask: np.ndarray | None = None
    reference_mask: np.ndarray | None = None
    mapping: Callable | None = None
    method_options: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def available(self) -> set[str]:
        have = set()
        if self.model is not None:
            have.add("model")
        if self.query_mask is not None or self.reference_mask is not None:
            have.add("mask")
        if self.mapping is not None:
            have.add("mapping")
        return have


class Metric:
    """Base class: one subclass per metric, registered by name with :func:`register_metric`.

    Subclasses set the class attributes below and implement :meth:`evaluate`, which returns one
    float per explanation (NaN where the metric does not apply, e.g. a point-to-point metric on a
    method with overall maps only). Options are keyword-only and validated like methods' options.
    """

    name: str = ""
    higher_is_better: bool = True
    category: str = ""
    needs: frozenset = frozenset()
    description: str = ""
    unit: str = ""
    options: dict[str, tuple[Any, str]] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(
                f"metric {self.name!r} got unknown option(s) {unknown}; it accepts "
                f"{sorted(self.options) or 'no options'}"
            )
        self.config = {k: v[0] for k, v in self.options.items()}
        self.config.update(options)

    # -- the hook ----------------------------------------------------------------------
    def evaluate(self, explanation: PairExplanation, context: EvalContext) -> float:  # pragma: no cover
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------
    @property
    def direction(self) -> str:
        """'higher is better' or 'lower is better'."""
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def label(self) -> str:
        """Short column label with an arrow, e.g. ``'deletion (↓)'``."""
        return f"{self.name} ({'↑' if self.higher_is_better else '↓'})"

    def missing(self, context: EvalContext) -> list[str]:
        return sorted(set(self.needs) - context.available())

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is better than ``b`` for this metric (NaN is never better)."""
        if not np.isfinite(a):
            return False
        if not np.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b

    def __call__(self, explanation: PairExplanation, *, model=None, query_mask=None, reference_mask=None,
                 mapping=None, method_options: dict | None = None) -> float:
        """Score one explanation. Masks (bool (H, W)) and ``mapping`` are in display pixels."""
        if not isinstance(explanation, PairExplanation):
            raise TypeError(
                f"explanation must be a PairExplanation, got {type(explanation).__name__}"
            )
        context = EvalContext(
            model=model,
            query_mask=None if query_mask is None
            else check_display_mask(query_mask, explanation.query_size, "query_mask"),
            reference_mask=None if reference_mask is None
            else check_display_mask(reference_mask, explanation.reference_size, "reference_mask"),
            mapping=mapping,
            method_options=dict(method_options or {}),
        )
        missing = self.missing(context)
        if missing:
            raise ValueError(f"metric {self.name!r} needs {missing}; pass them as keyword arguments")
        return float(self.evaluate(explanation, context))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({opts})" if opts else f"{type(self).__name__}()"


_METRICS = REGISTRIES["metric"]


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator: ``@register_metric("deletion")``. Checks the declarations; a name taken by
    another class is an error (the package's one registry design, :mod:`simviz_widgets.registry`)."""

    def deco(cls: type[Metric]) -> type[Metric]:
        if cls.category not in CATEGORIES:
            raise ValueError(f"metric {name!r} has category {cls.category!r}; expected one of {CATEGORIES}")
        unknown = set(cls.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"metric {name!r} needs unknown input(s) {sorted(unknown)}; expected {NEEDS}")
        cls.name = name
        cls.needs = frozenset(cls.needs)
        return _METRICS.register(name, cls, (cls.__doc__ or "").strip().split("\n")[0])

    return deco


def list_metrics(category: str | None = None) -> list[str]:
    """Registered metric names, sorted; optionally only one category."""
    if category is not None:
        check_choice(category, "category", CATEGORIES)
    return [n for n in _METRICS.names() if category is None or _METRICS.get(n).category == category]


def get_metric(name: str, **options) -> Metric:
    """A metric instance by name, with options."""
    return _METRICS.get(name)(**options)


def make_metric(spec) -> Metric:
    """``"name"``, ``("name", {options})``, a Metric subclass or a Metric instance -> a Metric."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, type) and issubclass(spec, Metric):
        return spec()
    if isinstance(spec, str):
        return get_metric(spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        return get_metric(spec[0], **spec[1])
    raise TypeError(
        f"metric {spec!r} is not understood; expected a name, (name, options), or a Metric"
    )

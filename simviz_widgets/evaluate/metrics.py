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

from ..checks import (
    InputError,
    InputTypeError,
    Option,
    check_array,
    check_choice,
    check_instance,
    check_mask,
    check_options,
)
from ..explain.base import SIDES, PairExplanation
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


#: Where a ground-truth mask's expected size comes from, for the error of a mask of another size.
DISPLAY_MASK_NOTE = (" (the explained image's size: masks are in display coordinates; map source-image masks "
                     "with simviz_widgets.evaluate.mask_to_display)")


def check_display_mask(mask, size: tuple[int, int], label: str) -> np.ndarray:
    """A non-empty ground-truth mask as a new bool (H, W) array over the display image of ``size``."""
    return check_mask(mask, label, size, nonempty=True, note=DISPLAY_MASK_NOTE)


def pixel_map(explanation: PairExplanation, side: str = "query") -> np.ndarray:
    """The ``side`` ('query' | 'reference') map at the display image's pixels, float32 (H, W).

    Maps at feature resolution are upsampled bilinearly (half-pixel centres, like the viewer);
    maps already at the pixel grid come back unchanged (the same resampling is then the identity).
    """
    from ..render.resize import upsample_bilinear

    check_instance(explanation, "explanation", PairExplanation)
    side = check_choice(side, "side", SIDES)
    values = check_array(explanation.map(side), f"the {side} map of method {explanation.method!r}", finite=True)
    return upsample_bilinear(values, explanation.size(side))


def mask_to_display(mask, prepared, *, name: str = "mask") -> np.ndarray:
    """A mask over the *source* image -> bool mask over ``prepared``'s display crop.

    Each display pixel takes the value of the source pixel under its centre (nearest neighbour,
    through :meth:`PreparedImage.to_source`), so it follows any resize and centre crop the model's
    preprocessing applied.
    """
    arr = check_mask(mask, name, prepared.source_size, note=" (the size of its image: a mask over the image "
                     "as given, before the model's resize and crop)")
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
    method with overall maps only). ``options``: name -> :class:`~simviz_widgets.checks.Option`,
    which declares each option's type and range; options are keyword-only and checked by
    :func:`~simviz_widgets.checks.check_options`, exactly like methods' options.
    """

    name: str = ""
    higher_is_better: bool = True
    category: str = ""
    needs: frozenset = frozenset()
    description: str = ""
    unit: str = ""
    options: dict[str, Option] = {}

    def __init__(self, **options):
        self.config = check_options(f"metric {self.name!r}", self.options, options)

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
        check_instance(explanation, "explanation", PairExplanation)
        if method_options is not None:
            check_instance(method_options, "method_options", dict, "dict of the method's options")
        if mapping is not None and not callable(mapping):
            raise InputTypeError(f"mapping is a {type(mapping).__name__}; expected a function "
                                 "(rows, cols) -> (rows, cols, valid) or None")
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
            raise InputError(f"metric {self.name!r} needs {missing}; pass them as keyword arguments")
        return float(self.evaluate(explanation, context))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({opts})" if opts else f"{type(self).__name__}()"


_METRICS = REGISTRIES["metric"]


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator: ``@register_metric("deletion")``. Checks the declarations; a name taken by
    another class is an error (the package's one registry design, :mod:`simviz_widgets.registry`)."""

    def deco(cls: type[Metric]) -> type[Metric]:
        check_choice(cls.category, f"metric {name!r}: category", CATEGORIES)
        unknown = set(cls.needs) - set(NEEDS)
        if unknown:
            raise InputError(f"metric {name!r} needs unknown input(s) {sorted(unknown)}; expected {NEEDS}")
        wrong = [k for k, option in cls.options.items() if not isinstance(option, Option)]
        if wrong:
            raise InputTypeError(f"metric {name!r} declares options {wrong} without Option(...); declare each "
                                 "option's type (Option.flag, .integer, .number, .choice or .custom)")
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
    raise InputTypeError(
        f"metric {spec!r} is not understood; expected a name, (name, options), or a Metric"
    )

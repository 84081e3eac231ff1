"""Compare explanation methods on many pairs with many metrics: one table, one figure.

>>> import simviz_widgets as sv
>>> from simviz_widgets.datasets import shared_object_pairs
>>> from simviz_widgets.evaluate import compare
>>> model = sv.load_model("tiny_test")
>>> pairs = shared_object_pairs(n=2, size=64)
>>> result = compare(model, pairs, ["decomposition"], ["pointing_game", ("deletion", {"steps": 11})],
...                  show_progress=False)
>>> [row["method"] for row in result.table]
['decomposition']
>>> sorted(k for k in result.table[0] if not k.endswith(("_std", "_n")))
['deletion', 'method', 'pointing_game', 'runtime_s']

``pairs``: anything with ``query`` and ``reference`` images (and optionally ``query_mask``,
``reference_mask`` — bool masks over those images — and ``mapping(rows, cols) -> (rows, cols,
valid)`` between them, in the images' own pixels), e.g. :func:`~simviz_widgets.datasets.
shared_object_pairs`; or dicts with those keys; or ``(query, reference)`` tuples. Masks and mapping
are carried through the model's resize and crop to the display pixels the maps live on.
"""

from __future__ import annotations

import html
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..checks import (
    InputError,
    InputTypeError,
    check_bool,
    check_callable,
    check_choice,
    check_instance,
    check_int,
    check_keys,
    check_names,
    check_sequence,
)
from ..explain.base import get_method, list_methods
from .correspondence import display_mapping
from .metrics import NEEDS, EvalContext, Metric, make_metric, mask_to_display

__all__ = [
    "compare", "Comparison", "ComparisonTable", "default_metrics",
    "check_methods", "check_method_options", "build_metrics", "check_metric_needs",
]


@dataclass
class _Pair:
    query: Any
    reference: Any
    query_mask: Any = None
    reference_mask: Any = None
    mapping: Callable | None = None
    name: str = ""


def _as_pair(item, index: int) -> _Pair:
    label = f"pairs[{index}]"
    if isinstance(item, dict):
        item = check_keys(item, label, ("query", "reference", "query_mask", "reference_mask", "mapping", "name"),
                          required=("query", "reference"))
        pair = _Pair(**{"name": label, **item})
    elif hasattr(item, "query") and hasattr(item, "reference"):
        pair = _Pair(
            item.query, item.reference, getattr(item, "query_mask", None), getattr(item, "reference_mask", None),
            getattr(item, "mapping", None), str(getattr(item, "name", "") or label),
        )
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        pair = _Pair(item[0], item[1], name=label)
    else:
        pair = None
    if pair is not None:
        check_callable(pair.mapping, f"{label}.mapping", optional=True)
        return pair
    raise InputTypeError(
        f"{label} is a {type(item).__name__}; expected a (query, reference) tuple, a dict, or an object "
        "with .query and .reference"
    )


def default_metrics(pairs) -> list[str]:
    """Deletion and insertion always; pointing metrics when every pair has a mask; PCK when every
    pair has a mapping."""
    normalized = [_as_pair(p, k) for k, p in enumerate(pairs)]
    names = ["deletion", "insertion"]
    if normalized and all(p.query_mask is not None or p.reference_mask is not None for p in normalized):
        names += ["pointing_game", "energy_pointing"]
    if normalized and all(p.mapping is not None for p in normalized):
        names.append("correspondence_pck")
    return names


def _format(mean: float, std: float, n: int, precision: int) -> str:
    if n == 0 or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{precision}f} ± {std:.{precision}f}"


class ComparisonTable(list):
    """Rows (one dict per method): ``method``, ``runtime_s`` (mean seconds per explanation), and per
    metric ``<name>`` (mean over pairs), ``<name>_std`` and ``<name>_n`` (pairs where it applied)."""

    def __init__(self, rows, metrics: list[Metric], precision: int = 3):
        super().__init__(rows)
        self.metrics = metrics
        self.precision = precision

    def _best(self) -> dict[str, str | None]:
        best = {}
        for m in self.metrics:
            winner = None
            for k, row in enumerate(self):
                if m.better(row[m.name], self[winner][m.name] if winner is not None else float("nan")):
                    winner = k
            best[m.name] = None if winner is None else self[winner]["method"]
        return best

    def _cells(self):
        header = ["method", "runtime (s) ↓"] + [m.label for m in self.metrics]
        best = self._best()
        body = []
        for row in self:
            cells = [row["method"], f"{row['runtime_s']:.3f}" if math.isfinite(row["runtime_s"]) else "n/a"]
            for m in self.metrics:
                text = _format(row[m.name], row[m.name + "_std"], row[m.name + "_n"], self.precision)
                cells.append((text, best[m.name] == row["method"]))
            body.append(cells)
        return header, body

    def to_markdown(self) -> str:
        """A markdown table; the best value of each metric in bold (↑ higher / ↓ lower is better)."""
        header, body = self._cells()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for cells in body:
            out = cells[:2] + [f"**{t}**" if bold else t for t, bold in cells[2:]]
            lines.append("| " + " | ".join(out) + " |")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header, body = self._cells()
        th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = []
        for cells in body:
            tds = [f"<td>{html.escape(str(c))}</td>" for c in cells[:2]]
            tds += [f"<td><b>{html.escape(t)}</b></td>" if bold else f"<td>{html.escape(t)}</td>"
                    for t, bold in cells[2:]]
            rows.append("<tr>" + "".join(tds) + "</tr>")
        return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    def __str__(self) -> str:
        return self.to_markdown()


@dataclass
class Comparison:
    """Result of :func:`compare`: ``values[method][metric]`` per-pair arrays (NaN where a metric does
    not apply), ``runtimes[method]`` seconds per pair, ``errors[method]`` messages of failed pairs
    (with ``errors="skip"``). ``table`` (one row per method) and :meth:`plot`."""

    methods: list[str]
    metrics: list[Metric]
    values: dict[str, dict[str, np.ndarray]]
    runtimes: dict[str, np.ndarray]
    n_pairs: int
    errors: dict[str, list[str]] = field(default_factory=dict)
    precision: int = 3

    @property
    def table(self) -> ComparisonTable:
        rows = []
        for method in self.methods:
            times = self.runtimes[method]
            times = times[np.isfinite(times)]
            row: dict[str, Any] = {"method": method, "runtime_s": float(times.mean()) if len(times) else float("nan")}
            for m in self.metrics:
                v = self.values[method][m.name]
                v = v[np.isfinite(v)]
                row[m.name] = float(v.mean()) if len(v) else float("nan")
                row[m.name + "_std"] = float(v.std()) if len(v) else float("nan")
                row[m.name + "_n"] = int(len(v))
            rows.append(row)
        return ComparisonTable(rows, self.metrics, self.precision)

    def to_markdown(self) -> str:
        return self.table.to_markdown()

    def _repr_html_(self) -> str:
        return self.table._repr_html_()

    def plot(self, *, ncols: int = 3):
        """One horizontal bar chart per metric (and runtime), best method on top, std as error bars;
        each panel's title says whether higher or lower is better."""
        import matplotlib.pyplot as plt

        ncols = check_int(ncols, "ncols", minimum=1)
        table = self.table
        panels = [(m.name, m.label, m.higher_is_better, m.category) for m in self.metrics]
        panels.append(("runtime_s", "runtime (s) (↓)", False, "cost"))
        ncols = max(1, min(ncols, len(panels)))
        nrows = math.ceil(len(panels) / ncols)
        height = max(1.8, 0.35 * len(self.methods) + 1.0)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, height * nrows), squeeze=False)
        colours = plt.colormaps["tab10"]
        colour_of = {m: colours(k % 10) for k, m in enumerate(self.methods)}
        for ax, (key, label, higher, category) in zip(axes.ravel(), panels):
            entries = [(row["method"], row[key], row.get(key + "_std", 0.0)) for row in table]
            finite = [e for e in entries if math.isfinite(e[1])]
            # Best on top: barh draws the last entry at the top, so the best goes last.
            finite.sort(key=lambda e: e[1], reverse=not higher)
            y = np.arange(len(finite))
            ax.barh(y, [e[1] for e in finite], xerr=[e[2] if math.isfinite(e[2]) else 0.0 for e in finite],
                    color=[colour_of[e[0]] for e in finite], capsize=2)
            ax.set_yticks(y, [e[0] for e in finite], fontsize=8)
            missing = [e[0] for e in entries if not math.isfinite(e[1])]
            arrow = "higher is better →" if higher else "← lower is better"
            ax.set_title(f"{key}\n{category}: {arrow}", fontsize=9)
            if missing:
                ax.set_xlabel(textwrap.fill("n/a: " + ", ".join(missing), 45), fontsize=7)
            ax.tick_params(axis="x", labelsize=7)
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        return fig


# ------------------------------------------------------------------------------------------
# argument checks shared by compare() and the comparison widgets


def check_methods(methods, *, default=None) -> list[str]:
    """Method names, checked: None -> ``default`` (every registered method if None); one name ->
    ``[name]``; each must be registered (an error names the known ones) and given once."""
    if methods is None:
        methods = list_methods() if default is None else default
    methods = check_names([methods] if isinstance(methods, str) else methods, "methods")
    for name in methods:
        get_method(name)  # a clear error naming the known methods, with the closest one
    return methods


def check_method_options(method_options, methods, *, reserved=(), reserved_by: str = "the caller",
                         why: str = "") -> dict[str, dict]:
    """``{method: {option: value}}`` checked against ``methods``: every key is one of them, every
    value a dict of options the method accepts (each method is built once with them, so unknown or
    invalid options fail here, named by the method). ``reserved``: options ``reserved_by`` sets
    itself (``why``: e.g. its progress bar and cancel button). Returns a dict for every method
    (``{}`` when none) of the options given, each value as the method's declaration checked it (an
    integer given as ``np.int64(4)`` comes back as ``4``); the caller's dicts are not modified."""
    method_options = check_keys({} if method_options is None else method_options, "method_options", methods)
    checked = {}
    for name in methods:
        options = check_instance(method_options.get(name, {}), f"method_options[{name!r}]", dict, "dict of options")
        controlled = sorted(set(options) & set(reserved))
        if controlled:
            raise InputError(f"method_options[{name!r}] sets {controlled}; {reserved_by} sets these itself"
                             + (f" ({why})" if why else ""))
        config = get_method(name)(**options).config  # every value checked by its Option declaration
        checked[name] = {option: config[option] for option in options}
    return checked


def _is_one_metric(spec) -> bool:
    return (isinstance(spec, (str, Metric)) or (isinstance(spec, type) and issubclass(spec, Metric))
            or (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], dict)))


#: How to give a metric what it needs, for error messages.
NEED_HINTS = {"mask": "query_mask= / reference_mask=", "mapping": "mapping="}


def check_metric_needs(metrics, have, *, where: str, hint: bool = False) -> None:
    """Raise a ValueError naming the first metric that needs more than ``have`` (a subset of
    ``NEEDS``: 'model', 'mask', 'mapping'), which ``where`` does not have; ``hint`` adds which
    argument gives it."""
    have = set(have)
    for metric in metrics:
        lacking = sorted(set(metric.needs) - have)
        if lacking:
            how = [NEED_HINTS[n] for n in lacking if n in NEED_HINTS]
            extra = f"; pass {' and '.join(how)}" if hint and how else ""
            raise InputError(f"metric {metric.name!r} needs {lacking}, which {where} does not have{extra}")


def build_metrics(specs, *, have=None, where: str = "the pair", hint: bool = False) -> list[Metric]:
    """Metric objects from one spec or a list of specs (names, ``(name, options)``, Metric classes
    or instances), checked: known names and options, each metric once, and (with ``have``) only
    metrics whose needs are available (see :func:`check_metric_needs`)."""
    if _is_one_metric(specs):
        specs = [specs]
    elif not isinstance(specs, (list, tuple)):
        raise InputTypeError(f"metrics is {specs!r}; expected a list of names, (name, options) or Metrics")
    metrics = [make_metric(spec) for spec in specs]
    check_sequence([m.name for m in metrics], "metrics", empty=True, unique=True)
    if have is not None:
        check_sequence(have, "have", lambda need, label: check_choice(need, label, NEEDS), empty=True)
        check_metric_needs(metrics, have, where=where, hint=hint)
    return metrics


def _explainers(methods, method_options):
    built = {}
    for name in methods:
        cls = get_method(name)
        options = dict(method_options.get(name, {}))
        if "show_progress" in cls.options:
            options.setdefault("show_progress", False)
        built[name] = (cls(**options), options)
    return built


def compare(model, pairs, methods=None, metrics=None, *, method_options: dict | None = None,
            fast: bool = True, errors: str = "raise", show_progress: bool = True,
            precision: int = 3) -> Comparison:
    """Run every method on every pair and score each explanation with every metric.

    ``methods``: names (default: all registered, :func:`~simviz_widgets.explain.list_methods`).
    ``metrics``: names, ``(name, options)`` tuples or Metric instances (default:
    :func:`default_metrics` for these pairs). ``method_options``: ``{method: {option: value}}``.
    ``fast``: forward passes of the metrics run on a channels-last copy of the model (explanations
    always use ``model`` itself). ``errors``: ``"raise"`` or ``"skip"`` (a method that fails on a pair
    gets NaN there and the message in ``Comparison.errors``). Returns a :class:`Comparison` —
    ``.table`` (``to_markdown()``, ``_repr_html_``) and ``.plot()``.
    """
    from tqdm.auto import tqdm

    from ..adapters import SimilarityModel

    check_instance(model, "model", SimilarityModel)
    check_choice(errors, "errors", ("raise", "skip"))
    fast, show_progress = check_bool(fast, "fast"), check_bool(show_progress, "show_progress")
    precision = check_int(precision, "precision", minimum=0)
    pairs = [_as_pair(p, k) for k, p in enumerate(check_sequence(pairs, "pairs"))]
    methods = check_methods(methods)
    method_options = check_method_options(method_options, methods)
    metric_objs = build_metrics(default_metrics(pairs) if metrics is None else metrics)
    for p in pairs:
        have = {"model"}
        if p.query_mask is not None or p.reference_mask is not None:
            have.add("mask")
        if p.mapping is not None:
            have.add("mapping")
        check_metric_needs(metric_objs, have, where=p.name)
    explainers = _explainers(methods, method_options)
    fast_model = None
    if fast and any("model" in m.needs for m in metric_objs):
        from ..adapters.copies import fast_inference_copy

        fast_model = fast_inference_copy(model)

    values = {meth: {m.name: np.full(len(pairs), np.nan) for m in metric_objs} for meth in methods}
    runtimes = {meth: np.full(len(pairs), np.nan) for meth in methods}
    failures: dict[str, list[str]] = {}
    bar = tqdm(total=len(pairs) * len(methods), desc="compare", unit="explanation", disable=not show_progress)
    for k, p in enumerate(pairs):
        q = model.prepare(p.query, name=f"{p.name}.query")
        r = model.prepare(p.reference, name=f"{p.name}.reference")
        context = EvalContext(
            model=model,
            query_mask=None if p.query_mask is None else mask_to_display(p.query_mask, q, name=f"{p.name}.query_mask"),
            reference_mask=None if p.reference_mask is None
            else mask_to_display(p.reference_mask, r, name=f"{p.name}.reference_mask"),
            mapping=None if p.mapping is None else display_mapping(q, r, p.mapping),
        )
        if fast_model is not None:
            context.cache["fast_model"] = fast_model
        for meth in methods:
            explainer, options = explainers[meth]
            bar.set_postfix_str(f"{p.name}: {meth}")
            context.method_options = options
            try:
                exp = explainer(model, q, r)
                runtimes[meth][k] = exp.runtime_s
                for m in metric_objs:
                    values[meth][m.name][k] = m.evaluate(exp, context)
            except Exception as err:  # noqa: BLE001 - reported, or re-raised below
                if errors == "raise":
                    raise
                failures.setdefault(meth, []).append(f"{p.name}: {type(err).__name__}: {err}")
            bar.update(1)
    bar.close()
    return Comparison(methods, metric_objs, values, runtimes, len(pairs), failures, precision)

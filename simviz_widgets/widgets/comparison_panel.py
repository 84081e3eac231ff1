"""The method-comparison panel: every explanation method on one pair, side by side, with its
runtime and metric scores, and one bar chart per metric.

A grid of methods x (query map, reference map): small PNG overlays (both maps of a method share
one colour scale), each row labelled with the method's runtime and scores. Bar charts (bqplot)
sort the methods per metric, best first, and say whether higher or lower is better.

Fast methods are explained when the panel is built (a second or two); everything else — the
metrics (forward passes) and the slow methods (RISE, sliding window: hundreds to thousands of
forward passes) — runs in one background thread with a progress bar and a cancel button, so the
kernel stays responsive (torch releases the GIL). Results are cached per (pair, method, options),
so coming back to a pair, or re-running after a cancel, recomputes nothing already done.

The background thread never touches the user's model: it works on a private copy (channels-last,
as :func:`~simviz_widgets.evaluate.compare` does), because :class:`SimilarityModel` captures
features with hooks registered on the module, which two threads must not share.

With a :class:`~simviz_widgets.widgets.PairViewer`, clicking a method (its row button or its bar)
pushes the cached explanation into the viewer (no recomputation), and the panel follows the
viewer's pair and model.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets
from PIL import Image, ImageDraw

from ..evaluate._copies import WorkerCopy
from ..explain.base import PairExplanation, get_method, list_methods
from ..render import default_cmap, normalize_map, overlay
from ._canvas import check_alpha, check_cmap, check_size, check_state, close_tree, display_size, photo_rgba
from .state import SOURCES, HoverState

__all__ = ["MethodComparisonPanel", "MethodResult", "ResultCache", "is_slow", "DEFAULT_METRICS"]

#: Methods that need hundreds or thousands of forward passes, when their class does not say so
#: with a ``slow`` attribute. Any method with a ``cancel`` option is long-running as well.
SLOW_METHODS = frozenset({"rise", "sliding_window"})
#: Options the panel sets itself on methods that have them.
PANEL_OPTIONS = ("cancel", "show_progress")
#: Deletion and insertion with 21 fractions instead of the protocol's 101: five times fewer
#: forward passes, AUCs within about a point of the full curves. Pointing and correspondence
#: metrics join when the ground truth is given.
DEFAULT_METRICS = (("deletion", {"steps": 21}), ("insertion", {"steps": 21}))
RUNTIME = "runtime_s"
METHOD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")  # matplotlib's tab10
PROGRESS_INTERVAL_S = 0.25  # at most four progress messages per second from the worker


def is_slow(method: str) -> bool:
    """Whether ``method`` runs in the background: its class's ``slow`` attribute if it has one,
    else whether it is RISE / sliding window or accepts a ``cancel`` option."""
    cls = get_method(method)
    flag = getattr(cls, "slow", None)
    if flag is not None:
        return bool(flag)
    return method in SLOW_METHODS or "cancel" in getattr(cls, "options", {})


def format_value(value: float) -> str:
    return f"{value:.3g}" if value is not None and math.isfinite(value) else "n/a"


def format_runtime(seconds: float | None) -> str:
    return "n/a" if seconds is None or not math.isfinite(seconds) else f"{seconds:.3g} s"


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        if arr is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _options_key(options: dict) -> str:
    return repr(sorted((k, repr(v)) for k, v in options.items()))


# ------------------------------------------------------------------------------------------------
# results and cache


@dataclass
class MethodResult:
    """One method on the panel's current pair. ``status``: 'pending' | 'running' | 'done' |
    'cancelled' | 'failed'. ``explanation``: the finished explanation (``partial``: what a
    cancelled run had done, shown but never cached). ``scores``: metric name -> value (NaN where
    the metric does not apply). ``progress``: fraction of a running slow method's passes done."""

    method: str
    slow: bool
    status: str = "pending"
    explanation: PairExplanation | None = None
    partial: PairExplanation | None = None
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    progress: float | None = None

    @property
    def runtime_s(self) -> float | None:
        return None if self.explanation is None else self.explanation.runtime_s


class ResultCache:
    """Explanations and metric scores keyed by (model, pair, method, options[, metric, ground
    truth]). Thread-safe; keeps the ``max_explanations`` most recently used explanations."""

    def __init__(self, max_explanations: int = 256):
        self.max_explanations = int(max_explanations)
        self._explanations: OrderedDict = OrderedDict()
        self._scores: dict = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def explanation(self, key) -> PairExplanation | None:
        with self._lock:
            exp = self._explanations.get(key)
            if exp is None:
                self.misses += 1
                return None
            self.hits += 1
            self._explanations.move_to_end(key)
            return exp

    def put_explanation(self, key, explanation: PairExplanation) -> None:
        with self._lock:
            self._explanations[key] = explanation
            self._explanations.move_to_end(key)
            while len(self._explanations) > self.max_explanations:
                old, _ = self._explanations.popitem(last=False)
                self._scores = {k: v for k, v in self._scores.items() if k[0] != old}

    def score(self, key) -> float | None:
        with self._lock:
            return self._scores.get(key)

    def put_score(self, key, value: float) -> None:
        with self._lock:
            if key[0] in self._explanations:
                self._scores[key] = float(value)

    def __len__(self) -> int:
        return len(self._explanations)


@dataclass
class _Pair:
    """The panel's current pair: prepared images, display-pixel ground truth, cache keys."""

    query: Any  # PreparedImage
    reference: Any
    inputs: tuple
    query_mask: np.ndarray | None
    reference_mask: np.ndarray | None
    mapping: Callable | None
    key: tuple  # (model id, query digest, reference digest)
    truth_key: str  # the ground truth the scores were computed with


class _Run:
    """One background computation: its tasks, cancel flag and progress counters."""

    def __init__(self, generation: int, pair: _Pair, model, tasks: list[tuple[str, str]]):
        self.generation = generation
        self.pair = pair
        self.model = model
        self.tasks = tasks
        self.results: dict[str, MethodResult] = {}  # the pair's rows (the panel may move on)
        self.worker_model = model  # the private copy the worker runs
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.finished_tasks = 0
        self.thread: threading.Thread | None = None


# ------------------------------------------------------------------------------------------------
# the panel


class MethodComparisonPanel(widgets.VBox):
    """Explanation methods compared on one pair: maps, runtimes, metric scores and bar charts.

    ``model``: a SimilarityModel. ``query`` / ``reference``: images (anything ``model.prepare``
    takes). ``methods``: names (default: every registered method, fast ones first). ``metrics``:
    names, ``(name, options)`` or Metric objects (default: :data:`DEFAULT_METRICS`, plus
    ``pointing_game`` with masks and ``correspondence_pck`` with a mapping). ``method_options``:
    ``{method: {option: value}}`` (e.g. ``{"rise": {"masks": 500}}``). ``query_mask`` /
    ``reference_mask``: bool masks over the *input* images; ``mapping(rows, cols) -> (rows, cols,
    valid)``: query -> reference pixels of the input images (carried to display pixels through
    the model's resize and crop, as :func:`~simviz_widgets.evaluate.compare` does).
    ``viewer``: a PairViewer to drive (selecting a method shows it there) and follow (its pair and
    model). ``state``: a HoverState whose pins are marked on every thumbnail (the viewer's by
    default). ``size``: thumbnail pixels of the longer side. ``background``: False runs
    everything in the calling thread (scripts, static export).

    Observable trait: ``selected`` (the method shown in the viewer, or None).
    """

    selected = traitlets.Unicode(None, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(0.5)

    def __init__(self, model, query, reference, *, methods=None, metrics=None, method_options=None,
                 query_mask=None, reference_mask=None, mapping=None, viewer=None,
                 state: HoverState | None = None, size: int = 112, cmap: str | None = None,
                 alpha: float = 0.5, background: bool = True, cache: ResultCache | None = None):
        from ..adapters import SimilarityModel

        if not isinstance(model, SimilarityModel):
            raise TypeError(
                f"model is a {type(model).__name__}; expected a SimilarityModel "
                "(simviz_widgets.load_model(...) or SimilarityModel.wrap(module))"
            )
        if viewer is not None:
            from .pair_viewer import PairViewer

            if not isinstance(viewer, PairViewer):
                raise TypeError(f"viewer is a {type(viewer).__name__}; expected a PairViewer or None")
            if viewer.model is not None and viewer.model is not model:
                raise ValueError(
                    "viewer explains with another model than the panel's; use "
                    "MethodComparisonPanel.for_viewer(viewer), which takes the viewer's model and pair"
                )
            if state is None:
                state = viewer.state
        if not isinstance(background, bool):
            raise TypeError(f"background is {background!r}; expected True or False")
        if cache is not None and not isinstance(cache, ResultCache):
            raise TypeError(f"cache is a {type(cache).__name__}; expected a ResultCache or None")
        self._model = model
        self._methods = self._check_methods(methods)
        self._method_options = self._check_method_options(method_options, self._methods)
        self._metric_specs = metrics
        self._size = check_size(size)
        self.state = check_state(state)
        self.background = background
        self.cache = cache if cache is not None else ResultCache()
        self.viewer = viewer
        self._lock = threading.RLock()
        self._generation = 0
        self._run: _Run | None = None
        self._previous_threads: list[threading.Thread] = []
        self._worker_copy = WorkerCopy()
        self._closed = False
        self._last_progress = 0.0
        self.results: dict[str, MethodResult] = {}

        self._build_widgets()
        self.cmap, self.alpha = check_cmap(cmap), check_alpha(alpha)
        self.observe(self._on_look_change, ["cmap", "alpha"])
        self.state.observe(self._on_pins_change, "pins")
        if viewer is not None:
            viewer.observe(self._on_viewer_explanation, "explanation")
        self.set_pair(query, reference, query_mask=query_mask, reference_mask=reference_mask, mapping=mapping)
        if viewer is not None:
            self._highlight(viewer.explanation.method if self._same_pair(viewer.explanation) else None)

    @classmethod
    def for_viewer(cls, viewer, *, methods=None, metrics=None, method_options=None, query_mask=None,
                   reference_mask=None, mapping=None, size: int = 112, background: bool = True,
                   cache: ResultCache | None = None) -> "MethodComparisonPanel":
        """A panel on ``viewer``'s pair and model, sharing its hover state, colormap and opacity."""
        from .pair_viewer import check_viewer_with_model

        check_viewer_with_model(viewer, "the comparison panel runs every method")
        query, reference = viewer.inputs
        return cls(viewer.model, query, reference, methods=methods, metrics=metrics,
                   method_options=method_options, query_mask=query_mask, reference_mask=reference_mask,
                   mapping=mapping, viewer=viewer, state=viewer.state, size=size, cmap=viewer.cmap,
                   alpha=viewer.alpha, background=background, cache=cache)

    # --------------------------------------------------------------------------------------------
    # validation

    @staticmethod
    def _check_methods(methods) -> list[str]:
        if methods is None:
            names = list_methods()
            return sorted(names, key=lambda n: (is_slow(n), n != "decomposition", n))
        if isinstance(methods, str):
            methods = [methods]
        try:
            methods = list(methods)
        except TypeError:
            raise TypeError(f"methods is {methods!r}; expected a list of method names") from None
        if not methods:
            raise ValueError("methods is empty; expected at least one method name")
        for name in methods:
            if not isinstance(name, str):
                raise TypeError(f"methods contains {name!r}; expected method names (str)")
            get_method(name)  # a clear error naming the known methods
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods {methods} repeat a name; give each method once")
        return methods

    @staticmethod
    def _check_method_options(method_options, methods) -> dict[str, dict]:
        if method_options is None:
            return {name: {} for name in methods}
        if not isinstance(method_options, dict):
            raise TypeError(f"method_options is a {type(method_options).__name__}; expected {{method: {{option: value}}}}")
        unknown = sorted(set(method_options) - set(methods))
        if unknown:
            raise ValueError(f"method_options names {unknown}, which are not among the methods {methods}")
        checked = {}
        for name in methods:
            options = method_options.get(name, {})
            if not isinstance(options, dict):
                raise TypeError(f"method_options[{name!r}] is {options!r}; expected a dict of options")
            controlled = sorted(set(options) & set(PANEL_OPTIONS))
            if controlled:
                raise ValueError(
                    f"method_options[{name!r}] sets {controlled}; the panel sets these itself (its progress "
                    "bar and cancel button)"
                )
            get_method(name)(**options)  # unknown or invalid options fail here, named by the method
            checked[name] = dict(options)
        return checked

    def _build_metrics(self, pair_has_mask: bool, pair_has_mapping: bool):
        from ..evaluate import make_metric

        from ..evaluate import Metric

        specs = self._metric_specs
        if specs is None:
            specs = list(DEFAULT_METRICS)
            if pair_has_mask:
                specs.append("pointing_game")
            if pair_has_mapping:
                specs.append("correspondence_pck")
        elif (isinstance(specs, (str, Metric)) or (isinstance(specs, type) and issubclass(specs, Metric))
              or (isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[1], dict))):
            specs = [specs]  # one metric
        elif isinstance(specs, (list, tuple)):
            specs = list(specs)
        else:
            raise TypeError(f"metrics is {specs!r}; expected a list of names, (name, options) or Metrics")
        metrics = [make_metric(spec) for spec in specs]
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metrics {names} repeat a name; give each metric once")
        have = {"model"} | ({"mask"} if pair_has_mask else set()) | ({"mapping"} if pair_has_mapping else set())
        for metric in metrics:
            lacking = sorted(set(metric.needs) - have)
            if lacking:
                hint = {"mask": "query_mask= / reference_mask=", "mapping": "mapping="}
                raise ValueError(
                    f"metric {metric.name!r} needs {lacking}; pass "
                    f"{' and '.join(hint[n] for n in lacking if n in hint)} to the panel"
                )
        return metrics

    # --------------------------------------------------------------------------------------------
    # widgets

    def _build_widgets(self) -> None:
        self.title = widgets.HTML()
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="background",
                                              bar_style="info", layout=widgets.Layout(width="320px"))
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.cancel_button = widgets.Button(description="cancel", icon="stop", disabled=True,
                                            tooltip="stop the background computation (results so far are kept)")
        self.run_button = widgets.Button(description="compute missing", icon="play", disabled=True,
                                         tooltip="compute what was cancelled or failed")
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.run_button.on_click(lambda _b: self.run())
        self.grid = widgets.VBox(layout=widgets.Layout(margin="6px 0"))
        self.charts_box = widgets.Box(layout=widgets.Layout(display="flex", flex_flow="row wrap"))
        controls = widgets.HBox([self.progress, self.cancel_button, self.run_button])
        super().__init__(children=[self.title, controls, self.status_label, self.grid, self.charts_box])
        self.add_class("simviz-comparison-panel")
        self.rows: dict[str, dict[str, widgets.Widget]] = {}
        self.charts: dict[str, bqplot.Figure] = {}
        self.bars: dict[str, bqplot.Bars] = {}
        self.chart_notes: dict[str, widgets.HTML] = {}

    def _build_grid(self) -> None:
        """One row per method: select button, query thumbnail, reference thumbnail, label."""
        for row in self.rows.values():
            close_tree(row["box"])
        self.rows = {}
        rows, cols = display_size(self._pair.query.size, self._size)
        ref_rows, ref_cols = display_size(self._pair.reference.size, self._size)
        header = widgets.HBox([
            widgets.HTML("<b>method</b>", layout=widgets.Layout(width="160px")),
            widgets.HTML("<b>query map</b>", layout=widgets.Layout(width=f"{cols + 8}px")),
            widgets.HTML("<b>reference map</b>", layout=widgets.Layout(width=f"{ref_cols + 8}px")),
            widgets.HTML("<b>runtime and scores</b>"),
        ])
        children = [header]
        for k, name in enumerate(self._methods):
            button = widgets.Button(description=name, layout=widgets.Layout(width="150px"),
                                    tooltip=f"show {name} in the viewer" if self.viewer is not None else name)
            button.style.button_color = None
            button.on_click(lambda _b, name=name: self.select(name))
            swatch = widgets.HTML(
                f"<span style='display:inline-block;width:0.8em;height:0.8em;"
                f"background:{self._colour(name)}'></span>", layout=widgets.Layout(width="14px"))
            query_image = widgets.Image(format="png", width=cols, height=rows,
                                        layout=widgets.Layout(margin="2px 8px 2px 0"))
            reference_image = widgets.Image(format="png", width=ref_cols, height=ref_rows,
                                            layout=widgets.Layout(margin="2px 8px 2px 0"))
            label = widgets.HTML(layout=widgets.Layout(width="260px"))
            row = widgets.HBox([widgets.VBox([widgets.HBox([swatch, button])], layout=widgets.Layout(width="160px")),
                                query_image, reference_image, label])
            self.rows[name] = {"button": button, "query": query_image, "reference": reference_image,
                               "label": label, "box": row}
            children.append(row)
        self.grid.children = children

    def _build_charts(self) -> None:
        for fig in self.charts.values():
            close_tree(fig)
        self.charts, self.bars, self.chart_notes = {}, {}, {}
        entries = [(m.name, m.label, m.higher_is_better, getattr(m, "unit", "")) for m in self.metrics]
        entries.append((RUNTIME, "runtime (↓)", False, "seconds"))
        boxes = []
        for key, label, higher, unit in entries:
            x_scale = bqplot.OrdinalScale()
            y_scale = bqplot.LinearScale()
            bars = bqplot.Bars(x=[], y=[], scales={"x": x_scale, "y": y_scale}, colors=[METHOD_COLOURS[0]],
                               interactions={"click": "select"}, padding=0.2,
                               tooltip=bqplot.Tooltip(fields=["x", "y"], formats=["", ".3g"]))
            bars.observe(lambda change, key=key: self._on_bar_selected(key, change), "selected")
            direction = "higher is better" if higher else "lower is better"
            fig = bqplot.Figure(
                marks=[bars],
                axes=[bqplot.Axis(scale=x_scale, tick_rotate=-35, tick_style={"font-size": "9px"}),
                      bqplot.Axis(scale=y_scale, orientation="vertical", label=unit or "", tick_format=".3g")],
                title=f"{label}: {direction}, best first",
                fig_margin={"top": 40, "bottom": 70, "left": 55, "right": 10},
                layout=widgets.Layout(width="300px", height="250px"),
            )
            note = widgets.HTML(layout=widgets.Layout(min_height="1.2em"))
            self.charts[key], self.bars[key], self.chart_notes[key] = fig, bars, note
            boxes.append(widgets.VBox([fig, note]))
        self.charts_box.children = boxes

    def _colour(self, method: str) -> str:
        return METHOD_COLOURS[self._methods.index(method) % len(METHOD_COLOURS)]

    # --------------------------------------------------------------------------------------------
    # public API

    @property
    def model(self):
        return self._model

    @property
    def methods(self) -> list[str]:
        return list(self._methods)

    def explanation(self, method: str) -> PairExplanation | None:
        """The finished explanation of ``method`` on the current pair (None while not computed)."""
        return self._result(method).explanation

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """``{method: {metric: value}}`` on the current pair, plus ``runtime_s``; NaN while missing."""
        out = {}
        with self._lock:
            for name, result in self.results.items():
                row = {m.name: result.scores.get(m.name, float("nan")) for m in self.metrics}
                runtime = result.runtime_s
                row[RUNTIME] = float("nan") if runtime is None else float(runtime)
                out[name] = row
        return out

    def chart_order(self, metric: str) -> list[str]:
        """Methods in the order ``metric``'s bar chart shows them (best first; NaN left out)."""
        if metric not in self.bars:
            raise ValueError(f"metric {metric!r} has no chart here; charts: {list(self.bars)}")
        return [str(name) for name in self.bars[metric].x]

    def set_pair(self, query, reference, *, query_mask=None, reference_mask=None, mapping=None) -> None:
        """Compare the methods on another pair (cached results come back at once)."""
        self._set_pair(query, reference, query_mask=query_mask, reference_mask=reference_mask,
                       mapping=mapping, fast_here=True)

    def set_model(self, model) -> None:
        """Compare the methods for another model on the same input pair."""
        from ..adapters import SimilarityModel

        if not isinstance(model, SimilarityModel):
            raise TypeError(f"model is a {type(model).__name__}; expected a SimilarityModel")
        self._model = model
        query, reference = self._pair.inputs
        self._set_pair(query, reference, query_mask=self._masks_in[0], reference_mask=self._masks_in[1],
                       mapping=self._mapping_in, fast_here=True)

    def select(self, method: str) -> bool:
        """Make ``method`` the selected one; with a viewer, show its explanation there (the cached
        one: nothing is recomputed). Returns False (and says so) if it is not computed yet."""
        result = self._result(method)
        if result.explanation is None:
            self.status_label.value = (
                f"<span style='color:#a60'>{html.escape(method)} is {result.status}"
                f"{': ' + html.escape(result.error) if result.error else ''}; nothing to show yet</span>"
            )
            return False
        self._highlight(method)
        if self.viewer is not None and self.viewer.explanation is not result.explanation:
            self.viewer.set_explanation(result.explanation)
        return True

    def cancel(self) -> None:
        """Stop the background computation: a running slow method stops between batches (its
        partial map is shown, not cached); finished results stay."""
        run = self._run
        if run is not None and not run.done.is_set():
            run.cancel.set()
            self.status_label.value = "cancelling…"

    def run(self) -> None:
        """Compute whatever is missing on the current pair (after a cancel or a failure)."""
        self._start(fast_here=False)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background computation ends; returns whether it did within ``timeout``."""
        run = self._run
        if run is None:
            return True
        return run.done.wait(timeout)

    @property
    def computing(self) -> bool:
        run = self._run
        return run is not None and not run.done.is_set()

    def close(self) -> None:
        """Cancel the background work and close the panel and everything in it."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        run = self._run
        if run is not None:
            run.cancel.set()
        self.state.unobserve(self._on_pins_change, "pins")
        if self.viewer is not None:
            self.viewer.unobserve(self._on_viewer_explanation, "explanation")
        for child in self.children:
            close_tree(child)
        super().close()

    # --------------------------------------------------------------------------------------------
    # pair and runs

    def _set_pair(self, query, reference, *, query_mask, reference_mask, mapping, fast_here: bool) -> None:
        from ..evaluate import display_mapping, mask_to_display

        model = self._model
        q = model.prepare(query, name="query")
        r = model.prepare(reference, name="reference")
        if mapping is not None and not callable(mapping):
            raise TypeError(f"mapping is a {type(mapping).__name__}; expected a function (rows, cols) -> "
                            "(rows, cols, valid) from query to reference pixels")
        q_mask = None if query_mask is None else mask_to_display(query_mask, q, name="query_mask")
        r_mask = None if reference_mask is None else mask_to_display(reference_mask, r, name="reference_mask")
        display_map = None if mapping is None else display_mapping(q, r, mapping)
        metrics = self._build_metrics(q_mask is not None or r_mask is not None, mapping is not None)
        key = (id(model), _digest(q.tensor.numpy(), q.display), _digest(r.tensor.numpy(), r.display))
        truth_key = _digest(q_mask, r_mask) + f"/mapping:{id(mapping)}"
        old_run = self._run
        if old_run is not None:
            old_run.cancel.set()
            if old_run.thread is not None:
                self._previous_threads.append(old_run.thread)
        with self._lock:
            self._generation += 1
            self._pair = _Pair(q, r, (query, reference), q_mask, r_mask, display_map, key, truth_key)
            self._masks_in = (query_mask, reference_mask)
            self._mapping_in = mapping
            old_metrics = [m.name for m in getattr(self, "metrics", [])]
            self.metrics = metrics
            self.results = {name: MethodResult(name, is_slow(name)) for name in self._methods}
            self.selected = None
        self._build_grid()
        if [m.name for m in metrics] != old_metrics or not self.charts:
            self._build_charts()
        self._start(fast_here=fast_here)

    def _exp_key(self, method: str) -> tuple:
        return (self._pair.key, method, _options_key(self._method_options[method]))

    def _score_key(self, exp_key: tuple, metric) -> tuple:
        return (exp_key, metric.name, _options_key(metric.config), self._pair.truth_key)

    def _fill_from_cache(self, name: str) -> bool:
        """Take ``name``'s explanation and scores from the cache; True if nothing is missing."""
        result = self.results[name]
        key = self._exp_key(name)
        exp = self.cache.explanation(key)
        if exp is None:
            return False
        result.explanation, result.partial, result.error = exp, None, None
        missing = False
        for metric in self.metrics:
            value = self.cache.score(self._score_key(key, metric))
            if value is None:
                missing = True
            else:
                result.scores[metric.name] = value
        result.status = "running" if missing else "done"
        return not missing

    def _start(self, *, fast_here: bool) -> None:
        """Fill what the cache has; explain fast methods here if asked; queue everything else."""
        if self._run is not None and not self._run.done.is_set():
            if self._run.generation == self._generation:
                return  # already computing this pair
        tasks: list[tuple[str, str]] = []
        pending_metrics: list[str] = []
        slow_tasks: list[tuple[str, str]] = []
        for name in self._methods:
            result = self.results[name]
            if self._fill_from_cache(name):
                continue
            if result.explanation is None:
                result.status = "pending"
                if result.slow:
                    slow_tasks += [("explain", name), ("metrics", name)]
                    continue
                if fast_here:
                    self._explain_here(name)
                    if result.explanation is None:
                        continue  # failed: the row says why
                else:
                    tasks.append(("explain", name))
            pending_metrics.append(name)
        tasks += [("metrics", name) for name in pending_metrics] + slow_tasks
        for name in self._methods:
            self._update_row(name)
        self._update_charts()
        self._update_title()
        if not tasks:
            self._run = None
            self._set_progress_done("all results ready")
            return
        run = _Run(self._generation, self._pair, self._model, tasks)
        run.results = self.results
        # Copied here, not in the worker: a copy taken while this thread runs the model could
        # catch one of its temporary feature hooks.
        run.worker_model = self._worker_copy.of(self._model)
        self._run = run
        self.progress.max = float(len(tasks))
        self.progress.value = 0.0
        self.progress.bar_style = "info"
        self.cancel_button.disabled = False
        self.run_button.disabled = True
        self.status_label.value = f"computing {len(tasks)} task(s) in the background…"
        if self.background:
            previous = list(self._previous_threads)
            self._previous_threads = []
            run.thread = threading.Thread(target=self._work, args=(run, previous), daemon=True,
                                          name="simviz-method-comparison")
            run.thread.start()
        else:
            self._work(run, [])

    def _explain_here(self, name: str) -> None:
        """Explain a fast method in the calling thread with the user's model."""
        result = self.results[name]
        result.status = "running"
        try:
            exp = self._explainer(name, None)(self._model, self._pair.query, self._pair.reference)
        except Exception as error:  # noqa: BLE001 - shown in the row; the other methods go on
            result.status, result.error = "failed", f"{type(error).__name__}: {error}"
            return
        self.cache.put_explanation(self._exp_key(name), exp)
        result.explanation, result.error = exp, None

    def _explainer(self, name: str, cancel):
        cls = get_method(name)
        options = dict(self._method_options[name])
        if "show_progress" in cls.options:
            options["show_progress"] = False  # the panel's bar; tqdm from a thread would go astray
        if cancel is not None and "cancel" in cls.options:
            options["cancel"] = cancel
        return cls(**options)

    def _work(self, run: _Run, previous: list[threading.Thread]) -> None:
        """The worker: tasks in order, results into the cache, the grid updated as each ends."""
        from ..evaluate import EvalContext

        try:
            for thread in previous:  # they share the worker copy of the model: one at a time
                thread.join()
            model = run.worker_model
            pair = run.pair
            context = EvalContext(model=model, query_mask=pair.query_mask, reference_mask=pair.reference_mask,
                                  mapping=pair.mapping)
            context.cache["fast_model"] = model
            for kind, name in run.tasks:
                if run.cancel.is_set():
                    break
                if kind == "explain":
                    self._task_explain(run, name, model)
                else:
                    self._task_metrics(run, name, context)
                run.finished_tasks += 1
                if run.generation == self._generation:
                    self._set_progress(run, 0.0, force=True)
                    self._update_row(name)
                    self._update_charts()
        except Exception as error:  # noqa: BLE001 - a worker must not die silently
            if run.generation == self._generation:
                self.status_label.value = f"<span style='color:#b00'>background work failed: {html.escape(str(error))}</span>"
        finally:
            run.done.set()
            if run.generation == self._generation and not self._closed:
                self._finish(run)

    def _task_explain(self, run: _Run, name: str, model) -> None:
        from ..explain import ExplanationCancelled

        result = run.results[name]
        cached = self.cache.explanation(self._key_for(run, name))
        if cached is not None:  # another panel sharing the cache got there first
            result.explanation, result.partial, result.error, result.status = cached, None, None, "running"
            return
        result.status, result.progress = "running", 0.0
        if run.generation == self._generation:
            self._update_row(name)
        batches = self._batch_count(self._explainer(name, None), run.pair)
        calls = [0]

        def cancel_check() -> bool:
            # Called by the method before each batch: counts batches for the progress bar too.
            calls[0] += 1
            if batches:
                result.progress = min(1.0, (calls[0] - 1) / batches)
                if run.generation == self._generation:
                    self._set_progress(run, result.progress)
            return run.cancel.is_set()

        explainer = self._explainer(name, cancel_check)
        try:
            exp = explainer(model, run.pair.query, run.pair.reference)
        except ExplanationCancelled as stop:
            result.status, result.partial, result.progress = "cancelled", stop.partial, None
            result.error = str(stop)
            return
        except Exception as error:  # noqa: BLE001 - shown in the row
            result.status, result.error, result.progress = "failed", f"{type(error).__name__}: {error}", None
            return
        self.cache.put_explanation(self._key_for(run, name), exp)
        result.explanation, result.partial, result.error, result.progress = exp, None, None, None
        result.status = "running"  # metrics follow

    def _task_metrics(self, run: _Run, name: str, context) -> None:
        result = run.results[name]
        key = self._key_for(run, name)
        exp = self.cache.explanation(key)
        if exp is None:
            return  # failed or cancelled: nothing to score
        context.method_options = dict(self._method_options[name])
        for metric in self.metrics:
            if run.cancel.is_set():
                return
            score_key = (key, metric.name, _options_key(metric.config), run.pair.truth_key)
            value = self.cache.score(score_key)
            if value is None:
                try:
                    value = float(metric.evaluate(exp, context))
                except Exception as error:  # noqa: BLE001 - one metric failing leaves the rest
                    result.error = f"{metric.name}: {type(error).__name__}: {error}"
                    value = float("nan")
                else:
                    self.cache.put_score(score_key, value)
            result.scores[metric.name] = value
            if run.generation == self._generation:
                self._update_row(name)
        if result.status != "failed":
            result.status = "done"

    def _key_for(self, run: _Run, method: str) -> tuple:
        """Cache key of ``method`` on the pair ``run`` computes (which may no longer be current)."""
        return (run.pair.key, method, _options_key(self._method_options[method]))

    def _batch_count(self, explainer, pair: _Pair) -> int | None:
        """Batches the method will run (for the progress bar), if it says how many passes."""
        passes = getattr(explainer, "_passes", None)
        batch = getattr(explainer, "config", {}).get("batch_size")
        if passes is None or not batch:
            return None
        try:
            total = passes(tuple(pair.query.tensor.shape[-2:]))
            if explainer.config.get("both"):
                total += passes(tuple(pair.reference.tensor.shape[-2:]))
        except Exception:  # noqa: BLE001 - progress is a nicety
            return None
        return max(1, math.ceil(total / batch))

    def _finish(self, run: _Run) -> None:
        cancelled = run.cancel.is_set()
        for name, result in self.results.items():
            if result.status in ("pending", "running") and cancelled:
                result.status = "cancelled" if result.explanation is None else "done"
            self._update_row(name)
        self._update_charts()
        self.cancel_button.disabled = True
        missing = [n for n, r in self.results.items() if r.status in ("cancelled", "failed", "pending")
                   or len(r.scores) < len(self.metrics)]
        self.run_button.disabled = not missing
        if cancelled:
            self.progress.bar_style = "warning"
            self.status_label.value = f"cancelled; missing: {', '.join(missing) or 'nothing'}"
        else:
            self._set_progress_done("all results ready" if not missing else f"done; failed: {', '.join(missing)}")

    def _set_progress(self, run: _Run, fraction: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        self.progress.value = float(min(run.finished_tasks + fraction, len(run.tasks)))
        if run.finished_tasks < len(run.tasks):
            kind, name = run.tasks[run.finished_tasks]
            what = "explaining" if kind == "explain" else "scoring"
            self.status_label.value = (
                f"{what} {html.escape(name)} ({run.finished_tasks + 1} of {len(run.tasks)}"
                f"{f', {100 * fraction:.0f} %' if fraction else ''})"
            )

    def _set_progress_done(self, text: str) -> None:
        self.progress.max = 1.0
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        self.cancel_button.disabled = True
        self.run_button.disabled = True
        self.status_label.value = text

    def _result(self, method: str) -> MethodResult:
        if method not in self.results:
            raise ValueError(f"method {method!r} is not in this panel; its methods are {self._methods}")
        return self.results[method]

    def _same_pair(self, explanation: PairExplanation | None) -> bool:
        if explanation is None:
            return False
        return (np.array_equal(explanation.query, self._pair.query.display)
                and np.array_equal(explanation.reference, self._pair.reference.display))

    # --------------------------------------------------------------------------------------------
    # drawing

    def _thumbnails(self, exp: PairExplanation) -> dict[str, bytes]:
        """PNG overlays of both maps on one colour scale (a flat map — e.g. RISE's reference map,
        not computed by default — is left off, so it does not squash the other's scale)."""
        shown = {s: exp.maps[s] for s in SOURCES if float(np.ptp(exp.maps[s])) > 0.0}
        signed = bool(exp.signed)
        mode = "symmetric" if signed else "minmax"
        if shown:
            both = np.concatenate([v.ravel() for v in shown.values()])[None]
            _, lo, hi = normalize_map(both, mode=mode)
        cmap = self.cmap or default_cmap(signed)
        out = {}
        for source in SOURCES:
            image = exp.query if source == "query" else exp.reference
            photo = photo_rgba(image, display_size(image.shape[:2], self._size))[..., :3]
            if source in shown:
                picture = overlay(photo, shown[source], alpha=self.alpha, cmap=cmap, mode=mode, vmin=lo,
                                  vmax=hi, signed=signed)
            else:
                picture = (photo.astype(np.float32) * 0.5 + 127.5).astype(np.uint8)  # washed out: no map
            out[source] = self._png(picture, source, image.shape[:2])
        return out

    def _png(self, picture: np.ndarray, source: str, image_size) -> bytes:
        canvas = Image.fromarray(picture)
        pins = [p for p in self.state.pins if p.source == source]
        if pins:
            draw = ImageDraw.Draw(canvas)
            rows, cols = picture.shape[:2]
            for pin in pins:
                y = (pin.row + 0.5) * rows / image_size[0]
                x = (pin.col + 0.5) * cols / image_size[1]
                draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=pin.colour, outline="black", width=1)
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        return buffer.getvalue()

    def _photo_png(self, source: str) -> bytes:
        image = self._pair.query.display if source == "query" else self._pair.reference.display
        photo = photo_rgba(image, display_size(image.shape[:2], self._size))[..., :3]
        washed = (photo.astype(np.float32) * 0.5 + 127.5).astype(np.uint8)
        return self._png(washed, source, image.shape[:2])

    def row_label(self, method: str) -> str:
        """The text (HTML) of ``method``'s label: status, runtime, score per metric."""
        result = self._result(method)
        parts = []
        status = result.status
        if status == "running" and result.progress is not None:
            status = f"running {100 * result.progress:.0f} %"
        if status != "done":
            parts.append(f"<i>{html.escape(status)}</i>")
        exp = result.explanation
        if exp is not None:
            parts.append(f"runtime {format_runtime(exp.runtime_s)}"
                         + ("" if exp.point_to_point is None else " · point-to-point"))
        elif result.partial is not None:
            done = result.partial.info.get("passes_done")
            parts.append(f"partial map ({done} passes), not cached")
        for metric in self.metrics:
            value = result.scores.get(metric.name)
            if value is None:
                text = "…" if exp is not None else "–"
            else:
                text = format_value(value)
            arrow = "↑" if metric.higher_is_better else "↓"
            parts.append(f"{html.escape(metric.name)} {arrow} {text}")
        if result.error:
            parts.append(f"<span style='color:#b00'>{html.escape(result.error[:200])}</span>")
        return "<br>".join(parts)

    def _update_row(self, name: str) -> None:
        row = self.rows.get(name)
        if row is None or self._closed:
            return
        result = self.results[name]
        exp = result.explanation if result.explanation is not None else result.partial
        if exp is not None:
            if row.get("shown") is not exp or row.get("look") != self._look():
                pngs = self._thumbnails(exp)
                row["query"].value, row["reference"].value = pngs["query"], pngs["reference"]
                row["shown"], row["look"] = exp, self._look()
        elif row.get("shown") != "photo":
            row["query"].value, row["reference"].value = self._photo_png("query"), self._photo_png("reference")
            row["shown"], row["look"] = "photo", self._look()
        row["label"].value = self.row_label(name)

    def _look(self) -> tuple:
        return (self.cmap, self.alpha, tuple(self.state.pins))

    def _update_charts(self) -> None:
        scores = self.scores
        entries = [(m.name, m.higher_is_better) for m in self.metrics] + [(RUNTIME, False)]
        for key, higher in entries:
            values = [(name, scores[name][key]) for name in self._methods]
            finite = [(n, v) for n, v in values if math.isfinite(v)]
            finite.sort(key=lambda item: item[1], reverse=higher)  # best first, stable for ties
            bars = self.bars[key]
            with bars.hold_sync():
                bars.x = [n for n, _ in finite]
                bars.y = [v for _, v in finite]
                bars.colors = [self._colour(n) for n, _ in finite] or [METHOD_COLOURS[0]]
            missing = [n for n, v in values if not math.isfinite(v)]
            self.chart_notes[key].value = (
                f"<small>not yet / n/a: {html.escape(', '.join(missing))}</small>" if missing else ""
            )

    def _update_title(self) -> None:
        exp = next((r.explanation for r in self.results.values() if r.explanation is not None), None)
        score = f" · {exp.metric} similarity {exp.score:.4f}" if exp is not None else ""
        slow = [n for n in self._methods if self.results[n].slow]
        self.title.value = (
            f"<b>method comparison</b>{score} · {len(self._methods)} method{'s' if len(self._methods) != 1 else ''}"
            + (f" (in the background: {', '.join(slow)})" if slow and self.background else "")
            + (" · click a method to show it in the viewer" if self.viewer is not None else "")
        )

    def _highlight(self, method: str | None) -> None:
        self.selected = method
        for name, row in self.rows.items():
            row["button"].button_style = "info" if name == method else ""

    # --------------------------------------------------------------------------------------------
    # observers

    def _on_look_change(self, _change) -> None:
        if self.rows:
            for name in self._methods:
                self._update_row(name)

    def _on_pins_change(self, _change) -> None:
        self._on_look_change(None)

    def _on_bar_selected(self, key: str, change) -> None:
        indices = change["new"]
        if indices is None or len(indices) == 0:
            return
        bars = self.bars[key]
        index = int(indices[0])
        if 0 <= index < len(bars.x):
            self.select(str(bars.x[index]))
        bars.selected = None  # a click is an action, not a lasting selection

    def _on_viewer_explanation(self, change) -> None:
        exp = change["new"]
        if exp is None:
            return
        viewer = self.viewer
        if viewer.model is not None and viewer.model is not self._model:
            self._model = viewer.model
            query, reference = viewer.inputs
            self._set_pair(query, reference, query_mask=None, reference_mask=None, mapping=None, fast_here=False)
        elif not self._same_pair(exp):
            query, reference = viewer.inputs
            # Ground truth belonged to the old pair; the new one is compared without it.
            self._set_pair(query, reference, query_mask=None, reference_mask=None, mapping=None, fast_here=False)
        self._highlight(exp.method if exp.method in self.results and self._same_pair(exp) else None)

    # --------------------------------------------------------------------------------------------
    # static form

    def to_image(self) -> np.ndarray:
        """The grid as one RGB image: a row per method (name, runtime, scores, both maps)."""
        tiles = []
        text_width = 230
        for name in self._methods:
            row = self.rows[name]
            thumbs = [np.asarray(Image.open(io.BytesIO(row[s].value)).convert("RGB")) for s in SOURCES]
            height = max(t.shape[0] for t in thumbs)
            width = text_width + sum(t.shape[1] + 6 for t in thumbs)
            tile = Image.new("RGB", (width, height + 6), "white")
            draw = ImageDraw.Draw(tile)
            label = self.row_label(name).replace("<br>", "\n")
            for tag in ("<i>", "</i>", "<b>", "</b>"):
                label = label.replace(tag, "")
            label = _strip_tags(label)
            draw.text((4, 3), name + "\n" + label, fill="black", font=_label_font())
            left = text_width
            for t in thumbs:
                tile.paste(Image.fromarray(t), (left, 3))
                left += t.shape[1] + 6
            tiles.append(np.asarray(tile))
        width = max(t.shape[1] for t in tiles)
        stacked = np.full((sum(t.shape[0] for t in tiles), width, 3), 255, np.uint8)
        top = 0
        for t in tiles:
            stacked[top:top + t.shape[0], : t.shape[1]] = t
            top += t.shape[0]
        return stacked

    def _repr_mimebundle_(self, **kwargs):
        import base64

        bundle = super()._repr_mimebundle_(**kwargs) or {}
        buffer = io.BytesIO()
        Image.fromarray(self.to_image()).save(buffer, format="PNG")
        bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return bundle


def _label_font():
    """DejaVu Sans from matplotlib's data (it has the arrows and dots PIL's bitmap font lacks)."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", 11)
    except Exception:  # noqa: BLE001 - no FreeType: the bitmap font
        return ImageFont.load_default()


def _strip_tags(text: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", text))

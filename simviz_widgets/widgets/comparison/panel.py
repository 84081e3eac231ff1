"""The method-comparison panel: a view of a :class:`ComparisonSession`.

A grid of methods x (query map, reference map) — small PNG overlays, both maps of a method on one
colour scale — each row labelled with the method's runtime and scores, a progress bar with cancel
and "compute missing" buttons, and one horizontal bar chart per metric (best method on top).

The panel only draws and forwards: its buttons, bar clicks and the viewer's changes call the
session; the session tells the panel what changed (always in the kernel's thread) and the panel
redraws that. All the computing, caching and background work is the session's.

With a :class:`~simviz_widgets.widgets.PairViewer`, clicking a method (its row button or its bar)
pushes the cached explanation into the viewer (no recomputation), and the panel follows the
viewer's pair and model.
"""

from __future__ import annotations

import base64
import html

import ipywidgets as widgets
import traitlets

from ...checks import InputError, check_choice, check_instance
from ...explain.base import SIDES, PairExplanation
from ...web.png import png_bytes
from .._canvas import CHECKS, DEFAULT_ALPHA, close_tree, display_size
from ..session import check_open
from ..state import HoverState
from .charts import MetricCharts, chart_specs, header_html, method_colour, row_label, strip_tags
from .results import MethodResult, ResultCache, SessionEvent
from .session import ComparisonSession
from .thumbnails import grid_image, map_pngs, photo_png

__all__ = ["MethodComparisonPanel"]

BAR_STYLES = {"idle": "", "computing": "info", "cancelling": "info", "done": "success", "cancelled": "warning",
              "failed": "danger"}
PHOTO_LABELS = {"pending": "pending…", "running": "running…", "failed": "failed", "cancelled": "cancelled"}
NAME_COLUMN_PX = 200


class MethodComparisonPanel(widgets.VBox):
    """Explanation methods compared on one pair: maps, runtimes, metric scores and bar charts.

    ``model``: a SimilarityModel. ``query`` / ``reference``: images (anything ``model.prepare``
    takes). ``methods``, ``metrics``, ``method_options``, ``query_mask``, ``reference_mask``,
    ``mapping``, ``background``, ``cache``: as :class:`ComparisonSession` (the panel's
    :attr:`session`). ``viewer``: a PairViewer to drive (selecting a method shows it there) and
    follow (its pair and model). ``state``: a HoverState whose pins are marked on every thumbnail
    (the viewer's by default). ``size``: thumbnail pixels of the longer side.

    Observable traits: ``selected`` (the method shown in the viewer, or None), ``cmap``, ``alpha``.
    """

    _closed = True  # until built: close() (also called by ipywidgets on __del__) has nothing to free

    selected = traitlets.Unicode(None, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(DEFAULT_ALPHA)

    def __init__(self, model, query, reference, *, methods=None, metrics=None, method_options=None,
                 query_mask=None, reference_mask=None, mapping=None, viewer=None,
                 state: HoverState | None = None, size: int = 112, cmap: str | None = None,
                 alpha: float = DEFAULT_ALPHA, background: bool = True, cache: ResultCache | None = None):
        size, cmap, alpha = CHECKS["size"](size), CHECKS["cmap"](cmap), CHECKS["alpha"](alpha)
        if viewer is not None:
            from ..pair_viewer import PairViewer

            check_instance(viewer, "viewer", PairViewer, "PairViewer or None")
            check_open(viewer._closed, "PairViewer")
            if viewer.model is not None and viewer.model is not model:
                raise InputError(
                    "viewer explains with another model than the panel's; use "
                    "MethodComparisonPanel.for_viewer(viewer), which takes the viewer's model and pair"
                )
            if state is None:
                state = viewer.state
        self._size = size
        self.state = CHECKS["state"](state)
        self.session = session = ComparisonSession(model, methods=methods, metrics=metrics, background=background,
                                                   method_options=method_options, cache=cache)
        self.viewer = viewer
        self._closed = False
        self._build_widgets()
        self.cmap, self.alpha = cmap, alpha
        self._unsubscribe = session.subscribe(self._on_session)
        self.observe(self._on_look_change, ["cmap", "alpha"])
        self.state.observe(self._on_look_change, "pins")
        if viewer is not None:
            viewer.observe(self._on_viewer_explanation, "explanation")
        try:
            session.set_pair(query, reference, query_mask=query_mask, reference_mask=reference_mask, mapping=mapping)
        except Exception:
            self.close()
            raise
        if viewer is not None:
            exp = viewer.explanation
            self._highlight(exp.method if session.same_pair(exp) and exp.method in session.results else None)

    @classmethod
    def for_viewer(cls, viewer, *, methods=None, metrics=None, method_options=None, query_mask=None,
                   reference_mask=None, mapping=None, size: int = 112, background: bool = True,
                   cache: ResultCache | None = None) -> "MethodComparisonPanel":
        """A panel on ``viewer``'s pair and model, sharing its hover state, colormap and opacity."""
        from ..pair_viewer import check_viewer_with_model

        check_viewer_with_model(viewer, "the comparison panel runs every method")
        query, reference = viewer.inputs
        return cls(viewer.model, query, reference, methods=methods, metrics=metrics,
                   method_options=method_options, query_mask=query_mask, reference_mask=reference_mask,
                   mapping=mapping, viewer=viewer, state=viewer.state, size=size, cmap=viewer.cmap,
                   alpha=viewer.alpha, background=background, cache=cache)

    # -- widgets -----------------------------------------------------------------------------
    @traitlets.validate("cmap", "alpha", "selected")
    def _validate_trait(self, proposal):
        check_open(self._closed, "MethodComparisonPanel")
        check = CHECKS.get(proposal["trait"].name)
        return proposal["value"] if check is None else check(proposal["value"])

    def _build_widgets(self) -> None:
        self.title = widgets.HTML()
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                              bar_style="info", layout=widgets.Layout(width="320px"))
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.cancel_button = widgets.Button(description="cancel", icon="stop", disabled=True,
                                            tooltip="stop the background computation (results so far are kept)")
        self.run_button = widgets.Button(description="compute missing", icon="play", disabled=True,
                                         tooltip="compute what was cancelled or failed")
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.run_button.on_click(lambda _b: self.run())
        self.grid = widgets.VBox(layout=widgets.Layout(margin="6px 0"))
        self._charts = MetricCharts(on_click=self.select)
        controls = widgets.HBox([self.progress, self.cancel_button, self.run_button])
        super().__init__(children=[self.title, controls, self.status_label, self.grid, self._charts.box])
        self.add_class("simviz-comparison-panel")
        self.rows: dict[str, dict] = {}

    @property
    def charts_box(self) -> widgets.Box:
        return self._charts.box

    @property
    def charts(self) -> dict:
        """Metric (or ``runtime_s``) -> its bqplot Figure."""
        return self._charts.figures

    @property
    def bars(self) -> dict:
        return self._charts.bars

    @property
    def chart_notes(self) -> dict:
        return self._charts.notes

    def _build_grid(self) -> None:
        """One row per method: select button, query thumbnail, reference thumbnail, label."""
        for row in self.rows.values():
            close_tree(row["box"])
        self.rows = {}
        pair = self.session.pair
        sizes = {side: display_size(pair.prepared(side).size, self._size) for side in SIDES}
        header = widgets.HBox([
            widgets.HTML("<b>method</b>", layout=widgets.Layout(width=f"{NAME_COLUMN_PX}px")),
            widgets.HTML("<b>query map</b>", layout=widgets.Layout(width=f"{sizes['query'][1] + 8}px")),
            widgets.HTML("<b>reference map</b>", layout=widgets.Layout(width=f"{sizes['reference'][1] + 8}px")),
            widgets.HTML("<b>runtime and scores</b>"),
        ])
        children = [header]
        for name in self.session.methods:
            button = widgets.Button(description=name, layout=widgets.Layout(width=f"{NAME_COLUMN_PX - 20}px"),
                                    tooltip=f"show {name} in the viewer" if self.viewer is not None else name)
            button.on_click(lambda _b, name=name: self.select(name))
            swatch = widgets.HTML(
                f"<span style='display:inline-block;width:0.8em;height:0.8em;"
                f"background:{self._colour(name)}'></span>", layout=widgets.Layout(width="14px"))
            row = {"button": button, "label": widgets.HTML(layout=widgets.Layout(width="300px"))}
            for side in SIDES:
                rows, cols = sizes[side]
                row[side] = widgets.Image(format="png", width=cols, height=rows,
                                          layout=widgets.Layout(margin="2px 8px 2px 0"))
            row["box"] = widgets.HBox([
                widgets.HBox([swatch, button], layout=widgets.Layout(width=f"{NAME_COLUMN_PX}px")),
                row["query"], row["reference"], row["label"]])
            self.rows[name] = row
            children.append(row["box"])
        self.grid.children = children

    def _colour(self, method: str) -> str:
        return method_colour(self.session.methods, method)

    # -- public API --------------------------------------------------------------------------
    @property
    def model(self):
        return self.session.model

    @property
    def methods(self) -> list[str]:
        return self.session.methods

    @property
    def metrics(self) -> list:
        return self.session.metrics

    @property
    def results(self) -> dict[str, MethodResult]:
        return self.session.results

    @property
    def cache(self) -> ResultCache:
        return self.session.cache

    @property
    def background(self) -> bool:
        return self.session.background

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """``{method: {metric: value}}`` on the current pair, plus ``runtime_s``; NaN while missing."""
        return self.session.scores

    @property
    def computing(self) -> bool:
        return self.session.computing

    def explanation(self, method: str) -> PairExplanation | None:
        """The finished explanation of ``method`` on the current pair (None while not computed)."""
        return self._result(method).explanation

    def chart_order(self, metric: str) -> list[str]:
        """Methods in the order ``metric``'s bar chart shows them, top to bottom (best first; NaN
        left out)."""
        return self._charts.order(metric)

    def row_label(self, method: str) -> str:
        """The text (HTML) of ``method``'s label: status, runtime, score per metric."""
        return row_label(self._result(method), self.session.metrics)

    def set_pair(self, query, reference, *, query_mask=None, reference_mask=None, mapping=None) -> None:
        """Compare the methods on another pair (cached results come back at once)."""
        check_open(self._closed, "MethodComparisonPanel")
        self.session.set_pair(query, reference, query_mask=query_mask, reference_mask=reference_mask,
                              mapping=mapping)

    def set_model(self, model) -> None:
        """Compare the methods for another model on the same input pair."""
        check_open(self._closed, "MethodComparisonPanel")
        self.session.set_model(model)

    def select(self, method: str) -> bool:
        """Make ``method`` the selected one; with a viewer, show its explanation there (the cached
        one: nothing is recomputed). Returns False (and says so) if it is not computed yet."""
        check_open(self._closed, "MethodComparisonPanel")
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
        check_open(self._closed, "MethodComparisonPanel")
        self.session.cancel()

    def run(self) -> None:
        """Compute whatever is missing on the current pair (after a cancel or a failure)."""
        check_open(self._closed, "MethodComparisonPanel")
        self.session.run()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background computation ends; returns whether it did within ``timeout``."""
        return self.session.wait(timeout)

    def close(self) -> None:
        """Cancel the background work and close the panel and everything in it."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        self.session.close()
        self.state.unobserve(self._on_look_change, "pins")
        if self.viewer is not None:
            self.viewer.unobserve(self._on_viewer_explanation, "explanation")
        self._charts.close()
        for child in self.children:
            close_tree(child)
        super().close()

    # -- drawing -----------------------------------------------------------------------------
    def _result(self, method: str) -> MethodResult:
        return self.session.results[check_choice(method, "method", self.session.methods)]

    def _look(self) -> tuple:
        return (self.cmap, self.alpha, tuple(self.state.pins))

    def _update_row(self, name: str) -> None:
        row = self.rows.get(name)
        if row is None or self._closed:
            return
        result = self.session.results[name]
        exp, look = result.shown, self._look()
        if exp is not None:
            if row.get("shown") is not exp or row.get("look") != look:
                pngs = map_pngs(exp, size=self._size, cmap=self.cmap, alpha=self.alpha, pins=self.state.pins)
                row["query"].value, row["reference"].value = pngs["query"], pngs["reference"]
                row["shown"], row["look"] = exp, look
        else:
            label = PHOTO_LABELS.get(result.status, result.status)
            if row.get("shown") != "photo" or row.get("look") != look or row.get("photo_label") != label:
                for side in SIDES:
                    row[side].value = photo_png(self.session.pair.prepared(side).display, side, size=self._size,
                                                pins=self.state.pins, label=label)
                row["shown"], row["look"], row["photo_label"] = "photo", look, label
        text = self.row_label(name)
        if row["label"].value != text:
            row["label"].value = text

    def _update_charts(self) -> None:
        specs = self._charts.specs
        rankings = {spec.key: self.session.ranking(spec.key) for spec in specs}
        self._charts.update(rankings, self.session.methods)

    def _update_status(self) -> None:
        status = self.session.status
        with self.progress.hold_sync():
            if status.total:
                self.progress.max = float(status.total)
                self.progress.value = float(status.done)
            else:
                self.progress.max = 1.0
                self.progress.value = 1.0 if status.state == "done" else 0.0
            self.progress.bar_style = BAR_STYLES.get(status.state, "")
        self.cancel_button.disabled = status.state != "computing"
        self.run_button.disabled = status.computing or not status.missing
        text = html.escape(status.text)
        self.status_label.value = f"<span style='color:#b00'>{text}</span>" if status.state == "failed" else text
        self._update_title()

    def _update_title(self) -> None:
        self.title.value = header_html(self.session, viewer=self.viewer is not None)

    def _highlight(self, method: str | None) -> None:
        self.selected = method
        for name, row in self.rows.items():
            row["button"].button_style = "info" if name == method else ""

    # -- events ------------------------------------------------------------------------------
    def _on_session(self, event: SessionEvent) -> None:
        if self._closed:
            return
        if event.kind == "pair":
            self._build_grid()
            specs = chart_specs(self.session.metrics)
            if specs != self._charts.specs:
                self._charts.build(specs, self.session.methods)
            self._highlight(None)
            for name in self.session.methods:
                self._update_row(name)
            self._update_charts()
            self._update_status()
        elif event.kind == "result":
            self._update_row(event.method)
            self._update_charts()
            self._update_title()
        elif event.kind == "status":
            self._update_status()

    def _on_look_change(self, _change) -> None:
        for name in self.rows:
            self._update_row(name)

    def _on_viewer_explanation(self, change) -> None:
        exp = change["new"]
        if exp is None or self._closed:
            return
        viewer, session = self.viewer, self.session
        query, reference = viewer.inputs
        if viewer.model is not None and viewer.model is not session.model:
            inputs = session.pair.inputs if session.pair is not None else (None, None)
            same = inputs[0] is query and inputs[1] is reference
            session.set_model(viewer.model, inputs=None if same else (query, reference), explain_fast_here=False)
        elif not session.same_pair(exp):
            # Ground truth belonged to the old pair; the new one is compared without it.
            session.set_pair(query, reference, explain_fast_here=False)
        self._highlight(exp.method if exp.method in session.results and session.same_pair(exp) else None)

    # -- static form -------------------------------------------------------------------------
    def to_image(self):
        """The grid as one RGB image: a row per method (name, runtime, scores, both maps)."""
        rows = [(name, strip_tags(self.row_label(name)), [self.rows[name][s].value for s in SIDES])
                for name in self.session.methods]
        return grid_image(rows)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(png_bytes(self.to_image())).decode("ascii")
        return bundle

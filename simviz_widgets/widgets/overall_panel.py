"""The overall-map panel: both overall maps on one real-valued colour scale, and a chart of how the
score splits over the cells. It follows a shared :class:`HoverState` (hovered point and pins).

The chart sorts each image's cells by their contribution (largest first) and plots the running
sum against the fraction of cells used: for a decomposition the curve ends at the score (dashed
line), and its shape says whether a few cells carry the score or many share it. The hovered cell
and the pinned cells are marked on their curve.
"""

from __future__ import annotations

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import Canvas, MultiCanvas

from ..explain.base import PairExplanation
from ..render import colormap_lut, default_cmap, normalize_map
from ._canvas import (
    batched_drawing,
    canvas_style,
    check_alpha,
    check_cmap,
    check_explanation,
    check_state,
    close_tree,
    check_size,
    display_size,
    draw_crosshair,
    draw_pin,
    nearest_cell,
    overlay_rgba,
    passive_canvas,
    photo_rgba,
    pixel_to_canvas,
)
from .state import SOURCES, HoverState

__all__ = ["OverallPanel"]

PHOTO, OVERLAY, MARKERS = 0, 1, 2
CURVE_COLOURS = {"query": "#1f77b4", "reference": "#ff7f0e"}
COLORBAR_WIDTH = 14
COLORBAR_TEXT = 62


def colorbar_ticks(lo: float, hi: float, signed: bool) -> list[float]:
    """Tick values for a colour bar from ``lo`` to ``hi``; signed scales always show 0."""
    if hi <= lo:
        return [lo]
    if signed:
        return [lo, lo / 2.0, 0.0, hi / 2.0, hi]
    return list(np.linspace(lo, hi, 5))


class OverallPanel(widgets.VBox):
    """Both overall maps with a colour bar of their raw values, and the score-split chart.

    ``explanation``: a :class:`PairExplanation`. ``state``: the :class:`HoverState` shared with a
    :class:`~simviz_widgets.widgets.PairViewer` (the panel marks its hovered point and pins).
    ``cmap``/``alpha``: as in the viewer. ``size``: display pixels of each map's longer side.
    Observable traits: ``explanation``, ``cmap``, ``alpha``.
    """

    explanation = traitlets.Instance(PairExplanation, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(0.5)

    def __init__(self, explanation: PairExplanation, *, state: HoverState | None = None,
                 cmap: str | None = None, alpha: float = 0.5, size: int = 200):
        check_explanation(explanation)
        cmap = check_cmap(cmap)
        alpha = check_alpha(alpha)
        self._size = check_size(size)
        self.state = check_state(state)
        self._geometry: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        self._curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.limits: tuple[float, float] = (0.0, 0.0)
        self.colorbar_labels: list[tuple[float, float, str]] = []

        self.query_canvas = MultiCanvas(3, width=size, height=size)
        self.reference_canvas = MultiCanvas(3, width=size, height=size)
        for source in SOURCES:
            self._canvas(source).add_class(f"simviz-panel-{source}-canvas")
            self._canvas(source)[OVERLAY].image_smoothing_enabled = True
        self.colorbar_canvas = Canvas(width=COLORBAR_WIDTH + COLORBAR_TEXT, height=size)
        self.colorbar_canvas.add_class("simviz-colorbar")
        for canvas in (self.query_canvas, self.reference_canvas, self.colorbar_canvas):
            passive_canvas(canvas)  # display only: no per-move messages from ipycanvas's own view

        x_scale = bqplot.LinearScale(min=0.0, max=1.0)
        y_scale = bqplot.LinearScale()
        scales = {"x": x_scale, "y": y_scale}
        self.curve_marks = {
            source: bqplot.Lines(x=[0.0], y=[0.0], scales=scales, colors=[CURVE_COLOURS[source]],
                                 labels=[source], display_legend=True, stroke_width=2)
            for source in SOURCES
        }
        self.score_mark = bqplot.Lines(x=[0.0, 1.0], y=[0.0, 0.0], scales=scales, colors=["#555555"],
                                       line_style="dashed", labels=["score"], display_legend=True)
        self.hover_mark = bqplot.Scatter(x=[], y=[], scales=scales, colors=["black"], marker="cross",
                                         default_size=80)
        self.pin_marks = bqplot.Scatter(x=[], y=[], scales=scales, colors=["white"], stroke="black",
                                        default_size=90)
        self.chart = bqplot.Figure(
            marks=[*self.curve_marks.values(), self.score_mark, self.pin_marks, self.hover_mark],
            axes=[
                bqplot.Axis(scale=x_scale, label="fraction of cells (largest contribution first)",
                            tick_format=".0%"),
                bqplot.Axis(scale=y_scale, orientation="vertical", label="cumulative contribution",
                            tick_format=".2g"),
            ],
            title="how the score splits over cells",
            legend_location="bottom-right",
            fig_margin={"top": 40, "bottom": 45, "left": 60, "right": 15},
            layout=widgets.Layout(width="420px", height=f"{max(size + 60, 260)}px"),
        )
        self.title = widgets.HTML()
        maps = widgets.HBox([
            widgets.VBox([widgets.HTML("query map"), self.query_canvas],
                         layout=widgets.Layout(margin="0 8px 0 0")),
            widgets.VBox([widgets.HTML("reference map"), self.reference_canvas],
                         layout=widgets.Layout(margin="0 8px 0 0")),
            widgets.VBox([widgets.HTML("value"), self.colorbar_canvas]),
            canvas_style(),
        ])
        maps.layout.margin = "0 12px 0 0"
        super().__init__(children=[self.title, widgets.HBox([maps, self.chart])])
        self.add_class("simviz-overall-panel")
        self._closed = False

        self.cmap, self.alpha = cmap, alpha
        self.observe(self._on_explanation_change, "explanation")
        self.observe(self._on_look_change, ["cmap", "alpha"])
        self.state.observe(self._on_hover_change, "hovered")
        self.state.observe(self._on_pins_change, "pins")
        for source in SOURCES:
            self._canvas(source).on_client_ready(self._redraw)
        self.colorbar_canvas.on_client_ready(self._draw_colorbar)
        self.explanation = explanation

    @traitlets.validate("explanation")
    def _validate_explanation(self, proposal):
        return check_explanation(proposal["value"])

    @traitlets.validate("cmap")
    def _validate_cmap(self, proposal):
        return check_cmap(proposal["value"])

    @traitlets.validate("alpha")
    def _validate_alpha(self, proposal):
        return check_alpha(proposal["value"])

    def close(self) -> None:
        """Close the panel and everything in it, and stop following the shared state."""
        if getattr(self, "_closed", True):  # already closed (ipywidgets also closes on __del__)
            return
        self._closed = True
        self.state.unobserve(self._on_hover_change, "hovered")
        self.state.unobserve(self._on_pins_change, "pins")
        for child in self.children:
            close_tree(child)
        super().close()

    # ------------------------------------------------------------------------------------------

    def _canvas(self, source: str) -> MultiCanvas:
        return self.query_canvas if source == "query" else self.reference_canvas

    def _mode(self) -> str:
        return "symmetric" if self.explanation.signed else "minmax"

    def _map_cmap(self) -> str:
        return self.cmap or default_cmap(bool(self.explanation.signed))

    def chart_position(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Where display pixel (row, col) of ``source`` sits on its cumulative curve: (fraction of
        cells up to and including its cell, running sum there)."""
        order_rank, fractions, running = self._curves[source]
        image, _ = self._geometry[source]
        values = self.explanation.maps[source]
        r, c = nearest_cell(values.shape, image, row, col)
        rank = int(order_rank[r * values.shape[1] + c])
        return float(fractions[rank + 1]), float(running[rank + 1])

    def _on_explanation_change(self, change) -> None:
        exp = change["new"]
        for source in SOURCES:
            image = exp.query_size if source == "query" else exp.reference_size
            canvas_size = display_size(image, self._size)
            self._geometry[source] = (image, canvas_size)
            canvas = self._canvas(source)
            if (canvas.height, canvas.width) != canvas_size:
                canvas.width, canvas.height = canvas_size[1], canvas_size[0]
            values = exp.maps[source].astype(np.float64).ravel()
            order = np.argsort(-values, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            running = np.concatenate([[0.0], np.cumsum(values[order])])
            fractions = np.arange(order.size + 1, dtype=np.float64) / order.size
            self._curves[source] = (rank, fractions, running)
        both = np.concatenate([exp.query_map.ravel(), exp.reference_map.ravel()])[None]
        _, lo, hi = normalize_map(both, mode=self._mode())
        self.limits = (lo, hi)
        self._photos = {s: photo_rgba(exp.query if s == "query" else exp.reference, self._geometry[s][1])
                        for s in SOURCES}
        with self.chart.hold_sync():
            for source in SOURCES:
                _, fractions, running = self._curves[source]
                with self.curve_marks[source].hold_sync():
                    self.curve_marks[source].x = fractions
                    self.curve_marks[source].y = running
            with self.score_mark.hold_sync():
                self.score_mark.y = [exp.score, exp.score]
        self.title.value = (
            f"<b>overall maps</b> ({exp.method}; one colour scale for both, "
            f"{'diverging, centred at 0' if exp.signed else 'min to max'}) · score {exp.score:.4f}"
        )
        self._redraw()
        self._on_pins_change({"new": self.state.pins})
        self._on_hover_change({"new": self.state.hovered, "old": None})

    def _on_look_change(self, _change) -> None:
        self._redraw()

    def _redraw(self) -> None:
        exp = self.explanation
        with batched_drawing():
            for source in SOURCES:
                _, canvas_size = self._geometry[source]
                canvas = self._canvas(source)
                canvas[PHOTO].put_image_data(self._photos[source], 0, 0)
                # Drawn once per explanation, so at full resolution: colours interpolated in value
                # space, exactly the static figure's overlay.
                rgba = overlay_rgba(exp.maps[source], cmap=self._map_cmap(), mode=self._mode(),
                                    alpha=self.alpha, canvas_size=canvas_size, max_side=None,
                                    vmin=self.limits[0], vmax=self.limits[1])
                canvas[OVERLAY].clear()
                canvas[OVERLAY].put_image_data(rgba, 0, 0)
                self._draw_markers(source)
            self._draw_colorbar()

    def _draw_colorbar(self) -> None:
        lo, hi = self.limits
        bar = self.colorbar_canvas
        height = int(bar.height)
        pad = 6  # room for the top and bottom labels
        inner = height - 2 * pad
        lut = colormap_lut(self._map_cmap())
        index = np.round(np.linspace(255.0, 0.0, inner)).astype(np.intp)  # top = largest value
        gradient = np.ascontiguousarray(np.repeat(lut[index][:, None, :], COLORBAR_WIDTH, axis=1))
        gradient[..., 3] = 255
        labels = []
        for value in colorbar_ticks(lo, hi, bool(self.explanation.signed)):
            fraction = 0.5 if hi <= lo else (value - lo) / (hi - lo)
            y = pad + (1.0 - fraction) * (inner - 1)
            labels.append((value, y, f"{value:.3g}"))
        self.colorbar_labels = labels
        with batched_drawing():
            bar.clear()
            bar.put_image_data(gradient, 0, pad)
            bar.fill_style = "black"
            bar.font = "10px sans-serif"
            bar.text_baseline = "middle"
            for _, y, text in labels:
                bar.fill_rect(COLORBAR_WIDTH, y - 0.5, 4, 1)
                bar.fill_text(text, COLORBAR_WIDTH + 6, y)

    def _draw_markers(self, source: str) -> None:
        image, canvas_size = self._geometry[source]
        layer = self._canvas(source)[MARKERS]
        layer.clear()
        for pin in self.state.pins:
            if pin.source == source and self._inside(source, pin.row, pin.col):
                y, x = pixel_to_canvas(pin.row, pin.col, canvas_size, image)
                draw_pin(layer, y, x, pin.colour, radius=4.0)
        hovered = self.state.hovered
        if hovered is not None and hovered[0] == source and self._inside(*hovered):
            y, x = pixel_to_canvas(hovered[1], hovered[2], canvas_size, image)
            draw_crosshair(layer, y, x, radius=5.0)

    def _inside(self, source, row, col) -> bool:
        rows, cols = self._geometry[source][0]
        return -0.5 <= row <= rows - 0.5 and -0.5 <= col <= cols - 0.5

    def _on_hover_change(self, change) -> None:
        new, old = change["new"], change.get("old")
        sources = {p[0] for p in (new, old) if p is not None}
        with batched_drawing():
            for source in sources:
                self._draw_markers(source)
        if new is not None and self._inside(*new):
            x, y = self.chart_position(*new)
            xs, ys = [x], [y]
        else:
            xs, ys = [], []
        with self.hover_mark.hold_sync():
            self.hover_mark.x, self.hover_mark.y = xs, ys

    def _on_pins_change(self, change) -> None:
        with batched_drawing():
            for source in SOURCES:
                self._draw_markers(source)
        pins = [p for p in change["new"] if self._inside(p.source, p.row, p.col)]
        points = [self.chart_position(p.source, p.row, p.col) for p in pins]
        with self.pin_marks.hold_sync():
            self.pin_marks.x = [p[0] for p in points]
            self.pin_marks.y = [p[1] for p in points]
            self.pin_marks.colors = [p.colour for p in pins] or ["white"]

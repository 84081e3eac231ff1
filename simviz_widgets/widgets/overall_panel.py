"""The overall-map panel: both overall maps on one real-valued colour scale, and a chart of how the
score splits over the cells. It follows a shared :class:`HoverState` (hovered point and pins).

The chart sorts each image's cells by their contribution (largest first) and plots the running
sum against the fraction of cells used: for a decomposition the curve ends at the score (dashed
line), and its shape says whether a few cells carry the score or many share it. The hovered cell
and the pinned cells are marked on their curve. It is shown only for explanations whose maps sum
to the score (:attr:`PairExplanation.sums_to_score`); for saliency methods (RISE, gradients...) a
one-line note says why there is none. A side the method computed no map for
(:meth:`PairExplanation.has_map`; RISE and sliding window explain the query only by default) shows
its plain photo labelled "n/a", never a map of placeholder zeros.

What to draw (curves, ticks, notes, labels, legend) comes from the plain functions of
:mod:`._charts`; this module only puts it on widgets.
"""

from __future__ import annotations

import html

import bqplot
import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import Canvas, MultiCanvas

from ..explain.base import SIDES, PairExplanation
from ..render import colormap_lut, default_cmap, normalize_map
from ._canvas import (
    CHECKS,
    DEFAULT_ALPHA,
    batched_drawing,
    canvas_style,
    close_multicanvas,
    close_tree,
    display_size,
    nearest_cell,
    overlay_rgba,
    passive_canvas,
    photo_rgba,
    pixel_to_canvas,
)
from ._charts import (
    NA_FONT_PX,
    SCORE_COLOUR,
    SIDE_COLOURS,
    close_figure,
    cumulative_curve,
    curve_points,
    legend_html,
    missing_map_label,
    nice_ticks,
    sides_with_maps,
    split_note,
    wrap_text,
)
from .markers import draw_crosshair, draw_label, draw_pin
from .session import check_open
from .state import HoverState, check_point

__all__ = ["OverallPanel", "colorbar_ticks"]

PHOTO, OVERLAY, MARKERS = 0, 1, 2
CURVE_COLOURS = SIDE_COLOURS
COLORBAR_WIDTH = 14
COLORBAR_TEXT = 62
CHART_WIDTH = 420
LAYERS = 3  # photo, overlay, markers
CHART_LEGEND_CLASS = "simviz-split-legend"
NOTE_CLASS = "simviz-split-note"


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
    Observable traits: ``explanation``, ``cmap``, ``alpha``. ``chart_shown`` says whether the
    split chart is on screen; ``note`` holds the line shown instead; ``na_lines`` the "n/a" text
    drawn on each side without a map.
    """

    _closed = True  # until built: close() (also called by ipywidgets on __del__) has nothing to free

    explanation = traitlets.Instance(PairExplanation, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(DEFAULT_ALPHA)

    def __init__(self, explanation: PairExplanation, *, state: HoverState | None = None,
                 cmap: str | None = None, alpha: float = DEFAULT_ALPHA, size: int = 200):
        CHECKS["explanation"](explanation)
        cmap, alpha = CHECKS["cmap"](cmap), CHECKS["alpha"](alpha)
        self._size = size = CHECKS["size"](size)
        self.state = CHECKS["state"](state)
        self._geometry: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        self._curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.limits: tuple[float, float] = (0.0, 0.0)
        self.colorbar_labels: list[tuple[float, float, str]] = []
        self.na_lines: dict[str, list[str]] = {side: [] for side in SIDES}

        self.canvases = {side: MultiCanvas(LAYERS, width=size, height=size) for side in SIDES}
        self.query_canvas, self.reference_canvas = (self.canvases[s] for s in SIDES)
        for side, canvas in self.canvases.items():
            canvas.add_class(f"simviz-panel-{side}-canvas")
            canvas[OVERLAY].image_smoothing_enabled = True
        self.colorbar_canvas = Canvas(width=COLORBAR_WIDTH + COLORBAR_TEXT, height=size)
        self.colorbar_canvas.add_class("simviz-colorbar")
        for canvas in (*self.canvases.values(), self.colorbar_canvas):
            passive_canvas(canvas)  # display only: no per-move messages from ipycanvas's own view

        self._build_chart(size)
        self.title = widgets.HTML()
        self.captions = {side: widgets.HTML(layout=widgets.Layout(width=f"{size}px")) for side in SIDES}
        maps = widgets.HBox([
            *(widgets.VBox([self.captions[side], self.canvases[side]],
                           layout=widgets.Layout(margin="0 8px 0 0")) for side in SIDES),
            widgets.VBox([widgets.HTML("value"), self.colorbar_canvas]),
            canvas_style(),
        ])
        maps.layout.margin = "0 12px 0 0"
        chart_box = widgets.VBox([self.chart_legend, self.chart, self.note],
                                 layout=widgets.Layout(width=f"{CHART_WIDTH}px"))
        super().__init__(children=[self.title, widgets.HBox([maps, chart_box])])
        self.add_class("simviz-overall-panel")
        self._closed = False

        self.cmap, self.alpha = cmap, alpha
        self.observe(self._on_explanation_change, "explanation")
        self.observe(self._on_look_change, ["cmap", "alpha"])
        self.state.observe(self._on_hover_change, "hovered")
        self.state.observe(self._on_pins_change, "pins")
        for canvas in self.canvases.values():
            canvas.on_client_ready(self._redraw)
        self.colorbar_canvas.on_client_ready(self._draw_colorbar)
        self.explanation = explanation

    def _build_chart(self, size: int) -> None:
        x_scale = bqplot.LinearScale(min=0.0, max=1.0)
        self._y_scale = bqplot.LinearScale(min=0.0, max=1.0)
        scales = {"x": x_scale, "y": self._y_scale}
        self.curve_marks = {
            side: bqplot.Lines(x=[0.0], y=[0.0], scales=scales, colors=[SIDE_COLOURS[side]],
                               labels=[side], stroke_width=2)
            for side in SIDES
        }
        self.score_mark = bqplot.Lines(x=[0.0, 1.0], y=[0.0, 0.0], scales=scales, colors=[SCORE_COLOUR],
                                       line_style="dashed", labels=["score"])
        self.hover_mark = bqplot.Scatter(x=[], y=[], scales=scales, colors=["black"], marker="cross",
                                         default_size=80)
        self.pin_marks = bqplot.Scatter(x=[], y=[], scales=scales, colors=["white"], stroke="black",
                                        default_size=90)
        self._y_axis = bqplot.Axis(scale=self._y_scale, side="left", label="cumulative sum",
                                   tick_format=".3~g", label_offset="52px", grid_lines="dashed")
        self.chart = bqplot.Figure(
            marks=[*self.curve_marks.values(), self.score_mark, self.pin_marks, self.hover_mark],
            axes=[
                bqplot.Axis(scale=x_scale, label="fraction of cells, largest first", tick_format=".0%",
                            tick_values=np.array([0.0, 0.25, 0.5, 0.75, 1.0]), label_offset="34px",
                            grid_lines="dashed"),
                self._y_axis,
            ],
            title="how the score splits over cells",
            title_style={"font-size": "14px"},
            fig_margin={"top": 30, "bottom": 50, "left": 72, "right": 16},
            layout=widgets.Layout(width=f"{CHART_WIDTH}px", height=f"{max(size + 40, 240)}px"),
        )
        self.chart_legend = widgets.HTML()
        self.note = widgets.HTML()
        self.note.add_class(NOTE_CLASS)

    @traitlets.validate("explanation", "cmap", "alpha")
    def _validate_trait(self, proposal):
        check_open(self._closed, "OverallPanel")
        return CHECKS[proposal["trait"].name](proposal["value"])

    def close(self) -> None:
        """Close the panel and everything in it, and stop following the shared state (a second
        call does nothing; setting ``explanation``, ``cmap`` or ``alpha`` afterwards is an error)."""
        if self._closed:
            return
        self._closed = True
        self.state.unobserve(self._on_hover_change, "hovered")
        self.state.unobserve(self._on_pins_change, "pins")
        close_figure(self.chart)
        for canvas in self.canvases.values():
            close_multicanvas(canvas, LAYERS)
        for child in self.children:
            close_tree(child)
        super().close()

    # ------------------------------------------------------------------------------------------

    @property
    def chart_shown(self) -> bool:
        """Whether the score-split chart is displayed (only for maps that sum to the score)."""
        return self.chart.layout.display != "none"

    def _mode(self) -> str:
        return "symmetric" if self.explanation.signed else "minmax"

    def _map_cmap(self) -> str:
        return self.cmap or default_cmap(bool(self.explanation.signed))

    def chart_position(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Where display pixel (row, col) of ``source`` sits on its cumulative curve: (fraction of
        cells up to and including its cell, running sum there)."""
        source, row, col = check_point(source, row, col)
        order_rank, fractions, running = self._curves[source]
        image, _ = self._geometry[source]
        values = self.explanation.map(source)
        r, c = nearest_cell(values.shape, image, row, col)
        rank = int(order_rank[r * values.shape[1] + c])
        return float(fractions[rank + 1]), float(running[rank + 1])

    def _on_explanation_change(self, change) -> None:
        exp = change["new"]
        present = sides_with_maps(exp) or list(SIDES)
        for side in SIDES:
            image = exp.size(side)
            canvas_size = display_size(image, self._size)
            self._geometry[side] = (image, canvas_size)
            canvas = self.canvases[side]
            if (canvas.height, canvas.width) != canvas_size:
                canvas.width, canvas.height = canvas_size[1], canvas_size[0]
            self.captions[side].layout.width = f"{canvas_size[1]}px"
            self._curves[side] = cumulative_curve(exp.map(side))
        both = np.concatenate([exp.map(s).ravel() for s in present])[None]
        _, lo, hi = normalize_map(both, mode=self._mode())
        self.limits = (lo, hi)
        self._photos = {s: photo_rgba(exp.image(s), self._geometry[s][1]) for s in SIDES}
        self._update_chart(exp, present)
        self._update_text(exp, present)
        self._redraw()
        self._on_pins_change({"new": self.state.pins})
        self._on_hover_change({"new": self.state.hovered, "old": None})

    def _update_chart(self, exp: PairExplanation, present: list[str]) -> None:
        # The curves are kept up to date even while hidden (cheap; a later explanation may show them).
        with self.chart.hold_sync():
            for side in SIDES:
                fractions, running = curve_points(*self._curves[side][1:])
                mark = self.curve_marks[side]
                with mark.hold_sync():
                    mark.x = fractions
                    mark.y = running
                    mark.visible = side in present
            with self.score_mark.hold_sync():
                self.score_mark.y = [exp.score, exp.score]
            running = np.concatenate([self._curves[s][2] for s in present] + [[exp.score, 0.0]])
            ticks = nice_ticks(float(running.min()), float(running.max()), 5)
            self._y_scale.min, self._y_scale.max = ticks[0], ticks[-1]
            self._y_axis.tick_values = np.array(ticks)
        note = split_note(exp)
        display = "none" if note else None
        self.chart.layout.display = display
        self.chart_legend.layout.display = display
        self.note.layout.display = None if note else "none"
        self.note.value = "" if note is None else (
            f'<div style="color:#555;font-size:12px;margin-top:24px">{html.escape(note, quote=False)}</div>')
        entries = [(f"{s} map", SIDE_COLOURS[s]) for s in present] + [("score", SCORE_COLOUR)]
        self.chart_legend.value = legend_html(entries, css_class=CHART_LEGEND_CLASS, dashed=("score",))

    def _update_text(self, exp: PairExplanation, present: list[str]) -> None:
        scale = "one colour scale for both" if len(present) == 2 else f"{present[0]} map only"
        look = "diverging, centred at 0" if exp.signed else "min to max"
        self.title.value = (f"<b>overall maps</b> ({html.escape(exp.method)}; {scale}, {look}) "
                            f"\u00b7 score {exp.score:.4f}")
        for side in SIDES:
            label = missing_map_label(exp, side)
            note = "" if label is None else f' <span style="color:#555">({html.escape(label, quote=False)})</span>'
            self.captions[side].value = f"{side} map" if label is None else f"{side} photo{note}"
            _, (_, cols) = self._geometry[side]
            self.na_lines[side] = [] if label is None else wrap_text(label, cols - 16, NA_FONT_PX)

    def _on_look_change(self, _change) -> None:
        self._redraw()

    def _redraw(self) -> None:
        exp = self.explanation
        with batched_drawing():
            for side in SIDES:
                _, canvas_size = self._geometry[side]
                canvas = self.canvases[side]
                canvas[PHOTO].put_image_data(self._photos[side], 0, 0)
                canvas[OVERLAY].clear()
                if self.na_lines[side]:
                    draw_label(canvas[OVERLAY], self.na_lines[side], canvas_cols=canvas_size[1], font_px=NA_FONT_PX)
                else:
                    # Drawn once per explanation, so at full resolution: colours interpolated in
                    # value space, exactly the static figure's overlay.
                    rgba = overlay_rgba(exp.map(side), cmap=self._map_cmap(), mode=self._mode(),
                                        alpha=self.alpha, canvas_size=canvas_size, max_side=None,
                                        vmin=self.limits[0], vmax=self.limits[1], alpha_from_value=True)
                    canvas[OVERLAY].put_image_data(rgba, 0, 0)
                self._draw_markers(side)
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

    def _draw_markers(self, side: str) -> None:
        image, canvas_size = self._geometry[side]
        layer = self.canvases[side][MARKERS]
        layer.clear()
        for pin in self.state.pins:
            if pin.source == side and self._inside(side, pin.row, pin.col):
                y, x = pixel_to_canvas(pin.row, pin.col, canvas_size, image)
                draw_pin(layer, y, x, pin.colour, radius=4.0)
        hovered = self.state.hovered
        if hovered is not None and hovered[0] == side and self._inside(*hovered):
            y, x = pixel_to_canvas(hovered[1], hovered[2], canvas_size, image)
            draw_crosshair(layer, y, x, radius=5.0)

    def _inside(self, side, row, col) -> bool:
        rows, cols = self._geometry[side][0]
        return -0.5 <= row <= rows - 0.5 and -0.5 <= col <= cols - 0.5

    def _on_curve(self, side, row, col) -> bool:
        """Whether a point of ``side`` has a place on the chart (inside, and the side has a map)."""
        return self.explanation.has_map(side) and self._inside(side, row, col)

    def _on_hover_change(self, change) -> None:
        new, old = change["new"], change.get("old")
        sides = {p[0] for p in (new, old) if p is not None}
        with batched_drawing():
            for side in sides:
                self._draw_markers(side)
        if new is not None and self._on_curve(*new):
            x, y = self.chart_position(*new)
            xs, ys = [x], [y]
        else:
            xs, ys = [], []
        with self.hover_mark.hold_sync():
            self.hover_mark.x, self.hover_mark.y = xs, ys

    def _on_pins_change(self, change) -> None:
        with batched_drawing():
            for side in SIDES:
                self._draw_markers(side)
        pins = [p for p in change["new"] if self._on_curve(p.source, p.row, p.col)]
        points = [self.chart_position(p.source, p.row, p.col) for p in pins]
        with self.pin_marks.hold_sync():
            self.pin_marks.x = [p[0] for p in points]
            self.pin_marks.y = [p[1] for p in points]
            self.pin_marks.colors = [p.colour for p in pins] or ["white"]

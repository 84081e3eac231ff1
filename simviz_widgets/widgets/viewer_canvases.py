"""The pair viewer's drawing surface: for each image an ipycanvas ``MultiCanvas`` (photo, overlay,
cursor layers) inside an event pad, plus the colour bar. :class:`PairCanvases` draws what a
:class:`~simviz_widgets.widgets.hover.HoverLogic` says; it decides nothing itself.

Layers: the photo is drawn once per explanation (RGBA: ipycanvas sends RGB as lossy JPEG); the
overlay holds the map (a small RGBA image the canvas scales up smoothly), the peak marker and any
"n/a" label; the cursor layer holds pins, their best matches and the hovered point. Draw commands
of one update go out in one message per canvas (``batched_drawing``).
"""

from __future__ import annotations

from functools import partial

import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas
from ipyevents import Event

from ..explain.base import SIDES, other_side
from ..web.export import resting_png
from ._canvas import (
    batched_drawing,
    canvas_style,
    close_multicanvas,
    close_tree,
    event_pad,
    overlay_rgba,
    photo_rgba,
    pixel_to_canvas,
    resize_event_pad,
)
from ._charts import NA_FONT_PX, missing_map_label, wrap_text
from .colorbar import ColourBar
from .hover import HoverLogic
from .hover_layer import LAYER_CSS, BrowserHover
from .markers import draw_crosshair, draw_label, draw_match, draw_peak, draw_pin

__all__ = ["PairCanvases", "PHOTO", "OVERLAY", "CURSOR"]

PHOTO, OVERLAY, CURSOR = 0, 1, 2
LAYERS = 3


class PairCanvases:
    """Canvases, event pads and colour bar of a pair viewer. ``alpha``, ``show_overall`` and
    ``show_peak`` are set by the viewer from its traits; ``matches`` maps pins to their best match."""

    #: longest side (pixels) of the overlay image sent per hover: the map is upsampled by whole
    #: factors in value space up to this and the canvas smooths the rest (7x7 -> 28x28).
    #: benchmarks/bench_hover.py has the measurements.
    overlay_max_side: int | None = 32

    def __init__(self, logic: HoverLogic, *, alpha: float, browser: BrowserHover | None = None):
        self.logic = logic
        self.browser = browser
        self._move_events: list = []
        self.alpha, self.show_overall, self.show_peak = alpha, True, True
        self.matches: dict = {}
        self.canvases: dict[str, MultiCanvas] = {}
        self.pads: dict[str, widgets.Box] = {}
        for side in SIDES:
            rows, cols = logic.geometry[side].canvas
            canvas = MultiCanvas(LAYERS, width=cols, height=rows)
            canvas[PHOTO].image_smoothing_enabled = False  # the photo is drawn 1:1; never blur it
            canvas[OVERLAY].image_smoothing_enabled = True  # small maps are scaled up smoothly
            canvas.add_class(f"simviz-{side}-canvas")
            self.canvases[side] = canvas
            self.pads[side] = event_pad(canvas, (rows, cols), f"simviz-{side}-pad")
            if browser is not None:  # stacked over the canvas by LAYER_CSS; draws hovers in the browser
                self.pads[side].children = (*self.pads[side].children, browser.layers[side])
        self.colorbar = ColourBar()
        self.photos: dict[str, np.ndarray] = {}

    def set_explanation(self) -> None:
        """Resize canvases and pads to the logic's (new) explanation; resample the photos."""
        exp = self.logic.explanation
        for side in SIDES:
            rows, cols = self.logic.geometry[side].canvas
            canvas = self.canvases[side]
            if (canvas.height, canvas.width) != (rows, cols):
                canvas.width, canvas.height = cols, rows
                resize_event_pad(self.pads[side], (rows, cols))
        self.photos = {s: photo_rgba(exp.image(s), self.logic.geometry[s].canvas) for s in SIDES}
        self.matches = {pin: self.logic.best_match(pin) for pin in self.logic.state.pins}

    @property
    def browser_active(self) -> bool:
        """Whether the browser draws hovers (point maps, crosshair, peak) for this explanation."""
        return self.browser is not None and self.browser.active

    def watch_moves(self) -> None:
        # With the browser drawing hovers, the kernel hears moves from the hover layer at a low
        # rate; ipyevents then watches only leaves and clicks.
        watched = [] if self.browser_active else ["mousemove"]
        for event in self._move_events:
            if list(event.watched_events) != watched:
                event.watched_events = watched

    def images_box(self, extra_css: str = "") -> widgets.HBox:
        """Both event pads side by side, titled, with the CSS that makes the canvases passive (and
        ``extra_css``)."""
        return widgets.HBox([
            widgets.VBox([widgets.HTML("<b>query</b>"), self.pads["query"]],
                         layout=widgets.Layout(margin="0 12px 0 0")),
            widgets.VBox([widgets.HTML("<b>reference</b>"), self.pads["reference"]]),
            canvas_style(LAYER_CSS + "\n" + extra_css),
        ])

    def listen(self, receive, *, wait_ms: int) -> list:
        """ipyevents listeners on both pads calling ``receive(side, event)``: moves throttled in the
        browser to one per ``wait_ms``, leaves and clicks unthrottled. A new browser view of a
        canvas starts empty, so it triggers a full redraw."""
        events = []
        for side in SIDES:
            moves = Event(source=self.pads[side], watched_events=["mousemove"], wait=wait_ms,
                          throttle_or_debounce="throttle")
            others = Event(source=self.pads[side], watched_events=["mouseleave", "click"])
            for event in (moves, others):
                event.on_dom_event(partial(receive, side))
            events.extend((moves, others))
            self._move_events.append(moves)
            self.canvases[side].on_client_ready(self.redraw)
        self.watch_moves()
        return events

    def close(self) -> None:
        """Close the canvases with their layers, the pads and the colour bar."""
        for side in SIDES:
            close_multicanvas(self.canvases[side], LAYERS)
            self.pads[side].close()
        close_tree(self.colorbar)

    # -- whole views -------------------------------------------------------------------------------
    def redraw(self) -> None:
        with batched_drawing():
            for side in SIDES:
                self.canvases[side][PHOTO].put_image_data(self.photos[side], 0, 0)
            self.redraw_maps()
            for side in SIDES:
                self.draw_cursor(side)

    def redraw_maps(self) -> None:
        hovered, values = self.logic.hovered, self.logic.point_values
        scale = self.logic.scale()
        with batched_drawing():
            for side in SIDES:
                if hovered is not None and hovered[0] == other_side(side) and values is not None:
                    if self.browser_active:  # the browser layer draws it; the canvas stays at rest
                        self.draw_rest(side)
                        scale = self.logic.scale(values, point=True)
                        continue
                    scale = self.draw_map(side, values, point=True)
                else:
                    self.draw_rest(side)
        self.colorbar.show(scale)

    def draw_hover(self, previous) -> None:
        """After the logic moved the hover (``previous``: the hovered point before)."""
        side = self.logic.hovered[0]
        values = self.logic.point_values
        if self.browser_active:  # already painted in the browser: only the colour bar follows
            self.colorbar.show(self.logic.scale(values, point=True))
            return
        with batched_drawing():
            if previous is not None and previous[0] != side:
                self.draw_rest(side)  # moved straight to the other image (its leave lost or late)
                self.draw_cursor(previous[0])
            scale = None if values is None else self.draw_map(other_side(side), values, point=True)
            self.draw_cursor(side)
        if scale is not None:  # after the canvases' message: the map is what the eye waits for
            self.colorbar.show(scale)

    def draw_leave(self, side: str) -> None:
        if self.browser_active:  # the browser cleared its layers: the canvases are at rest already
            self.colorbar.show(self.logic.scale())
            return
        with batched_drawing():
            self.draw_rest(other_side(side))
            self.draw_cursor(side)
        self.colorbar.show(self.logic.scale())

    def draw_cursors(self) -> None:
        with batched_drawing():
            for side in SIDES:
                self.draw_cursor(side)

    # -- pieces ------------------------------------------------------------------------------------
    def draw_rest(self, side: str) -> None:
        """``side`` at rest: its overall map, nothing (toggle off), or "n/a" if the method has none."""
        layer = self.canvases[side][OVERLAY]
        exp = self.logic.explanation
        if not exp.has_map(side):
            layer.clear()
            cols = self.logic.geometry[side].canvas[1]
            draw_label(layer, wrap_text(missing_map_label(exp, side), cols - 16, NA_FONT_PX), canvas_cols=cols,
                       font_px=NA_FONT_PX)
        elif self.show_overall:
            self.draw_map(side, exp.map(side), point=False)
        else:
            layer.clear()

    def draw_map(self, side: str, values: np.ndarray, *, point: bool):
        """Colour ``values`` (opacity following strength) over ``side``'s photo; a point map also
        gets its peak marker. Returns the colour scale used (for the colour bar)."""
        scale = self.logic.scale(values, point=point)
        geometry = self.logic.geometry[side]
        rgba = overlay_rgba(values, cmap=scale.cmap, mode=scale.mode, alpha=self.alpha, canvas_size=geometry.canvas,
                            max_side=self.overlay_max_side, vmin=scale.lo, vmax=scale.hi, alpha_from_value=True)
        layer = self.canvases[side][OVERLAY]
        layer.clear()
        rows, cols = rgba.shape[:2]
        canvas_rows, canvas_cols = geometry.canvas
        if (rows, cols) != (canvas_rows, canvas_cols):  # the canvas scales the small image, smoothing on
            layer.set_transform(canvas_cols / cols, 0, 0, canvas_rows / rows, 0, 0)
        layer.put_image_data(rgba, 0, 0)
        layer.reset_transform()
        if point and self.show_peak:
            peak = self.logic.peak[1:] if values is self.logic.point_values else self.logic.peak_of(side, values)
            draw_peak(layer, *pixel_to_canvas(*peak, geometry.canvas, geometry.image))
        return scale

    def draw_cursor(self, side: str) -> None:
        layer = self.canvases[side][CURSOR]
        geometry = self.logic.geometry[side]
        layer.clear()
        for pin in self.logic.state.pins:
            if pin.source == side:
                draw_pin(layer, *pixel_to_canvas(pin.row, pin.col, geometry.canvas, geometry.image), pin.colour)
            elif self.matches.get(pin) is not None:
                draw_match(layer, *pixel_to_canvas(*self.matches[pin], geometry.canvas, geometry.image), pin.colour)
        hovered = self.logic.hovered
        if hovered is not None and hovered[0] == side and not self.browser_active:
            draw_crosshair(layer, *pixel_to_canvas(hovered[1], hovered[2], geometry.canvas, geometry.image))

    # -- static form -------------------------------------------------------------------------------
    def static_png(self) -> bytes:
        """Both photos with their overall maps (as at rest) and pins, as one PNG."""
        pins = []
        for pin in self.logic.state.pins:
            geometry = self.logic.geometry[pin.source]
            pins.append((SIDES.index(pin.source), *pixel_to_canvas(pin.row, pin.col, geometry.canvas, geometry.image),
                         pin.colour))
        return resting_png(self.logic.explanation, size=self.logic.canvas_size, cmap=self.logic.cmap,
                           alpha=self.alpha, show_overall=self.show_overall, pins=pins)

"""The pair viewer: hover a pixel of one image, see what it matches in the other.

Two ipycanvas ``MultiCanvas``es side by side, each with three layers: the photo (drawn once per
pair), the overlay (a map, redrawn per hover) and the cursor/pins layer. Everything a hover needs
is in the :class:`~simviz_widgets.explain.PairExplanation` (the point-to-point part is stored
factorised), so a hover is one interpolated row of D (O(N_other * K)), a colormap lookup at
feature resolution and one small RGBA ``put_image_data``: the model never runs on hover.

Mouse events come from ipyevents: moves throttled in the browser, leaves and clicks unthrottled.
They are read from a box the size of each canvas ("event pad"); the canvases take no pointer
events, because ipycanvas's own view would send every move to the kernel, unthrottled.
A trailing throttled move can arrive after the leave that followed it, so events older (browser
``timeStamp``) than one already handled are dropped, and moves that queue up in the kernel are
coalesced: only the newest pending move per canvas is drawn.
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
from collections.abc import Mapping
from functools import partial

import ipywidgets as widgets
import numpy as np
import traitlets
from ipycanvas import MultiCanvas
from ipyevents import Event

from ..explain.base import READINGS, PairExplanation
from ..evaluate._copies import WorkerCopy
from ..render import default_cmap, normalize_map
from ..render.figure import cell_centre_pixels
from ._canvas import (
    batched_drawing,
    canvas_style,
    check_cmap,
    check_explanation,
    check_reading,
    check_state,
    close_tree,
    single_thread_blas,
    check_alpha,
    check_size,
    composite_png,
    display_size,
    draw_crosshair,
    draw_match,
    draw_pin,
    event_pad,
    event_to_pixel,
    finite_number,
    overlay_rgba,
    photo_rgba,
    pixel_to_canvas,
    resize_event_pad,
    value_at_pixel,
)
from .state import SOURCES, HoverState, Pin, check_point

__all__ = ["PairViewer"]

PHOTO, OVERLAY, CURSOR = 0, 1, 2
DEFAULT_CMAP_LABEL = "default"
CMAP_CHOICES = (
    "RdBu_r", "coolwarm", "bwr", "seismic", "PiYG", "PuOr_r",
    "inferno", "viridis", "magma", "plasma", "cividis", "turbo", "gray",
)


def _other(source: str) -> str:
    return "reference" if source == "query" else "query"


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Geometry:
    """One image's sizes: display image (rows, cols) and canvas (rows, cols)."""

    __slots__ = ("image", "canvas")

    def __init__(self, image: tuple[int, int], canvas: tuple[int, int]):
        self.image = image
        self.canvas = canvas


class PairViewer(widgets.VBox):
    """Interactive view of why ``model`` finds ``query`` and ``reference`` alike.

    Hover a pixel of either image: its point-specific map (``explanation.from_query`` /
    ``from_reference``) is drawn over the other image. Click: pin the point (its contribution to
    the score is listed; a ring marks its best match in the other image). Leaving the canvas
    shows the overall maps again (or nothing, with the "overall map" toggle off). A slow method
    (RISE, sliding window) chosen in the menu runs in a background thread on a private copy of the
    model: the viewer keeps answering with the current maps until the result arrives
    (:attr:`computing`, :meth:`wait`, :meth:`cancel_background`).

    ``cmap``: one matplotlib colormap for every map, None for the defaults (``RdBu_r`` for signed
    maps — point maps always are — ``inferno`` otherwise). ``alpha``: map opacity. ``size``:
    display pixels of each image's longer side. ``reading``: "contribution" or "correspondence"
    (see :meth:`PairExplanation.from_query`). ``state``: a :class:`HoverState` to share with panels.

    Observable traits: ``explanation``, ``cmap``, ``alpha``, ``reading``, ``show_overall``.
    """

    explanation = traitlets.Instance(PairExplanation, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(0.5)
    reading = traitlets.Enum(READINGS, default_value="contribution")
    show_overall = traitlets.Bool(True)

    #: browser-side throttle of mouse moves (ms): at most ~33 moves per second reach the kernel.
    event_wait_ms = 30
    #: longest side (pixels) of the overlay image sent per hover: the map is upsampled by whole
    #: factors in value space up to this, and the canvas smooths the rest (7x7 -> 28x28, 28x28 as
    #: is). None sends the full display resolution. benchmarks/bench_hover.py has the measurements.
    overlay_max_side: int | None = 32

    def __init__(self, model, query, reference, *, method: str = "decomposition", cmap: str | None = None,
                 alpha: float = 0.5, size: int = 320, reading: str = "contribution",
                 state: HoverState | None = None):
        options = self._check_options(cmap=cmap, alpha=alpha, size=size, reading=reading, state=state)
        if model is None:
            raise ValueError(
                "model is None; expected a SimilarityModel or torch module "
                "(to show an existing explanation use PairViewer.from_explanation(explanation))"
            )
        explanation = self._explain(model, query, reference, method)
        self._build(explanation, model=model, inputs=(query, reference), **options)

    @classmethod
    def from_explanation(cls, explanation: PairExplanation, *, model=None, cmap: str | None = None,
                         alpha: float = 0.5, size: int = 320, reading: str = "contribution",
                         state: HoverState | None = None) -> "PairViewer":
        """A viewer for an existing explanation: no model runs. With ``model``, the method menu
        and :meth:`set_model` recompute from the explanation's display images."""
        check_explanation(explanation)
        options = cls._check_options(cmap=cmap, alpha=alpha, size=size, reading=reading, state=state)
        viewer = cls.__new__(cls)
        viewer._build(explanation, model=model, inputs=None, **options)
        return viewer

    # ------------------------------------------------------------------------------------------
    # construction

    @staticmethod
    def _check_options(*, cmap, alpha, size, reading, state) -> dict:
        return {
            "cmap": check_cmap(cmap),
            "alpha": check_alpha(alpha),
            "size": check_size(size),
            "reading": check_reading(reading),
            "state": check_state(state),
        }

    @staticmethod
    def _explain(model, query, reference, method) -> PairExplanation:
        from ..explain import explain  # the package import registers every method

        return explain(model, query, reference, method=method)

    @staticmethod
    def _methods() -> list[str]:
        from ..explain import list_methods

        return list_methods()

    def _build(self, explanation, *, model, inputs, cmap, alpha, size, reading, state):
        self._model = model
        self._inputs = inputs
        self._size = size
        self.state = state
        self._geometry: dict[str, _Geometry] = {}
        self._hovered: tuple[str, float, float] | None = None
        self._matches: dict[Pin, tuple[float, float]] = {}
        self._overall_limits: tuple[float, float] = (0.0, 0.0)
        self._overlay_shown = {"query": None, "reference": None}
        self._pending: dict[str, Mapping] = {}
        self._flush_scheduled = False
        self._latest_stamp = {"query": -math.inf, "reference": -math.inf}
        self._syncing = False
        self._background: tuple[threading.Thread, threading.Event, str] | None = None
        self._worker_copy = WorkerCopy()

        canvases = {}
        for source in SOURCES:
            rows, cols = display_size(explanation.query_size if source == "query" else explanation.reference_size, size)
            canvas = MultiCanvas(3, width=cols, height=rows)
            canvas[PHOTO].image_smoothing_enabled = False  # the photo is drawn 1:1; never blur it
            canvas[OVERLAY].image_smoothing_enabled = True  # small maps are scaled up smoothly
            canvas.add_class(f"simviz-{source}-canvas")
            canvases[source] = canvas
        self.query_canvas: MultiCanvas = canvases["query"]
        self.reference_canvas: MultiCanvas = canvases["reference"]

        methods = self._methods()
        if explanation.method not in methods:
            methods = methods + [explanation.method]
        self.method_dropdown = widgets.Dropdown(
            options=methods, value=explanation.method, description="method",
            disabled=model is None, layout=widgets.Layout(width="220px"),
        )
        cmap_options = [DEFAULT_CMAP_LABEL, *CMAP_CHOICES]
        if cmap is not None and cmap not in cmap_options:
            cmap_options.append(cmap)
        self.cmap_dropdown = widgets.Dropdown(
            options=cmap_options, value=cmap or DEFAULT_CMAP_LABEL, description="colormap",
            layout=widgets.Layout(width="200px"),
        )
        self.opacity_slider = widgets.FloatSlider(
            value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
            continuous_update=True, layout=widgets.Layout(width="260px"),
        )
        self.overall_toggle = widgets.ToggleButton(
            value=True, description="overall map", icon="map",
            tooltip="show each image's overall map when the mouse is not over the other image",
        )
        self.reading_toggle = widgets.ToggleButtons(
            options=list(READINGS), value=reading,
            tooltips=["D(point, cell): what each pair of positions adds to the score",
                      "cosine of the positions' contributions: where the thing at the point is"],
            style={"button_width": "110px"},
        )
        self.score_label = widgets.HTML()
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.clear_pins_button = widgets.Button(description="clear pins", icon="times")
        self.pin_list = widgets.HTML()

        self._pads = {
            source: event_pad(canvas, (canvas.height, canvas.width), f"simviz-{source}-pad")
            for source, canvas in canvases.items()
        }
        images = widgets.HBox([
            widgets.VBox([widgets.HTML("<b>query</b>"), self._pads["query"]],
                         layout=widgets.Layout(margin="0 12px 0 0")),
            widgets.VBox([widgets.HTML("<b>reference</b>"), self._pads["reference"]]),
            canvas_style(),
        ])
        controls = widgets.VBox([
            widgets.HBox([self.method_dropdown, self.cmap_dropdown, self.opacity_slider]),
            widgets.HBox([self.overall_toggle, self.reading_toggle, self.clear_pins_button]),
        ])
        super().__init__(children=[self.score_label, images, self.status_label, controls, self.pin_list])
        self.add_class("simviz-pair-viewer")

        self.cmap, self.alpha, self.reading = cmap, alpha, reading
        traitlets.link((self.opacity_slider, "value"), (self, "alpha"))
        traitlets.link((self.overall_toggle, "value"), (self, "show_overall"))
        traitlets.link((self.reading_toggle, "value"), (self, "reading"))
        self.cmap_dropdown.observe(self._on_cmap_menu, "value")
        self.observe(self._on_cmap_change, "cmap")
        self.method_dropdown.observe(self._on_method_change, "value")
        self.clear_pins_button.on_click(lambda _button: self.clear_pins())
        self.observe(self._on_explanation_change, "explanation")
        self.observe(self._on_look_change, ["cmap", "alpha", "show_overall"])
        self.observe(self._on_reading_change, "reading")
        self.state.observe(self._on_pins_change, "pins")

        self._events = []
        self._closed = False
        for source, canvas in canvases.items():
            pad = self._pads[source]
            moves = Event(source=pad, watched_events=["mousemove"], wait=self.event_wait_ms,
                          throttle_or_debounce="throttle")
            others = Event(source=pad, watched_events=["mouseleave", "click"])
            for event in (moves, others):
                event.on_dom_event(partial(self._receive, source))
            self._events.extend((moves, others))
            # A new browser view starts with an empty canvas: draw everything again.
            canvas.on_client_ready(self._redraw)

        self.explanation = explanation

    # ------------------------------------------------------------------------------------------
    # traits

    @traitlets.validate("cmap")
    def _validate_cmap(self, proposal):
        return check_cmap(proposal["value"])

    @traitlets.validate("alpha")
    def _validate_alpha(self, proposal):
        return check_alpha(proposal["value"])

    @traitlets.validate("explanation")
    def _validate_explanation(self, proposal):
        return check_explanation(proposal["value"])

    # ------------------------------------------------------------------------------------------
    # public API

    @property
    def pins(self) -> tuple[Pin, ...]:
        return self.state.pins

    @property
    def hovered(self) -> tuple[str, float, float] | None:
        return self._hovered

    @property
    def model(self):
        return self._model

    @property
    def inputs(self) -> tuple:
        """The (query, reference) images as given (or the explanation's display images when the
        viewer was made from an explanation): panels re-run models on these, because re-preparing
        the display images would resize and crop them a second time."""
        return self._inputs or (self.explanation.query, self.explanation.reference)

    def set_explanation(self, explanation: PairExplanation) -> None:
        """Show another explanation. Pins stay if both display images keep their sizes."""
        check_explanation(explanation)
        old = self.explanation
        if old is not None and (old.query_size, old.reference_size) != (
            explanation.query_size, explanation.reference_size
        ):
            self.state.clear_pins()
        self.explanation = explanation

    def set_pair(self, query, reference) -> None:
        """Explain a new pair with the viewer's model and method (pins are cleared)."""
        self.cancel_background()
        if self._model is None:
            raise ValueError(
                "set_pair needs a model, and this viewer has none (it was made from an explanation); "
                "call set_model(model) first or use set_explanation(explanation)"
            )
        explanation = self._explain(self._model, query, reference, self._recompute_method())
        self._inputs = (query, reference)
        self.unhover()
        self.state.clear_pins()
        self.explanation = explanation

    def set_model(self, model) -> None:
        """Explain the same pair with another model (the display images may change: pins clear)."""
        self.cancel_background()
        if model is None:
            raise ValueError("model is None; expected a SimilarityModel or torch module")
        query, reference = self.inputs
        method = self._recompute_method()
        from ..explain import get_method

        get_method(method)  # a known method, or a clear error before running anything
        explanation = self._explain(model, query, reference, method)
        self._model = model
        self.method_dropdown.disabled = False
        self.unhover()
        self.state.clear_pins()
        self.explanation = explanation

    def canvas_position(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Canvas position (y, x) of display-image pixel (row, col) of ``source`` (for tests and
        scripted browsers: ``relativeX = x``, ``relativeY = y`` hovers exactly that pixel)."""
        source, row, col = check_point(source, row, col)
        geometry = self._geometry[source]
        return pixel_to_canvas(row, col, geometry.canvas, geometry.image)

    def point_map(self, source: str, row: float, col: float) -> np.ndarray | None:
        """The map hovering (row, col) of ``source`` draws over the other image (None for methods
        without a point-to-point part)."""
        source, row, col = self._check_pixel(source, row, col)
        exp = self.explanation
        if exp.point_to_point is None:
            return None
        with single_thread_blas():
            if source == "query":
                return exp.from_query(row, col, reading=self.reading)
            return exp.from_reference(row, col, reading=self.reading)

    def contribution(self, source: str, row: float, col: float) -> float:
        """What image point (row, col) adds to the score: the sum of its interpolated row of D,
        which is the overall map's bilinear value there (the overall map itself for methods
        without a point-to-point part)."""
        source, row, col = self._check_pixel(source, row, col)
        exp = self.explanation
        if exp.point_to_point is not None:
            with single_thread_blas():
                values = exp.from_query(row, col) if source == "query" else exp.from_reference(row, col)
            return float(np.sum(values, dtype=np.float64))
        return value_at_pixel(exp.maps[source], self._geometry[source].image, row, col)

    def hover(self, source: str, row: float, col: float) -> None:
        """Show the point-specific map of display pixel (row, col) of ``source`` over the other image."""
        source, row, col = self._check_pixel(source, row, col)
        previous = self._hovered
        self._hovered = (source, row, col)
        other = _other(source)
        values = self.point_map(source, row, col)
        with batched_drawing():
            if previous is not None and previous[0] != source:
                # Moved straight to the other image (its leave event lost or late).
                self._draw_overall(source)
                self._draw_cursor(previous[0])
            if values is not None:
                self._draw_map(other, values, point=True)
            self._draw_cursor(source)
        self._show_status(source, row, col, values)
        self.state.hovered = (source, row, col)

    def unhover(self) -> None:
        """Back to the resting view: overall maps (or none) and pins."""
        if self._hovered is None:
            return
        source = self._hovered[0]
        self._hovered = None
        with batched_drawing():
            self._draw_overall(_other(source))
            self._draw_cursor(source)
        self.status_label.value = ""
        self.state.hovered = None

    def pin(self, source: str, row: float, col: float) -> Pin:
        """Pin display pixel (row, col) of ``source`` (the oldest pin goes beyond ``max_pins``)."""
        source, row, col = self._check_pixel(source, row, col)
        return self.state.add_pin(source, row, col)

    def clear_pins(self) -> None:
        self.state.clear_pins()

    def close(self) -> None:
        """Close the viewer, its controls, canvases and event listeners (frees them in the kernel)."""
        if getattr(self, "_closed", True):  # already closed (ipywidgets also closes on __del__)
            return
        self._closed = True
        self.cancel_background()
        self.state.unobserve(self._on_pins_change, "pins")
        for event in self._events:
            event.close()
        for child in self.children:
            close_tree(child)
        super().close()

    # ------------------------------------------------------------------------------------------
    # events (plain methods: tests drive them without a browser)

    def _on_query_event(self, event) -> bool:
        return self._handle_event("query", event)

    def _on_reference_event(self, event) -> bool:
        return self._handle_event("reference", event)

    def _handle_event(self, source: str, event) -> bool:
        """Apply one ipyevents event dict; returns whether it was used. Anything malformed (not a
        dict, unknown type, missing or non-finite coordinates, outside the image) is ignored."""
        if not isinstance(event, Mapping):
            return False
        kind = event.get("type")
        if kind not in ("mousemove", "mouseleave", "click"):
            return False
        stamp = finite_number(event.get("timeStamp"))
        if stamp is not None:
            if stamp < self._latest_stamp[source]:
                return False  # older than an event already handled (e.g. a trailing throttled move)
            self._latest_stamp[source] = stamp
        if kind == "mouseleave":
            if self._hovered is None or self._hovered[0] != source:
                return False
            self.unhover()
            return True
        geometry = self._geometry[source]
        pixel = event_to_pixel(event, geometry.canvas, geometry.image)
        if pixel is None:
            return False
        if kind == "mousemove":
            self.hover(source, *pixel)
        else:
            self.pin(source, *pixel)
        return True

    def _receive(self, source: str, event) -> None:
        """ipyevents callback. Moves are coalesced: if several arrive before the kernel's event loop
        turns, only the newest per canvas is drawn. Leaves drop the pending move (it came first)."""
        if isinstance(event, Mapping) and event.get("type") == "mousemove":
            self._pending[source] = event
            if self._flush_scheduled:
                return
            loop = _running_loop()
            if loop is None:
                self._flush_pending()
                return
            self._flush_scheduled = True
            loop.call_soon(self._flush_pending)
            return
        if isinstance(event, Mapping) and event.get("type") == "mouseleave":
            self._pending.pop(source, None)
        self._handle_event(source, event)

    def _flush_pending(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            source, event = self._pending.popitem()
            self._handle_event(source, event)

    # ------------------------------------------------------------------------------------------
    # observers

    def _on_explanation_change(self, change) -> None:
        exp = change["new"]
        self._hovered = None
        self.state.hovered = None
        for source in SOURCES:
            image = exp.query_size if source == "query" else exp.reference_size
            canvas_size = display_size(image, self._size)
            self._geometry[source] = _Geometry(image, canvas_size)
            canvas = self._canvas(source)
            if (canvas.height, canvas.width) != canvas_size:
                canvas.width, canvas.height = canvas_size[1], canvas_size[0]
                resize_event_pad(self._pads[source], canvas_size)
        mode = self._overall_mode()
        both = np.concatenate([exp.query_map.ravel(), exp.reference_map.ravel()])[None]
        _, lo, hi = normalize_map(both, mode=mode)
        self._overall_limits = (lo, hi)
        from ..explain import list_methods

        registered = set(list_methods())
        if exp.method in registered:
            self._last_method = exp.method
        # A method outside the registry (e.g. an attribute's maps from the attribute panel) is in
        # the menu only while it is displayed, so the menu does not grow.
        options = tuple(m for m in self.method_dropdown.options if m in registered)
        if exp.method not in options:
            options = (*options, exp.method)
        self._syncing = True
        try:
            if options != tuple(self.method_dropdown.options):
                self.method_dropdown.options = options
            self.method_dropdown.value = exp.method
        finally:
            self._syncing = False
        self._photos = {s: photo_rgba(exp.query if s == "query" else exp.reference, self._geometry[s].canvas)
                        for s in SOURCES}
        self._matches = {pin: self._best_match(pin) for pin in self.state.pins}
        self.score_label.value = self._score_html()
        self.status_label.value = ""
        self.pin_list.value = self._pins_html()
        self._redraw()

    def _on_cmap_menu(self, change) -> None:
        if not self._syncing:
            self.cmap = None if change["new"] == DEFAULT_CMAP_LABEL else change["new"]

    def _on_cmap_change(self, change) -> None:
        label = DEFAULT_CMAP_LABEL if change["new"] is None else change["new"]
        self._syncing = True
        try:
            if label not in self.cmap_dropdown.options:  # any matplotlib name joins the menu
                self.cmap_dropdown.options = (*self.cmap_dropdown.options, label)
            self.cmap_dropdown.value = label
        finally:
            self._syncing = False

    def _on_look_change(self, _change) -> None:
        with batched_drawing():
            self._redraw_maps()

    def _on_reading_change(self, _change) -> None:
        self._matches = {pin: self._best_match(pin) for pin in self.state.pins}
        with batched_drawing():
            self._redraw_maps()
            for source in SOURCES:
                self._draw_cursor(source)

    def _on_pins_change(self, change) -> None:
        self._matches = {pin: self._matches.get(pin) or self._best_match(pin) for pin in change["new"]}
        with batched_drawing():
            for source in SOURCES:
                self._draw_cursor(source)
        self.pin_list.value = self._pins_html()

    def _on_method_change(self, change) -> None:
        if self._syncing or change["new"] == self.explanation.method:
            return
        if self._model is None:
            self._set_quietly(self.method_dropdown, change["old"])
            return
        query, reference = self.inputs
        self.cancel_background()
        from .comparison_panel import is_slow

        if is_slow(change["new"]):
            self._start_background(change["new"], query, reference)
            return
        try:
            explanation = self._explain(self._model, query, reference, change["new"])
        except Exception as error:  # shown in the widget: a callback's traceback is easily missed
            self._set_quietly(self.method_dropdown, change["old"])
            self.status_label.value = f"<span style='color:#b00'>method {change['new']!r} failed: {error}</span>"
            return
        self.set_explanation(explanation)

    # ------------------------------------------------------------------------------------------
    # slow methods (RISE, sliding window) chosen in the menu run in a background thread: hovering,
    # pins and the other controls keep working, and the maps switch when the result arrives.

    @property
    def computing(self) -> str | None:
        """The method being computed in the background, or None."""
        return self._background[2] if self._background is not None else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background computation (if any) ends; False if it is still running
        after ``timeout`` seconds (for scripts and tests)."""
        job = self._background
        if job is None:
            return True
        job[0].join(timeout)
        return not job[0].is_alive()

    def cancel_background(self) -> None:
        """Stop the background computation (if any); the current maps stay."""
        job, self._background = self._background, None
        if job is not None:
            job[1].set()
            if not getattr(self, "_closed", False):
                self.status_label.value = ""

    def _start_background(self, method: str, query, reference) -> None:
        from ..explain import ExplanationCancelled, explain, get_method

        cancel = threading.Event()
        options = {k: v for k, v in (("show_progress", False), ("cancel", cancel)) if k in get_method(method).options}
        model = self._worker_copy.of(self._model)

        def work():
            try:
                result = explain(model, query, reference, method=method, **options)
            except ExplanationCancelled:
                return
            except Exception as error:  # noqa: BLE001 - shown in the widget, like a failed sync method
                if self._background is not None and self._background[1] is cancel and not self._closed:
                    self._background = None
                    self._set_quietly(self.method_dropdown, self.explanation.method)
                    self.status_label.value = f"<span style='color:#b00'>method {method!r} failed: {error}</span>"
                return
            if self._background is None or self._background[1] is not cancel or self._closed:
                return  # cancelled, or superseded by another choice
            self._background = None
            self.set_explanation(result)

        thread = threading.Thread(target=work, name=f"simviz-{method}", daemon=True)
        self._background = (thread, cancel, method)
        self.status_label.value = (f"<i>computing {method} in the background; the current maps stay until "
                                   "it is done (choose another method to cancel)</i>")
        thread.start()

    def _recompute_method(self) -> str:
        """The method a new pair or model is explained with: the menu's, unless it shows maps from
        outside the registry (an attribute's), then the last registered one."""
        from ..explain import list_methods

        value = self.method_dropdown.value
        if value in list_methods():
            return value
        return getattr(self, "_last_method", None) or "decomposition"

    def _set_quietly(self, widget, value) -> None:
        self._syncing = True
        try:
            widget.value = value
        finally:
            self._syncing = False

    # ------------------------------------------------------------------------------------------
    # drawing

    def _canvas(self, source: str) -> MultiCanvas:
        return self.query_canvas if source == "query" else self.reference_canvas

    def _check_pixel(self, source, row, col) -> tuple[str, float, float]:
        source, row, col = check_point(source, row, col)
        rows, cols = self._geometry[source].image
        if not (-0.5 <= row <= rows - 0.5 and -0.5 <= col <= cols - 0.5):
            raise ValueError(
                f"{source} pixel ({row}, {col}) is outside the image (rows 0..{rows - 1}, cols 0..{cols - 1})"
            )
        return source, row, col

    def _overall_mode(self) -> str:
        return "symmetric" if self.explanation.signed else "minmax"

    def _redraw(self) -> None:
        with batched_drawing():
            for source in SOURCES:
                self._canvas(source)[PHOTO].put_image_data(self._photos[source], 0, 0)
            self._redraw_maps()
            for source in SOURCES:
                self._draw_cursor(source)

    def _redraw_maps(self) -> None:
        hovered = self._hovered
        for source in SOURCES:
            if hovered is not None and hovered[0] == _other(source):
                values = self.point_map(*hovered)
                if values is not None:
                    self._draw_map(source, values, point=True)
                    continue
            self._draw_overall(source)

    def _draw_overall(self, target: str) -> None:
        if self.show_overall:
            self._draw_map(target, self.explanation.maps[target], point=False)
        else:
            self._canvas(target)[OVERLAY].clear()
            self._overlay_shown[target] = None

    def _draw_map(self, target: str, values: np.ndarray, *, point: bool) -> None:
        """Colour ``values`` and draw them over ``target``'s photo, scaled to the canvas."""
        exp = self.explanation
        if point:  # point maps are signed: one symmetric scale per map
            cmap, mode, vmin, vmax = self.cmap or default_cmap(True), "symmetric", None, None
        else:  # both overall maps share one scale, so their colours compare
            cmap = self.cmap or default_cmap(bool(exp.signed))
            mode = self._overall_mode()
            vmin, vmax = self._overall_limits
        geometry = self._geometry[target]
        rgba = overlay_rgba(values, cmap=cmap, mode=mode, alpha=self.alpha, canvas_size=geometry.canvas,
                            max_side=self.overlay_max_side, vmin=vmin, vmax=vmax)
        layer = self._canvas(target)[OVERLAY]
        layer.clear()
        rows, cols = rgba.shape[:2]
        canvas_rows, canvas_cols = geometry.canvas
        if (rows, cols) == (canvas_rows, canvas_cols):
            layer.put_image_data(rgba, 0, 0)
        else:  # the canvas scales the small image, smoothing on (put_image_data obeys the transform)
            layer.set_transform(canvas_cols / cols, 0, 0, canvas_rows / rows, 0, 0)
            layer.put_image_data(rgba, 0, 0)
            layer.reset_transform()
        self._overlay_shown[target] = "point" if point else "overall"

    def _draw_cursor(self, source: str) -> None:
        layer = self._canvas(source)[CURSOR]
        geometry = self._geometry[source]
        layer.clear()
        for pin in self.state.pins:
            if pin.source == source:
                y, x = pixel_to_canvas(pin.row, pin.col, geometry.canvas, geometry.image)
                draw_pin(layer, y, x, pin.colour)
            else:
                match = self._matches.get(pin)
                if match is not None:
                    y, x = pixel_to_canvas(match[0], match[1], geometry.canvas, geometry.image)
                    draw_match(layer, y, x, pin.colour)
        if self._hovered is not None and self._hovered[0] == source:
            y, x = pixel_to_canvas(self._hovered[1], self._hovered[2], geometry.canvas, geometry.image)
            draw_crosshair(layer, y, x)

    def _best_match(self, pin: Pin) -> tuple[float, float] | None:
        """Pixel (row, col) of the other image's cell where the pin's map peaks."""
        if self.explanation is None or self.explanation.point_to_point is None:
            return None
        rows, cols = self._geometry[pin.source].image
        if not (-0.5 <= pin.row <= rows - 0.5 and -0.5 <= pin.col <= cols - 0.5):
            return None  # a pin from another pair (shared state set elsewhere)
        values = self.point_map(pin.source, pin.row, pin.col)
        cell = np.unravel_index(int(np.argmax(values)), values.shape)
        return cell_centre_pixels(cell[0], cell[1], values.shape, self._geometry[_other(pin.source)].image)

    # ------------------------------------------------------------------------------------------
    # labels

    def _score_html(self) -> str:
        exp = self.explanation
        text = f"<b>{exp.metric} similarity</b> {exp.score:.4f} &nbsp;·&nbsp; method <code>{exp.method}</code>"
        if exp.completeness_error is not None:
            text += f" &nbsp;·&nbsp; completeness error {exp.completeness_error:.1e}"
        return text

    def _show_status(self, source, row, col, values) -> None:
        text = f"{source} pixel ({row:.0f}, {col:.0f})"
        if values is None:
            text += f" · method {self.explanation.method!r} gives overall maps only"
        else:
            peak = np.unravel_index(int(np.argmax(values)), values.shape)
            limit = float(np.max(np.abs(values)))
            if self.reading == "contribution":
                text += f" · adds {float(np.sum(values, dtype=np.float64)):+.4g} to the score"
            text += f" · peak in {_other(source)} cell {tuple(int(v) for v in peak)} · scale ±{limit:.3g}"
        self.status_label.value = text

    def _pins_html(self) -> str:
        if not self.state.pins:
            return "<i>click a point to pin it</i>"
        exp = self.explanation
        lines = []
        for pin in self.state.pins:
            try:
                value = self.contribution(pin.source, pin.row, pin.col)
            except ValueError:
                continue  # a pin outside this pair's images
            share = f" ({100.0 * value / exp.score:.1f} % of the score)" if abs(exp.score) > 1e-12 else ""
            lines.append(
                f"<span style='display:inline-block;width:0.9em;height:0.9em;border:1px solid black;"
                f"background:{pin.colour};vertical-align:middle'></span> {pin.source} "
                f"({pin.row:.0f}, {pin.col:.0f}): <b>{value:+.4f}</b>{share}"
            )
        return "<br>".join(lines)

    # ------------------------------------------------------------------------------------------
    # static form

    def to_figure(self, **kwargs):
        """A matplotlib figure of the explanation, with the query pins as its points (the
        figure's default points if none)."""
        query_pins = [(p.row, p.col) for p in self.state.pins if p.source == "query"]
        options = {"points": query_pins or None, "cmap": self.cmap, "alpha": self.alpha, "reading": self.reading}
        options.update(kwargs)
        return self.explanation.to_figure(**options)

    def _static_png(self) -> bytes:
        exp = self.explanation
        panels = []
        for source in SOURCES:
            geometry = self._geometry[source]
            photo = self._photos[source][..., :3]
            values = exp.maps[source] if self.show_overall else None
            kwargs = {
                "alpha": self.alpha, "cmap": self.cmap or default_cmap(bool(exp.signed)),
                "mode": self._overall_mode(), "vmin": self._overall_limits[0],
                "vmax": self._overall_limits[1], "signed": bool(exp.signed),
            }
            panels.append((source, photo, values, kwargs))
        pins = []
        for pin in self.state.pins:
            geometry = self._geometry[pin.source]
            y, x = pixel_to_canvas(pin.row, pin.col, geometry.canvas, geometry.image)
            pins.append((SOURCES.index(pin.source), y, x, pin.colour))
        title = f"{exp.method}: {exp.metric} similarity {exp.score:.4f}"
        return composite_png(panels, title=title, pins=pins)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        # Saved notebooks opened without a kernel show the PNG where the widget cannot render.
        bundle["image/png"] = base64.b64encode(self._static_png()).decode("ascii")
        return bundle


def check_viewer_with_model(viewer, needed_for: str) -> "PairViewer":
    """``viewer`` as a PairViewer that has a model, or a clear error; ``needed_for`` says why a
    panel needs the model."""
    if not isinstance(viewer, PairViewer):
        raise TypeError(f"viewer is a {type(viewer).__name__}; expected a PairViewer")
    if viewer.model is None:
        raise ValueError(
            f"viewer has no model (it was made from an explanation without model=); {needed_for}, so "
            "give the viewer a model with viewer.set_model(model)"
        )
    return viewer

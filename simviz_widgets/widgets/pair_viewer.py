"""The pair viewer: hover a pixel of one image, see what it matches in the other.

A thin view. What to show lives in two widget-free objects: an
:class:`~simviz_widgets.widgets.session.ExplanationSession` (model, pair, chosen method,
explanation, background job) and a :class:`~simviz_widgets.widgets.hover.HoverLogic` (events ->
hover / leave / pin, point maps, peaks, colour scales). The viewer draws what they say on two
ipycanvas ``MultiCanvas``es — photo, overlay (map and peak marker), cursor and pins — and forwards
mouse events and control changes to them.

Mouse events come from ipyevents: moves throttled in the browser, leaves and clicks unthrottled,
read from a box the size of each canvas ("event pad"): the canvases take no pointer events,
because ipycanvas's own view would send every move to the kernel, unthrottled. Moves that queue up
in the kernel are coalesced: only the newest pending move per image is drawn.

Readable by default: point maps are coloured with opacity following their strength (weak cells
let the photo through, so a map never washes the photo out), signed contributions on a symmetric
diverging scale, the correspondence reading (a cosine) on a sequential one over its own range; a
colour bar says what the colours mean; a diamond marks the peak of the hovered point's map; a side
without a map says "n/a".
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import traitlets

from ..checks import InputError, check_instance, check_int
from ..explain.base import READINGS, PairExplanation
from ._canvas import CHECKS, DEFAULT_ALPHA, batched_drawing, close_tree, pixel_to_canvas
from .hover import HoverLogic
from .hover_layer import BrowserHover
from .session import ExplanationSession, check_open
from .state import HoverState, Pin
from .viewer_canvases import PairCanvases
from .viewer_controls import DEFAULT_CMAP_LABEL, ViewerControls
from .viewer_export import LIVE_CLASS, ViewerExports

__all__ = ["PairViewer", "check_viewer_with_model", "DEFAULT_ALPHA"]


class PairViewer(ViewerExports, widgets.VBox):
    """Interactive view of why ``model`` finds ``query`` and ``reference`` alike.

    Hover a pixel of either image: its point map (``explanation.from_query`` / ``from_reference``)
    is drawn over the other image, a diamond marks its peak and the colour bar gives its scale.
    Click: pin the point (its contribution is listed; a ring marks its best match). A slow method
    (``get_method(name).slow``: RISE, sliding window) runs in the background on a private copy of
    the model while the current maps stay (:attr:`computing`, :meth:`wait`, :meth:`cancel_background`).

    ``method``: the method shown (settable: the same as choosing it in the menu). ``cmap``: one
    matplotlib colormap for every map, None for the defaults. ``alpha``: peak map opacity.
    ``size``: display pixels of each image's longer side. ``reading``: "contribution" or
    "correspondence". ``state``: a :class:`HoverState` to share with panels. ``hover``: "browser"
    (point maps drawn in the page, one frame after the move, on any Jupyter server; the kernel
    hears the point at a low rate) or "kernel" (every hover a round trip; see hover_layer.py).
    Without a kernel: :meth:`to_html`, and the static fallback a notebook shows (viewer_export.py).

    Observable traits: ``explanation``, ``cmap``, ``alpha``, ``reading``, ``show_overall``, ``show_peak``.
    """

    explanation = traitlets.Instance(PairExplanation, allow_none=True)
    cmap = traitlets.Unicode(None, allow_none=True)
    alpha = traitlets.Float(DEFAULT_ALPHA)
    reading = traitlets.Enum(READINGS, default_value="contribution")
    show_overall = traitlets.Bool(True)
    show_peak = traitlets.Bool(True)

    _closed = True  # until built: close() (also called by ipywidgets on __del__) has nothing to free

    #: browser-side throttle of mouse moves (ms): at most ~33 moves per second reach the kernel.
    event_wait_ms = 30

    def __init__(self, model=None, query=None, reference=None, *, method: str = "decomposition",
                 explanation: PairExplanation | None = None, cmap: str | None = None, alpha: float = DEFAULT_ALPHA,
                 size: int = 320, reading: str = "contribution", state: HoverState | None = None,
                 hover: str = "browser"):
        given = {"cmap": cmap, "alpha": alpha, "size": size, "reading": reading, "state": state, "hover": hover}
        options = {name: CHECKS[name](value) for name, value in given.items()}
        if explanation is not None:
            if query is not None or reference is not None:
                raise InputError("give either explanation= or query and reference, not both")
            session = ExplanationSession(CHECKS["explanation"](explanation), model=model)
        elif model is None:
            raise InputError(
                "model is None; expected a SimilarityModel or torch module "
                "(to show an existing explanation use PairViewer.from_explanation(explanation))"
            )
        else:
            session = ExplanationSession.explain(model, query, reference, method=method)
        super().__init__()
        self._build(session, **options)

    @classmethod
    def from_explanation(cls, explanation: PairExplanation, *, model=None, cmap: str | None = None,
                         alpha: float = DEFAULT_ALPHA, size: int = 320, reading: str = "contribution",
                         state: HoverState | None = None, hover: str = "browser") -> "PairViewer":
        """A viewer for an existing explanation: no model runs. With ``model``, the method menu
        and :meth:`set_model` recompute from the explanation's display images."""
        return cls(model, explanation=CHECKS["explanation"](explanation), cmap=cmap, alpha=alpha, size=size,
                   reading=reading, state=state, hover=hover)

    # ------------------------------------------------------------------------------------------
    # construction

    def _build(self, session: ExplanationSession, *, cmap, alpha, size, reading, state, hover) -> None:
        self.session = session
        self.state = state
        self._size = size
        self._closed = False
        exp = session.explanation
        self.logic = HoverLogic(exp, canvas_size=size, state=state, reading=reading, cmap=cmap)
        self.browser = BrowserHover(self.logic, mode=hover, size=size, receive=self._receive,
                                    on_ready=self._on_browser_ready, live_class=f"{LIVE_CLASS}-{self.model_id}")
        self.drawing = PairCanvases(self.logic, alpha=alpha, browser=self.browser)
        self._canvases, self._pads = self.drawing.canvases, self.drawing.pads
        self.query_canvas, self.reference_canvas = self._canvases["query"], self._canvases["reference"]

        self.controls = ViewerControls(method=exp.method, has_model=session.model is not None, cmap=cmap,
                                       alpha=alpha, reading=reading)
        for name in ("method_dropdown", "cmap_dropdown", "opacity_slider", "overall_toggle", "reading_toggle",
                     "clear_pins_button"):
            setattr(self, name, getattr(self.controls, name))
        self.score_label = widgets.HTML()
        self.colorbar = self.drawing.colorbar
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.job_label = widgets.HTML()
        self.pin_list = widgets.HTML()
        self.children = [self.score_label, self.drawing.images_box(self.live_css()), self.colorbar, self.status_label,
                         self.job_label, self.controls.box, self.pin_list]
        self.add_class("simviz-pair-viewer")

        self.cmap, self.alpha, self.reading = cmap, alpha, reading
        traitlets.link((self.opacity_slider, "value"), (self, "alpha"))
        traitlets.link((self.overall_toggle, "value"), (self, "show_overall"))
        traitlets.link((self.reading_toggle, "value"), (self, "reading"))
        self.cmap_dropdown.observe(self._on_cmap_menu, "value")
        self.observe(self._on_cmap_change, "cmap")
        self.method_dropdown.observe(self._on_method_menu, "value")
        self.clear_pins_button.on_click(lambda _button: self.clear_pins())
        self.observe(self._on_explanation_trait, "explanation")
        self.observe(self._on_look_change, ["cmap", "alpha", "show_overall", "show_peak"])
        self.observe(self._on_reading_change, "reading")
        self.state.observe(self._on_pins_change, "pins")
        session.observe(self._on_session_explanation, "explanation")
        session.observe(self._on_session_method, "method")
        session.observe(self._on_session_status, ["status", "computing"])

        self._events = self.drawing.listen(self._receive, wait_ms=self.event_wait_ms)
        self.explanation = exp
        self._on_session_status(None)

    # ------------------------------------------------------------------------------------------
    # traits

    @traitlets.validate("cmap", "alpha", "explanation", "reading", "show_overall", "show_peak")
    def _validate_trait(self, proposal):
        check_open(self._closed, "PairViewer")
        check = CHECKS.get(proposal["trait"].name)
        return proposal["value"] if check is None else check(proposal["value"])

    # ------------------------------------------------------------------------------------------
    # public API (state lives in self.session and self.logic)

    @property
    def method(self) -> str:
        """The chosen method (the one on show, or the one computing in the background). Setting
        it is the same as choosing it in the menu."""
        return self.session.method

    @method.setter
    def method(self, name: str) -> None:
        check_open(self._closed, "PairViewer")
        self.session.choose(name)

    @property
    def overlay_max_side(self) -> int | None:
        """Longest side (pixels) of the overlay image sent per hover (see PairCanvases)."""
        return self.drawing.overlay_max_side

    @overlay_max_side.setter
    def overlay_max_side(self, value: int | None) -> None:
        check_open(self._closed, "PairViewer")
        self.drawing.overlay_max_side = None if value is None else check_int(value, "overlay_max_side", minimum=0)

    @property
    def model(self):
        return self.session.model

    @property
    def inputs(self) -> tuple:
        """The (query, reference) images as given (panels re-run models on these)."""
        return self.session.inputs

    @property
    def computing(self) -> str | None:
        """The method being computed in the background, or None."""
        return self.session.computing

    @property
    def pins(self) -> tuple[Pin, ...]:
        return self.state.pins

    @property
    def hovered(self) -> tuple[str, float, float] | None:
        return self.logic.hovered

    @property
    def peak(self) -> tuple[str, float, float] | None:
        """(side, row, col) where the hovered point's map peaks on the other image, or None."""
        return self.logic.peak

    def set_explanation(self, explanation: PairExplanation, *, inputs: tuple | None = None) -> None:
        """Show another explanation (cancels a background job). Pins stay if both images keep their
        sizes. ``inputs``: the (query, reference) images it explains (see ExplanationSession)."""
        check_open(self._closed, "PairViewer")
        self.session.set_explanation(CHECKS["explanation"](explanation), inputs=inputs)

    def set_pair(self, query, reference) -> None:
        """Explain a new pair with the chosen method (pins are cleared). Never blocks on a slow
        method: the fast default shows at once and the slow one follows in the background."""
        check_open(self._closed, "PairViewer")
        self.session.set_pair(query, reference)
        self.state.clear_pins()

    def set_model(self, model) -> None:
        """Explain the same pair with another model (pins are cleared)."""
        check_open(self._closed, "PairViewer")
        self.session.set_model(model)
        self.state.clear_pins()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a background job (if any) is done and shown; False if still running after ``timeout`` s."""
        return self.session.wait(timeout)

    def cancel_background(self) -> None:
        """Stop the background job (if any); the maps on show stay and the menu names their method."""
        check_open(self._closed, "PairViewer")
        self.session.cancel()

    def canvas_position(self, source: str, row: float, col: float) -> tuple[float, float]:
        """Canvas position (y, x) of display-image pixel (row, col) of ``source`` (for scripted browsers)."""
        source, row, col = self.logic.check_pixel(source, row, col)
        geometry = self.logic.geometry[source]
        return pixel_to_canvas(row, col, geometry.canvas, geometry.image)

    def point_map(self, source: str, row: float, col: float) -> np.ndarray | None:
        """The map hovering (row, col) of ``source`` draws over the other image (None without point-to-point)."""
        return self.logic.point_map(source, row, col)

    def contribution(self, source: str, row: float, col: float) -> float:
        """What image point (row, col) adds to the score."""
        return self.logic.contribution(source, row, col)

    def hover(self, source: str, row: float, col: float) -> None:
        """Show the point map of display pixel (row, col) of ``source`` over the other image."""
        check_open(self._closed, "PairViewer")
        previous = self.logic.hovered
        self.logic.hover(source, row, col)
        self._after_hover(previous)

    def unhover(self) -> None:
        """Back to the resting view: overall maps (or none) and pins."""
        check_open(self._closed, "PairViewer")
        if self.logic.hovered is not None:
            side = self.logic.hovered[0]
            self.logic.leave()
            self._after_leave(side)

    def pin(self, source: str, row: float, col: float) -> Pin:
        """Pin display pixel (row, col) of ``source`` (the oldest pin goes beyond ``max_pins``)."""
        check_open(self._closed, "PairViewer")
        source, row, col = self.logic.check_pixel(source, row, col)
        return self.state.add_pin(source, row, col)

    def clear_pins(self) -> None:
        check_open(self._closed, "PairViewer")
        self.state.clear_pins()

    def close(self) -> None:
        """Close the viewer, cancel its background job, free its widgets and listeners (a second
        call does nothing; any other change afterwards is a WidgetClosedError)."""
        if self._closed:
            return
        self._closed = True
        self.session.close()
        self.state.unobserve(self._on_pins_change, "pins")
        for event in self._events:
            event.close()
        self.drawing.close()
        self.browser.close()
        for child in self.children:
            close_tree(child)
        super().close()

    # ------------------------------------------------------------------------------------------
    # events (plain methods: tests drive them without a browser)

    def _handle_event(self, source: str, event) -> bool:
        """Apply one ipyevents event dict; returns whether it was used (see HoverLogic.handle)."""
        if self._closed:
            return False
        previous = self.logic.hovered
        action = self.logic.handle(source, event)
        if action is None:
            return False
        if action[0] == "hover":
            self._after_hover(previous)
        elif action[0] == "leave":
            self._after_leave(source)
        return True  # a pin redraws through the state's observer

    def _after_hover(self, previous) -> None:
        self.drawing.draw_hover(previous)
        self.status_label.value = self.logic.status_text()

    def _after_leave(self, side: str) -> None:
        self.drawing.draw_leave(side)
        self.status_label.value = ""

    def _receive(self, source: str, event) -> None:
        """ipyevents callback: moves are coalesced on the kernel's event loop (HoverLogic.receive)."""
        self.logic.receive(source, event, self._handle_event)

    # ------------------------------------------------------------------------------------------
    # observers

    def _on_session_explanation(self, change) -> None:
        self.explanation = change["new"]

    def _on_explanation_trait(self, change) -> None:
        exp = change["new"]
        if exp is not self.session.explanation:  # set directly on the trait: same as set_explanation
            self.session.set_explanation(exp)
            return
        self.logic.set_explanation(exp)
        self.drawing.set_explanation()
        self.browser.set_explanation(self.look())  # after the drawing's pin matches are recomputed
        self.drawing.watch_moves()
        self._sync_menu()
        self.controls.show_readings(exp.point_to_point is not None)
        self.score_label.value = self.logic.score_html()
        self.status_label.value = ""
        self.pin_list.value = self.logic.pins_html()
        self.drawing.redraw()

    def _on_browser_ready(self) -> None:
        # The page draws hovers from now on: moves stop coming through ipyevents, and a point map
        # the kernel drew before (hovered before the layer was ready) goes back to the rest view.
        self.drawing.watch_moves()
        self.drawing.redraw_maps()
        self.drawing.draw_cursors()

    def _on_session_method(self, _change) -> None:
        self._sync_menu()

    def _on_session_status(self, _change) -> None:
        status = html.escape(self.session.status)  # a computing message in italics, an error in red
        self.job_label.value = (f"<i>{status}</i>" if self.session.computing else
                                f"<span style='color:#b00'>{status}</span>" if status else "")

    def _sync_menu(self) -> None:
        self.controls.show_method(self.session.method, self.session.explanation.method, self.session.model is not None)

    def _on_method_menu(self, change) -> None:
        if self.controls.syncing or change["new"] == self.session.method:
            return
        try:
            self.session.choose(change["new"])
        except Exception as error:  # shown in the widget: a callback's traceback is easily missed
            self.session.status = f"method {change['new']!r} failed: {error}"
        self._sync_menu()  # the menu names what the session chose (a failed choice leaves no trace)

    def _on_cmap_menu(self, change) -> None:
        if not self.controls.syncing:
            self.cmap = None if change["new"] == DEFAULT_CMAP_LABEL else change["new"]

    def _on_cmap_change(self, change) -> None:
        self.logic.cmap = change["new"]
        self.controls.show_cmap(change["new"])
        self.browser.set_look(self.look())

    def _on_look_change(self, _change) -> None:
        drawing = self.drawing
        drawing.alpha, drawing.show_overall, drawing.show_peak = self.alpha, self.show_overall, self.show_peak
        drawing.redraw_maps()
        self.browser.set_look(self.look())

    def _on_reading_change(self, change) -> None:
        self.logic.reading = change["new"]
        self.logic.refresh_point()
        self.drawing.matches = {pin: self.logic.best_match(pin) for pin in self.state.pins}
        with batched_drawing():
            self.drawing.redraw_maps()
            self.drawing.draw_cursors()
        if self.logic.hovered is not None:
            self.status_label.value = self.logic.status_text()
        self.browser.set_look(self.look())

    def _on_pins_change(self, change) -> None:
        known = self.drawing.matches
        self.drawing.matches = {pin: known[pin] if pin in known else self.logic.best_match(pin)
                                for pin in change["new"]}
        self.drawing.draw_cursors()
        self.pin_list.value = self.logic.pins_html()
        self.browser.set_look(self.look())


def check_viewer_with_model(viewer, needed_for: str) -> PairViewer:
    """``viewer`` as an open PairViewer that has a model, or a clear error; ``needed_for`` says why."""
    check_instance(viewer, "viewer", PairViewer)
    check_open(viewer._closed, "PairViewer")
    if viewer.model is None:
        raise InputError(
            f"viewer has no model (it was made from an explanation without model=); {needed_for}, so "
            "give the viewer a model with viewer.set_model(model)"
        )
    return viewer

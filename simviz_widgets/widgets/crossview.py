"""``CrossViewExplorer``: the pair viewer with the matches between its two images drawn across them,
the transform they imply, an alignment check and, on request, the map of what the pair shares
(docs/crossview.md).

A thin view over a :class:`~simviz_widgets.widgets.crossview_state.CrossViewState` (matches, fits,
alignment, hover line: no widgets) and a :class:`PairViewer` it composes, on one HoverState: the
viewer draws the photos, hover maps (in the browser by default), pins and its own controls; this
class adds a canvas over both images (crossview_draw.py), the alignment canvas, the readout, the
legend and the controls, and forwards their events to the state. Work too slow for a callback — a
new pair (explanation and geometry), the shared-content map — runs as jobs of
:class:`~simviz_widgets.widgets.jobs.JobRunner` (widgets/jobs.py) on private model copies; a job's
result lands on the kernel's event loop only while it is current and for the pair on show.
"""

from __future__ import annotations

import html
import time
from functools import partial

import ipywidgets as widgets

from ..adapters.copies import ModelCopies
from ..checks import InputError, check_bool, check_choice, check_float, check_int, check_str
from ..explain import get_method, list_methods
from ..explain.base import PairExplanation
from ..geometry import GEOMETRY_KINDS
from ._canvas import DEFAULT_ALPHA, close_tree, single_thread_blas
from .crossview_draw import CrossViewLayout
from .crossview_state import CrossViewState, model_at_resolution, pair_job, shared_job
from .jobs import JobRunner
from .pair_viewer import PairViewer
from .session import FAST_DEFAULT, check_open
from .state import HoverState

__all__ = ["CrossViewExplorer"]


class CrossViewExplorer(widgets.VBox):
    """Why two views of a scene match, and the geometry that relates them.

    Both images side by side (a :class:`PairViewer`, "correspondence" reading by default: hover a
    point and its map shows where it is in the other image) with the ``n_lines`` strongest
    mutual matches drawn across them, coloured by strength; inliers of the fitted ``kind`` transform
    solid, outliers dashed grey. Hovering draws a line from the point to its best match; a click
    pins it. Below: the alignment check (the query warped onto the reference by the fit, blended
    with it by ``blend``: 0 = reference, 1 = warped query), the readout of the transform and its
    inlier ratio, the legend and the controls (lines, geometry kind, shared content).

    ``show_overall``: the viewer's overall maps under the lines (off: the plain photos).
    ``resolution``: explain on the model's ``at_resolution(resolution)`` grid (finer matches);
    ``shared_method``: the registered method whose overall maps show what the pair shares (computed
    in the background when ``show_shared`` is on; unavailable if not registered). ``size``,
    ``reading``, ``cmap``, ``alpha``, ``hover``: as :class:`PairViewer`.
    """

    _closed = True  # until composed: close() (also called by ipywidgets on __del__) has nothing to free

    def __init__(self, model=None, image_a=None, image_b=None, *, explanation: PairExplanation | None = None,
                 size: int = 320, kind: str = "similarity", n_lines: int = 30, resolution: int | None = None,
                 shared_method: str = "feature_occlusion", show_shared: bool = False, blend: float = 0.5,
                 show_overall: bool = False, reading: str = "correspondence", cmap: str | None = None,
                 alpha: float = DEFAULT_ALPHA, hover: str = "browser"):
        options = {"kind": check_choice(kind, "kind", GEOMETRY_KINDS),
                   "n_lines": check_int(n_lines, "n_lines", minimum=0),
                   "blend": check_float(blend, "blend", minimum=0.0, maximum=1.0)}
        self.shared_method = check_str(shared_method, "shared_method")
        show_shared = check_bool(show_shared, "show_shared")
        show_overall = check_bool(show_overall, "show_overall")
        if model is None and explanation is None:
            raise InputError("model is None; expected a SimilarityModel or torch module (to show an existing "
                             "explanation use CrossViewExplorer.from_explanation(explanation))")
        model = model_at_resolution(model, resolution)
        viewer = PairViewer(model, image_a, image_b, explanation=explanation, size=size, reading=reading, cmap=cmap,
                            alpha=alpha, hover=hover, state=HoverState())
        viewer.show_overall = show_overall  # plain photos by default: the lines read best over them
        try:
            self._compose(viewer, **options)
            self.show_shared = show_shared
        except BaseException:
            self.close()  # nothing half-built keeps running (closes the viewer too once composed)
            viewer.close()
            raise

    @classmethod
    def from_explanation(cls, explanation: PairExplanation, *, model=None, **options) -> "CrossViewExplorer":
        """An explorer of an existing explanation (no model runs unless ``model`` is given: the
        shared-content map, :meth:`set_pair` and the viewer's method menu need one)."""
        return cls(model, explanation=explanation, **options)

    def _compose(self, viewer: PairViewer, *, kind: str, n_lines: int, blend: float) -> None:
        self.viewer, self.hover_state = viewer, viewer.state
        self.state = CrossViewState(viewer.explanation, kind=kind, n_lines=n_lines, blend=blend,
                                    hover_state=viewer.state)
        self.runner = JobRunner(name="simviz-crossview")  # a new pair: explanation and geometry
        self.shared_runner = JobRunner(name="simviz-crossview-shared")  # the shared-content map
        self._copies: ModelCopies | None = None
        self._incoming = None  # the geometry a pair job computed for the explanation it brings
        self._overall_before_shared = viewer.show_overall
        self.computing: str | None = None
        self.parts = parts = CrossViewLayout(viewer, kind=kind, blend=blend, shared_method=self.shared_method)
        self.lines, self.alignment = parts.lines, parts.alignment
        for name in ("lines_slider", "kind_dropdown", "shared_toggle", "blend_slider", "readout", "hover_label",
                     "legend", "status_label"):
            setattr(self, name, getattr(parts, name))
        super().__init__(children=[viewer, parts.bottom])
        self.add_class("simviz-crossview")
        self._closed = False

        viewer.observe(self._on_explanation, "explanation")
        viewer.observe(self._sync_colorbar, "show_overall")
        self.hover_state.observe(self._on_hovered, "hovered")
        self.hover_state.observe(self._on_pins, "pins")
        self.lines_slider.observe(self._on_lines, "value")
        self.kind_dropdown.observe(self._on_kind, "value")
        self.blend_slider.observe(self._on_blend, "value")
        self.shared_toggle.observe(self._on_shared_toggle, "value")
        self.lines.canvas.on_client_ready(self._redraw)
        self.alignment.canvas.on_client_ready(lambda: self.parts.draw_alignment(self.state))
        self._refresh()

    # ------------------------------------------------------------------------------------------
    # public API

    @property
    def explanation(self) -> PairExplanation:
        return self.viewer.explanation

    matches = property(lambda self: self.state.matches, doc="the matches on show (CrossViewState.matches)")
    fit = property(lambda self: self.state.fit, doc="the fit of the current kind (CrossViewState.fit)")

    @property
    def kind(self) -> str:
        return self.state.kind

    @kind.setter
    def kind(self, value: str) -> None:
        check_open(self._closed, "CrossViewExplorer")
        self.kind_dropdown.value = check_choice(value, "kind", GEOMETRY_KINDS)

    @property
    def n_lines(self) -> int:
        return self.state.n_lines

    @n_lines.setter
    def n_lines(self, value: int) -> None:
        check_open(self._closed, "CrossViewExplorer")
        self.state.n_lines = value
        self.parts.sync_lines_slider(self.state)
        self.parts.draw_matches(self.state)
        self.readout.value = self.state.readout_html()

    @property
    def blend(self) -> float:
        return self.state.blend

    @blend.setter
    def blend(self, value: float) -> None:
        check_open(self._closed, "CrossViewExplorer")
        self.blend_slider.value = check_float(value, "blend", minimum=0.0, maximum=1.0)

    @property
    def show_shared(self) -> bool:
        return self.shared_toggle.value

    @show_shared.setter
    def show_shared(self, value: bool) -> None:
        check_open(self._closed, "CrossViewExplorer")
        self.shared_toggle.value = check_bool(value, "show_shared")

    def hover(self, side: str, row: float, col: float) -> None:  # as the mouse would
        self.viewer.hover(side, row, col)

    def unhover(self) -> None:
        self.viewer.unhover()

    def pin(self, side: str, row: float, col: float):
        return self.viewer.pin(side, row, col)

    def line_position(self, side: str, row: float, col: float) -> tuple[float, float]:
        """(y, x) on the line canvas of display pixel (row, col) of ``side`` (for scripted browsers)."""
        side, row, col = self.viewer.logic.check_pixel(side, row, col)
        x, y = self.lines.position(side, row, col)
        return y, x

    def set_pair(self, image_a, image_b) -> None:
        """Explain a new pair and compute its matches and geometry in the background (the current pair
        stays on show until it is done; pins are cleared then). A later pair supersedes it."""
        check_open(self._closed, "CrossViewExplorer")
        model = self.viewer.model
        if model is None:
            raise InputError("set_pair needs a model, and this explorer has none (it was made from an "
                             "explanation); make one with CrossViewExplorer(model, image_a, image_b)")
        query, reference = model.prepare(image_a, name="image_a"), model.prepare(image_b, name="image_b")
        method = self.viewer.session.recompute_method
        method = FAST_DEFAULT if get_method(method).slow else method
        method_cls, kind, reading = get_method(method), self.state.kind, self.state.reading
        self.shared_runner.cancel()
        self.viewer.cancel_background()
        self.runner.copies = self._model_copies()
        work = partial(pair_job, method_cls, query, reference, kind=kind, reading=reading)
        self.runner.start(work, on_result=partial(self._apply_pair, (image_a, image_b)), on_error=self._job_failed,
                          on_cancelled=self._job_failed, needs_model=True, name="pair")
        self._set_status("computing the new pair (explanation, matches, geometry) in the background; the "
                         "current pair stays until it is done", computing="pair")

    def set_explanation(self, explanation: PairExplanation) -> None:
        check_open(self._closed, "CrossViewExplorer")
        if self.runner.cancel():  # a pending pair must not replace it
            self._set_status("")
        self.viewer.set_explanation(explanation)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background jobs (new pair, then the shared map it may start, the viewer's
        own) are done and shown; False if still running after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for waiter in (self.runner.wait, self.shared_runner.wait, self.viewer.wait):
                if not waiter(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    return False
            if not (self.runner.running or self.shared_runner.running or self.viewer.computing):
                return True

    def close(self) -> None:
        """Cancel the jobs, free the canvases, controls and the viewer (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.runner.close()
        self.shared_runner.close()
        if self._copies is not None:
            self._copies.close()
        self.viewer.unobserve(self._on_explanation, "explanation")
        self.viewer.unobserve(self._sync_colorbar, "show_overall")
        self.hover_state.unobserve(self._on_hovered, "hovered")
        self.hover_state.unobserve(self._on_pins, "pins")
        self.lines.close()
        self.alignment.close()
        close_tree(self.parts.bottom)
        self.viewer.close()
        super().close()

    def _ipython_display_(self):
        # As PairExplorer: the widget, then the viewer's static fallback (hidden where the widget renders).
        from IPython.display import display

        display(super()._repr_mimebundle_() or {}, raw=True)
        display({"text/html": self.viewer.static_fallback_html(), "text/plain": repr(self)}, raw=True)

    # ------------------------------------------------------------------------------------------
    # jobs (outcomes arrive on the kernel's event loop, only while current)

    def _model_copies(self) -> ModelCopies:
        if self._copies is None or self._copies.model is not self.viewer.model:  # a new model: new copies
            if self._copies is not None:
                self._copies.close()
            self._copies = ModelCopies(self.viewer.model)
        return self._copies

    def _apply_pair(self, inputs: tuple, result) -> None:
        explanation, geometry = result
        self._incoming = geometry
        self._set_status("")
        self.viewer.set_explanation(explanation, inputs=inputs)  # -> _on_explanation
        self.hover_state.clear_pins()

    def _job_failed(self, error) -> None:
        self._set_status(f"failed: {type(error).__name__}: {error}", error=True)

    def _start_shared(self) -> None:
        name, exp = self.shared_method, self.state.explanation
        if name not in list_methods():
            self._set_status(f"shared-content map unavailable: method {name!r} is not registered "
                             f"(registered: {', '.join(list_methods())})", error=True)
            return
        if self.viewer.model is None:
            self._set_status("the shared-content map needs a model; give the explorer one with "
                             "viewer.set_model(model)", error=True)
            return
        if self.state.shared is not None:
            self.parts.draw_shared(self.state, shown=self.show_shared)
            return
        work = partial(shared_job, get_method(name), *self.viewer.inputs)

        def progressed(fraction, _text):
            self._set_status(f"computing the shared-content map ({name}) in the background: "
                             f"{100 * (fraction or 0):.0f} %", computing=name)

        self.shared_runner.copies = self._model_copies()
        try:
            self.shared_runner.start(work, on_result=partial(self._apply_shared, exp), on_error=self._job_failed,
                                     on_cancelled=self._job_failed, on_progress=progressed, needs_model=True, name=name)
        except Exception as error:  # noqa: BLE001 - e.g. a module that cannot be copied: said, not hidden
            self._job_failed(error)
            return
        self._set_status(f"computing the shared-content map ({name}) in the background", computing=name)

    def _apply_shared(self, explanation: PairExplanation, shared: PairExplanation) -> None:
        if self.state.set_shared(explanation, shared):  # refused for another pair: never stale
            self._set_status("")
            self.parts.draw_shared(self.state, shown=self.show_shared)
            self.parts.show_legend(self.state, self.shared_method if self.show_shared else None)

    def _set_status(self, text: str, *, error: bool = False, computing: str | None = None) -> None:
        self.computing = computing
        text = html.escape(text)
        self.status_label.value = (f"<span style='color:#b00000'>{text}</span>" if error else
                                   f"<i>{text}</i>" if text else "")

    # ------------------------------------------------------------------------------------------
    # observers (the state decides, the canvases draw)

    def _on_explanation(self, change) -> None:
        geometry, self._incoming = self._incoming, None
        self.shared_runner.cancel()  # a shared map of the previous pair must never land
        if geometry is None and self.runner.cancel():
            # Not our pair landing: the viewer's method menu or set_model chose something newer, so
            # a pending pair (explained with the old model or method) must not replace it.
            self._set_status("")
        if self.computing and self.computing != "pair":
            self._set_status("")
        self.state.set_explanation(change["new"], geometry=geometry)
        self.parts.resize()
        self._refresh()
        if self.show_shared:
            self._start_shared()

    def _on_hovered(self, change) -> None:
        new, old = change["new"], change["old"]
        if new is None:
            self.state.leave()
        else:
            try:
                with single_thread_blas():  # one row of D: too small for BLAS threads (see _canvas.py)
                    self.state.hover(*new)
            except InputError:  # a point of another pair (the shared state set elsewhere)
                self.state.leave()
        self.parts.draw_pointer(self.state)
        if (old is None) != (new is None):  # entering or leaving: match lines fade, shade goes
            self.parts.draw_matches(self.state)
            self.parts.draw_shared(self.state, shown=self.show_shared)
            self._sync_colorbar()
        self.parts.show_hover_text(self.state)

    def _on_pins(self, _change) -> None:
        self.parts.draw_pointer(self.state)

    def _on_lines(self, change) -> None:
        if not self.parts.syncing:
            self.state.n_lines = change["new"]
            self.parts.draw_matches(self.state)
            self.readout.value = self.state.readout_html()

    def _on_kind(self, change) -> None:
        self.state.kind = change["new"]
        self.parts.draw_matches(self.state)
        self.parts.draw_pointer(self.state)
        self.parts.draw_alignment(self.state)
        self.readout.value = self.state.readout_html()
        self.parts.show_hover_text(self.state)

    def _on_blend(self, change) -> None:
        self.state.blend = change["new"]
        self.parts.draw_alignment(self.state)

    def _on_shared_toggle(self, change) -> None:
        if change["new"]:
            self._overall_before_shared = self.viewer.show_overall
            self.viewer.show_overall = False  # the plain photos under the shared-content overlay
            self._start_shared()
        else:
            self.shared_runner.cancel()
            if self.computing and self.computing != "pair":
                self._set_status("")
            self.viewer.show_overall = self._overall_before_shared
        self.parts.draw_shared(self.state, shown=self.show_shared)
        self.parts.show_legend(self.state, self.shared_method if self.show_shared else None)

    # ------------------------------------------------------------------------------------------
    # drawing (crossview_draw.CrossViewLayout draws what the state says)

    def _sync_colorbar(self, _change=None) -> None:
        # The viewer's colour bar describes the map on show: at rest without overall maps there is none.
        shown = self.state.hovered is not None or self.viewer.show_overall
        self.viewer.colorbar.layout.visibility = "visible" if shown else "hidden"

    def _refresh(self) -> None:
        self.parts.sync_lines_slider(self.state)
        self.readout.value = self.state.readout_html()
        self.hover_label.value = ""
        self.parts.show_legend(self.state, self.shared_method if self.show_shared else None)
        self._sync_colorbar()
        self._redraw()
        self.parts.draw_alignment(self.state)

    def _redraw(self) -> None:
        self.parts.draw_matches(self.state)
        self.parts.draw_pointer(self.state)
        self.parts.draw_shared(self.state, shown=self.show_shared)






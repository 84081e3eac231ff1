"""``RetrievalExplorer``: search a gallery by a whole query image or by a region of it, and see
why each result matched (docs/retrieval.md).

A thin view over a :class:`~simviz_widgets.widgets.retrieval_state.RetrievalState` (query, region,
results and their rank change, overlays, open result: no widgets) and a
:class:`~simviz_widgets.widgets.region_tool.RegionTool` (mouse events -> box or brushed region).
It draws what they say (retrieval_draw.py) and forwards events to them. The region's re-ranking is
one matrix-vector product, done at once; the overlays (a decomposition of each result on show) run
as a job of :class:`~simviz_widgets.widgets.jobs.JobRunner` on a private model copy, landing on the
kernel's event loop only while current and only for the query and region they were computed for.
A new query is decomposed at once: one forward pass, like the pair viewer's default method, and
every result of the search depends on it. Clicking a result opens the pair in an embedded
:class:`PairViewer` sharing the explorer's :class:`HoverState`.
"""

from __future__ import annotations

import html
import time
from functools import partial

import ipywidgets as widgets
from ipyevents import Event

from ..adapters.copies import ModelCopies
from ..checks import InputError, check_choice, check_int
from ..retrieval.labels import score_text
from ._canvas import CHECKS, DEFAULT_ALPHA, MIN_SIZE, canvas_style
from .jobs import JobRunner
from .pair_viewer import PairViewer
from .region_tool import TOOLS, RegionTool
from .retrieval_draw import RETRIEVAL_CSS, QueryCanvas, ResultsGrid
from .retrieval_state import RetrievalState, overlay_job
from .session import FAST_DEFAULT, check_open
from .state import HoverState

__all__ = ["RetrievalExplorer"]


class RetrievalExplorer(widgets.VBox):
    """Search ``gallery`` (a :class:`~simviz_widgets.retrieval.Gallery` embedded by ``model``) with
    a query image, or with a region of it drawn on the query: drag a box, or paint with the brush
    (the eraser paints out); "whole image" clears the region.

    The ``k`` best results (1 to 48) show as thumbnails with their rank, the rank change against the
    whole-image query, name and score, and, once computed in the background, the cells of each
    result that answered the region (one colour scale for all, the colour bar below). Click a result
    to open the pair (query, result) in the pair viewer below.

    ``query``: an image, or a gallery index (that item is left out of its own results); None: item 0.
    ``tool``: "box", "brush" or "eraser"; ``brush_size``: its radius in the query's display pixels
    (None: about 1/24 of the image). ``size``: the query canvas's longer side (pixels);
    ``thumb_size``: each thumbnail's; ``viewer_size``: the pair viewer's images'. ``cmap``,
    ``alpha``, ``hover``: as :class:`PairViewer`.
    """

    _closed = True  # until composed: close() (also called by ipywidgets on __del__) has nothing to free

    #: browser-side throttle of mouse moves over the query (ms)
    event_wait_ms = 30

    def __init__(self, model, gallery, query=None, *, k: int = 8, tool: str = "box", brush_size: int | None = None,
                 size: int = 320, thumb_size: int = 112, viewer_size: int = 256, cmap: str | None = None,
                 alpha: float = DEFAULT_ALPHA, hover: str = "browser"):
        self.state = RetrievalState(gallery, k=k)
        if model is not None and model is not gallery.model:
            raise InputError("model is not the gallery's model: its embeddings were computed by gallery.model "
                             f"({gallery.model.name!r}); pass model=gallery.model (or None)")
        self.options = {"size": CHECKS["size"](size),
                        "thumb_size": check_int(thumb_size, "thumb_size", minimum=MIN_SIZE),
                        "viewer_size": CHECKS["size"](viewer_size), "cmap": CHECKS["cmap"](cmap),
                        "alpha": CHECKS["alpha"](alpha), "hover": CHECKS["hover"](hover)}
        tool = check_choice(tool, "tool", TOOLS)  # checked before the model runs
        brush_size = None if brush_size is None else check_int(brush_size, "brush_size", minimum=1)
        self.state.set_query(0 if query is None else query)
        self.tool = RegionTool(self.state.query.size, tool=tool, brush_size=brush_size)
        self._compose()

    def _compose(self) -> None:
        options, state = self.options, self.state
        self.hover_state = HoverState()
        self.viewer: PairViewer | None = None
        self.runner = JobRunner(name="simviz-retrieval")
        self._copies: ModelCopies | None = None
        self._thumbs: dict = {}
        self.query_canvas = QueryCanvas(options["size"])
        self.grid = ResultsGrid(state.k, options["thumb_size"], self._on_card_click)
        self.tool_buttons = widgets.ToggleButtons(options=list(TOOLS), value=self.tool.tool,
                                                  tooltips=["drag a box", "paint the region", "paint out of it"],
                                                  style={"button_width": "64px"})
        self.brush_slider = widgets.IntSlider(value=self.tool.brush_size, min=1, max=max(state.query.size),
                                              description="brush px", continuous_update=False,
                                              layout=widgets.Layout(width="260px"))
        self.clear_button = widgets.Button(description="whole image", icon="expand",
                                           tooltip="clear the region: search with the whole query")
        self.overlay_toggle = widgets.Checkbox(value=True, description="overlays: the cells that answered the region",
                                               indent=False, layout=widgets.Layout(width="auto"))
        self.region_label = widgets.HTML()
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.viewer_title = widgets.HTML()
        self.viewer_box = widgets.VBox([self.viewer_title], layout=widgets.Layout(display="none"))
        query_box = widgets.VBox([widgets.HTML("<b>query</b> — drag a box or paint a region to search by it"),
                                  self.query_canvas.pad, self.tool_buttons, self.brush_slider, self.clear_button,
                                  self.region_label], layout=widgets.Layout(margin="0 16px 0 0"))
        results_box = widgets.VBox([widgets.HTML("<b>results</b>"), self.grid.box, self.overlay_toggle,
                                    self.status_label])
        super().__init__(children=[widgets.HBox([query_box, results_box]), self.viewer_box,
                                   canvas_style(RETRIEVAL_CSS)])
        self.add_class("simviz-retrieval-explorer")
        self._closed = False

        self.tool_buttons.observe(self._on_tool, "value")
        self.brush_slider.observe(self._on_brush, "value")
        self.clear_button.on_click(lambda _button: self.clear_region())
        self.overlay_toggle.observe(lambda _change: self._show_results(), "value")
        self.hover_state.observe(self._on_hovered, "hovered")
        pad = self.query_canvas.pad
        # Moves are watched only during a drag or stroke: hovering the query sends the kernel nothing.
        self._events = [Event(source=pad, watched_events=[], wait=self.event_wait_ms,
                              throttle_or_debounce="throttle", prevent_default_action=True),
                        Event(source=pad, watched_events=["mousedown", "mouseup", "mouseleave"],
                              prevent_default_action=True)]
        for event in self._events:
            event.on_dom_event(self._handle_event)
        self.query_canvas.canvas.on_client_ready(self._redraw_query)
        self._after_query()

    # ------------------------------------------------------------------------------------------
    # public API

    gallery = property(lambda self: self.state.gallery)
    k = property(lambda self: self.state.k)

    query = property(lambda self: self.state.query, doc="the query on show (a QueryDecomposition)")
    region = property(lambda self: self.state.region,
                      doc='None (the whole image), ("box", (top, left, bottom, right)) or ("mask", mask)')
    results = property(lambda self: self.state.results, doc="the SearchResults on show")

    @property
    def rows(self):
        """The results on show as :class:`~simviz_widgets.widgets.retrieval_state.ResultRow` (rank,
        gallery index, name, score, whole-image rank, rank change, new)."""
        return list(self.state.rows)

    computing = property(lambda self: self.runner.running, doc="whether overlays are being computed in the background")

    @property
    def brush_size(self) -> int:
        return self.tool.brush_size

    @brush_size.setter
    def brush_size(self, value: int) -> None:
        check_open(self._closed, "RetrievalExplorer")
        self.tool.brush_size = value
        self.brush_slider.value = self.tool.brush_size

    def overlay(self, rank):
        """The region's map on the result at ``rank`` (None until its job result arrived)."""
        return self.state.overlay(self.state.row(rank).index)

    def set_tool(self, tool: str) -> None:
        """"box", "brush" or "eraser" (as the buttons)."""
        check_open(self._closed, "RetrievalExplorer")
        self.tool.tool = tool
        self.tool_buttons.value = tool

    def set_query(self, image) -> None:
        """Search with a new query (an image, or a gallery index: that item is left out of its own
        results): decomposed at once (one forward pass); the region is cleared, the open pair closed."""
        check_open(self._closed, "RetrievalExplorer")
        self.state.set_query(image)  # a bad image raises here and changes nothing
        self.runner.cancel()  # the old query's overlays never land (their key is refused too)
        self.hover_state.clear_pins()  # points of the old query
        self.tool.resize(self.state.query.size)
        self._after_query()

    def set_region(self, box=None, mask=None) -> None:
        """Re-rank by a region of the query's display pixels: ``box`` (top, left, bottom, right),
        bottom/right exclusive, or a bool ``mask``; neither: the whole image."""
        check_open(self._closed, "RetrievalExplorer")
        self.state.set_region(box=box, mask=mask)  # a bad region raises here and changes nothing
        self.runner.cancel()
        self.tool.cancel()
        self._after_region()

    def clear_region(self) -> None:
        self.set_region()

    def open_result(self, rank) -> PairViewer:
        """Open the pair (query, result at ``rank``) in the pair viewer below; returns the viewer."""
        check_open(self._closed, "RetrievalExplorer")
        row = self.state.row(rank)
        inputs = (self.state.query_input, self.gallery.image(row.index))
        explanation = self.state.explanation(row.index)
        options = {name: self.options[name] for name in ("cmap", "alpha", "hover")}
        # Pins of the query stay (the same query: pin a point, flip through the results); the result's go.
        query_pins = tuple(pin for pin in self.hover_state.pins if pin.source == "query")
        if self.viewer is None:
            if explanation is not None:
                viewer = PairViewer.from_explanation(explanation, model=self.gallery.model, state=self.hover_state,
                                                     size=self.options["viewer_size"], **options)
                viewer.set_explanation(explanation, inputs=inputs)  # the images as given, not re-cropped
            else:
                viewer = PairViewer(self.gallery.model, *inputs, state=self.hover_state,
                                    size=self.options["viewer_size"], **options)
            self.viewer = viewer
            self.viewer_box.children = [self.viewer_title, viewer]
        elif explanation is not None and self.viewer.session.recompute_method == FAST_DEFAULT:
            self.viewer.set_explanation(explanation, inputs=inputs)
        else:  # not computed yet, or the viewer shows another method the user chose: explain with it
            self.viewer.set_pair(*inputs)
        self.hover_state.pins = query_pins
        self.state.open_index = row.index
        self.viewer_box.layout.display = None
        self._show_results()
        return self.viewer

    def canvas_position(self, row: float, col: float) -> tuple[float, float]:
        """Canvas position (y, x) of the query's display pixel (row, col) (for tests and scripted browsers)."""
        return self.query_canvas.position(row, col)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the overlays (and the viewer's own job) are computed and shown; False if still
        running after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.runner.wait(timeout):
            return False
        if self.viewer is None:
            return True
        return self.viewer.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Cancel the job, free the canvases, cards, controls and the viewer (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.runner.close()
        if self._copies is not None:
            self._copies.close()
        self.hover_state.unobserve(self._on_hovered, "hovered")
        for event in self._events:
            event.close()
        self.query_canvas.close()
        self.grid.close()
        for control in (self.tool_buttons, self.brush_slider, self.clear_button, self.overlay_toggle, self.region_label,
                        self.status_label, self.viewer_title):
            control.close()
        if self.viewer is not None:
            self.viewer.close()
        super().close()

    # ------------------------------------------------------------------------------------------
    # events (plain methods: tests drive them without a browser)

    def _handle_event(self, event) -> bool:
        """Apply one ipyevents event of the query canvas; returns whether it was used."""
        if self._closed:
            return False
        pressing = isinstance(event, dict) and event.get("type") == "mousedown"
        action = self.tool.handle(event, self.query_canvas.canvas_size,
                                  base=self.state.region_mask() if pressing else None)
        watched = ["mousemove"] if self.tool.active else []
        if list(self._events[0].watched_events) != watched:
            self._events[0].watched_events = watched
        if action is None:
            return False
        kind, shape = action
        if kind == "preview":
            self.query_canvas.draw_region(shape, preview=True)
        elif shape[0] == "box":
            self.set_region(box=shape[1])
        elif shape[0] == "mask":
            self.set_region(mask=shape[1])
        else:  # the eraser left nothing: the whole image, said so
            self.set_region()
            self._set_status("the eraser left no region: searching with the whole image")
        return True

    def _on_card_click(self, rank: int) -> None:
        if not self._closed and rank < len(self.state.rows):
            try:
                self.open_result(rank)
            except Exception as error:  # shown in the widget: a callback's traceback is easily missed
                self._set_status(f"could not open result #{rank + 1}: {type(error).__name__}: {error}", error=True)

    def _on_tool(self, change) -> None:
        self.tool.tool = change["new"]
        self._redraw_region()

    def _on_brush(self, change) -> None:
        self.tool.brush_size = change["new"]

    def _on_hovered(self, change) -> None:
        self.query_canvas.draw_mark(self._mark(change["new"]))

    def _mark(self, hovered):
        # The open pair's query is the query on show (same display pixels) unless its size differs.
        if hovered is None or hovered[0] != "query" or self.viewer is None:
            return None
        if self.viewer.explanation.query_size != self.state.query.size:
            return None
        return hovered[1:]

    # ------------------------------------------------------------------------------------------
    # jobs (outcomes arrive on the kernel's event loop, only while current)

    def _model_copies(self) -> ModelCopies:
        if self._copies is None:
            self._copies = ModelCopies(self.gallery.model)
        return self._copies

    def _start_overlays(self) -> None:
        indices = self.state.missing()
        if not indices:
            self._set_status("")
            return
        state = self.state
        work = partial(overlay_job, self.gallery, state.query, indices, state.weights.copy(), state.key)
        try:
            self.runner.copies = self._model_copies()
            self.runner.start(work, on_result=self._overlays_done, on_post=self._apply_overlay,
                              on_error=self._job_failed, on_cancelled=self._job_failed,
                              on_progress=self._progressed, needs_model=True, name="overlays")
        except Exception as error:  # noqa: BLE001 - e.g. a module that cannot be copied: said, not hidden
            self._job_failed(error)
            return
        self._set_status(f"computing the overlays of {len(indices)} results in the background…")

    def _apply_overlay(self, payload) -> None:
        if self.state.apply_overlay(payload):
            self._show_results()

    def _overlays_done(self, _count) -> None:
        self._set_status("")
        self._show_results()

    def _progressed(self, fraction, text) -> None:
        self._set_status(f"computing the overlays in the background: {text} ({100 * (fraction or 0):.0f} %)")

    def _job_failed(self, error) -> None:
        self._set_status(f"overlays failed: {type(error).__name__}: {error}", error=True)
        self._show_results()

    def _set_status(self, text: str, *, error: bool = False) -> None:
        text = html.escape(text)
        self.status_label.value = (f"<span style='color:#b00000'>{text}</span>" if error else
                                   f"<i>{text}</i>" if text else "")

    # ------------------------------------------------------------------------------------------
    # drawing (retrieval_draw.py draws what the state says)

    def _after_query(self) -> None:
        self.query_canvas.set_query(self.state.query.prepared.display)
        self.brush_slider.max = max(self.state.query.size)  # the tool's own bound: the slider never cuts it
        self.brush_slider.value = self.tool.brush_size
        self._thumbs = {}
        self.viewer_box.layout.display = "none"  # the open pair was of the old query
        self._redraw_query()
        self._after_region()

    def _after_region(self) -> None:
        self._redraw_region()
        self._show_results()  # first: its thumbnails prepare the results here, and the job finds them cached
        self._start_overlays()

    def _show_results(self) -> None:
        self._title_viewer()
        size = self.options["thumb_size"]
        shown = {row.index for row in self.state.rows}
        self._thumbs = {i: t for i, t in self._thumbs.items() if i in shown}  # bounded by k
        for index in shown - self._thumbs.keys():
            self._thumbs[index] = self.gallery.thumbnail(index, size)
        self.grid.show(self.state, self._thumbs, alpha=self.options["alpha"], cmap=self.options["cmap"],
                       overlays=self.overlay_toggle.value)

    def _title_viewer(self) -> None:
        state = self.state
        if state.open_index is None:
            return
        name = html.escape(self.gallery.names[state.open_index])
        rank = state.open_rank()
        if rank is None:
            head = f"<b>{name}</b> (no longer in the top {state.k} for this region)"
        else:
            scored = score_text(state.rows[rank].score, self.gallery.model.metric, region=state.region is not None)
            head = f"<b>#{rank + 1} {name}</b> ({html.escape(scored)} for the {html.escape(state.region_text())})"
        self.viewer_title.value = (f"<div style='line-height:1.4'>{head}: the whole pair explained, the query "
                                   "left and this result right; hover either image to see what it matches in the "
                                   "other</div>")

    def _redraw_region(self) -> None:
        self.query_canvas.draw_region(self.state.region)
        self.region_label.value = f"<span style='font-size:13px'>region: {html.escape(self.state.region_text())}</span>"

    def _redraw_query(self) -> None:
        self.query_canvas.redraw(self.state.region, self._mark(self.hover_state.hovered))

"""``SimilarityMatrix``: which images of a small gallery does the model think alike, and why.

The (N, N) matrix of the model's scores as a bqplot heatmap with the images' thumbnails along
both axes (row image = query, column image = reference), in a chosen order: clustered (alike side
by side), the gallery's, or by similarity to one image (click a thumbnail, or the menu). Hovering a
cell shows the pair and its score beside the matrix; clicking it opens the pair in an embedded
:class:`~simviz_widgets.widgets.PairViewer` (``viewer.set_pair``: the viewer explains it, slow
methods in its own background job), its cell outlined and its two thumbnails framed.

A thin view over a :class:`~.similarity_matrix_state.SimilarityMatrixState` (scores, order,
colours, selection: no widgets). One bqplot Figure holds the heatmap and two thumbnail strips as
``Image`` marks on the same two linear scales, one unit per cell (cell edges at 0 .. N), so a
thumbnail is exactly as wide as its row or column. The colour bar is the viewer's (colorbar.py).
Mouse events: the heatmap sends the cell (row and column in the shown order) on mouse-over and
click; a strip sends the clicked point in scale units.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
from bqplot import ColorScale, Figure, GridHeatMap, Image, LinearScale, Lines
from ipyevents import Event

from ..checks import check_choice, check_colormap, check_int
from ..explain import list_methods
from ..render import colormap_lut
from ..retrieval.labels import score_text
from ..web.png import png_bytes
from ..web.scales import ColourScale
from ._canvas import CHECKS, close_tree
from ._charts import close_figure
from .colorbar import WIDTH_PX, ColourBar
from .pair_viewer import PairViewer
from .session import check_open
from .similarity_matrix_readout import PREVIEW_PX, READOUT_PX, PairReadout
from .similarity_matrix_state import ORDER_LABELS, ORDERS, SimilarityMatrixState

__all__ = ["SimilarityMatrix"]

GAP = 0.25  # between a thumbnail strip and the matrix, in cells
STOPS = 17  # colours of the bqplot colour scale, evenly spaced through the colormap
SIDE_MARGIN = 6
PNG_LEVEL = 3  # strips are sent once per order and previews once: a middle compression


def auto_cell_px(n: int) -> int:
    """Pixels per cell: the matrix about 560 px wide, cells 18 .. 56 px (thumbnails stay readable
    from a few images to about 40)."""
    return int(np.clip(round(560 / max(n, 1)), 18, 56))


def _box(x0: float, x1: float, y0: float, y1: float) -> tuple[list[float], list[float]]:
    return [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]


class SimilarityMatrix(widgets.VBox):
    """The similarity matrix of ``gallery`` (a :class:`~simviz_widgets.retrieval.Gallery`, best
    with a few to ~40 images, at most 200: a larger one is refused), thumbnails on both axes; click
    a cell to see why that pair matches.

    ``order``: "cluster", "gallery", "similarity" (to ``anchor``, a gallery index) or a permutation
    of the gallery indices. ``cmap``: a sequential matplotlib colormap (reversed for Euclidean
    distances, so one colour means "alike" for every metric). ``cell_px``: pixels per cell (None:
    :func:`auto_cell_px`). ``method``, ``viewer_size``, ``hover``: the pair viewer's ``method``,
    ``size`` and ``hover``.

    Programmatic use: :meth:`select` (row, col) as a click, :attr:`order`, :attr:`anchor`,
    :attr:`matrix`, :attr:`viewer`, :meth:`hover`, :meth:`close`.
    """

    _closed = True  # until built: close() (also called by ipywidgets on __del__) has nothing to free
    _syncing = False  # True while the menus are set to what the state says (no feedback loop)

    def __init__(self, gallery, *, order="cluster", anchor: int = 0, cmap: str = "viridis",
                 cell_px: int | None = None, method: str = "decomposition", viewer_size: int = 280,
                 hover: str = "browser"):
        state = SimilarityMatrixState(gallery, order=order, anchor=anchor)
        cmap = check_colormap(cmap, "cmap")
        self.cell_px = auto_cell_px(state.n) if cell_px is None else check_int(cell_px, "cell_px", minimum=8,
                                                                                 maximum=200)
        self._viewer_options = {"method": check_choice(method, "method", list_methods()),
                                "size": CHECKS["size"](viewer_size), "hover": CHECKS["hover"](hover)}
        self.state, self.gallery, self.cmap = state, gallery, cmap
        self.viewer: PairViewer | None = None
        self._thumb_px = int(min(96, 2 * self.cell_px))  # sharp on a 2x screen
        self._thumbs: dict[int, np.ndarray] = {}
        self._previews: dict[int, bytes] = {}
        super().__init__()
        self._build()
        self._closed = False
        self._show_order()

    # ------------------------------------------------------------------------------------------
    # construction

    def _build(self) -> None:
        n, cell = self.state.n, self.cell_px
        lo_edge = -(1.0 + GAP)  # the thumbnails sit in [lo_edge, -GAP], the matrix in [0, N]
        self._x = LinearScale(min=lo_edge, max=float(n))
        self._y = LinearScale(min=lo_edge, max=float(n), reverse=True)  # row 0 at the top
        lut = colormap_lut(self.cmap)[:, :3]
        colours = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in lut[np.linspace(0, 255, STOPS).round().astype(int)]]
        lo, hi = self.state.colour_range
        self._colour = ColorScale(colors=colours[::-1] if self.state.reversed_colours else colours, min=lo, max=hi)
        edges = np.arange(n + 1, dtype=np.float64)
        self.heatmap = GridHeatMap(color=self.state.colour_data(), row=edges, column=edges, stroke="white",
                                   scales={"row": self._y, "column": self._x, "color": self._colour})
        self.heatmap.on_hover(lambda _mark, content: self._cell_event("hover", content))
        self.heatmap.on_element_click(lambda _mark, content: self._cell_event("click", content))
        # Image marks span (x0, x1) and (bottom, top): the y scale is reversed, so bottom = the larger value.
        xy = {"x": self._x, "y": self._y}
        self.row_strip = Image(image=widgets.Image(value=b"", format="png"), x=[lo_edge, -GAP], y=[float(n), 0.0],
                               pixelated=False, scales=xy)
        self.column_strip = Image(image=widgets.Image(value=b"", format="png"), x=[0.0, float(n)], y=[-GAP, lo_edge],
                                  pixelated=False, scales=xy)
        self.row_strip.on_element_click(lambda _mark, content: self._strip_event("row", content))
        self.column_strip.on_element_click(lambda _mark, content: self._strip_event("column", content))
        # The selection: a white halo under a black outline, readable on every colour of the map.
        self._outlines = [Lines(x=np.zeros((3, 5)), y=np.zeros((3, 5)), colors=[colour], stroke_width=width,
                                visible=False, scales=xy) for colour, width in (("white", 5), ("black", 2))]
        plot_px = int(round((n + 1 + GAP) * cell))
        margin = {"top": SIDE_MARGIN, "bottom": SIDE_MARGIN, "left": SIDE_MARGIN, "right": SIDE_MARGIN}
        self.figure = Figure(marks=[self.heatmap, self.row_strip, self.column_strip, *self._outlines], axes=[],
                             fig_margin=margin, padding_x=0.0, padding_y=0.0, min_aspect_ratio=0.01,
                             layout=widgets.Layout(width=f"{plot_px + 2 * SIDE_MARGIN}px",
                                                   height=f"{plot_px + 2 * SIDE_MARGIN}px", flex="0 0 auto"))
        self.figure.add_class("simviz-matrix-figure")
        # bqplot says when the mouse enters a cell, not when it leaves the matrix: ipyevents does.
        self._leave = Event(source=self.figure, watched_events=["mouseleave"])
        self._leave.on_dom_event(lambda _event: self.unhover())

        width = max(plot_px + 2 * SIDE_MARGIN, 360)
        name = html.escape(getattr(self.gallery.model, "name", "") or "the model")
        self.header = widgets.HTML(
            f"<div style='font-weight:bold;font-size:14px;line-height:19px'>Which images does {name} find alike?"
            f"</div><div style='font-size:12px;color:#444;line-height:16px'>Row image = query, column image = "
            "reference. Hover a cell for its score; click it to see why (pair viewer below); click a thumbnail "
            "to sort by similarity to it.</div>", layout=widgets.Layout(width=f"{width + READOUT_PX}px"))
        self.order_menu = widgets.Dropdown(options=[(ORDER_LABELS[o], o) for o in ORDERS], description="order",
                                           layout=widgets.Layout(width="260px"))
        self.anchor_menu = widgets.Dropdown(options=[(f"{k}: {nm}", k) for k, nm in enumerate(self.state.names)],
                                            description="similar to", layout=widgets.Layout(width="260px"))
        self.order_menu.observe(self._on_order_menu, "value")
        self.anchor_menu.observe(self._on_anchor_menu, "value")
        self.colorbar = ColourBar()
        lo, hi = self.state.colour_range
        self.colorbar.show(ColourScale(self.cmap + ("_r" if self.state.reversed_colours else ""), "minmax", lo, hi,
                                       self.state.colour_label()))
        self.caption = widgets.HTML(f"<div style='font-size:12px;color:#444;line-height:16px'>"
                                    f"{html.escape(self.state.caption())}</div>",
                                    layout=widgets.Layout(width=f"{max(width, WIDTH_PX + 140)}px"))
        self.readout = PairReadout(self._preview)
        self.status_label = widgets.HTML()
        self.viewer_title = widgets.HTML()
        self.viewer_box = widgets.VBox([self.viewer_title], layout=widgets.Layout(display="none"))
        self.children = [self.header, widgets.HBox([self.order_menu, self.anchor_menu]),
                         widgets.HBox([self.figure, self.readout], layout=widgets.Layout(align_items="flex-start")),
                         self.colorbar, self.caption, self.status_label, self.viewer_box]
        self.add_class("simviz-similarity-matrix")
        self._show_readout()

    # ------------------------------------------------------------------------------------------
    # public API

    @property
    def matrix(self) -> np.ndarray:
        """(N, N) float64 scores in gallery order (read-only): ``gallery.similarity_matrix()``."""
        return self.state.matrix

    @property
    def order(self) -> str:
        """The order's name ("cluster", "gallery", "similarity", or "custom" for a permutation
        given); settable with a name or a permutation of the gallery indices."""
        return self.state.order_name

    @order.setter
    def order(self, value) -> None:
        check_open(self._closed, "SimilarityMatrix")
        self.state.set_order(value)
        self._show_order()

    @property
    def indices(self) -> np.ndarray:
        """The gallery index shown at each position (top to bottom = left to right)."""
        return self.state.order.copy()

    @property
    def anchor(self) -> int:
        """The image the "similarity" order sorts by (setting it sorts by it)."""
        return self.state.anchor

    @anchor.setter
    def anchor(self, index: int) -> None:
        check_open(self._closed, "SimilarityMatrix")
        self.state.set_order("similarity", anchor=index)
        self._show_order()

    @property
    def selected(self) -> tuple[int, int] | None:
        """(query, reference) gallery indices of the pair opened last, or None."""
        return self.state.selected

    @property
    def hovered(self) -> tuple[int, int] | None:
        return self.state.hovered

    def colour_data(self) -> np.ndarray:
        """The heatmap's colour values as sent to the page (tests)."""
        return np.asarray(self.heatmap.color)

    def hover(self, row: int, col: int) -> None:
        """Show the pair (gallery indices) in the readout, as hovering its cell does."""
        check_open(self._closed, "SimilarityMatrix")
        pair = (self.state.as_index(row, "row"), self.state.as_index(col, "col"))
        if pair != self.state.hovered:  # the page sends a cell again when the mouse re-enters it
            self.state.hovered = pair
            self._show_readout()

    def unhover(self) -> None:
        """Back to the selected pair (or the hint) in the readout, as the mouse leaving the matrix does."""
        if not self._closed and self.state.hovered is not None:
            self.state.hovered = None
            self._show_readout()

    def select(self, row: int, col: int) -> PairViewer:
        """Open the pair (gallery indices: row image = query, column image = reference) in the pair
        viewer, as clicking its cell does; returns the viewer."""
        check_open(self._closed, "SimilarityMatrix")
        query, reference = self.state.select(row, col)
        images = self.state.pair_images(query, reference)
        if self.viewer is None:
            self.viewer = PairViewer(self.gallery.model, *images, **self._viewer_options)
            self.viewer_box.children = [self.viewer_title, self.viewer]
        else:
            self.viewer.set_pair(*images)
        names = self.state.names
        self.viewer_title.value = (
            f"<div style='font-size:13px;margin-top:6px'><b>{html.escape(names[query])}</b> (query, left) and "
            f"<b>{html.escape(names[reference])}</b> (reference, right): "
            f"{html.escape(score_text(self.state.score(query, reference), self.state.metric))}. Hover either "
            "image to see what it matches in the other.</div>")
        self.viewer_box.layout.display = None
        self._draw_selection()
        self._show_readout()
        return self.viewer

    def close(self) -> None:
        """Close the widget, its viewer (and its background job) and every bqplot part (a second
        call does nothing)."""
        if self._closed:
            return
        self._closed = True
        if self.viewer is not None:
            self.viewer.close()
        self._leave.close()
        strips = [self.row_strip.image, self.column_strip.image]
        close_figure(self.figure)
        for widget in strips:
            widget.close()
        for child in self.children:
            close_tree(child)  # the readout closes its own parts
        super().close()

    # ------------------------------------------------------------------------------------------
    # events (plain methods: tests drive them with the messages the page sends)

    def _cell_event(self, kind: str, content: dict) -> None:
        """A heatmap message: {"event": ..., "data": {"rowNum", "columnNum", ...}} (positions)."""
        if self._closed:
            return
        data = content.get("data") or {}
        try:
            query, reference = self.state.pair_at(int(data["rowNum"]), int(data["columnNum"]))
        except (KeyError, TypeError, ValueError):
            return  # not a cell (bqplot sends the datum of whatever the pointer is over)
        if kind == "hover":
            self.hover(query, reference)
            return
        if self.state.selected == (query, reference) and self.viewer is not None:
            return  # already on show: a second click does not explain it again
        try:
            self.select(query, reference)
            self.status_label.value = ""
        except Exception as error:  # noqa: BLE001 - shown in the widget: a callback's traceback is easily missed
            self.status_label.value = (f"<span style='color:#b00000'>could not open the pair: "
                                       f"{html.escape(f'{type(error).__name__}: {error}')}</span>")

    def _strip_event(self, which: str, content: dict) -> None:
        """A strip click: {"event": "element_click", "data": {"click_x", "click_y"}} in scale units."""
        if self._closed:
            return
        data = content.get("data") or {}
        value = data.get("click_y" if which == "row" else "click_x")
        if not isinstance(value, (int, float)) or not 0 <= value < self.state.n:
            return
        self.anchor = int(self.state.order[int(value)])

    def _on_order_menu(self, change) -> None:
        if not self._syncing and change["new"] != self.state.order_name:
            self.order = change["new"]

    def _on_anchor_menu(self, change) -> None:
        if not self._syncing and (change["new"] != self.state.anchor or self.state.order_name != "similarity"):
            self.anchor = change["new"]

    # ------------------------------------------------------------------------------------------
    # drawing

    def _thumb(self, index: int) -> np.ndarray:
        """Image ``index``'s strip thumbnail: framed in white like the heatmap's cells, so that
        neighbours in a strip are told apart (scenes on one grey background would merge)."""
        if index not in self._thumbs:
            thumb = np.array(self.gallery.thumbnail(index, self._thumb_px))
            thumb[[0, -1], :] = 255
            thumb[:, [0, -1]] = 255
            self._thumbs[index] = thumb
        return self._thumbs[index]

    def _preview(self, index: int) -> bytes:
        if index not in self._previews:
            self._previews[index] = png_bytes(self.gallery.thumbnail(index, PREVIEW_PX), compress_level=PNG_LEVEL)
        return self._previews[index]

    def _show_order(self) -> None:
        state = self.state
        thumbs = {int(i): self._thumb(int(i)) for i in state.order}
        with self.heatmap.hold_sync():
            self.heatmap.color = state.colour_data()
        for mark, vertical in ((self.row_strip, True), (self.column_strip, False)):
            # A new picture widget: bqplot's Image view redraws when the mark's image changes,
            # not when the picture's value does (a new value alone leaves the old order on show).
            old = mark.image
            mark.image = widgets.Image(value=png_bytes(state.strip(thumbs, self._thumb_px, vertical=vertical),
                                                       compress_level=PNG_LEVEL),
                                       format="png")
            old.close()
        self._syncing = True
        try:
            if state.order_name in ORDERS:
                self.order_menu.value = state.order_name
            self.anchor_menu.value = state.anchor
            self.anchor_menu.layout.display = None if state.order_name == "similarity" else "none"
        finally:
            self._syncing = False
        self._draw_selection()

    def _draw_selection(self) -> None:
        if self.state.selected is None:
            for lines in self._outlines:
                lines.visible = False
            return
        query, reference = self.state.selected
        row, col = self.state.position(query), self.state.position(reference)
        lo_edge = -(1.0 + GAP)
        boxes = [_box(col, col + 1, row, row + 1),  # the cell
                 _box(lo_edge, -GAP, row, row + 1),  # its row's thumbnail
                 _box(col, col + 1, lo_edge, -GAP)]  # its column's thumbnail
        for lines in self._outlines:
            with lines.hold_sync():
                lines.x = np.array([b[0] for b in boxes])
                lines.y = np.array([b[1] for b in boxes])
                lines.visible = True

    def _show_readout(self) -> None:
        self.readout.show(self.state)

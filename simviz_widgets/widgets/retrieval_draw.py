"""The retrieval explorer's drawing surfaces: the query canvas (photo, region, the hovered point of
the open pair) and the grid of results (thumbnail with its overlay, rank, rank change, name,
score). They draw what a :class:`~simviz_widgets.widgets.retrieval_state.RetrievalState` says and
decide nothing. Positions come in the query's display pixels (row, col) and go to canvas pixels here.
"""

from __future__ import annotations

import html
import math
from functools import partial

import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas
from ipyevents import Event

from ..render import overlay
from ..render.shade import luminance, outside_shade
from ..retrieval.labels import score_text
from ..web.png import png_bytes
from ._canvas import (
    batched_drawing,
    close_multicanvas,
    close_tree,
    display_size,
    event_pad,
    photo_rgba,
    pixel_to_canvas,
    resize_event_pad,
)
from .colorbar import ColourBar
from .markers import draw_crosshair
from .retrieval_state import ResultRow, change_text

__all__ = ["QueryCanvas", "ResultsGrid", "thumbnail_rgb", "grey_base", "RETRIEVAL_CSS", "PAD_CLASS", "CARD_CLASS",
           "OPEN_CLASS", "REGION_COLOUR"]

PHOTO, REGION, MARK = 0, 1, 2
LAYERS = 3
PAD_CLASS = "simviz-retrieval-query-pad"
CARD_CLASS = "simviz-retrieval-card"
OPEN_CLASS = "simviz-retrieval-open"
REGION_COLOUR = "#ffd400"  # outline of the region: yellow on a black halo reads on any photo
OPEN_BORDER = "#1f77b4"
GREY_RANGE = (70, 210)  # grey levels of a thumbnail under its overlay: neither black nor white
UP, DOWN, SAME = "#1a7f37", "#c62828", "#555"
RETRIEVAL_CSS = (
    f".{CARD_CLASS} {{ cursor: pointer; border-radius: 4px; }}\n"
    f".{CARD_CLASS}:hover {{ background: #f0f4fa; }}\n"
    f".{CARD_CLASS} .widget-html-content {{ line-height: 1.3; }}"
)


def grey_base(thumb: np.ndarray) -> np.ndarray:
    """The thumbnail in grey, its luminance squeezed into GREY_RANGE: a diverging map reads on any
    photo (on the colour photo a red map vanished into a red cup, from screenshots)."""
    lum = luminance(thumb)
    lo, hi = GREY_RANGE
    grey = np.rint(lo + (hi - lo) * lum / 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def thumbnail_rgb(thumb: np.ndarray, values: np.ndarray | None, scale, alpha: float) -> np.ndarray:
    """A result's thumbnail with its overlay on ``scale`` over its grey form (opacity following
    strength), or the plain colour thumbnail without an overlay."""
    if values is None or scale is None:
        return thumb
    return overlay(grey_base(thumb), values, alpha=alpha, cmap=scale.cmap, mode=scale.mode, vmin=scale.lo,
                   vmax=scale.hi, alpha_from_value=True)


class QueryCanvas:
    """The query's ``MultiCanvas`` (photo, region, mark layers) in an event pad; ``size``: canvas
    pixels of the longer side."""

    def __init__(self, size: int):
        self.size = size
        self.canvas = MultiCanvas(LAYERS, width=1, height=1)
        self.canvas[PHOTO].image_smoothing_enabled = False
        self.canvas[REGION].image_smoothing_enabled = False  # the region is in pixels: crisp edges
        self.canvas.add_class("simviz-retrieval-query-canvas")
        self.pad = event_pad(self.canvas, (1, 1), PAD_CLASS)
        self.image_size = self.canvas_size = (1, 1)
        self.photo: np.ndarray | None = None

    def set_query(self, display: np.ndarray) -> None:
        self.image_size = tuple(display.shape[:2])
        self.canvas_size = rows, cols = display_size(self.image_size, self.size)
        if (self.canvas.height, self.canvas.width) != (rows, cols):
            self.canvas.width, self.canvas.height = cols, rows
            resize_event_pad(self.pad, (rows, cols))
        self.photo = photo_rgba(display, self.canvas_size)

    def position(self, row: float, col: float) -> tuple[float, float]:
        """Canvas (y, x) of query display pixel (row, col)."""
        return pixel_to_canvas(row, col, self.canvas_size, self.image_size)

    def _edge(self, row: float, col: float) -> tuple[float, float]:
        """Canvas (x, y) of a pixel *edge* (row, col) (a box's corners are edges)."""
        return col * self.canvas_size[1] / self.image_size[1], row * self.canvas_size[0] / self.image_size[0]

    def redraw(self, shape, mark=None) -> None:
        with batched_drawing():
            if self.photo is not None:
                self.canvas[PHOTO].put_image_data(self.photo, 0, 0)
            self.draw_region(shape)
            self.draw_mark(mark)

    def draw_region(self, shape, *, preview: bool = False) -> None:
        """``shape``: None (whole image: nothing drawn), ``("box", box)`` or ``("mask", mask)``;
        outside dimmed, outline drawn (dashed while ``preview``: not searched yet)."""
        layer = self.canvas[REGION]
        with batched_drawing():
            layer.clear()
            if shape is None:
                return
            kind, value = shape
            if kind == "box":
                top, left, bottom, right = value
                mask = np.zeros(self.image_size, bool)
                mask[math.floor(top):math.ceil(bottom), math.floor(left):math.ceil(right)] = True
            else:
                mask = value
            rows, cols = self.image_size
            layer.set_transform(self.canvas_size[1] / cols, 0, 0, self.canvas_size[0] / rows, 0, 0)
            layer.put_image_data(outside_shade(mask), 0, 0)  # as the static figure dims it (render/shade.py)
            layer.reset_transform()
            layer.set_line_dash([6, 4] if preview else [])
            for width, colour in ((4.5, "black"), (2.0, REGION_COLOUR)):
                layer.line_width, layer.stroke_style = width, colour
                if kind == "box":
                    x0, y0 = self._edge(top, left)
                    x1, y1 = self._edge(bottom, right)
                    layer.stroke_rect(x0, y0, x1 - x0, y1 - y0)
                else:
                    for contour in self._contours(mask):
                        layer.stroke_lines(contour)
            layer.set_line_dash([])

    def _contours(self, mask: np.ndarray) -> list[list[tuple[float, float]]]:
        """Outlines of ``mask`` as canvas (x, y) polylines (closed along the image border)."""
        from skimage.measure import find_contours

        padded = np.pad(mask.astype(np.float32), 1)
        out = []
        for contour in find_contours(padded, 0.5):
            ys = (contour[:, 0] - 1 + 0.5) * self.canvas_size[0] / self.image_size[0]
            xs = (contour[:, 1] - 1 + 0.5) * self.canvas_size[1] / self.image_size[1]
            out.append(list(zip(xs.tolist(), ys.tolist())))
        return out

    def draw_mark(self, point) -> None:
        """The point hovered in the open pair's query (display (row, col)), or None."""
        layer = self.canvas[MARK]
        with batched_drawing():
            layer.clear()
            if point is not None:
                draw_crosshair(layer, *self.position(*point))

    def close(self) -> None:
        close_multicanvas(self.canvas, LAYERS)
        self.pad.close()


class ResultCard:
    """One result: rank and rank change, thumbnail (with its overlay once computed), name, score."""

    def __init__(self, thumb_size: int):
        text = widgets.Layout(width=f"{thumb_size + 8}px")  # wider than the thumbnail: "#10 new (was #14)"
        self.header = widgets.HTML(layout=text)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{thumb_size}px",
                                                                       height=f"{thumb_size}px"))
        self.caption = widgets.HTML(layout=text)
        self.box = widgets.VBox([self.header, self.image, self.caption],
                                layout=widgets.Layout(padding="4px", border="3px solid transparent"))
        self.box.add_class(CARD_CLASS)
        self.index: int | None = None

    def show(self, row: ResultRow | None, *, k: int, png: bytes | None, metric: str, whole: bool,
             computing: bool, is_open: bool) -> None:
        if row is None:
            self.index = None
            self.box.layout.display = "none"
            return
        self.index = row.index
        self.box.layout.display = None
        change = ""
        if not whole:  # against itself the whole-image query moves nothing: no "=" on every card
            colour = UP if row.change > 0 or row.new else DOWN if row.change < 0 else SAME
            text = html.escape(change_text(row, k))
            if row.new:  # "new" stands out, the old rank after it in plain type (fits the card)
                text = text.replace("new ", "new</b> <span style='font-weight:normal;font-size:11px'>") + "</span>"
            change = (f" <span style='color:{colour};font-size:12px' title='rank with the whole-image query: "
                      f"#{row.whole_rank + 1}'><b>{text}{'' if row.new else '</b>'}</span>")
        self.header.value = (f"<div style='white-space:nowrap;overflow:hidden;line-height:1.4'>"
                             f"<b style='font-size:14px'>#{row.rank + 1}</b>{change}</div>")
        if png is not None and self.image.value != png:
            self.image.value = png
        name = html.escape(row.name)
        hint = ("<br><i style='color:#777'>overlay: computing…</i>" if computing else
                "<br><b style='color:#1f77b4'>open below</b>" if is_open else "")
        width = self.header.layout.width
        self.caption.value = (f"<div style='line-height:1.35;font-size:12px;width:{width}'><div style='white-space:"
                              f"nowrap;overflow:hidden;text-overflow:ellipsis' title='{name}'>{name}</div>"
                              f"{html.escape(score_text(row.score, metric, region=not whole))}{hint}</div>")
        self.box.layout.border = f"3px solid {OPEN_BORDER if is_open else 'transparent'}"
        if is_open:
            self.box.add_class(OPEN_CLASS)
        else:
            self.box.remove_class(OPEN_CLASS)


class ResultsGrid:
    """``k`` result cards in a grid, the legend above them and the colour bar of their overlays
    below; ``on_click(rank)`` is called when a card is clicked."""

    def __init__(self, k: int, thumb_size: int, on_click):
        self.thumb_size = thumb_size
        self.cards = [ResultCard(thumb_size) for _ in range(k)]
        columns = k if k <= 5 else min(5, math.ceil(k / 2))
        self.grid = widgets.GridBox([card.box for card in self.cards], layout=widgets.Layout(
            grid_template_columns=f"repeat({columns}, {thumb_size + 24}px)", grid_gap="6px 6px"))
        self.legend = widgets.HTML(layout=widgets.Layout(width=f"{columns * (thumb_size + 30)}px"))
        self.colorbar = ColourBar()
        self.events = []
        for rank, card in enumerate(self.cards):
            event = Event(source=card.box, watched_events=["click"])
            event.on_dom_event(partial(lambda rank, _event: on_click(rank), rank))
            self.events.append(event)
        self.box = widgets.VBox([self.legend, self.grid, self.colorbar])
        self._pngs: dict = {}

    def show(self, state, thumbs: dict, *, alpha: float, cmap: str | None, overlays: bool = True) -> None:
        """Every card as the state says (thumbnails from ``thumbs``: gallery index -> RGB; without
        ``overlays``, the plain colour thumbnails)."""
        scale = state.colour_scale(cmap) if overlays else None
        pending = set(state.missing())
        metric, whole, open_rank = state.gallery.model.metric, state.region is None, state.open_rank()
        pngs = {}
        for rank, card in enumerate(self.cards):
            row = state.rows[rank] if rank < len(state.rows) else None
            png = None
            if row is not None:
                values = state.overlay(row.index) if overlays else None
                key = (row.index, None if values is None else (values.tobytes(), scale, alpha))
                png = self._pngs.get(key) or png_bytes(  # fast beats small at 112 px
                    thumbnail_rgb(thumbs[row.index], values, scale, alpha), compress_level=1)
                pngs[key] = png
            card.show(row, k=len(self.cards), png=png, metric=metric, whole=whole,
                      computing=overlays and row is not None and row.index in pending, is_open=rank == open_rank)
        self._pngs = pngs  # only what is on show: the cache never grows
        title, meaning = state.legend_text()
        self.legend.value = (f"<div style='line-height:1.4'><b>{html.escape(title)}</b><br><span style='font-size:12px;"
                             f"color:#444'>{html.escape(meaning)}</span></div>")
        if scale is None:
            self.colorbar.layout.visibility = "hidden"
        else:
            self.colorbar.layout.visibility = "visible"
            self.colorbar.show(scale)

    def close(self) -> None:
        for event in self.events:
            event.close()
        close_tree(self.box)

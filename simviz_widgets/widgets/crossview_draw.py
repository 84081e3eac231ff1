"""The cross-view explorer's drawing surfaces: a canvas over both images for the match lines, the
hover line, the pins' lines and the shared-content overlay; the alignment canvas; the legend.
They draw what a :class:`~simviz_widgets.widgets.crossview_state.CrossViewState` says and decide
nothing. Positions come in display pixels (row, col) of each image and go to canvas pixels here.

The line canvas lies over the pair viewer's two event pads, above their browser hover layers (so a
hovered point's map never hides the lines), and takes no pointer events: the mouse reaches the pads
and hover layers underneath as before.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas

from ..explain.base import SIDES
from ..geometry import GEOMETRY_KINDS
from ..render import upsample_bilinear
from ._canvas import batched_drawing, canvas_style, close_multicanvas, passive_canvas, photo_rgba, pixel_to_canvas
from ._charts import wrap_text
from .crossview_state import HOVER, INLIER, LINE_CMAP, OUTLIER, OUTLIER_COLOUR, PIN, PLAIN, Line, line_colour
from .hover_layer import LAYER_CSS
from .markers import draw_label

__all__ = ["LineCanvas", "AlignmentCanvas", "CrossViewLayout", "legend_html", "shared_overlay", "CROSSVIEW_CSS",
           "GAP_PX", "LINES_CLASS", "STACK_CLASS", "ALIGNMENT_CLASS"]

LINES_CLASS = "simviz-crossview-lines"
STACK_CLASS = "simviz-crossview-stack"
ALIGNMENT_CLASS = "simviz-crossview-alignment"
GAP_PX = 28  # between the two images: the lines cross it
SHARED, MATCHES, POINTER = 0, 1, 2
LAYERS = 3
DIM_WHILE_HOVERING = 0.35  # match lines fade while a point is hovered: its own line stands out
SHARED_COLOUR = "#00e5ff"
SHARED_DIM = 0.6  # darkness laid over what the pair does not share...
SHARED_LIT = (0.2, 0.6)  # ...fading out between these shares of the pair's strongest sharing
CROSSVIEW_CSS = (
    f".{STACK_CLASS} {{ position: relative; isolation: isolate; overflow: visible; }}\n"
    f".{STACK_CLASS} > .{LINES_CLASS} {{ position: absolute !important; top: 0; left: 0; z-index: 2; }}\n"
    f".{LINES_CLASS}, .{LINES_CLASS} * {{ pointer-events: none !important; }}"
)
# (halo width, line width, dash) per style; the halo is black, under the line.
STYLES = {INLIER: (5.0, 2.5, []), PLAIN: (5.0, 2.5, []), OUTLIER: (3.5, 1.5, [6, 4]),
          HOVER: (6.0, 3.0, []), PIN: (5.5, 3.0, [])}


def _halo_line(layer, a, b, colour: str, style: str) -> None:
    halo, width, dash = STYLES[style]
    layer.set_line_dash(dash)
    layer.line_width, layer.stroke_style = halo, "black"
    layer.stroke_line(*a, *b)
    layer.line_width, layer.stroke_style = width, colour
    layer.stroke_line(*a, *b)


def _dot(layer, x: float, y: float, colour: str, radius: float) -> None:
    layer.fill_style = "black"
    layer.fill_circle(x, y, radius + 1.5)
    layer.fill_style = colour
    layer.fill_circle(x, y, radius)


class LineCanvas:
    """A ``MultiCanvas`` over both images (query at x = 0, reference after a gap of ``GAP_PX``),
    layers: shared-content overlay, match lines, pointer (hover line, pins' lines)."""

    def __init__(self, geometry: dict):
        self.canvas = passive_canvas(MultiCanvas(LAYERS, width=1, height=1))
        self.canvas.add_class(LINES_CLASS)
        self.canvas[SHARED].image_smoothing_enabled = True
        self.resize(geometry)

    def resize(self, geometry: dict) -> None:
        """Fit the canvas to the images' canvases (``geometry``: HoverLogic.geometry)."""
        self.geometry = geometry
        q_rows, q_cols = geometry["query"].canvas
        r_rows, r_cols = geometry["reference"].canvas
        self.offsets = {"query": 0.0, "reference": float(q_cols + GAP_PX)}
        width, height = q_cols + GAP_PX + r_cols, max(q_rows, r_rows)
        if (self.canvas.width, self.canvas.height) != (width, height):
            self.canvas.width, self.canvas.height = width, height
        self.canvas.layout.width, self.canvas.layout.height = f"{width}px", f"{height}px"

    def position(self, side: str, row: float, col: float) -> tuple[float, float]:
        """Canvas (x, y) of display pixel (row, col) of ``side``."""
        g = self.geometry[side]
        y, x = pixel_to_canvas(row, col, g.canvas, g.image)
        return x + self.offsets[side], y

    def _ends(self, line: Line):
        return self.position("query", *line.query), self.position("reference", *line.reference)

    def draw_lines(self, lines: list[Line], *, dim: bool = False) -> None:
        """The match lines, in the order given (the state puts the strongest inliers last, on top)."""
        layer = self.canvas[MATCHES]
        with batched_drawing():
            layer.clear()
            layer.global_alpha = DIM_WHILE_HOVERING if dim else 1.0
            for line in lines:
                a, b = self._ends(line)
                _halo_line(layer, a, b, line.colour, line.style)
            for line in lines:  # end dots over every line: where each match starts and lands
                radius = 2.0 if line.style == OUTLIER else 3.0
                for x, y in self._ends(line):
                    _dot(layer, x, y, line.colour, radius)
            layer.global_alpha = 1.0

    def draw_pointer(self, hover: Line | None, hovered_side: str | None, pins: list[Line],
                     predicted: tuple[float, float] | None) -> None:
        """The pins' lines, then the hovered point's line to its best match (a dot where the mouse
        is, a ring at the match) and, if given, a cross where the fit sends the point."""
        layer = self.canvas[POINTER]
        with batched_drawing():
            layer.clear()
            for line in pins:  # the viewer marks the pin and its match; this joins them
                _halo_line(layer, *self._ends(line), line.colour, PIN)
            if hover is None:
                return
            a, b = self._ends(hover)
            here, there = (a, b) if hovered_side == "query" else (b, a)
            segments = [[here, there]]
            if predicted is not None:  # a cross
                x, y = self.position("reference", *predicted)
                segments += [[(x - 6, y - 6), (x + 6, y + 6)], [(x - 6, y + 6), (x + 6, y - 6)]]
            segments = np.array(segments, dtype=float)
            layer.set_line_dash([])
            # one dark pass under one light pass: a single outlined shape, few property sets per hover
            halo, width = STYLES[HOVER][:2]
            for line_width, colour, dot in ((halo, "black", 5.0), (width, hover.colour, 3.5)):
                layer.line_width, layer.stroke_style, layer.fill_style = line_width, colour, colour
                layer.stroke_line_segments(segments)
                layer.stroke_circle(*there, 8.0)
                layer.fill_circle(*here, dot)

    def draw_shared(self, overlay: dict | None, *, dimmed: bool) -> None:
        """The shared-content overlay (:func:`shared_overlay`): what the pair does not share darkened
        (``dimmed``: at rest only, so a hovered point's map is not darkened) and the shared
        regions outlined."""
        layer = self.canvas[SHARED]
        with batched_drawing():
            layer.clear()
            if not overlay:
                return
            for side, (shade, contours) in overlay.items():
                g = self.geometry[side]
                if dimmed:
                    rows, cols = shade.shape[:2]
                    layer.set_transform(g.canvas[1] / cols, 0, 0, g.canvas[0] / rows, self.offsets[side], 0)
                    layer.put_image_data(shade, 0, 0)
                    layer.reset_transform()
                for width, colour in ((4.5, "black"), (2.0, SHARED_COLOUR)):
                    layer.set_line_dash([])
                    layer.line_width, layer.stroke_style = width, colour
                    for contour in contours:
                        points = [self.position(side, r, c) for r, c in contour]
                        layer.stroke_lines(points)

    def clear(self) -> None:
        with batched_drawing():
            for index in range(LAYERS):
                self.canvas[index].clear()

    def close(self) -> None:
        close_multicanvas(self.canvas, LAYERS)


def shared_overlay(maps: dict[str, np.ndarray] | None, sizes: dict[str, tuple[int, int]], *,
                   level: float = 0.5, max_side: int = 64) -> dict | None:
    """For each side's shared-content map: (RGBA shade darkening what the pair does not share: fully
    below SHARED_LIT[0] of the strongest sharing, not at all above SHARED_LIT[1]; at most ``max_side``
    px a side; contours (lists of display (row, col)) of the
    regions at ``level`` of the pair's strongest sharing). Both images on one scale; negative
    values count as not shared."""
    if not maps:
        return None
    from skimage.measure import find_contours

    peak = max(float(np.max(np.maximum(m, 0.0))) for m in maps.values())
    out = {}
    for side in SIDES:
        if side not in maps:
            continue
        values = np.clip(maps[side] / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(maps[side])
        h, w = values.shape
        factor = max(1, max_side // max(h, w))
        small = upsample_bilinear(values, (h * factor, w * factor))
        shade = np.zeros((*small.shape, 4), np.uint8)
        lit = np.clip((small - SHARED_LIT[0]) / (SHARED_LIT[1] - SHARED_LIT[0]), 0.0, 1.0)
        shade[..., 3] = np.rint(255 * SHARED_DIM * (1.0 - lit)).astype(np.uint8)
        rows, cols = sizes[side]
        fine = upsample_bilinear(values, (min(rows, 16 * h), min(cols, 16 * w)))  # smooth outlines
        padded = np.pad(fine, 1)  # closed outlines along the image border
        scale = (rows / fine.shape[0], cols / fine.shape[1])
        contours = [[((r - 1 + 0.5) * scale[0] - 0.5, (c - 1 + 0.5) * scale[1] - 0.5) for r, c in contour]
                    for contour in find_contours(padded, level) if len(contour) >= 4]
        out[side] = (shade, contours)
    return out


class AlignmentCanvas:
    """The alignment check: the blended image in the reference frame (photo layer) and the warped
    query's outline (frame layer), at the reference's canvas size."""

    def __init__(self, canvas_size: tuple[int, int]):
        self.canvas = passive_canvas(MultiCanvas(2, width=canvas_size[1], height=canvas_size[0]))
        self.canvas.add_class(ALIGNMENT_CLASS)
        self.canvas[0].image_smoothing_enabled = False
        self.resize(canvas_size)

    def resize(self, canvas_size: tuple[int, int]) -> None:
        rows, cols = canvas_size
        if (self.canvas.height, self.canvas.width) != (rows, cols):
            self.canvas.width, self.canvas.height = cols, rows
        self.canvas.layout.width, self.canvas.layout.height = f"{cols}px", f"{rows}px"
        self.size = (rows, cols)

    def draw(self, image: np.ndarray, frame: np.ndarray | None, note: str | None = None) -> None:
        """``image``: display-size reference-frame image; ``frame``: (4, 2) display (row, col) of the
        warped query's corners, or None; ``note``: a label across the top (e.g. no transform)."""
        rows, cols = self.size
        photo, layer = self.canvas[0], self.canvas[1]
        with batched_drawing():
            photo.put_image_data(photo_rgba(image, self.size), 0, 0)
            layer.clear()
            if frame is not None:
                points = [(x, y) for y, x in (pixel_to_canvas(r, c, self.size, image.shape[:2]) for r, c in frame)]
                for width, colour, dash in ((4.0, "black", []), (2.0, "white", [7, 5])):
                    layer.set_line_dash(dash)
                    layer.line_width, layer.stroke_style = width, colour
                    layer.stroke_polygon(points)
                layer.set_line_dash([])
            if note:
                draw_label(layer, wrap_text(note, cols - 16, 12), canvas_cols=cols, font_px=12)

    def close(self) -> None:
        close_multicanvas(self.canvas, 2)


def _sample(colour: str, width: float, halo: float, dash: str = "") -> str:
    dash_attr = f" stroke-dasharray='{dash}'" if dash else ""
    return (f"<svg width='44' height='14' style='vertical-align:middle'>"
            f"<line x1='3' y1='7' x2='41' y2='7' stroke='black' stroke-width='{halo}'{dash_attr}/>"
            f"<line x1='3' y1='7' x2='41' y2='7' stroke='{colour}' stroke-width='{width}'{dash_attr}/></svg>")


def legend_html(strength_range: tuple[float, float], reading: str, *, shared: str | None = None) -> str:
    """What the colours and line styles mean (the same colour function as the lines)."""
    stops = ", ".join(f"{line_colour(k / 16)} {100 * k / 16:.1f}%" for k in range(17))
    lo, hi = strength_range
    meaning = ("cosine of the two positions' contributions" if reading == "correspondence"
               else "what the pair of positions adds to the score")
    rows = [
        f"<div><b>match lines</b>, coloured by strength ({reading}: {meaning}; {LINE_CMAP})</div>",
        f"<div>{lo:.2f} <span class='simviz-crossview-gradient' style='display:inline-block;width:180px;"
        f"height:11px;vertical-align:middle;border:1px solid #777;background:linear-gradient(to right, {stops})'>"
        f"</span> {hi:.2f} &nbsp; weak → strong</div>",
        f"<div>{_sample(line_colour(0.8), 2.5, 5)} inlier: agrees with the fitted transform &nbsp; "
        f"{_sample(OUTLIER_COLOUR, 1.5, 3.5, '6 4')} outlier: does not</div>",
        f"<div>{_sample('white', 3, 6)} hovered point → its best match (◯); × where the fit puts it</div>",
    ]
    if shared:
        rows.append(f"<div>{_sample(SHARED_COLOUR, 2, 4.5)} {shared}</div>")
    return "<div class='simviz-crossview-legend' style='font-size:12px;color:#333;line-height:1.6'>" + \
        "".join(rows) + "</div>"


class CrossViewLayout:
    """The explorer's widgets: the line canvas over the viewer's two event pads (mounted in place of
    the viewer's own row of images: its titles and style are replaced, the pads stay the viewer's),
    the alignment canvas with its blend slider, the readout, hover line, legend, controls and status
    (``bottom``: everything under the viewer)."""

    def __init__(self, viewer, *, kind: str, blend: float, shared_method: str):
        self.viewer = viewer
        geometry = viewer.logic.geometry
        self.lines = LineCanvas(geometry)
        self.alignment = AlignmentCanvas(geometry["reference"].canvas)
        self._mount(viewer)
        self.lines_slider = widgets.IntSlider(value=0, min=0, max=1, description="lines",
                                              layout=widgets.Layout(width="250px"))
        self.kind_dropdown = widgets.Dropdown(options=list(GEOMETRY_KINDS), value=kind, description="geometry",
                                              layout=widgets.Layout(width="210px"))
        self.shared_toggle = widgets.ToggleButton(value=False, description="shared content", icon="eye",
                                                  tooltip=f"outline what the pair shares ({shared_method})")
        self.blend_slider = widgets.FloatSlider(value=blend, min=0.0, max=1.0, step=0.05, description="blend",
                                                readout_format=".2f", layout=widgets.Layout(width="320px"))
        self.blend_slider.add_class("simviz-crossview-blend")
        self.readout = widgets.HTML(layout=widgets.Layout(min_height="4.5em"))
        self.readout.add_class("simviz-crossview-readout")
        self.hover_label = widgets.HTML(layout=widgets.Layout(min_height="3em"))
        self.legend = widgets.HTML()
        self.status_label = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        small = "<span style='font-size:12px;color:#333'>"
        alignment_box = widgets.VBox([
            widgets.HTML(f"<b>check alignment</b><br>{small}the query warped onto the reference by the fit "
                         "(dashed: its outline)</span>"),
            self.alignment.canvas, self.blend_slider,
            widgets.HTML(f"{small}blend 0 = reference · 1 = warped query</span>"),
        ], layout=widgets.Layout(margin="0 24px 0 0"))
        side = widgets.VBox([self.readout, self.hover_label, self.legend,
                             widgets.HBox([self.lines_slider, self.kind_dropdown, self.shared_toggle]),
                             self.status_label], layout=widgets.Layout(max_width="640px"))
        self.bottom = widgets.HBox([alignment_box, side], layout=widgets.Layout(margin="12px 0 0 0"))
        self.syncing = False  # True while the lines slider is set from the state
        self._shared = (None, None)  # (the state's shared maps, their overlay): outlines traced once

    def _mount(self, viewer) -> None:
        pads = viewer.drawing.pads
        old = next(child for child in viewer.children if _holds(child, pads["query"]))
        self.titles = [widgets.HTML("<b>query</b>"), widgets.HTML("<b>reference</b>")]
        gaps = [widgets.Box(layout=widgets.Layout(width=f"{GAP_PX}px", flex="0 0 auto")) for _ in range(2)]
        row = widgets.HBox([pads["query"], gaps[0], pads["reference"]], layout=widgets.Layout(align_items="flex-start"))
        self.stack = widgets.Box([row, self.lines.canvas])
        self.stack.add_class(STACK_CLASS)
        style = canvas_style("\n".join([LAYER_CSS, viewer.live_css(), CROSSVIEW_CSS]))
        images = widgets.VBox([widgets.HBox([self.titles[0], gaps[1], self.titles[1]]), self.stack, style])
        viewer.children = tuple(images if child is old else child for child in viewer.children)
        for box in old.children:  # the old titles, boxes and style; never the pads
            for child in getattr(box, "children", ()):
                if child not in pads.values():
                    child.close()
            box.close()
        old.close()
        self.resize()

    def resize(self) -> None:
        """Follow the viewer's canvases (a new pair may have other image sizes)."""
        geometry = self.viewer.logic.geometry
        (q_rows, q_cols), (r_rows, r_cols) = geometry["query"].canvas, geometry["reference"].canvas
        self.titles[0].layout.width = f"{q_cols}px"
        self.stack.layout.width = f"{q_cols + GAP_PX + r_cols}px"
        self.stack.layout.height = f"{max(q_rows, r_rows)}px"
        self.lines.resize(geometry)
        self.alignment.resize(geometry["reference"].canvas)


    # -- what the state says, drawn -----------------------------------------------------------------
    def draw_matches(self, state) -> None:
        self.lines.draw_lines(state.lines(), dim=state.hovered is not None)

    def draw_pointer(self, state) -> None:
        side = None if state.hovered is None else state.hovered[0]
        self.lines.draw_pointer(state.hover_line, side, state.pin_lines(), state.predicted())

    def draw_shared(self, state, *, shown: bool) -> None:
        if shown and state.shared is not None and self._shared[0] is not state.shared:
            sizes = {side: state.explanation.size(side) for side in SIDES}
            self._shared = (state.shared, shared_overlay(state.shared, sizes))
        overlay = self._shared[1] if shown and state.shared is not None else None
        self.lines.draw_shared(overlay, dimmed=state.hovered is None)

    def draw_alignment(self, state) -> None:
        image, _valid = state.alignment_image()
        self.alignment.draw(image, state.warped_frame(), state.alignment_note())

    def show_legend(self, state, shared_method: str | None) -> None:
        shared = None if shared_method is None or state.shared is None else (
            f"outlined and lit: what the pair shares ({shared_method}); dimmed: not shared")
        self.legend.value = legend_html(state.strength_range, state.reading, shared=shared)

    def show_hover_text(self, state) -> None:
        self.hover_label.value = f"<div style='font-size:13px;line-height:1.5'>{html.escape(state.hover_text())}</div>"

    def sync_lines_slider(self, state) -> None:
        total = 0 if state.matches is None else len(state.matches)
        self.syncing = True
        try:
            self.lines_slider.max = max(total, 1)
            self.lines_slider.value = state.n_shown
            self.lines_slider.disabled = total == 0
        finally:
            self.syncing = False


def _holds(widget, target) -> bool:
    """Whether ``target`` is ``widget`` or inside it."""
    return widget is target or any(_holds(child, target) for child in getattr(widget, "children", ()))

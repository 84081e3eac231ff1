"""Helpers shared by the canvas widgets: display geometry, browser events -> image pixels, photos
and map overlays as RGBA for ``put_image_data``, and markers.

Coordinates: image pixels are (row, col) of the *display* image of a PairExplanation, pixel centres
at integers; canvas positions are (y, x) in canvas pixels, edges at 0 and the canvas size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import contextmanager, nullcontext

import ipywidgets as widgets
import numpy as np

from ..checks import check_choice, check_colormap, check_float, check_instance, check_int
from ..explain.base import READINGS, PairExplanation
from ..render import map_to_rgba, normalize_map, upsample_bilinear
from ..web.display import composite_png, display_size, photo_rgba
from .state import HoverState

__all__ = [
    "DEFAULT_ALPHA",
    "PASSIVE_CANVAS_CLASS",
    "passive_canvas",
    "event_pad",
    "resize_event_pad",
    "canvas_style",
    "close_tree",
    "close_multicanvas",
    "batched_drawing",
    "single_thread_blas",
    "display_size",
    "photo_rgba",
    "finite_number",
    "event_to_pixel",
    "pixel_to_canvas",
    "overlay_shape",
    "overlay_rgba",
    "value_at_pixel",
    "composite_png",
]

MIN_SIZE = 16
#: "browser": point maps drawn by js/ in the page; "kernel": every hover a kernel round trip.
HOVER_MODES = ("browser", "kernel")
#: Peak opacity of every map the widgets draw. Opacity also follows each cell's strength
#: (``alpha_from_value``): the strongest cells are vivid and weak ones let the photo through.
#: Chosen from screenshots: at a flat 0.5 a diverging map tinted the whole photo (a "red wash")
#: and a sequential one darkened it, hiding the strongest cells.
DEFAULT_ALPHA = 0.8

# ipycanvas's own browser view sends *every* mousemove over a canvas to the kernel, unthrottled, as a
# shell message of its own (measured: one per move, queued ahead of the viewer's throttled
# ipyevents message, adding a kernel busy/idle cycle to each hover). Our canvases take no pointer
# events; the mouse is read from a box of the same size around them ("event pad") instead.
PASSIVE_CANVAS_CLASS = "simviz-passive-canvas"
EVENT_PAD_CLASS = "simviz-event-pad"
_CANVAS_CSS = (
    f".{PASSIVE_CANVAS_CLASS} {{ pointer-events: none; }}\n"
    f".{EVENT_PAD_CLASS} {{ padding: 0; border: 0; overflow: hidden; cursor: crosshair; }}\n"
    f".{EVENT_PAD_CLASS} > .{PASSIVE_CANVAS_CLASS} {{ display: block; width: 100%; height: 100%; }}"
)


def passive_canvas(canvas):
    """Mark an ipycanvas canvas so the browser sends it no mouse events (see PASSIVE_CANVAS_CLASS)."""
    canvas.add_class(PASSIVE_CANVAS_CLASS)
    return canvas


def event_pad(canvas, canvas_size: tuple[int, int], name: str):
    """A box exactly the canvas's size holding the (passive) canvas: the element ipyevents watches.

    The canvas fills the box, so event positions relative to the box map to the canvas as before
    (``event_to_pixel`` rescales by the box's rendered size)."""
    pad = widgets.Box([passive_canvas(canvas)])
    pad.add_class(EVENT_PAD_CLASS)
    pad.add_class(name)
    resize_event_pad(pad, canvas_size)
    return pad


def resize_event_pad(pad, canvas_size: tuple[int, int]) -> None:
    rows, cols = canvas_size
    pad.layout.width, pad.layout.height = f"{cols}px", f"{rows}px"
    pad.layout.flex = "0 0 auto"


def canvas_style(extra_css: str = ""):
    """A hidden HTML widget carrying the CSS above (and ``extra_css``); include it once in any widget
    tree with canvases."""
    return widgets.HTML(f"<style>{_CANVAS_CSS}\n{extra_css}</style>", layout=widgets.Layout(display="none"))


@contextmanager
def batched_drawing():
    """Like ``ipycanvas.hold_canvas()``: every draw command inside goes out in one message. Unlike
    it, safe on errors (hold_canvas would leave ipycanvas caching, for every canvas, forever) and
    nestable (only the outermost block sends)."""
    from ipycanvas import canvas as ipycanvas_canvas
    from ipycanvas import hold_canvas

    manager = getattr(ipycanvas_canvas, "_CANVAS_MANAGER", None)
    if manager is None or not hasattr(manager, "_caching"):  # another ipycanvas version
        with hold_canvas():
            yield
        return
    outer = manager._caching
    manager._caching = True
    try:
        yield
    finally:
        if not outer:
            try:
                manager.flush()
            finally:
                manager._caching = False


def close_tree(widget) -> None:
    """Close a widget and every widget inside it (boxes close only themselves)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def close_multicanvas(canvas, layers: int) -> None:
    """Close a ``MultiCanvas`` and its ``layers`` layers (closing it alone leaves them in the kernel)."""
    for index in range(layers):
        canvas[index].close()
    canvas.close()


_BLAS_CONTROLLER = None


def single_thread_blas():
    """Context: numpy's BLAS on one thread. A hover's product (one row of D, N x K) is too small
    to gain from threads, and waking OpenBLAS's sleeping threads between hovers costs milliseconds
    on a busy machine (measured: p50 0.3 -> 9 ms per row at 28x28 cells, K = 1280). Uses
    threadpoolctl (installed with scikit-learn); without it, a no-op."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
        except Exception:  # not installed, or a platform it cannot inspect
            _BLAS_CONTROLLER = False
    if _BLAS_CONTROLLER is False:
        return nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


#: How the widgets check what they are given (constructor arguments and traits), by name: every
#: check is one of :mod:`simviz_widgets.checks`, so a widget says "alpha=1.5 must be in [0, 1]" the
#: same way as the rest of the package. ``size``: display pixels of the longer side.
CHECKS = {
    "cmap": lambda value: check_colormap(value, "cmap", optional=True),
    "alpha": lambda value: check_float(value, "alpha", minimum=0.0, maximum=1.0),
    "size": lambda value: check_int(value, "size", minimum=MIN_SIZE),
    "reading": lambda value: check_choice(value, "reading", READINGS),
    "hover": lambda value: check_choice(value, "hover", HOVER_MODES),
    "explanation": lambda value: check_instance(
        value, "explanation", PairExplanation,
        "PairExplanation (from simviz_widgets.explain(model, query, reference))"),
    "state": lambda value: HoverState() if value is None else check_instance(value, "state", HoverState,
                                                                             "HoverState or None"),
}


def finite_number(value) -> float | None:
    """``value`` as a finite float, or None for anything else (bools, strings, NaN, None...)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def event_to_pixel(event, canvas_size: tuple[int, int], image_size: tuple[int, int]):
    """An ipyevents mouse event -> image pixel (row, col), or None if it is unusable.

    ipyevents gives ``relativeX``/``relativeY`` in CSS pixels from the element's top-left corner and
    the element's ``boundingRectWidth``/``boundingRectHeight``; CSS may scale the canvas, so
    positions are rescaled to the canvas's own width/height first. A point at canvas position x
    (edges 0 .. W_canvas) lies at image column ``x * W / W_canvas - 0.5`` (pixel centres at
    integers). Missing keys, non-numbers, NaN and points outside the canvas give None.
    """
    if not isinstance(event, Mapping):
        return None
    x = finite_number(event.get("relativeX"))
    y = finite_number(event.get("relativeY"))
    if x is None or y is None:
        return None
    canvas_rows, canvas_cols = canvas_size
    box_w = finite_number(event.get("boundingRectWidth"))
    box_h = finite_number(event.get("boundingRectHeight"))
    if box_w is not None and box_w > 0:
        x = x * canvas_cols / box_w
    if box_h is not None and box_h > 0:
        y = y * canvas_rows / box_h
    if not (0.0 <= x <= canvas_cols and 0.0 <= y <= canvas_rows):
        return None
    rows, cols = image_size
    row = min(max(y * rows / canvas_rows - 0.5, -0.5), rows - 0.5)
    col = min(max(x * cols / canvas_cols - 0.5, -0.5), cols - 0.5)
    return row, col


def pixel_to_canvas(row, col, canvas_size, image_size) -> tuple[float, float]:
    """Image pixel (row, col) -> canvas position (y, x); inverse of :func:`event_to_pixel`."""
    canvas_rows, canvas_cols = canvas_size
    rows, cols = image_size
    return (float(row) + 0.5) * canvas_rows / rows, (float(col) + 0.5) * canvas_cols / cols


def overlay_shape(map_shape: tuple[int, int], canvas_size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """Size of the overlay image sent for a (h, w) map: upsampled by the largest whole factor that
    keeps its longer side <= ``max_side`` (at least 1, at most the canvas); None: the canvas size."""
    if max_side is None:
        return tuple(canvas_size)
    h, w = map_shape
    factor = max(1, int(max_side) // max(h, w))
    return max(h, min(h * factor, canvas_size[0])), max(w, min(w * factor, canvas_size[1]))


def overlay_rgba(values: np.ndarray, *, cmap: str, mode: str, alpha: float,
                 canvas_size: tuple[int, int], max_side: int | None,
                 vmin: float | None = None, vmax: float | None = None,
                 alpha_from_value: bool = False) -> np.ndarray:
    """Colour a feature-resolution map for the overlay layer, as small as ``max_side`` allows.

    The map is upsampled bilinearly in *value* space to :func:`overlay_shape` before colouring and
    the canvas smooths the rest (interpolating colours, not values). Limits come from the raw map
    (bilinear values stay inside [min, max]), so every size shows the same colour scale.
    """
    _, lo, hi = normalize_map(values, mode=mode, vmin=vmin, vmax=vmax)
    target = overlay_shape(values.shape, canvas_size, max_side)
    if target != values.shape:
        values = upsample_bilinear(values, target)
    return map_to_rgba(values, cmap=cmap, mode=mode, vmin=lo, vmax=hi, alpha=alpha,
                       alpha_from_value=alpha_from_value)


def value_at_pixel(values: np.ndarray, image_size: tuple[int, int], row: float, col: float) -> float:
    """A map's bilinear value at image pixel (row, col) (half-pixel centres, edges clamped)."""
    h, w = values.shape
    rows, cols = image_size
    u = min(max((row + 0.5) * h / rows - 0.5, 0.0), h - 1.0)
    v = min(max((col + 0.5) * w / cols - 0.5, 0.0), w - 1.0)
    r0, c0 = int(math.floor(u)), int(math.floor(v))
    r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
    fr, fc = u - r0, v - c0
    return float(
        (1 - fr) * ((1 - fc) * values[r0, c0] + fc * values[r0, c1])
        + fr * ((1 - fc) * values[r1, c0] + fc * values[r1, c1])
    )


def nearest_cell(values_shape, image_size, row: float, col: float) -> tuple[int, int]:
    """The cell of a (h, w) grid whose area holds image pixel (row, col)."""
    h, w = values_shape
    rows, cols = image_size
    r = int(min(max(math.floor((row + 0.5) * h / rows), 0), h - 1))
    c = int(min(max(math.floor((col + 0.5) * w / cols), 0), w - 1))
    return r, c

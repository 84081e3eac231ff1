"""Drawing a query region with the mouse, without any widget: a box (drag) or a brush (paint, or
erase, discs of ``brush_size`` display pixels).

:class:`RegionTool` turns the query canvas's mouse events into what the retrieval explorer does:
``("preview", shape)`` while a drag or stroke is under way (the canvas draws it, nothing is
searched) and ``("commit", region)`` when the mouse is released or leaves the canvas. Shapes and
regions are in the query's *display* pixels (row, col; pixel centres at integers): a box is
``(top, left, bottom, right)`` with bottom/right exclusive, a mask is a bool (rows, cols) array.

>>> tool = RegionTool((64, 64))
>>> tool.press(10.2, 5.0)
('box', (10, 5, 11, 6))
>>> tool.release(30.0, 40.4)
('box', (10, 5, 31, 41))
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..checks import InputError, check_choice, check_int, check_shape2
from ._canvas import event_to_pixel, finite_number

__all__ = ["RegionTool", "TOOLS", "default_brush_size"]

#: box: drag a rectangle; brush: paint discs into the region; eraser: paint them out of it.
TOOLS = ("box", "brush", "eraser")


def default_brush_size(image_size: tuple[int, int]) -> int:
    """A brush radius of about 1/24 of the image's longer side (9 px at 224, 3 px at 64)."""
    return max(1, round(max(image_size) / 24))


class RegionTool:
    """The box / brush / eraser tool of a query canvas (see the module docstring).

    ``image_size``: the query's display (rows, cols). ``tool``: one of :data:`TOOLS`.
    ``brush_size``: brush and eraser radius in display pixels (None: :func:`default_brush_size`).
    """

    def __init__(self, image_size, *, tool: str = "box", brush_size: int | None = None):
        self.image_size = check_shape2(image_size, "image_size")
        self.tool = tool
        self.brush_size = default_brush_size(self.image_size) if brush_size is None else brush_size
        self._stroke: dict | None = None
        self._latest_stamp = -math.inf

    @property
    def tool(self) -> str:
        return self._tool

    @tool.setter
    def tool(self, value) -> None:
        self._tool = check_choice(value, "tool", TOOLS)
        self._stroke = None  # a stroke of the previous tool is dropped, never committed by another

    @property
    def brush_size(self) -> int:
        return self._brush_size

    @brush_size.setter
    def brush_size(self, value) -> None:
        self._brush_size = check_int(value, "brush_size", minimum=1, maximum=max(self.image_size))

    @property
    def active(self) -> bool:
        """Whether a drag or stroke is under way."""
        return self._stroke is not None

    def resize(self, image_size) -> None:
        """A new query: its display size; any stroke is dropped."""
        self.image_size = check_shape2(image_size, "image_size")
        self._brush_size = min(self._brush_size, max(self.image_size))
        self._stroke = None

    # -- strokes -----------------------------------------------------------------------------------
    def press(self, row: float, col: float, base: np.ndarray | None = None):
        """Start a drag (box) or stroke (brush, eraser) at display point (row, col). ``base``: the
        current region as a mask (a stroke adds to or erases from it; None: the whole image, which
        a brush replaces and an eraser cuts into). Returns the preview shape."""
        if self.tool == "box":
            self._stroke = {"start": (row, col), "end": (row, col)}
        else:
            if base is None:
                mask = np.full(self.image_size, self.tool == "eraser")
            else:
                mask = np.array(base, dtype=bool, copy=True)
            self._stroke = {"last": (row, col), "mask": mask}
            self._paint(row, col)
        return self.preview()

    def move(self, row: float, col: float):
        """The mouse moved to (row, col) with the button down; the new preview (None: no stroke)."""
        if self._stroke is None:
            return None
        if self.tool == "box":
            self._stroke["end"] = (row, col)
        else:
            self._paint(row, col)
        return self.preview()

    def release(self, row: float | None = None, col: float | None = None):
        """End the stroke (at (row, col) if given): the region to search, ``("box", box)`` or
        ``("mask", mask)``; ``("empty", None)`` when an eraser left no pixel; None when there was
        no stroke or a box drag did not leave its pixel (a click)."""
        if self._stroke is None:
            return None
        if row is not None and col is not None:
            self.move(row, col)
        shape, self._stroke = self.preview_of(self._stroke), None
        if shape[0] == "box":
            top, left, bottom, right = shape[1]
            return None if bottom - top <= 1 and right - left <= 1 else shape  # a click, not a drag
        return shape if shape[1].any() else ("empty", None)

    def cancel(self) -> None:
        self._stroke = None

    def preview(self):
        """What the stroke under way would commit: ``("box", box)`` or ``("mask", mask)``, or None."""
        return None if self._stroke is None else self.preview_of(self._stroke)

    def preview_of(self, stroke: dict):
        if self.tool != "box":
            return ("mask", stroke["mask"])
        (r0, c0), (r1, c1) = stroke["start"], stroke["end"]
        rows, cols = self.image_size
        top, bottom = _pixel(min(r0, r1), rows), _pixel(max(r0, r1), rows) + 1
        left, right = _pixel(min(c0, c1), cols), _pixel(max(c0, c1), cols) + 1
        return ("box", (top, left, bottom, right))

    def _paint(self, row: float, col: float) -> None:
        """A disc at (row, col) and along the segment from the last point (fast moves leave no gaps)."""
        mask, (r0, c0) = self._stroke["mask"], self._stroke["last"]
        radius = float(self.brush_size)
        steps = max(1, math.ceil(math.hypot(row - r0, col - c0) / max(0.5, radius / 2)))
        value = self.tool == "brush"
        rows, cols = self.image_size
        for t in np.linspace(0.0, 1.0, steps + 1):
            r, c = r0 + t * (row - r0), c0 + t * (col - c0)
            top, bottom = max(0, math.floor(r - radius)), min(rows, math.ceil(r + radius) + 1)
            left, right = max(0, math.floor(c - radius)), min(cols, math.ceil(c + radius) + 1)
            if top >= bottom or left >= right:
                continue
            rr, cc = np.ogrid[top:bottom, left:right]
            mask[top:bottom, left:right][(rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2] = value
        self._stroke["last"] = (row, col)

    # -- events ------------------------------------------------------------------------------------
    def handle(self, event, canvas_size: tuple[int, int], base: np.ndarray | None = None):
        """Apply one ipyevents event dict (mousedown, mousemove, mouseup, mouseleave): returns
        ``("preview", shape)``, ``("commit", region)`` (region as :meth:`release` gives it) or None
        (ignored: not a dict, another event, a move without a stroke, a point off the canvas, an
        event older than one already handled)."""
        if not isinstance(event, Mapping):
            return None
        kind = event.get("type")
        stamp = finite_number(event.get("timeStamp"))
        if stamp is not None:
            if stamp < self._latest_stamp:
                return None  # e.g. a trailing throttled move sent after the press or release that followed it
            self._latest_stamp = stamp
        if kind == "mouseleave":  # the button may come up outside: the stroke ends where it left
            region = self.release()
            return None if region is None else ("commit", region)
        if kind not in ("mousedown", "mousemove", "mouseup"):
            return None
        pixel = event_to_pixel(event, canvas_size, self.image_size)
        if kind == "mousedown":
            if pixel is None or event.get("button", 0) != 0:
                return None  # only the main button draws
            return ("preview", self.press(*pixel, base))
        if kind == "mousemove":
            if self._stroke is not None and event.get("buttons", 1) == 0:  # released where we did not see it
                region = self.release()
                return None if region is None else ("commit", region)
            shape = None if pixel is None else self.move(*pixel)
            return None if shape is None else ("preview", shape)
        region = self.release(*(pixel or (None, None)))
        return None if region is None else ("commit", region)


def _pixel(coordinate: float, n: int) -> int:
    """The pixel (0 .. n - 1) whose area holds a display coordinate (centres at integers)."""
    if not math.isfinite(coordinate):
        raise InputError(f"coordinate {coordinate!r} is not a finite number")
    return min(max(math.floor(coordinate + 0.5), 0), n - 1)

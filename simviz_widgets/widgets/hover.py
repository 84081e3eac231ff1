"""What hovering and clicking mean, without any widget: the viewer's logic as a plain class.

:class:`HoverLogic` knows the explanation on show, each image's display and canvas sizes, the
reading and the shared :class:`~simviz_widgets.widgets.state.HoverState` (hovered point, pins). It
turns browser mouse events into actions (hover / leave / pin) — dropping events older than one
already handled and coalescing a burst of moves to the newest — and answers what a view draws:
the point map under the mouse, its peak, the colour scale and what its values mean, each pin's
contribution and best match. A script or a test drives it directly; the pair viewer draws what it
says.

>>> import numpy as np
>>> from simviz_widgets.explain.base import PairExplanation, PointToPoint
>>> g = np.eye(4, dtype=np.float32)
>>> p2p = PointToPoint(g, g, 1.0, (2, 2), (2, 2))
>>> photo = np.zeros((20, 20, 3), np.uint8)
>>> exp = PairExplanation("decomposition", 4.0, photo, photo, np.ones((2, 2)), np.ones((2, 2)), True,
...                       point_to_point=p2p, completeness_error=0.0)
>>> logic = HoverLogic(exp, canvas_size=20)
>>> logic.handle("query", {"type": "mousemove", "relativeX": 15.0, "relativeY": 4.0})
('hover', 'query', 3.5, 14.5)
>>> logic.peak
('reference', 4.5, 14.5)
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Callable, NamedTuple

import numpy as np

from .. import checks
from ..explain.base import SIDES, PairExplanation, other_side
from ..render.figure import cell_centre_pixels
from ..web.scales import CORRESPONDENCE_CMAP, ColourScale, overall_scale, point_scale
from ._canvas import CHECKS, display_size, event_to_pixel, finite_number, single_thread_blas, value_at_pixel
from .state import HoverState, Pin

__all__ = ["HoverLogic", "Geometry", "ColourScale", "CORRESPONDENCE_CMAP"]

class Geometry(NamedTuple):
    """One image's sizes: display image (rows, cols) and canvas (rows, cols)."""

    image: tuple[int, int]
    canvas: tuple[int, int]


class HoverLogic:
    """Hover, pin and reading logic of a pair viewer (no widgets; see the module docstring).

    ``canvas_size``: display pixels of each image's longer side. ``state``: the HoverState shared
    with panels. ``cmap``: one matplotlib colormap for every map, or None for the defaults.
    """

    def __init__(self, explanation: PairExplanation, *, canvas_size: int = 320, state: HoverState | None = None,
                 reading: str = "contribution", cmap: str | None = None):
        self.state = CHECKS["state"](state)
        self.canvas_size = CHECKS["size"](canvas_size)
        self.reading = CHECKS["reading"](reading)
        self.cmap = CHECKS["cmap"](cmap)
        self.hovered: tuple[str, float, float] | None = None
        self.point_values: np.ndarray | None = None  # the map the hovered point draws (or None)
        self.peak: tuple[str, float, float] | None = None  # (side, row, col) where that map peaks
        self._latest_stamp = {side: -math.inf for side in SIDES}
        self._pending: dict[str, Mapping] = {}
        self.explanation: PairExplanation | None = None
        self.set_explanation(explanation)

    # -- explanation -----------------------------------------------------------------------------
    def set_explanation(self, explanation: PairExplanation) -> None:
        """Show ``explanation``: the hovered point goes; pins (image pixels) stay only if both
        images keep their sizes."""
        CHECKS["explanation"](explanation)
        old = self.explanation
        if old is not None and any(old.size(s) != explanation.size(s) for s in SIDES):
            self.state.clear_pins()
        self.explanation = explanation
        self.peak = None
        self.geometry = {side: Geometry(explanation.size(side), display_size(explanation.size(side), self.canvas_size))
                         for side in SIDES}
        self.hovered, self.point_values = None, None
        if self.state.hovered is not None:
            self.state.hovered = None  # a point of the previous pair: panels must not keep showing it
        self._overall = overall_scale(explanation)
        self.overall_limits = (self._overall.lo, self._overall.hi)

    @property
    def overall_mode(self) -> str:
        return "symmetric" if self.explanation.signed else "minmax"

    @property
    def has_point_maps(self) -> bool:
        return self.explanation.point_to_point is not None

    # -- points ------------------------------------------------------------------------------------
    def check_pixel(self, side, row, col) -> tuple[str, float, float]:
        """(side, row, col) checked: a side of the pair and a display pixel inside its image."""
        side = checks.check_choice(side, "source", SIDES)
        return (side, *checks.check_pixel(row, col, self.geometry[side].image, side))

    def inside(self, side: str, row: float, col: float) -> bool:
        rows, cols = self.geometry[side].image
        return -0.5 <= row <= rows - 0.5 and -0.5 <= col <= cols - 0.5

    def point_map(self, side: str, row: float, col: float, *, reading: str | None = None) -> np.ndarray | None:
        """The map over the other image for display pixel (row, col) of ``side`` (None for
        methods without a point-to-point part)."""
        side, row, col = self.check_pixel(side, row, col)
        if not self.has_point_maps:
            return None
        with single_thread_blas():
            return self.explanation.point_map(side, row, col, reading=reading or self.reading)

    def contribution(self, side: str, row: float, col: float) -> float:
        """What image point (row, col) adds to the score: the sum of its row of D (the overall
        map's bilinear value there for methods without a point-to-point part)."""
        side, row, col = self.check_pixel(side, row, col)
        if self.has_point_maps:
            values = self.point_map(side, row, col, reading="contribution")
            return float(np.sum(values, dtype=np.float64))
        return value_at_pixel(self.explanation.map(side), self.geometry[side].image, row, col)

    def peak_of(self, side: str, values: np.ndarray) -> tuple[float, float]:
        """Display pixel (row, col) on ``side`` of the centre of the cell where ``values`` (a map
        over ``side``'s grid) is largest."""
        cell = np.unravel_index(int(np.argmax(values)), values.shape)
        return cell_centre_pixels(cell[0], cell[1], values.shape, self.geometry[side].image)

    def _set_point(self, values: np.ndarray | None) -> None:
        """The hovered point's map and its peak (computed once per hover: drawn and named)."""
        self.point_values = values
        self.peak = None
        if values is not None:
            side = other_side(self.hovered[0])
            self.peak = (side, *self.peak_of(side, values))

    def best_match(self, pin: Pin) -> tuple[float, float] | None:
        """Display pixel (row, col) on the other image where the pin's map peaks."""
        if not self.has_point_maps or not self.inside(pin.source, pin.row, pin.col):
            return None  # overall maps only, or a pin from another pair (shared state set elsewhere)
        return self.peak_of(other_side(pin.source), self.point_map(pin.source, pin.row, pin.col))

    # -- colour ------------------------------------------------------------------------------------
    def scale(self, values: np.ndarray | None = None, *, point: bool = False) -> ColourScale:
        """The colour scale of a point map (``point=True``: per map) or of the overall maps (both
        images on one scale, so their colours compare); see :mod:`simviz_widgets.web.scales`."""
        if point:
            return point_scale(values, self.reading, self.cmap)
        return self._overall._replace(cmap=self.cmap or self._overall.cmap)

    # -- events ------------------------------------------------------------------------------------
    def handle(self, side: str, event) -> tuple | None:
        """Apply one ipyevents event dict: returns the action taken — ``('hover', side, row, col)``,
        ``('leave', side)``, ``('pin', side, row, col)`` — or None when it is ignored (not a dict,
        unknown type, missing or non-finite coordinates, outside the image, older than an event
        already handled, a leave of an image not hovered)."""
        checks.check_choice(side, "side", SIDES)
        if not isinstance(event, Mapping):
            return None
        kind = event.get("type")
        if kind not in ("mousemove", "mouseleave", "click"):
            return None
        stamp = finite_number(event.get("timeStamp"))
        if stamp is not None:
            if stamp < self._latest_stamp[side]:
                return None  # e.g. a trailing throttled move arriving after its leave
            self._latest_stamp[side] = stamp
        if kind == "mouseleave":
            if self.hovered is None or self.hovered[0] != side:
                return None
            self.leave()
            return ("leave", side)
        geometry = self.geometry[side]
        pixel = event_to_pixel(event, geometry.canvas, geometry.image)
        if pixel is None:
            return None
        if kind == "mousemove":
            self.hover(side, *pixel)
            return ("hover", side, *pixel)
        self.state.add_pin(side, *pixel)
        return ("pin", side, *pixel)

    def receive(self, side: str, event, apply: Callable[[str, Mapping], object]) -> None:
        """Pass a browser event to ``apply(side, event)``, coalescing moves: moves that arrive
        before the kernel's event loop turns are applied once, newest per image; a leave drops
        its image's pending move (that move came first). Without a running loop, at once."""
        if not isinstance(event, Mapping) or event.get("type") != "mousemove":
            if isinstance(event, Mapping) and event.get("type") == "mouseleave":
                self._pending.pop(side, None)
            apply(side, event)
            return
        first = not self._pending
        self._pending[side] = event
        if not first:
            return  # a flush is already scheduled
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush(apply)
            return
        loop.call_soon(self._flush, apply)

    def _flush(self, apply) -> None:
        pending, self._pending = list(self._pending.items()), {}
        for side, event in pending:
            apply(side, event)

    def reset_event_order(self) -> None:
        self._latest_stamp = {side: -math.inf for side in SIDES}

    def hover(self, side: str, row: float, col: float) -> np.ndarray | None:
        side, row, col = self.check_pixel(side, row, col)
        self.hovered = (side, row, col)
        self._set_point(self.point_map(side, row, col))
        self.state.hovered = self.hovered
        return self.point_values

    def leave(self) -> None:
        self.hovered, self.point_values, self.peak = None, None, None
        self.state.hovered = None

    def refresh_point(self) -> None:
        """Recompute the hovered point's map (after a change of reading)."""
        if self.hovered is not None:
            self._set_point(self.point_map(*self.hovered))

    # -- text --------------------------------------------------------------------------------------
    def status_text(self) -> str:
        if self.hovered is None:
            return ""
        side, row, col = self.hovered
        text = f"{side} pixel ({row:.0f}, {col:.0f})"
        values = self.point_values
        if values is None:
            return text + f" · method {self.explanation.method!r} gives overall maps only"
        if self.reading == "contribution":
            text += f" · adds {float(np.sum(values, dtype=np.float64)):+.4g} to the score"
        _, peak_row, peak_col = self.peak
        return text + f" · best match in the {other_side(side)} at ({peak_row:.0f}, {peak_col:.0f}) (marked ◇)"

    def pin_lines(self) -> list[tuple[Pin, float, str]]:
        """(pin, contribution, share-of-score text) for each pin inside this pair's images."""
        exp = self.explanation
        lines = []
        for pin in self.state.pins:
            if not self.inside(pin.source, pin.row, pin.col):
                continue
            value = self.contribution(pin.source, pin.row, pin.col)
            # a share of the score only where the maps split it (a decomposition), not for relevance maps
            share = (f" ({100.0 * value / exp.score:.1f} % of the score)"
                     if exp.sums_to_score and abs(exp.score) > 1e-12 else "")
            lines.append((pin, value, share))
        return lines

    def score_html(self) -> str:
        exp = self.explanation
        text = f"<b>{exp.metric} similarity</b> {exp.score:.4f}"
        if exp.metric == "euclidean" and exp.score <= 0:  # similarity = -distance²: say the distance too
            text += f" (distance {(-exp.score) ** 0.5:.3f})"
        text += f" &nbsp;·&nbsp; method <code>{exp.method}</code>"
        if exp.completeness_error is not None:
            text += f" &nbsp;·&nbsp; completeness error {exp.completeness_error:.1e}"
        return text

    def pins_html(self) -> str:
        if not self.state.pins:
            return "<i>click a point to pin it</i>"
        return "<br>".join(
            f"<span style='display:inline-block;width:0.9em;height:0.9em;border:1px solid black;"
            f"background:{pin.colour};vertical-align:middle'></span> {pin.source} "
            f"({pin.row:.0f}, {pin.col:.0f}): <b>{value:+.4f}</b>{share}"
            for pin, value, share in self.pin_lines()
        )

"""The hover/pin state one viewer and its panels share.

A :class:`HoverState` is a small observable object: the point under the mouse (or None) and the
pinned points. The viewer writes it; panels observe it (``state.observe(callback, "hovered")``).
Values are immutable (tuples), so every change is a new value and observers always fire.

>>> state = HoverState()
>>> pin = state.add_pin("query", 10, 20)
>>> pin.source, pin.row, pin.col, pin.colour == PIN_COLOURS[0]
('query', 10.0, 20.0, True)
"""

from __future__ import annotations

from typing import NamedTuple

import traitlets

from ..checks import check_choice, check_float, check_int
from ..explain.base import SIDES
from ..render.figure import POINT_COLOURS

__all__ = ["HoverState", "Pin", "PIN_COLOURS", "SOURCES"]

SOURCES = SIDES  # one vocabulary: explain.base.SIDES
# The static figure numbers its points with these colours; pins use the same ones, so a pinned
# viewer and its figure agree. One colour per pin keeps pins distinct: their count is capped.
PIN_COLOURS = tuple(POINT_COLOURS)


class Pin(NamedTuple):
    """A pinned image point: ``source`` image ('query' | 'reference'), display pixel (row, col)."""

    source: str
    row: float
    col: float
    colour: str


def check_point(source, row, col) -> tuple[str, float, float]:
    """A (source, row, col) point: ``source`` one of :data:`SOURCES`, finite float coordinates."""
    source = check_choice(source, "source", SOURCES)
    return source, check_float(row, f"{source} row"), check_float(col, f"{source} col")


class HoverState(traitlets.HasTraits):
    """Hovered point and pins, shared by a viewer and its panels.

    ``hovered``: None or ``(source, row, col)`` in display-image pixels of ``source``.
    ``pins``: tuple of :class:`Pin`, oldest first, at most :attr:`max_pins` (adding one more drops
    the oldest), each with its own colour from :data:`PIN_COLOURS`.
    """

    hovered = traitlets.Any(None, allow_none=True)
    pins = traitlets.Tuple()

    max_pins = len(PIN_COLOURS)

    def hover(self, source, row, col) -> None:
        self.hovered = check_point(source, row, col)

    def unhover(self) -> None:
        self.hovered = None

    def add_pin(self, source, row, col) -> Pin:
        source, row, col = check_point(source, row, col)
        kept = tuple(self.pins)[-(self.max_pins - 1):] if self.max_pins > 1 else ()
        used = {p.colour for p in kept}
        colour = next(c for c in PIN_COLOURS if c not in used)
        pin = Pin(source, row, col, colour)
        self.pins = kept + (pin,)
        return pin

    def remove_pin(self, index: int) -> Pin:
        pins = list(self.pins)
        if not -len(pins) <= check_int(index, "pin index") < len(pins):
            raise IndexError(f"pin index {index!r} is out of range; there are {len(pins)} pins")
        removed = pins.pop(index)
        self.pins = tuple(pins)
        return removed

    def clear_pins(self) -> None:
        self.pins = ()

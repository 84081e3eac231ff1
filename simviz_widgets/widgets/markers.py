"""Markers drawn on ipycanvas layers: pins, their best matches, the hovered point, the peak of a
point map, and text labels ("n/a"). Positions are canvas (y, x)."""

from __future__ import annotations

import numpy as np

__all__ = ["draw_pin", "draw_match", "draw_crosshair", "draw_peak", "draw_label"]


def _stroke_ring(layer, y, x, radius, colour, width):
    layer.line_width = width + 2.0
    layer.stroke_style = "black"
    layer.stroke_circle(x, y, radius)
    layer.line_width = width
    layer.stroke_style = colour
    layer.stroke_circle(x, y, radius)


def draw_pin(layer, y: float, x: float, colour: str, radius: float = 6.0) -> None:
    """A filled dot with a black edge: a pinned point."""
    layer.fill_style = "black"
    layer.fill_circle(x, y, radius + 1.5)
    layer.fill_style = colour
    layer.fill_circle(x, y, radius)


def draw_match(layer, y: float, x: float, colour: str, radius: float = 9.0) -> None:
    """A ring: where a pin on the other image matches best."""
    _stroke_ring(layer, y, x, radius, colour, 2.5)


def draw_crosshair(layer, y: float, x: float, radius: float = 8.0) -> None:
    """The hovered point: a white cross with a black outline and a gap at the centre."""
    segments = np.array(
        [
            [[x - 2 * radius, y], [x - 0.4 * radius, y]],
            [[x + 0.4 * radius, y], [x + 2 * radius, y]],
            [[x, y - 2 * radius], [x, y - 0.4 * radius]],
            [[x, y + 0.4 * radius], [x, y + 2 * radius]],
        ]
    )
    layer.line_width = 4.0
    layer.stroke_style = "black"
    layer.stroke_line_segments(segments)
    layer.line_width = 2.0
    layer.stroke_style = "white"
    layer.stroke_line_segments(segments)


def draw_peak(layer, y: float, x: float, radius: float = 8.0) -> None:
    """A diamond, white inside a black outline: where the hovered point's map peaks."""
    points = [(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)]
    layer.line_width = 5.0
    layer.stroke_style = "black"
    layer.stroke_polygon(points)
    layer.line_width = 2.5
    layer.stroke_style = "white"
    layer.stroke_polygon(points)


def draw_label(layer, lines: list[str], *, canvas_cols: int, font_px: int = 12) -> None:
    """White text on a dark box across the top of a canvas (e.g. "n/a — rise has no reference map"),
    one row per line (wrap with ``_charts.wrap_text`` to the canvas width first)."""
    line_height = font_px + 5
    layer.fill_style = "rgba(30, 30, 30, 0.82)"
    layer.fill_rect(4, 4, canvas_cols - 8, line_height * len(lines) + 8)
    layer.fill_style = "white"
    layer.font = f"{font_px}px sans-serif"
    layer.text_align = "left"
    layer.text_baseline = "middle"
    for k, line in enumerate(lines):
        layer.fill_text(line, 10, 8 + line_height * (k + 0.5))

"""The viewer's colour bar: a caption saying what the values mean, the colormap as a CSS gradient,
and its limits. Split into small widgets so that a hover, which changes only the limits, sends two
short strings (the gradient is re-sent only when the colormap changes).

>>> from simviz_widgets.widgets.hover import ColourScale
>>> bar = ColourBar()
>>> bar.show(ColourScale("RdBu_r", "symmetric", -0.5, 0.5, "contribution"))
>>> "linear-gradient" in bar.text, bar.low.value, bar.middle.value
(True, '−0.5', '0')
"""

from __future__ import annotations

import html as html_lib
from functools import lru_cache

import ipywidgets as widgets

from ..render import colormap_lut

__all__ = ["ColourBar", "gradient_css", "COLORBAR_CLASS", "GRADIENT_CLASS"]

COLORBAR_CLASS = "simviz-colorbar"
GRADIENT_CLASS = "simviz-colorbar-gradient"
STOPS = 17
WIDTH_PX = 240


@lru_cache(maxsize=64)
def gradient_css(cmap: str, stops: int = STOPS) -> str:
    """``linear-gradient(to right, ...)`` through ``stops`` evenly spaced colours of ``cmap``
    (opaque: the bar shows the colours at full strength)."""
    lut = colormap_lut(cmap)
    parts = []
    for k in range(stops):
        r, g, b = (int(v) for v in lut[round(k * 255 / (stops - 1)), :3])
        parts.append(f"rgb({r},{g},{b}) {100 * k / (stops - 1):.1f}%")
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def format_limit(value: float) -> str:
    return f"{value:.3g}".replace("-", "−")  # a real minus sign: readable at small sizes


class ColourBar(widgets.VBox):
    """Caption, then ``low`` [gradient] ``high`` (``middle``: "0" under the centre of a symmetric
    scale) and the colormap's name."""

    def __init__(self):
        small = {"font_size": "12px"}
        self.caption = widgets.HTML(style=small)
        self.low = widgets.Label(layout=widgets.Layout(min_width="4em", justify_content="flex-end"), style=small)
        self.high = widgets.Label(layout=widgets.Layout(min_width="4em"), style=small)
        self.gradient = widgets.HTML(layout=widgets.Layout(width=f"{WIDTH_PX}px"))
        self.middle = widgets.Label(layout=widgets.Layout(width=f"{WIDTH_PX}px", justify_content="center",
                                                          margin="-6px 0 0 0"), style=small)
        self.name = widgets.Label(style=small)
        bar = widgets.HBox([self.low, widgets.VBox([self.gradient, self.middle]), self.high, self.name],
                           layout=widgets.Layout(align_items="flex-start"))
        super().__init__([self.caption, bar])
        self.add_class(COLORBAR_CLASS)
        self._cmap = None

    def show(self, scale) -> None:
        """Show ``scale`` (a :class:`~simviz_widgets.widgets.hover.ColourScale`); unchanged parts
        send nothing."""
        if scale.cmap != self._cmap:
            self._cmap = scale.cmap
            self.gradient.value = (f"<div class='{GRADIENT_CLASS}' style='height:12px;margin-top:4px;"
                                   f"border:1px solid #777;background:{gradient_css(scale.cmap)}'></div>")
            self.name.value = f"({scale.cmap})"
        self.caption.value = f"<span style='color:#333'>{html_lib.escape(scale.meaning)}</span>"
        self.low.value, self.high.value = format_limit(scale.lo), format_limit(scale.hi)
        self.middle.value = "0" if scale.mode == "symmetric" else ""

    @property
    def text(self) -> str:
        """Everything the bar shows, as one string (for tests and logs)."""
        return " ".join([self.caption.value, self.low.value, self.gradient.value, self.middle.value,
                         self.high.value, self.name.value])

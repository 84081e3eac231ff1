"""The viewer's colour bar as HTML: a CSS gradient of the colormap, its limits, and a caption
saying what the values mean. Pure string building (tested without a browser).

>>> from simviz_widgets.widgets.hover import ColourScale
>>> html = colorbar_html(ColourScale("RdBu_r", "symmetric", -0.5, 0.5, "contribution"))
>>> "linear-gradient" in html, "−0.5" in html, ">0<" in html
(True, True, True)
"""

from __future__ import annotations

import html as html_lib
from functools import lru_cache

from ..render import colormap_lut

__all__ = ["colorbar_html", "gradient_css", "COLORBAR_CLASS", "GRADIENT_CLASS"]

COLORBAR_CLASS = "simviz-colorbar"
GRADIENT_CLASS = "simviz-colorbar-gradient"
STOPS = 17


@lru_cache(maxsize=64)
def gradient_css(cmap: str, stops: int = STOPS) -> str:
    """``linear-gradient(to right, ...)`` through ``stops`` evenly spaced colours of ``cmap``
    (opaque: the bar shows the colours at full strength)."""
    lut = colormap_lut(cmap)
    parts = []
    for k in range(stops):
        index = round(k * 255 / (stops - 1))
        r, g, b = (int(v) for v in lut[index, :3])
        parts.append(f"rgb({r},{g},{b}) {100 * k / (stops - 1):.1f}%")
    return "linear-gradient(to right, " + ", ".join(parts) + ")"


def _number(value: float) -> str:
    text = f"{value:.3g}"
    return text.replace("-", "−")  # a real minus sign: readable at small sizes


def colorbar_html(scale, *, width: int = 240) -> str:
    """The colour bar of ``scale`` (a :class:`~simviz_widgets.widgets.hover.ColourScale`)."""
    ticks = [_number(scale.lo), _number(scale.hi)]
    middle = "<span style='position:absolute;left:50%;transform:translateX(-50%)'>0</span>" \
        if scale.mode == "symmetric" else ""
    return (
        f"<div style='font-size:12px;line-height:1.3'>"
        f"<div style='color:#333'>{html_lib.escape(scale.meaning)}</div>"
        f"<div style='display:flex;align-items:center;gap:6px;margin-top:2px'>"
        f"<span style='min-width:3.5em;text-align:right'>{ticks[0]}</span>"
        f"<div style='position:relative;width:{width}px'>"
        f"<div class='{GRADIENT_CLASS}' style='height:12px;border:1px solid #777;background:{gradient_css(scale.cmap)}'></div>"
        f"<div style='position:relative;height:1.2em;color:#555'>{middle}</div></div>"
        f"<span style='min-width:3.5em'>{ticks[1]}</span>"
        f"<span style='color:#777'>({html_lib.escape(scale.cmap)})</span>"
        f"</div></div>"
    )

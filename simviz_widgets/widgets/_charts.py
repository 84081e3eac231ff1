"""Plain functions behind the panels' charts: what to draw, as data (no widgets, no browser).

The overall panel's "how the score splits over cells" chart, its note when a method's maps are not
shares of the score, and the "n/a" label of a side without a map; the attribute panel's stacked
bars (one colour per ranking component), row highlight and HTML legend; axis ticks and margins
that fit. Everything here but :func:`close_figure` is unit-tested without a widget.
"""

from __future__ import annotations

import html
import math

import numpy as np

from ..explain.base import SIDES, PairExplanation

__all__ = [
    "COMPONENTS",
    "COMPONENT_COLOURS",
    "SIDE_COLOURS",
    "SCORE_COLOUR",
    "LEGEND_CLASS",
    "SWATCH_CLASS",
    "cumulative_curve",
    "curve_points",
    "split_note",
    "missing_map_label",
    "wrap_text",
    "nice_ticks",
    "text_width",
    "bar_data",
    "stacked_range",
    "row_opacities",
    "legend_entries",
    "legend_html",
    "category_margin",
    "shorten",
    "sides_with_maps",
    "close_figure",
]

#: The ranking components of :mod:`simviz_widgets.attributes.ranking`, stacked in this order.
COMPONENTS = ("confidence", "agreement", "prior")
#: One colour per component (Okabe-Ito blue, orange, bluish green: distinct for colour-blind
#: readers too), the same in every row.
COMPONENT_COLOURS = {"confidence": "#0072B2", "agreement": "#E69F00", "prior": "#009E73"}
#: The score-split chart's curve per side, and its dashed score line.
SIDE_COLOURS = {"query": "#1f77b4", "reference": "#ff7f0e"}
SCORE_COLOUR = "#555555"

LEGEND_CLASS = "simviz-attribute-legend"
SWATCH_CLASS = "simviz-swatch"

# Average glyph width of sans-serif text, as a fraction of the font size (for layout estimates).
_GLYPH = 0.6
#: Font size of "n/a" labels drawn on canvases (viewer and overall panel).
NA_FONT_PX = 12


# ------------------------------------------------------------------------------------------------
# overall panel


def cumulative_curve(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A map's cells sorted by value (largest first) and summed: (rank of each cell in row-major
    order, fraction of cells 0..1 (N + 1 points), running sum (N + 1 points, starting at 0))."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    running = np.concatenate([[0.0], np.cumsum(flat[order])])
    fractions = np.arange(order.size + 1, dtype=np.float64) / max(order.size, 1)
    return rank, fractions, running


def curve_points(fractions: np.ndarray, running: np.ndarray, max_points: int = 1024):
    """At most ``max_points`` points of a cumulative curve for the chart, first and last kept (a
    chart a few hundred pixels wide shows no more; RISE's maps have one cell per pixel)."""
    n = len(fractions)
    if n <= max_points:
        return fractions, running
    keep = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.intp))
    return fractions[keep], running[keep]


def _method_label(explanation: PairExplanation) -> str:
    attribute = explanation.info.get("attribute") if isinstance(explanation.info, dict) else None
    return f"attribute {attribute!r}" if attribute else explanation.method


def split_note(explanation: PairExplanation) -> str | None:
    """None when the maps sum to the score (the split chart means something), else one line saying
    why there is no chart."""
    if explanation.sums_to_score:
        return None
    if isinstance(explanation.info, dict) and explanation.info.get("attribute"):
        what = "attribute activations"
    else:
        what = "saliency"
    return f"{_method_label(explanation)}'s maps are {what}, not shares of the score: no split to show"


def missing_map_label(explanation: PairExplanation, side: str) -> str | None:
    """None when ``side`` has a map, else the label drawn on its plain photo."""
    if explanation.has_map(side):
        return None
    return f"n/a \u2014 {_method_label(explanation)} has no {side} map"


def text_width(text: str, font_px: float) -> float:
    """Estimated width in pixels of ``text`` in a sans-serif font of ``font_px``."""
    return len(text) * _GLYPH * font_px


def wrap_text(text: str, width_px: float, font_px: float) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width_px`` (estimated); a word longer than
    a line stays whole on its own line."""
    per_line = max(1, int(width_px // (_GLYPH * font_px)))
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= per_line:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def nice_ticks(lo: float, hi: float, max_ticks: int = 5) -> list[float]:
    """At most ``max_ticks`` round tick values (steps 1, 2, 2.5 or 5 times a power of ten) covering
    [lo, hi]: the first <= lo, the last >= hi, so the scale can run from first to last."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range ({lo}, {hi}) is not finite")
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo < 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = 0.5 * abs(lo) if lo else 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, max_ticks - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0, 20.0):
        step = factor * power
        first = math.floor(lo / step + 1e-9) * step
        last = math.ceil(hi / step - 1e-9) * step
        count = round((last - first) / step) + 1
        if count <= max_ticks:
            break
    return [round(first + k * step, 12) for k in range(count)]


# ------------------------------------------------------------------------------------------------
# attribute panel


def bar_data(shown, components=COMPONENTS) -> tuple[list[str], np.ndarray]:
    """Names (rows, best first) and the (components, rows) matrix of weighted components that
    bqplot stacks: row ``j``'s bar is ``values[:, j]``, component ``k`` always at ``values[k]``."""
    names = [s.attribute for s in shown]
    values = np.array([[float(s.weighted[c]) for s in shown] for c in components], dtype=float)
    return names, values.reshape(len(components), len(names))


def stacked_range(values: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) extent of stacked bars of a (components, rows) matrix, 0 included:
    positive parts stack right of 0 and negative ones left of it, as bqplot stacks them."""
    values = np.asarray(values, dtype=float)
    lo = float(np.minimum(values, 0.0).sum(0).min(initial=0.0))
    hi = float(np.maximum(values, 0.0).sum(0).max(initial=0.0))
    return min(lo, 0.0), max(hi, 1e-6)


def row_opacities(n_rows: int, selected: int | None, dim: float = 0.25) -> list[float]:
    """One opacity per row: all 1 with nothing selected, else 1 for the selected row and ``dim``
    for the others (every component of a row shares its row's opacity)."""
    if selected is not None and not 0 <= selected < n_rows:
        raise ValueError(f"selected row {selected} is outside 0 .. {n_rows - 1}")
    return [1.0 if selected is None or k == selected else dim for k in range(n_rows)]


def legend_entries(components=COMPONENTS, colours=None) -> list[tuple[str, str]]:
    """(label, colour) per component, in stacking order."""
    colours = COMPONENT_COLOURS if colours is None else colours
    return [(c, colours[c]) for c in components]


def legend_html(entries, *, css_class: str = LEGEND_CLASS, dashed: tuple[str, ...] = ()) -> str:
    """A legend row of HTML, laid out outside any plot: ``<div class=css_class>`` holding one
    ``<span class="simviz-swatch" style="background:COLOUR">`` and its label per entry. Labels in
    ``dashed`` get a thin line swatch instead (a reference line, not an area)."""
    items = []
    for label, colour in entries:
        if label in dashed:  # a line, not an area
            size = "width:14px;height:3px;"
        else:
            size = "width:12px;height:12px;border-radius:2px;"
        swatch = (f'<span class="{SWATCH_CLASS}" style="background:{colour};display:inline-block;'
                  f'{size}vertical-align:middle;margin-right:4px"></span>')
        items.append(f'<span style="white-space:nowrap">{swatch}{html.escape(label)}</span>')
    return (f'<div class="{css_class}" style="display:flex;flex-wrap:wrap;gap:4px 14px;'
            f'font-size:12px;line-height:16px;margin:2px 0 4px 0">{"".join(items)}</div>')


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with an ellipsis when longer."""
    max_chars = max(2, int(max_chars))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def category_margin(labels, font_px: float = 12.0, *, minimum: int = 40, maximum: int = 160) -> int:
    """Left margin (pixels) that fits the longest category label beside a vertical axis."""
    widest = max((text_width(str(label), font_px) for label in labels), default=0.0)
    return int(min(maximum, max(minimum, math.ceil(widest) + 14)))


def sides_with_maps(explanation: PairExplanation) -> list[str]:
    """The sides whose maps the method computed, in :data:`SIDES` order."""
    return [s for s in SIDES if explanation.has_map(s)]


def close_figure(figure) -> None:
    """Close a bqplot Figure's marks, axes and scales (closing the Figure alone leaves them open)."""
    parts = [*figure.marks, *figure.axes]
    scales = {id(s): s for m in figure.marks for s in m.scales.values()}
    scales.update({id(a.scale): a.scale for a in figure.axes})
    scales.update({id(s): s for s in (getattr(figure, "scale_x", None), getattr(figure, "scale_y", None)) if s})
    for widget in [*parts, *scales.values(), figure]:
        widget.close()

"""The comparison panel's bar charts (bqplot) and the text of its rows.

One chart per metric (and runtime): horizontal bars, the best method on top, full method names on
the category axis (the left margin fits the longest), a short title that says which way is better
("deletion ↓ lower is better"), four value ticks. The charts are flex items of a wrapping row, each
``CHART_BASIS_PX`` wide at least and growing to share the output's width (three abreast in a
1170-px notebook output). Each method keeps one colour (:func:`method_colour`) in rows and charts.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

import bqplot
import ipywidgets as widgets

from ...checks import check_choice
from .._canvas import close_tree
from .._charts import nice_ticks
from .results import RUNTIME, MethodResult

__all__ = ["METHOD_COLOURS", "CHART_BASIS_PX", "CHART_MAX_PX", "OUTPUT_WIDTH_PX", "ChartSpec", "MetricCharts",
           "chart_specs", "header_html", "method_colour", "format_value", "format_runtime", "row_label", "strip_tags"]

METHOD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf")  # matplotlib's tab10
#: A chart's least width (its flex basis); it grows to share the row, up to ``CHART_MAX_PX``.
CHART_BASIS_PX = 370
CHART_MAX_PX = 585
GAP_PX = 8  # right and bottom margin of each chart
#: The width the layout is made for: a JupyterLab notebook output on a 1280-px-wide screen.
OUTPUT_WIDTH_PX = 1170
TICK_FONT_PX = 11
TITLE_FONT_PX = 13
BAR_PX = 24
CHAR_PX = 6.6  # mean width of a tick label's character at TICK_FONT_PX (DejaVu / Helvetica)


def method_colour(methods: list[str], method: str) -> str:
    return METHOD_COLOURS[methods.index(method) % len(METHOD_COLOURS)]


def format_value(value: float | None) -> str:
    return f"{value:.3g}" if value is not None and math.isfinite(value) else "n/a"


def format_runtime(seconds: float | None) -> str:
    return "n/a" if seconds is None or not math.isfinite(seconds) else f"{seconds:.3g} s"


@dataclass(frozen=True)
class ChartSpec:
    """One chart: ``key`` (metric name or ``runtime_s``), ``title``, ``unit`` (value axis label),
    ``higher_is_better``."""

    key: str
    title: str
    unit: str
    higher_is_better: bool


def chart_specs(metrics) -> list[ChartSpec]:
    specs = []
    for metric in metrics:
        arrow = "↑" if metric.higher_is_better else "↓"
        specs.append(ChartSpec(metric.name, f"{metric.name} {arrow} {metric.direction}",
                               getattr(metric, "unit", "") or "", metric.higher_is_better))
    specs.append(ChartSpec(RUNTIME, "runtime ↓ lower is better", "seconds", False))
    return specs


class MetricCharts:
    """The charts of one comparison: ``box`` (the wrapping row), and per key ``figures``,
    ``bars``, ``notes`` (methods without a value) and ``items`` (a figure with its note: the flex
    items). ``on_click(method)`` is called when a bar is clicked."""

    def __init__(self, on_click: Callable[[str], None]):
        self.on_click = on_click
        self.box = widgets.Box(layout=widgets.Layout(display="flex", flex_flow="row wrap", width="100%",
                                                     align_items="flex-start"))
        self.specs: list[ChartSpec] = []
        self.figures: dict[str, bqplot.Figure] = {}
        self.bars: dict[str, bqplot.Bars] = {}
        self.notes: dict[str, widgets.HTML] = {}
        self.items: dict[str, widgets.VBox] = {}

    def build(self, specs: list[ChartSpec], methods: list[str]) -> None:
        """(Re)make the charts for ``specs``, sized for ``methods`` (their count and longest name)."""
        self.close_charts()
        self.specs = list(specs)
        longest = max((len(m) for m in methods), default=8)
        left = int(min(260, 18 + CHAR_PX * longest))
        height = 44 + 46 + BAR_PX * max(2, len(methods))
        for spec in specs:
            categories = bqplot.OrdinalScale(reverse=True)  # the first (best) method on top
            values = bqplot.LinearScale()
            bars = bqplot.Bars(
                x=[], y=[], orientation="horizontal", scales={"x": categories, "y": values},
                colors=[METHOD_COLOURS[0]], padding=0.25, interactions={"click": "select"},
                tooltip=bqplot.Tooltip(fields=["x", "y"], formats=["", ".3g"], labels=["method", spec.key]),
            )
            bars.observe(lambda change, key=spec.key: self._on_selected(key, change), "selected")
            figure = bqplot.Figure(
                marks=[bars],
                axes=[bqplot.Axis(scale=categories, side="left", grid_lines="none",
                                  tick_style={"font-size": f"{TICK_FONT_PX}px"}),
                      bqplot.Axis(scale=values, side="bottom", tick_format=".3~g",
                                  label=spec.unit, label_offset="32px",
                                  tick_style={"font-size": f"{TICK_FONT_PX}px"})],
                title=spec.title,
                title_style={"font-size": f"{TITLE_FONT_PX}px"},
                fig_margin={"top": 44, "bottom": 46, "left": left, "right": 18},
                layout=widgets.Layout(width="auto", height=f"{height}px"),
            )
            note = widgets.HTML(layout=widgets.Layout(min_height="1.2em", margin=f"0 0 0 {left}px"))
            item = widgets.VBox([figure, note], layout=widgets.Layout(
                flex=f"1 1 {CHART_BASIS_PX}px", min_width=f"{CHART_BASIS_PX}px", max_width=f"{CHART_MAX_PX}px",
                margin=f"0 {GAP_PX}px {GAP_PX}px 0"))
            self.figures[spec.key], self.bars[spec.key] = figure, bars
            self.notes[spec.key], self.items[spec.key] = note, item
        self.box.children = [self.items[s.key] for s in specs]

    def update(self, rankings: dict[str, list[tuple[str, float]]], methods: list[str]) -> None:
        """Draw ``rankings[key]`` = ``[(method, value)]`` best first; methods left out are listed
        under the chart."""
        for spec in self.specs:
            ranked = rankings.get(spec.key, [])
            bars = self.bars[spec.key]
            names = [n for n, _ in ranked]
            if list(bars.x) != names or list(bars.y) != [v for _, v in ranked]:
                with bars.hold_sync():
                    bars.x = names
                    bars.y = [v for _, v in ranked]
                    bars.colors = [method_colour(methods, n) for n in names] or [METHOD_COLOURS[0]]
                if ranked:  # a few round ticks (0, 20, 40, ...) spanning the bars and zero
                    values = [v for _, v in ranked]
                    ticks = nice_ticks(min(0.0, min(values)), max(0.0, max(values)), max_ticks=5)
                    axis = self.figures[spec.key].axes[1]
                    with axis.scale.hold_sync():
                        axis.scale.min, axis.scale.max = float(ticks[0]), float(ticks[-1])
                    axis.tick_values = ticks
            missing = [n for n in methods if n not in names]
            text = f"<small>not yet / n/a: {html.escape(', '.join(missing))}</small>" if missing else ""
            if self.notes[spec.key].value != text:
                self.notes[spec.key].value = text

    def order(self, key: str) -> list[str]:
        check_choice(key, "metric", list(self.bars))
        return [str(name) for name in self.bars[key].x]

    def _on_selected(self, key: str, change) -> None:
        indices = change["new"]
        if indices is None or len(indices) == 0:
            return
        bars = self.bars[key]
        index = int(indices[0])
        bars.selected = None  # a click is an action, not a lasting selection
        if 0 <= index < len(bars.x):
            self.on_click(str(bars.x[index]))

    def close_charts(self) -> None:
        for item in self.items.values():
            close_tree(item)
        self.figures, self.bars, self.notes, self.items = {}, {}, {}, {}

    def close(self) -> None:
        self.close_charts()
        self.box.close()


def row_label(result: MethodResult, metrics) -> str:
    """The HTML label of a method's row: status, runtime, one score per metric, any error."""
    parts = []
    status = result.status
    if status == "running" and result.progress is not None:
        status = f"running {100 * result.progress:.0f} %"
    if status != "done":
        parts.append(f"<i>{html.escape(status)}</i>")
    exp = result.explanation
    if exp is not None:
        parts.append(f"runtime {format_runtime(exp.runtime_s)}"
                     + ("" if exp.point_to_point is None else " · point-to-point"))
    elif result.partial is not None:
        done = result.partial.info.get("passes_done")
        parts.append(f"partial map ({done} passes), not cached")
    for metric in metrics:
        value = result.scores.get(metric.name)
        text = ("…" if exp is not None else "–") if value is None else format_value(value)
        arrow = "↑" if metric.higher_is_better else "↓"
        parts.append(f"{html.escape(metric.name)} {arrow} {text}")
    if result.error:
        parts.append(f"<span style='color:#b00'>{html.escape(result.error[:200])}</span>")
    return "<br>".join(parts)


def header_html(session, *, viewer: bool) -> str:
    """The panel's title line: the pair's score, the method count, what runs in the background
    (only while something does) and, with a viewer, how to show a method there."""
    exp = next((r.explanation for r in session.results.values() if r.explanation is not None), None)
    score = f" · {exp.metric} similarity {exp.score:.4f}" if exp is not None else ""
    count = len(session.methods)
    status = session.status
    if status.state == "cancelling":
        note = " · cancelling…"
    elif status.computing and status.working_on:
        note = f" · computing in the background: {html.escape(', '.join(status.working_on))}"
    else:
        note = ""
    hint = " · click a method to show it in the viewer" if viewer else ""
    return f"<b>method comparison</b>{score} · {count} method{'s' if count != 1 else ''}{note}{hint}"


def strip_tags(text: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", text.replace("<br>", "\n")))

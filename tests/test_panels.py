"""The overall-map panel and the attribute panel as thin views: the chart logic as plain functions,
and the widgets' traits and draw commands (no browser).

What is checked is what a reader sees: the score-split chart only where the maps sum to the score
(a note otherwise), "n/a" on a side without a map (the plain photo, not a darkened one), bars
coloured per ranking component, a legend outside the plot with one distinct swatch per component,
a selected row that stands out while every other row fades, a title and labels that fit.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from simviz_widgets.attributes.ranking import COMPONENTS as RANKING_COMPONENTS
from simviz_widgets.attributes.ranking import AttributeRanking, AttributeScore
from simviz_widgets.explain.base import SIDES, PairExplanation
from simviz_widgets.widgets import _charts as charts
from simviz_widgets.widgets._canvas import photo_rgba
from simviz_widgets.widgets.attribute_panel import ROW_PX, AttributePanel
from simviz_widgets.widgets.overall_panel import OVERLAY, PHOTO, OverallPanel

# ------------------------------------------------------------------------------------------------
# helpers


def _photos(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8),
            rng.integers(0, 256, size=(150, 270, 3), dtype=np.uint8))


def decomposition_like(seed=0) -> PairExplanation:
    """Maps that each sum to the score, as a decomposition's do."""
    rng = np.random.default_rng(seed)
    query, reference = _photos(seed)
    qmap = rng.normal(scale=0.01, size=(7, 7))
    rmap = rng.normal(scale=0.01, size=(5, 9))
    rmap += (qmap.sum() - rmap.sum()) / rmap.size
    return PairExplanation(method="decomposition", score=float(qmap.sum()), query=query, reference=reference,
                           query_map=qmap, reference_map=rmap, signed=True, completeness_error=1e-7)


def rise_like(seed=1) -> PairExplanation:
    """Query-only saliency at pixel resolution, far above the score; a zero reference placeholder."""
    rng = np.random.default_rng(seed)
    query, reference = _photos(seed)
    return PairExplanation(method="rise", score=0.8, query=query, reference=reference,
                           query_map=rng.random((224, 224)) * 4e4, reference_map=np.zeros((150, 270)),
                           signed=False, completeness_error=None, missing_maps=("reference",))


class _Legend(HTMLParser):
    """Collects the legend's container classes and each swatch's inline background."""

    def __init__(self):
        super().__init__()
        self.containers, self.swatches, self.labels, self._in_swatch_item = [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if charts.LEGEND_CLASS in classes or "simviz-split-legend" in classes:
            self.containers.append(classes)
        if charts.SWATCH_CLASS in classes:
            match = re.search(r"(?:^|;)\s*background\s*:\s*([^;]+)", attrs.get("style", ""))
            self.swatches.append(match.group(1).strip().lower() if match else None)

    def handle_data(self, data):
        if data.strip():
            self.labels.append(data.strip())


def parse_legend(markup: str) -> _Legend:
    parser = _Legend()
    parser.feed(markup)
    return parser


def bqplot_bar_styles(bars):
    """(colour, opacity) of each drawn rect, [row][component], by bqplot's rule
    (BarsModel.update_color: 'group' indexes by bar group = row, 'element' by position in the
    stack = component; Mark.get_mark_opacity: opacities[index % len], none = opaque)."""
    values = np.asarray(bars.y)
    n_components, n_rows = values.shape
    styles = []
    for row in range(n_rows):
        rects = []
        for k in range(n_components):
            colour_index = {"group": row, "element": k}.get(bars.color_mode, k)
            opacity_index = {"group": row, "element": k}.get(bars.opacity_mode, k)
            opacities = list(bars.opacities)
            rects.append((bars.colors[colour_index % len(bars.colors)],
                          opacities[opacity_index % len(opacities)] if opacities else 1.0))
        styles.append(rects)
    return styles


def make_ranking(names=("red", "green", "blue", "yellow"), seed=0, base=None) -> AttributeRanking:
    rng = np.random.default_rng(seed)
    base = base or decomposition_like()
    items = []
    for name in names:
        comps = {c: float(v) for c, v in zip(RANKING_COMPONENTS, rng.random(3))}
        items.append(AttributeScore(attribute=name, score=sum(comps.values()), components=comps,
                                    weighted=dict(comps), query_map=rng.random((7, 7), dtype=np.float32),
                                    reference_map=rng.random((5, 9), dtype=np.float32)))
    items.sort(key=lambda s: -s.score)
    return AttributeRanking(items, explanation=base, weights={c: 1.0 for c in RANKING_COMPONENTS}, sides="both")


# ------------------------------------------------------------------------------------------------
# plain functions


def test_components_are_the_rankings():
    assert charts.COMPONENTS == RANKING_COMPONENTS
    colours = [charts.COMPONENT_COLOURS[c] for c in charts.COMPONENTS]
    assert len({c.lower() for c in colours}) == len(colours)


def test_cumulative_curve_sorts_largest_first_and_ends_at_the_sum():
    values = np.array([[0.1, -0.2], [0.5, 0.0]])
    rank, fractions, running = charts.cumulative_curve(values)
    assert rank.tolist() == [1, 3, 0, 2]
    assert fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert running.tolist() == pytest.approx([0, 0.5, 0.6, 0.6, 0.4])
    f, r = charts.curve_points(np.linspace(0, 1, 5001), np.arange(5001.0), max_points=100)
    assert len(f) <= 100 and f[0] == 0 and f[-1] == 1 and r[-1] == 5000


def test_split_note_only_where_maps_are_not_shares_of_the_score():
    assert charts.split_note(decomposition_like()) is None
    note = charts.split_note(rise_like())
    assert note == "rise's maps are saliency, not shares of the score: no split to show"
    attribute = make_ranking()[0].to_explanation(decomposition_like())
    assert "attribute activations" in charts.split_note(attribute)


def test_missing_map_label_names_method_and_side():
    assert charts.missing_map_label(rise_like(), "query") is None
    assert charts.missing_map_label(rise_like(), "reference") == "n/a \u2014 rise has no reference map"
    assert charts.missing_map_label(rise_like().swapped(), "query") == "n/a \u2014 rise has no query map"
    assert charts.sides_with_maps(rise_like()) == ["query"]
    assert charts.sides_with_maps(decomposition_like()) == list(SIDES)


@pytest.mark.parametrize("lo, hi", [(0.0, 2.5), (-0.013, 0.047), (0, 4e4), (0.3, 0.3), (-5, -1), (0, 1e-6)])
def test_nice_ticks_cover_the_range_with_few_round_steps(lo, hi):
    ticks = charts.nice_ticks(lo, hi, 5)
    assert 2 <= len(ticks) <= 5
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))


def test_wrap_text_fits_the_width():
    lines = charts.wrap_text("n/a \u2014 sliding_window has no reference map", 180, 12)
    assert " ".join(lines) == "n/a \u2014 sliding_window has no reference map"
    assert all(charts.text_width(line, 12) <= 180 for line in lines) and len(lines) == 2


def test_bar_data_puts_each_component_on_its_own_row_of_the_matrix():
    ranking = make_ranking()
    names, values = charts.bar_data(ranking)
    assert names == ranking.attributes and values.shape == (3, len(ranking))
    for k, component in enumerate(charts.COMPONENTS):
        assert values[k].tolist() == [s.weighted[component] for s in ranking]


def test_stacked_range_includes_zero_and_negative_parts():
    assert charts.stacked_range(np.array([[0.5, 1.0], [0.25, 0.5]])) == (0.0, 1.5)
    assert charts.stacked_range(np.array([[0.5, -1.0], [-0.25, 0.5]])) == (-1.0, 0.5)
    assert charts.stacked_range(np.zeros((3, 2))) == (0.0, 1e-6)


def test_row_opacities_single_out_one_row():
    assert charts.row_opacities(3, None) == [1.0, 1.0, 1.0]
    assert charts.row_opacities(3, 1, dim=0.3) == [0.3, 1.0, 0.3]
    with pytest.raises(ValueError, match="outside"):
        charts.row_opacities(3, 3)


def test_legend_html_has_one_distinct_swatch_per_entry():
    legend = parse_legend(charts.legend_html(charts.legend_entries()))
    assert legend.containers == [[charts.LEGEND_CLASS]]
    assert legend.swatches == [charts.COMPONENT_COLOURS[c].lower() for c in charts.COMPONENTS]
    assert len(set(legend.swatches)) == 3 and legend.labels == list(charts.COMPONENTS)
    assert "&lt;b&gt;" in charts.legend_html([("<b>", "#000000")])  # labels are escaped


def test_category_margin_grows_with_the_longest_label_up_to_a_limit():
    assert charts.category_margin(["red"]) == 40
    assert charts.category_margin(["a much longer attribute name"]) > charts.category_margin(["short name"])
    assert charts.category_margin(["x" * 200], maximum=150) == 150
    assert charts.shorten("abcdefgh", 5) == "abcd\u2026" and charts.shorten("abc", 5) == "abc"


# ------------------------------------------------------------------------------------------------
# overall panel


def test_split_chart_shown_for_a_decomposition():
    exp = decomposition_like()
    panel = OverallPanel(exp, size=160)
    assert panel.chart_shown and panel.note.layout.display == "none"
    assert panel.chart_legend.layout.display != "none"
    for side in SIDES:
        assert panel.curve_marks[side].visible
        assert panel.curve_marks[side].y[-1] == pytest.approx(exp.score, abs=1e-6)
    assert panel.score_mark.y.tolist() == pytest.approx([exp.score] * 2)
    # The y scale spans the curves and the score, on round ticks.
    ticks = list(panel._y_axis.tick_values)
    assert panel._y_scale.min == ticks[0] <= min(0.0, exp.score) and len(ticks) <= 5
    running = np.concatenate([panel.curve_marks[s].y for s in SIDES])
    assert panel._y_scale.max == ticks[-1] >= running.max()
    # The legend sits outside the plot (HTML, not bqplot's legend over the marks).
    assert not any(m.display_legend for m in panel.chart.marks)
    legend = parse_legend(panel.chart_legend.value)
    assert legend.labels == ["query map", "reference map", "score"] and len(set(legend.swatches)) == 3
    panel.close()


def test_split_chart_replaced_by_a_note_for_rise(commands):
    exp = rise_like()
    panel = OverallPanel(exp, size=160)
    assert not panel.chart_shown and panel.chart_legend.layout.display == "none"
    assert panel.note.layout.display != "none"
    assert "rise's maps are saliency, not shares of the score: no split to show" in panel.note.value
    # Thousands of pixel "cells" do not go to the browser as thousands of points.
    assert len(panel.curve_marks["query"].x) <= 1024
    # Switching to a decomposition brings the chart back.
    panel.explanation = decomposition_like()
    assert panel.chart_shown and panel.note.layout.display == "none"
    panel.close()


def test_missing_reference_map_draws_the_plain_photo_labelled_na(commands):
    exp = rise_like()
    panel = OverallPanel(exp, size=160)
    reference, query = panel.reference_canvas, panel.query_canvas
    # The photo layer holds the untouched photo; nothing coloured lies over it, only the label.
    assert np.array_equal(commands.last_image(reference[PHOTO]),
                          photo_rgba(exp.reference, (int(reference.height), int(reference.width))))
    assert commands.images(reference[OVERLAY]) == []
    assert " ".join(commands.texts(reference[OVERLAY])) == "n/a \u2014 rise has no reference map"
    assert panel.na_lines["reference"] and panel.na_lines["query"] == []
    assert all(charts.text_width(line, 12) <= int(reference.width) - 16 for line in panel.na_lines["reference"])
    assert "n/a" in panel.captions["reference"].value and panel.captions["query"].value == "query map"
    # The query's map is drawn, on a colour scale of the query map alone (not stretched to 0 by
    # the placeholder).
    assert len(commands.images(query[OVERLAY])) == 1 and commands.texts(query[OVERLAY]) == []
    assert panel.limits == pytest.approx((float(exp.query_map.min()), float(exp.query_map.max())))
    assert "query map only" in panel.title.value
    # Hovering or pinning the reference puts nothing on a chart it has no curve on.
    panel.state.hovered = ("reference", 10.0, 10.0)
    assert panel.hover_mark.x.tolist() == []
    panel.state.add_pin("reference", 20, 20)
    assert list(panel.pin_marks.x) == []
    # Back to an explanation with both maps: the label goes, the map comes back.
    commands.clear()
    panel.explanation = decomposition_like()
    assert commands.texts(reference[OVERLAY]) == [] and len(commands.images(reference[OVERLAY])) == 1
    assert panel.na_lines == {"query": [], "reference": []}
    panel.close()


def test_chart_labels_fit_their_figure():
    panel = OverallPanel(decomposition_like(), size=200)
    chart = panel.chart
    width = float(chart.layout.width.rstrip("px"))
    height = float(chart.layout.height.rstrip("px"))
    margin = chart.fig_margin
    plot_w, plot_h = width - margin["left"] - margin["right"], height - margin["top"] - margin["bottom"]
    x_axis, y_axis = chart.axes
    assert charts.text_width(chart.title, 14) <= plot_w
    assert charts.text_width(x_axis.label, 12) <= plot_w
    assert charts.text_width(y_axis.label, 12) <= plot_h
    assert len(x_axis.tick_values) <= 5 and len(y_axis.tick_values) <= 5
    # The y label sits left of the widest tick label and inside the left margin.
    widest = max(len(f"{v:.3g}") for v in y_axis.tick_values)
    offset = float(y_axis.label_offset.rstrip("px"))
    assert charts.text_width("0" * widest, 12) + 6 < offset < margin["left"] - 8
    panel.close()


# ------------------------------------------------------------------------------------------------
# attribute panel


def test_bars_are_coloured_by_component_not_by_row():
    ranking = make_ranking()
    panel = AttributePanel(ranking)
    styles = bqplot_bar_styles(panel.bars)
    assert len(styles) == len(ranking)
    for rects in styles:
        assert [colour for colour, _ in rects] == [charts.COMPONENT_COLOURS[c] for c in charts.COMPONENTS]
    # Selecting a row does not recolour anything.
    panel.select(ranking.attributes[2])
    assert [[c for c, _ in rects] for rects in bqplot_bar_styles(panel.bars)] == [
        [c for c, _ in rects] for rects in styles]


def test_legend_is_html_outside_the_plot_with_distinct_swatches():
    panel = AttributePanel(make_ranking())
    assert not panel.bars.display_legend
    assert panel.legend in panel.children and panel.children.index(panel.legend) < panel.children.index(panel.figure)
    legend = parse_legend(panel.legend.value)
    assert legend.containers == [[charts.LEGEND_CLASS]]
    assert len(legend.swatches) == 3 and len(set(legend.swatches)) == 3
    assert legend.labels == list(charts.COMPONENTS)
    # Each swatch has the colour its component's bars have.
    assert legend.swatches == [c.lower() for c in panel.bars.colors]


def test_selecting_a_row_emphasises_that_row_only():
    ranking = make_ranking()
    panel = AttributePanel(ranking)
    resting = bqplot_bar_styles(panel.bars)
    assert {o for rects in resting for _, o in rects} == {1.0}
    for index in (2, 0):
        panel.select(ranking.attributes[index])
        styles = bqplot_bar_styles(panel.bars)
        for row, rects in enumerate(styles):
            opacities = {o for _, o in rects}
            assert len(opacities) == 1  # a row fades or stays as a whole, all its components alike
            assert opacities == ({1.0} if row == index else {0.25})
        labels = panel.name_axis.tick_labels
        marked = [name for name, label in labels.items() if label.startswith("\u25b8")]
        assert marked == [ranking.attributes[index]]
        assert list(panel.bars.selected) == [index]
    panel.clear_selection()
    assert bqplot_bar_styles(panel.bars) == resting
    assert not any(label.startswith("\u25b8") for label in panel.name_axis.tick_labels.values())


def test_title_fits_and_names_are_on_the_vertical_axis():
    names = ("red", "green", "a very long attribute name indeed", "blue", "yellow", "gravel")
    panel = AttributePanel(make_ranking(names), width=300)
    # The title is HTML above the figure, wrapping at the panel's width; none clipped inside bqplot.
    assert panel.figure.title == ""
    assert "Which attribute explains the match?" in panel.header.value
    assert "white-space:normal" in panel.header.value and panel.header.layout.width == "300px"
    assert panel.name_axis.orientation == "vertical" and panel.name_axis.side == "left"
    assert panel.value_axis.orientation == "horizontal"
    # One row of ROW_PX per attribute: names 12 px high never run together.
    height = float(panel.figure.layout.height.rstrip("px"))
    margin = panel.figure.fig_margin
    assert (height - margin["top"] - margin["bottom"]) / len(names) >= ROW_PX - 1 > 12
    # Every (possibly shortened) name fits the left margin; the value axis has few round ticks.
    labels = list(panel.name_axis.tick_labels.values())
    assert any(label.endswith("\u2026") for label in labels)
    assert all(charts.text_width("\u25b8 " + label, 12) + 6 <= margin["left"] for label in labels)
    assert margin["left"] <= 0.45 * 300
    ticks = list(panel.value_axis.tick_values)
    assert len(ticks) <= 5 and panel._value_scale.max == ticks[-1]
    assert ticks[-1] >= max(s.score for s in panel.shown)
    # A shortened name is still given in full in the detail line once selected.
    panel.select("a very long attribute name indeed")
    assert "a very long attribute name indeed" in panel.detail.value


def test_selecting_shows_the_attribute_on_a_viewer_and_clearing_restores():
    class StubViewer:
        def __init__(self, explanation):
            self.explanation = explanation

        def set_explanation(self, explanation):
            self.explanation = explanation

    ranking = make_ranking()
    viewer = StubViewer(ranking.explanation)
    seen = []
    panel = AttributePanel(ranking, viewer=viewer, on_select=seen.append)
    panel.bars._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 1}})
    assert panel.selected == ranking.attributes[1] and seen[-1] is ranking[1]
    assert viewer.explanation.method == f"attribute:{ranking.attributes[1]}"
    panel.bars._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 1}})
    assert panel.selected is None and seen[-1] is None and viewer.explanation is ranking.explanation
    with pytest.raises(ValueError, match="width=50 must be >= 160"):
        AttributePanel(ranking, width=50)


def test_static_figure_matches_the_widget():
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    ranking = make_ranking()
    panel = AttributePanel(ranking)
    panel.select(ranking.attributes[1])
    fig = panel.to_figure()
    ax = fig.axes[0]
    for container, component in zip(ax.containers, charts.COMPONENTS):
        faces = [patch.get_facecolor() for patch in container.patches]
        expected = mcolors.to_rgb(charts.COMPONENT_COLOURS[component])
        assert all(np.allclose(face[:3], expected) for face in faces)  # one colour per component
        assert [round(face[3], 2) for face in faces] == [0.25, 1.0, 0.25, 0.25]  # the selected row
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(charts.COMPONENTS)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 - 1  # above the bars
    plt.close(fig)


@pytest.mark.filterwarnings("ignore:Widget.widgets is deprecated")
def test_closing_a_panel_frees_every_widget_it_made():
    """Figures, marks, axes, scales, canvases and HTML all go (ipywidgets leaves Layout and Style
    objects to the garbage collector)."""
    from ipywidgets import Widget

    def made_since(before):
        return [type(Widget.widgets[k]).__name__ for k in set(Widget.widgets) - before]

    before = set(Widget.widgets)
    overall = OverallPanel(rise_like(), size=64)
    attributes = AttributePanel(make_ranking())
    assert {"Figure", "Bars", "Lines", "Axis", "OrdinalScale", "Canvas", "HTML"} <= set(made_since(before))
    overall.close()
    attributes.close()
    attributes.close()  # twice is harmless
    left = made_since(before)
    assert all(name == "Layout" or name.endswith("Style") for name in left), left


def test_closed_panels_refuse_every_change_by_name():
    """Was: a closed attribute panel still ran its selection (pushing maps into a viewer and calling
    back) and a closed overall panel redrew on closed canvases."""
    from simviz_widgets.widgets.session import WidgetClosedError

    class StubViewer:
        def __init__(self, explanation):
            self.explanation = explanation

        def set_explanation(self, explanation):
            self.explanation = explanation

    ranking = make_ranking()
    viewer = StubViewer(ranking.explanation)
    seen = []
    attributes = AttributePanel(ranking, viewer=viewer, on_select=seen.append)
    overall = OverallPanel(decomposition_like(), size=64)
    seen.clear()  # the construction's own "nothing selected"
    attributes.close()
    overall.close()
    attributes.close()  # twice is fine
    overall.close()
    for change in (lambda: attributes.select(ranking.attributes[0]), attributes.clear_selection,
                   lambda: attributes.set_ranking(make_ranking(seed=1)), lambda: attributes.on_select(print),
                   lambda: setattr(attributes, "selected", ranking.attributes[0])):
        with pytest.raises(WidgetClosedError, match="this AttributePanel is closed"):
            change()
    assert seen == [] and viewer.explanation is ranking.explanation and attributes.selected is None
    # A bar click that arrives after close (from the browser) is dropped, not an error in a callback.
    attributes._on_bar_click(attributes.bars, {"data": {"index": 0}})
    assert seen == []
    for name, value in (("explanation", rise_like()), ("cmap", "gray"), ("alpha", 0.2)):
        with pytest.raises(WidgetClosedError, match="this OverallPanel is closed"):
            setattr(overall, name, value)
    assert overall.cmap is None

"""The retrieval explorer without a browser: its plain state after simulated mouse events on the
query canvas (box drag, brush, eraser, clear), the results and rank changes against the core's
search (simviz_widgets.retrieval), the score text, the size limit and the input checks. Overlays,
the background job and the pair viewer: test_retrieval_widget_jobs.py.

Tiny model (8x8 grid at 64 px) and a gallery of 12 synthetic scenes (retrieval_widget_helpers.py).
"""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
import retrieval_widget_helpers as shared

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.render.shade import OUTSIDE_DIM
from simviz_widgets.retrieval import Gallery
from simviz_widgets.widgets import RetrievalExplorer, WidgetClosedError
from simviz_widgets.widgets.region_tool import RegionTool
from simviz_widgets.widgets.retrieval_draw import REGION
from simviz_widgets.widgets.retrieval_state import MAX_K, RetrievalState

# The shared fixtures (tests/retrieval_widget_helpers.py): pytest finds fixtures among a module's names.
tiny, scenes, gallery = shared.tiny, shared.scenes, shared.gallery
outsider, explorers = shared.outsider, shared.explorers
K, _open = shared.K, shared.open_explorer


def _event(x, kind, row, col, **extra):
    y, xx = x.canvas_position(row, col)
    return x._handle_event({"type": kind, "relativeX": xx, "relativeY": y, "button": 0, **extra})


def _stroke(x, *points):
    """Press at the first point, drag through the others, release at the last (as ipyevents sends)."""
    assert _event(x, "mousedown", *points[0], buttons=1)
    for point in points[1:]:
        _event(x, "mousemove", *point, buttons=1)
    return _event(x, "mouseup", *points[-1], buttons=0)


def _capsule(shape, start, end, radius):
    """Pixels within ``radius`` of the segment start-end (display pixel centres)."""
    rows, cols = np.mgrid[:shape[0], :shape[1]].astype(float)
    (r0, c0), (r1, c1) = start, end
    d = np.array([r1 - r0, c1 - c0])
    t = np.clip(((rows - r0) * d[0] + (cols - c0) * d[1]) / max(d @ d, 1e-12), 0, 1)
    return np.hypot(rows - (r0 + t * d[0]), cols - (c0 + t * d[1])) <= radius


def _visible(markup: str) -> str:
    """The text a browser shows for an HTML widget's value."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


# ------------------------------------------------------------------------------------------------
# regions from the mouse, results from the core


def test_dragging_a_box_reranks_as_the_gallery_searches_that_box(tiny, gallery, explorers, commands):
    x = _open(explorers, tiny, gallery, 0, k=K)
    commands.clear()
    moves = x._events[0]
    assert list(moves.watched_events) == [] and not _event(x, "mousemove", 3.0, 3.0)  # hovering sends nothing
    assert _event(x, "mousedown", 10.0, 6.0, buttons=1)
    assert list(moves.watched_events) == ["mousemove"]  # watched during the drag only
    _event(x, "mousemove", 40.0, 50.0, buttons=1)
    assert x.region is None  # a drag under way is a preview, nothing is searched yet
    dashes = [c["args"] for c in commands.on(x.query_canvas.canvas[REGION]) if c["name"] == "setLineDash"]
    assert [6, 4] in [list(np.ravel(a)) for a in dashes]
    assert _event(x, "mouseup", 40.0, 50.0, buttons=0)
    assert list(moves.watched_events) == []
    assert x.region == ("box", (10.0, 6.0, 41.0, 51.0))  # pixels under both corners, bottom/right exclusive
    # cell weights by hand: 8 px cells; rows 10..41 cover 6/8 of cell 1, cells 2-4, 1/8 of cell 5
    rows = np.array([0, 0.75, 1, 1, 1, 0.125, 0, 0])
    cols = np.array([0.25, 1, 1, 1, 1, 1, 0.375, 0])
    np.testing.assert_allclose(x.results.region_weights, np.outer(rows, cols), atol=1e-12)
    expected = gallery.search(gallery.image(0), region=(10, 6, 41, 51), k=K, exclude=[0])
    assert x.results.indices.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(x.results.scores, expected.scores, rtol=1e-6)
    # drawn: outside the box dimmed, inside clear (the region layer's image is in display pixels)
    shade = commands.last_image(x.query_canvas.canvas[REGION])
    assert shade.shape == (64, 64, 4)
    inside = np.zeros((64, 64), bool)
    inside[10:41, 6:51] = True
    assert (shade[inside, 3] == 0).all() and (shade[~inside, 3] == round(255 * OUTSIDE_DIM)).all()
    assert "box rows 10–41, cols 6–51" in x.region_label.value


def test_a_click_with_the_box_tool_changes_nothing_and_stale_moves_are_dropped(tiny, gallery, explorers):
    x = _open(explorers, tiny, gallery, 0, k=K)
    before = x.results.indices.tolist()
    _event(x, "mousedown", 20.0, 20.0, buttons=1, timeStamp=10.0)
    assert not _event(x, "mousemove", 50.0, 50.0, buttons=0, timeStamp=5.0)  # sent before the press
    assert not _event(x, "mouseup", 20.2, 19.8, buttons=0, timeStamp=20.0)  # a click: no region
    assert x.region is None and x.results.indices.tolist() == before
    # a drag that leaves the canvas ends where it left
    _event(x, "mousedown", 5.0, 5.0, buttons=1, timeStamp=30.0)
    _event(x, "mousemove", 30.0, 20.0, buttons=1, timeStamp=40.0)
    assert x._handle_event({"type": "mouseleave", "timeStamp": 50.0})
    assert x.region == ("box", (5.0, 5.0, 31.0, 21.0))


def test_brush_paints_a_stroke_and_the_eraser_cuts_it(tiny, gallery, explorers):
    x = _open(explorers, tiny, gallery, 0, k=K, tool="brush", brush_size=4)
    _stroke(x, (20.0, 20.0), (20.0, 30.0), (20.0, 40.0))
    kind, mask = x.region
    assert kind == "mask" and mask.shape == (64, 64)
    # every painted pixel lies within the brush of the stroke, and the stroke's core is all painted
    assert not (mask & ~_capsule(mask.shape, (20, 20), (20, 40), 4)).any()
    assert mask[_capsule(mask.shape, (20, 20), (20, 40), 3)].all()
    expected = gallery.search(gallery.image(0), region=mask, k=K, exclude=[0])
    assert x.results.indices.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(x.results.scores, expected.scores, rtol=1e-6)
    # the eraser cuts a line across it; the rest stays
    x.set_tool("eraser")
    x.brush_slider.value = 2  # the slider drives the tool
    assert x.brush_size == 2
    _stroke(x, (10.0, 30.0), (30.0, 30.0))
    kind, after = x.region
    cut = _capsule(mask.shape, (10, 30), (30, 30), 2)
    assert not after[_capsule(mask.shape, (10, 30), (30, 30), 1.5)].any()
    assert np.array_equal(after[~cut], mask[~cut]) and after.sum() < mask.sum()
    # a brush stroke adds to the region
    x.set_tool("brush")
    _stroke(x, (50.0, 50.0), (50.0, 52.0))
    assert x.region[1][50, 51] and np.array_equal(x.region[1][:40], after[:40])


def test_erasing_everything_and_the_clear_button_give_the_whole_image(tiny, gallery, explorers):
    x = _open(explorers, tiny, gallery, 0, k=K)
    whole = x.results.indices.tolist()
    x.set_region(box=(0, 0, 16, 16))
    assert x.results.indices.tolist() != whole
    x.clear_button.click()
    assert x.region is None and x.results.indices.tolist() == whole and x.results.region_weights is None
    x.set_region(box=(0, 0, 16, 16))
    x.set_tool("eraser")
    x.brush_size = 64
    assert x.tool.brush_size == 64 and x.brush_slider.value == 64  # the slider does not cut the setter's value
    _stroke(x, (8.0, 8.0), (8.0, 9.0))
    assert x.region is None and x.results.indices.tolist() == whole
    assert "no region" in x.status_label.value


def test_rank_changes_are_the_whole_image_ranking(tiny, gallery, explorers, outsider):
    x = _open(explorers, tiny, gallery, outsider, k=K)
    x.set_region(box=(32, 0, 64, 32))
    whole = x.query.ranking().tolist()
    for row in x.rows:
        assert row.whole_rank == whole.index(row.index)
        assert row.change == row.whole_rank - row.rank and row.new == (row.whole_rank >= K)
    assert [row.change for row in x.rows] == x.results.rank_changes().tolist()  # the core's own count
    assert any(row.change != 0 for row in x.rows), "choose a region that moves some result"
    for row, card in zip(x.rows, x.grid.cards):
        text = _visible(card.header.value)
        if row.new:
            assert f"new (was #{row.whole_rank + 1})" in text
        elif row.change:
            assert ("▲" if row.change > 0 else "▼") + str(abs(row.change)) in text
        assert text.startswith(f"#{row.rank + 1} ") and f"cosine {row.score:.3f}" in card.caption.value


def test_a_gallery_query_is_left_out_and_ranks_count_without_it(tiny, gallery, explorers):
    x = _open(explorers, tiny, gallery, 3, k=20)
    assert len(x.rows) == 11 and 3 not in x.results.indices.tolist()  # k beyond the gallery: all but the query
    assert sum(card.box.layout.display != "none" for card in x.grid.cards) == 11
    x.set_region(box=(0, 32, 32, 64))
    whole = [i for i in x.query.ranking().tolist() if i != 3]
    assert [row.whole_rank for row in x.rows] == [whole.index(row.index) for row in x.rows]




def test_euclidean_scores_show_the_distance(scenes, explorers):
    model = sv.load_model("tiny_test", metric="euclidean")
    gallery = Gallery.build(model, scenes[:12], show_progress=False)
    x = _open(explorers, model, gallery, 0, k=4)
    for row, card in zip(x.rows, x.grid.cards):
        assert row.score < 0 and f"distance {(-row.score) ** 0.5:.3f}" in card.caption.value
    x.set_region(box=(0, 0, 32, 32))
    assert all("−d² share" in card.caption.value for card in x.grid.cards)
    assert "share of −distance²" in x.grid.legend.value


# ------------------------------------------------------------------------------------------------
# input checks


def test_bad_input_is_refused_with_a_clear_error(tiny, gallery, explorers):
    with pytest.raises(InputError, match="k"):
        RetrievalExplorer(tiny, gallery, k=0)
    with pytest.raises(InputError, match="tool"):
        RetrievalExplorer(tiny, gallery, tool="lasso")
    with pytest.raises(InputError, match="brush_size"):
        RetrievalExplorer(tiny, gallery, brush_size=0)
    with pytest.raises(InputError, match="size"):
        RetrievalExplorer(tiny, gallery, size=3)
    with pytest.raises(InputError, match="gallery's model"):
        RetrievalExplorer(sv.load_model("tiny_test"), gallery)
    with pytest.raises(InputError, match="Gallery"):
        RetrievalExplorer(tiny, [np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(InputError, match="gallery index"):
        RetrievalExplorer(tiny, gallery, 12)
    x = _open(explorers, None, gallery, 0, k=K)
    before = x.results.indices.tolist()
    for kwargs, match in [({"box": (10, 10, 5, 5)}, "box"), ({"box": (0, 0, 65, 10)}, "box"),
                          ({"mask": np.ones((32, 32), bool)}, "mask"), ({"mask": np.zeros((64, 64), bool)}, "empty"),
                          ({"box": (0, 0, 8, 8), "mask": np.ones((64, 64), bool)}, "not both"),
                          ({"box": np.ones((64, 64), bool)}, "mask=")]:
        with pytest.raises(InputError, match=match):
            x.set_region(**kwargs)
    assert x.region is None and x.results.indices.tolist() == before  # a refused region changes nothing
    with pytest.raises(InputError):
        x.set_query(99)
    assert x.state.query_index == 0 and x.results.indices.tolist() == before  # nor does a refused query
    with pytest.raises((InputError, InputTypeError), match="box"):
        x.set_region(box=(0, 0, "8", 8))
    with pytest.raises(InputError, match="rank"):
        x.open_result(K)
    with pytest.raises(InputError, match="tool"):
        x.set_tool("pen")
    with pytest.raises(InputError, match="brush_size"):
        x.brush_size = 0
    assert not x._handle_event("not an event") and not x._handle_event({"type": "mousedown"})
    x.close()
    with pytest.raises(WidgetClosedError):
        x.set_region(box=(0, 0, 8, 8))
    assert not x._handle_event({"type": "mousedown", "relativeX": 5, "relativeY": 5})


def test_k_is_limited_to_what_a_grid_of_cards_can_show(tiny, gallery):
    with pytest.raises(InputError, match=f"k is {MAX_K + 1}; the explorer shows at most {MAX_K}.*gallery.search"):
        RetrievalExplorer(tiny, gallery, k=MAX_K + 1)
    state = RetrievalState(gallery, k=MAX_K)  # the limit itself is accepted; shown: all but the query
    state.set_query(0)
    assert state.k == MAX_K and len(state.rows) == len(gallery) - 1


def test_region_tool_alone():
    tool = RegionTool((64, 48), tool="brush", brush_size=3)
    assert tool.move(3.0, 3.0) is None and tool.release() is None  # no stroke under way
    kind, mask = tool.press(10.0, 10.0)
    assert kind == "mask" and mask.sum() == int((np.hypot(*np.mgrid[-3:4, -3:4]) <= 3).sum())
    tool.tool = "box"  # switching tools drops the stroke
    assert not tool.active
    assert tool.press(63.4, 47.6) == ("box", (63, 47, 64, 48))  # the last pixel: clipped inside the image

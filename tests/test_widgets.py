"""Widgets without a browser: mouse events go through the viewer's handlers, and what would reach
the browser is read back from ipycanvas's draw commands (PNG buffers decoded to RGBA)."""

from __future__ import annotations

import asyncio
import gc
import io
import math
import tracemalloc

import ipywidgets as widgets
import numpy as np
import pytest
from ipycanvas import canvas as ipycanvas_canvas
from PIL import Image
from widget_helpers import click, make_explanation, move

from simviz_widgets.explain.base import cell_weights
from simviz_widgets.render import colormap_lut, map_to_rgba, normalize_map, upsample_bilinear
from simviz_widgets.widgets import PIN_COLOURS, HoverState, OverallPanel, PairExplorer, PairViewer
from simviz_widgets.widgets._canvas import photo_rgba
from simviz_widgets.widgets.pair_viewer import DEFAULT_ALPHA


def point_rgba(values, alpha=DEFAULT_ALPHA, cmap="RdBu_r"):
    """The viewer's colouring of a contribution map: symmetric diverging, opacity following |value|."""
    return map_to_rgba(values, cmap=cmap, mode="symmetric", alpha=alpha, alpha_from_value=True)


def bilinear_value(values, image_size, row, col):
    r0, r1, fr = cell_weights(row, image_size[0], values.shape[0])
    c0, c1, fc = cell_weights(col, image_size[1], values.shape[1])
    top = (1 - fc) * values[r0, c0] + fc * values[r0, c1]
    bottom = (1 - fc) * values[r1, c0] + fc * values[r1, c1]
    return (1 - fr) * top + fr * bottom


@pytest.fixture
def explanation():
    return make_explanation()


@pytest.fixture
def viewer(explanation):
    # The kernel path: these tests check what the kernel draws per hover (test_browser_hover.py has
    # the browser path, where the page draws it).
    v = PairViewer.from_explanation(explanation, size=320, hover="kernel")
    v.overlay_max_side = 0  # one pixel per cell: the sent overlay is the colormapped map itself
    return v


# ------------------------------------------------------------------------------------------------
# layout and geometry


def test_canvases_follow_image_sizes_and_have_stable_handles(viewer):
    # query 224x224 -> 320x320; reference 150x270 -> longer side 320, 150 * 320 / 270 = 177.8
    assert (viewer.query_canvas.height, viewer.query_canvas.width) == (320, 320)
    assert (viewer.reference_canvas.height, viewer.reference_canvas.width) == (178, 320)
    assert "simviz-query-canvas" in viewer.query_canvas._dom_classes
    assert "simviz-reference-canvas" in viewer.reference_canvas._dom_classes
    assert viewer.canvas_position("reference", 149, 269) == pytest.approx((178 - 178 / 300, 320 - 320 / 540))


def _widget_tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _widget_tree(child)


def test_mouse_is_read_from_pads_not_from_the_canvases(viewer, explanation):
    """ipycanvas's view would send every move to the kernel itself: the canvases take no pointer
    events (CSS class + style in the tree) and ipyevents watches a box of exactly their size."""
    tree = list(_widget_tree(viewer))
    assert any(isinstance(w, widgets.HTML) and "pointer-events: none" in w.value for w in tree)
    sources = {event.source for event in viewer._events}
    assert len(sources) == 2
    for source, canvas in (("query", viewer.query_canvas), ("reference", viewer.reference_canvas)):
        assert "simviz-passive-canvas" in canvas._dom_classes
        pad = next(s for s in sources if canvas in s.children)
        assert f"simviz-{source}-pad" in pad._dom_classes and pad in tree
        assert (pad.layout.height, pad.layout.width) == (f"{canvas.height}px", f"{canvas.width}px")
    # A new size resizes the pad with the canvas.
    viewer.set_explanation(make_explanation(seed=3, query_size=(100, 120)))
    pad = next(s for s in sources if viewer.query_canvas in s.children)
    assert (pad.layout.height, pad.layout.width) == ("267px", "320px")


def test_photo_is_drawn_once_as_lossless_rgba_never_blurred(commands):
    exp = make_explanation(query_size=(64, 64), reference_size=(64, 32))
    v = PairViewer.from_explanation(exp, size=320)
    photo = commands.last_image(v.query_canvas[0])
    assert commands.images(v.query_canvas[0])[-1]["format"] == "PNG"
    assert photo.shape == (320, 320, 4) and np.all(photo[..., 3] == 255)
    # 64 -> 320 is x5: every source pixel becomes a 5x5 block of itself (no smoothing).
    blocks = photo[..., :3].reshape(64, 5, 64, 5, 3)
    assert np.array_equal(blocks, np.broadcast_to(exp.query[:, None, :, None, :], blocks.shape))
    assert commands.last_image(v.reference_canvas[0]).shape == (320, 160, 4)


# ------------------------------------------------------------------------------------------------
# hover


def test_hovering_query_draws_its_point_map_over_reference(viewer, explanation, commands):
    assert move(viewer, "query", 100, 50)
    source, row, col = viewer.hovered
    assert source == "query" and (row, col) == pytest.approx((100, 50), abs=1e-9)
    expected_values = explanation.from_query(row, col)
    layer = viewer.reference_canvas[1]
    sent = commands.images(layer)
    assert len(sent) == 1 and sent[0]["format"] == "PNG"
    image = sent[0]["image"]
    assert image.shape == (5, 9, 4)
    assert np.array_equal(image, point_rgba(expected_values))
    # Independent of render's normalisation: the strongest cell takes the LUT's end colour.
    lut = colormap_lut("RdBu_r")
    strongest = np.unravel_index(np.argmax(np.abs(expected_values)), expected_values.shape)
    end = 255 if expected_values[strongest] > 0 else 0
    assert np.array_equal(image[strongest][:3], lut[end, :3])
    assert image[strongest][3] == round(255 * DEFAULT_ALPHA)  # full opacity only at the strongest cell
    weakest = np.unravel_index(np.argmin(np.abs(expected_values)), expected_values.shape)
    assert image[weakest][3] < 0.2 * 255 * DEFAULT_ALPHA  # weak cells let the photo through
    # Drawn scaled to the canvas: transform, image, reset; then the peak marker (a diamond).
    names = commands.names(layer)
    assert names[:4] == ["clear", "setTransform", "putImageData", "resetTransform"]
    assert names.count("strokePolygon") == 2  # black outline, white inside
    transform = commands.on(layer)[1]["args"]
    assert transform == pytest.approx([320 / 9, 0, 0, 178 / 5, 0, 0])
    # A crosshair on the hovered image, nothing new on its own overlay.
    assert "strokeLineSegments" in commands.names(viewer.query_canvas[2])
    assert commands.on(viewer.query_canvas[1]) == []


def test_hovering_reference_draws_over_query_upsampled_in_value_space(explanation, commands):
    v = PairViewer.from_explanation(explanation, size=320, alpha=0.7, hover="kernel")
    assert v.overlay_max_side == 32
    assert move(v, "reference", 20, 200)
    _, row, col = v.hovered
    values = explanation.from_reference(row, col)
    assert values.shape == (7, 7)
    _, lo, hi = normalize_map(values, mode="symmetric")
    expected = map_to_rgba(upsample_bilinear(values, (28, 28)), cmap="RdBu_r", mode="symmetric",
                           vmin=lo, vmax=hi, alpha=0.7, alpha_from_value=True)
    assert np.array_equal(commands.last_image(v.query_canvas[1]), expected)
    assert commands.on(v.query_canvas[1])[1]["args"] == pytest.approx([320 / 28, 0, 0, 320 / 28, 0, 0])


def test_css_scaled_canvas_uses_the_element_box(viewer):
    # The element is shown at half size: relative coordinates are in CSS pixels of that box.
    y, x = viewer.canvas_position("query", 60, 150)
    event = {"type": "mousemove", "relativeX": x / 2, "relativeY": y / 2,
             "boundingRectWidth": 160, "boundingRectHeight": 160}
    assert viewer._handle_event("query", event)
    assert viewer.hovered[1:] == pytest.approx((60, 150))


def test_image_edges_are_inside(viewer):
    assert viewer._handle_event("reference", {"type": "mousemove", "relativeX": 320, "relativeY": 178})
    assert viewer.hovered == ("reference", 149.5, 269.5)
    assert viewer._handle_event("reference", {"type": "mousemove", "relativeX": 0, "relativeY": 0})
    assert viewer.hovered == ("reference", -0.5, -0.5)


def test_leaving_restores_overall_map_or_nothing(viewer, explanation, commands):
    move(viewer, "query", 30, 30)
    commands.clear()
    assert viewer._handle_event("query", {"type": "mouseleave"})
    assert viewer.hovered is None and viewer.state.hovered is None
    both = np.concatenate([explanation.query_map.ravel(), explanation.reference_map.ravel()])
    limit = float(np.abs(both).max())
    expected = map_to_rgba(explanation.reference_map, cmap="RdBu_r", mode="symmetric",
                           vmin=-limit, vmax=limit, alpha=DEFAULT_ALPHA, alpha_from_value=True)
    assert np.array_equal(commands.last_image(viewer.reference_canvas[1]), expected)
    assert "strokeLineSegments" not in commands.names(viewer.query_canvas[2])  # crosshair gone
    assert "strokePolygon" not in commands.names(viewer.reference_canvas[1])  # no peak at rest

    commands.clear()
    viewer.overall_toggle.value = False
    assert viewer.show_overall is False
    for canvas in (viewer.query_canvas, viewer.reference_canvas):  # the toggle clears both overall maps
        assert commands.names(canvas[1]) == ["clear"]
    move(viewer, "query", 30, 30)
    commands.clear()
    viewer._handle_event("query", {"type": "mouseleave"})
    assert commands.names(viewer.reference_canvas[1]) == ["clear"]


def test_moving_to_the_other_image_without_a_leave(viewer, explanation, commands):
    move(viewer, "query", 30, 30)
    commands.clear()
    move(viewer, "reference", 75, 135)
    assert viewer.hovered[0] == "reference"
    _, row, col = viewer.hovered
    assert np.array_equal(commands.last_image(viewer.query_canvas[1]), point_rgba(explanation.from_reference(row, col)))
    assert "strokePolygon" in commands.names(viewer.query_canvas[1])  # the peak moved with the map
    limit = float(np.abs(np.concatenate([explanation.query_map.ravel(), explanation.reference_map.ravel()])).max())
    overall = map_to_rgba(explanation.reference_map, cmap="RdBu_r", mode="symmetric", vmin=-limit, vmax=limit,
                          alpha=DEFAULT_ALPHA, alpha_from_value=True)
    assert np.array_equal(commands.last_image(viewer.reference_canvas[1]), overall)
    assert "strokeLineSegments" not in commands.names(viewer.query_canvas[2])


# ------------------------------------------------------------------------------------------------
# bad input


BAD_EVENTS = [
    None, "mousemove", 3, [], {},
    {"type": "wheel", "relativeX": 10, "relativeY": 10},
    {"type": "mousemove"},
    {"type": "mousemove", "relativeX": 10},
    {"type": "mousemove", "relativeX": float("nan"), "relativeY": 10},
    {"type": "mousemove", "relativeX": 10, "relativeY": float("inf")},
    {"type": "mousemove", "relativeX": "10", "relativeY": 10},
    {"type": "mousemove", "relativeX": True, "relativeY": 10},
    {"type": "mousemove", "relativeX": None, "relativeY": None},
    {"type": "mousemove", "relativeX": -1, "relativeY": 10},
    {"type": "mousemove", "relativeX": 10, "relativeY": -0.01},
    {"type": "mousemove", "relativeX": 321, "relativeY": 10},
    {"type": "mousemove", "relativeX": 10, "relativeY": 10, "boundingRectWidth": 5},
    {"type": "click", "relativeX": float("nan"), "relativeY": 1},
    {"type": "click", "relativeX": 1e9, "relativeY": 1},
    {"type": "mouseleave"},  # not hovering: nothing to do
]


@pytest.mark.parametrize("event", BAD_EVENTS, ids=range(len(BAD_EVENTS)))
def test_bad_events_are_ignored(viewer, commands, event):
    assert viewer._handle_event("query", event) is False
    assert viewer._handle_event("reference", event) is False
    assert commands.calls == []
    assert viewer.hovered is None and viewer.state.hovered is None and viewer.pins == ()


def test_unusable_box_size_falls_back_to_canvas_pixels(viewer):
    for box in (0, -3, float("nan"), "wide"):
        assert viewer._handle_event("query", {"type": "mousemove", "relativeX": 160, "relativeY": 160,
                                       "boundingRectWidth": box, "boundingRectHeight": box})
        assert viewer.hovered == ("query", 111.5, 111.5)


def test_public_methods_reject_bad_points_with_clear_errors(viewer):
    with pytest.raises(ValueError, match="outside the image"):
        viewer.hover("query", 224, 10)
    with pytest.raises(ValueError, match="query row=nan must be a finite number"):
        viewer.hover("query", float("nan"), 10)
    with pytest.raises(ValueError, match="source='left' is not one of"):
        viewer.pin("left", 1, 1)
    with pytest.raises(TypeError, match="reference col='3' must be a number"):
        viewer.pin("reference", 1, "3")
    assert viewer.hovered is None and viewer.pins == ()


def test_constructor_errors_name_the_input(explanation):
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0.0, 1.0\]"):
        PairViewer.from_explanation(explanation, alpha=1.5)
    with pytest.raises(ValueError, match="size=3 must be >= 16"):
        PairViewer.from_explanation(explanation, size=3)
    with pytest.raises(ValueError, match="reading='raw' is not one of"):
        PairViewer.from_explanation(explanation, reading="raw")
    with pytest.raises(ValueError, match="cmap 'nope' is not a matplotlib colormap"):
        PairViewer.from_explanation(explanation, cmap="nope")
    with pytest.raises(TypeError, match="explanation must be a PairExplanation"):
        PairViewer.from_explanation({"score": 1})
    with pytest.raises(TypeError, match=r"state must be a HoverState or None \(got dict\)"):
        PairViewer.from_explanation(explanation, state={})
    with pytest.raises(ValueError, match="model is None"):
        PairViewer(None, explanation.query, explanation.reference)
    viewer = PairViewer.from_explanation(explanation)
    with pytest.raises(ValueError, match="alpha=-0.1 must be in"):
        viewer.alpha = -0.1
    with pytest.raises(ValueError, match="cmap 'jett'"):
        viewer.cmap = "jett"
    assert viewer.alpha == DEFAULT_ALPHA and viewer.cmap is None


# ------------------------------------------------------------------------------------------------
# throttling, stale events, coalescing


def test_trailing_move_after_leave_is_dropped(viewer, commands):
    assert move(viewer, "query", 50, 50, timeStamp=10.0)
    assert viewer._handle_event("query", {"type": "mouseleave", "timeStamp": 20.0})
    commands.clear()
    # lodash's trailing call re-sends the last move (its own, older timeStamp) after the leave.
    assert move(viewer, "query", 60, 60, timeStamp=15.0) is False
    assert viewer.hovered is None and commands.calls == []
    assert move(viewer, "query", 60, 60, timeStamp=25.0)
    assert viewer.hovered[0] == "query"


def test_moves_queued_in_the_kernel_are_coalesced(viewer, commands):
    async def burst():
        for k in range(50):
            y, x = viewer.canvas_position("query", 2 * k, 3 * k)
            viewer._receive("query", {"type": "mousemove", "relativeX": x, "relativeY": y, "timeStamp": k})
        assert commands.calls == []  # nothing drawn while the burst is being received
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert len(commands.images(viewer.reference_canvas[1])) == 1
    assert viewer.hovered[1:] == pytest.approx((98, 147))
    assert viewer.logic._pending == {}

    async def move_then_leave():
        y, x = viewer.canvas_position("query", 10, 10)
        viewer._receive("query", {"type": "mousemove", "relativeX": x, "relativeY": y, "timeStamp": 100})
        viewer._receive("query", {"type": "mouseleave", "timeStamp": 101})
        await asyncio.sleep(0)

    asyncio.run(move_then_leave())
    assert viewer.hovered is None


def test_without_an_event_loop_moves_are_handled_at_once(viewer):
    viewer._receive("reference", {"type": "mousemove", "relativeX": 100, "relativeY": 50})
    assert viewer.hovered[0] == "reference"


def test_ten_thousand_moves_leave_memory_flat():
    exp = make_explanation(dim=8)
    v = PairViewer.from_explanation(exp, size=200)
    rng = np.random.default_rng(0)
    positions = rng.uniform(1, 199, size=(10_500, 2))

    def run(chunk):
        for k, (y, x) in enumerate(chunk):
            source = "query" if k % 500 < 250 else "reference"
            if source == "reference":
                y = y * v.reference_canvas.height / 200
            v._receive(source, {"type": "mousemove", "relativeX": x, "relativeY": y})
            if k % 1000 == 999:
                v._receive(source, {"type": "mouseleave"})

    run(positions[:500])  # warm caches (LUTs, PIL, traitlets)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    run(positions[500:5500])
    gc.collect()
    middle = tracemalloc.take_snapshot()
    run(positions[5500:])
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()

    def growth(new, old):
        return sum(stat.size_diff for stat in new.compare_to(old, "filename"))

    # Python's attribute-lookup cache keeps some name strings alive (bounded by its size): a
    # small settling growth. A leak of even one small object per move would exceed both bounds
    # (10,000 x 56 bytes; 5,000 x 56 bytes).
    assert growth(after, before) < 256_000, f"memory grew by {growth(after, before)} bytes over 10,000 moves"
    assert growth(after, middle) < 64_000, f"memory grew by {growth(after, middle)} bytes over the last 5,000"
    assert ipycanvas_canvas._CANVAS_MANAGER._commands_cache == []
    assert ipycanvas_canvas._CANVAS_MANAGER._caching is False
    assert v.logic._pending == {} and len(v.drawing.matches) == 0


# ------------------------------------------------------------------------------------------------
# pins


def test_clicks_pin_points_with_distinct_colours_and_contributions(viewer, explanation, commands):
    assert click(viewer, "query", 100, 50)
    assert click(viewer, "query", 10, 200)
    assert click(viewer, "reference", 75, 135)
    pins = viewer.pins
    assert [p.source for p in pins] == ["query", "query", "reference"]
    assert [p.colour for p in pins] == list(PIN_COLOURS[:3])
    for pin in pins:
        overall = explanation.maps[pin.source]
        size = explanation.query_size if pin.source == "query" else explanation.reference_size
        expected = bilinear_value(overall.astype(np.float64), size, pin.row, pin.col)
        row_map = (explanation.from_query if pin.source == "query" else explanation.from_reference)(pin.row, pin.col)
        assert viewer.contribution(pin.source, pin.row, pin.col) == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert float(row_map.sum()) == pytest.approx(expected, rel=1e-4, abs=1e-6)
        assert f"{viewer.contribution(pin.source, pin.row, pin.col):+.4f}" in viewer.pin_list.value
        assert pin.colour in viewer.pin_list.value
    # Query pins are dots on the query; their best matches are rings on the reference.
    dots = [c["args"][:2] for c in commands.on(viewer.query_canvas[2]) if c["name"] == "fillCircle"]
    y, x = viewer.canvas_position("query", pins[0].row, pins[0].col)
    assert [x, y] in [pytest.approx(d) for d in dots]
    values = explanation.from_query(pins[0].row, pins[0].col)
    peak = np.unravel_index(np.argmax(values), values.shape)
    match_row = (peak[0] + 0.5) * 150 / 5 - 0.5
    match_col = (peak[1] + 0.5) * 270 / 9 - 0.5
    my, mx = viewer.canvas_position("reference", match_row, match_col)
    rings = [c["args"][:2] for c in commands.on(viewer.reference_canvas[2]) if c["name"] == "strokeCircle"]
    assert [mx, my] in [pytest.approx(r) for r in rings]

    viewer.clear_pins_button.click()
    assert viewer.pins == () and "click a point" in viewer.pin_list.value


def test_pins_are_capped_and_colours_stay_distinct(viewer):
    for k in range(HoverState.max_pins + 2):
        click(viewer, "query", 10 * k, 10)
    pins = viewer.pins
    assert len(pins) == HoverState.max_pins
    assert [p.row for p in pins] == pytest.approx([10.0 * k for k in range(2, HoverState.max_pins + 2)])
    assert len({p.colour for p in pins}) == len(pins)


def test_state_can_remove_pins_and_rejects_bad_ones():
    state = HoverState()
    first = state.add_pin("query", 1, 2)
    state.add_pin("reference", 3, 4)
    assert state.remove_pin(0) == first
    assert [p.source for p in state.pins] == ["reference"]
    with pytest.raises(IndexError, match="pin index 5"):
        state.remove_pin(5)
    with pytest.raises(ValueError, match="query row=inf must be a finite number"):
        state.add_pin("query", math.inf, 0)


# ------------------------------------------------------------------------------------------------
# controls


def test_reading_colormap_and_opacity_controls_redraw_the_hover(viewer, explanation, commands):
    move(viewer, "query", 100, 50)
    _, row, col = viewer.hovered
    layer = viewer.reference_canvas[1]

    viewer.reading_toggle.value = "correspondence"
    assert viewer.reading == "correspondence"
    corr = explanation.from_query(row, col, reading="correspondence")
    # A cosine: sequential colormap over the map's own range (not a symmetric scale around 0).
    def sequential(values, cmap="viridis", alpha=DEFAULT_ALPHA):
        return map_to_rgba(values, cmap=cmap, mode="minmax", alpha=alpha, alpha_from_value=True)

    assert np.array_equal(commands.last_image(layer), sequential(corr))
    assert f"{corr.max():.3g}".replace("-", "−") in viewer.colorbar.text and "correspondence" in viewer.colorbar.text

    viewer.cmap_dropdown.value = "magma"
    assert viewer.cmap == "magma"
    assert np.array_equal(commands.last_image(layer), sequential(corr, cmap="magma"))

    viewer.opacity_slider.value = 0.2
    assert viewer.alpha == 0.2
    image = commands.last_image(layer)
    assert np.array_equal(image, sequential(corr, cmap="magma", alpha=0.2))
    assert image[..., 3].max() == round(255 * 0.2)  # the slider sets the strongest cell's opacity

    viewer.cmap = None  # back to the default, and the dropdown follows
    assert viewer.cmap_dropdown.value == "default"
    viewer.cmap = "twilight"  # any matplotlib name is accepted and added to the menu
    assert viewer.cmap_dropdown.value == "twilight"


def test_method_menu_is_disabled_without_a_model(viewer):
    assert viewer.method_dropdown.disabled
    assert "decomposition" in viewer.method_dropdown.options
    assert "<code>decomposition</code>" in viewer.score_label.value
    assert f"{viewer.explanation.score:.4f}" in viewer.score_label.value


def test_overall_only_method_hovers_without_point_maps(commands):
    exp = make_explanation(with_p2p=False)
    v = PairViewer.from_explanation(exp)
    commands.clear()
    assert move(v, "query", 100, 100)
    assert commands.images(v.reference_canvas[1]) == []
    assert "overall maps only" in v.status_label.value
    click(v, "query", 100, 100)
    expected = bilinear_value(exp.query_map.astype(np.float64), exp.query_size, 100, 100)
    assert v.contribution("query", 100, 100) == pytest.approx(expected, rel=1e-5)


def test_set_explanation_keeps_pins_only_for_same_sizes(viewer, explanation):
    click(viewer, "query", 10, 10)
    viewer.set_explanation(make_explanation(seed=3))
    assert len(viewer.pins) == 1
    viewer.set_explanation(make_explanation(seed=3, query_size=(100, 120)))
    assert viewer.pins == ()
    assert (viewer.query_canvas.height, viewer.query_canvas.width) == (267, 320)
    with pytest.raises(ValueError, match="set_pair needs a model"):
        viewer.set_pair(explanation.query, explanation.reference)


# ------------------------------------------------------------------------------------------------
# with a real (tiny) model


@pytest.fixture(scope="module")
def tiny():
    import simviz_widgets as sv

    return sv.load_model("tiny_test")


def test_viewer_with_a_model_set_pair_and_set_model(tiny, commands):
    import simviz_widgets as sv

    rng = np.random.default_rng(0)
    query = rng.integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    originals = query.copy(), reference.copy()
    v = PairViewer(tiny, query, reference, size=128, hover="kernel")
    assert v.explanation.score == pytest.approx(sv.explain(tiny, query, reference).score, rel=1e-6)
    assert list(v.method_dropdown.options) == sv.list_methods() and not v.method_dropdown.disabled
    move(v, "query", 30, 40)
    _, row, col = v.hovered
    values = v.explanation.from_query(row, col)
    _, lo, hi = normalize_map(values, mode="symmetric")
    h, w = values.shape
    factor = max(1, 32 // max(h, w))
    expected = map_to_rgba(upsample_bilinear(values, (h * factor, w * factor)), cmap="RdBu_r", mode="symmetric",
                           vmin=lo, vmax=hi, alpha=DEFAULT_ALPHA, alpha_from_value=True)
    assert np.array_equal(commands.last_image(v.reference_canvas[1]), expected)

    click(v, "query", 5, 5)
    new_query = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    commands.clear()
    v.set_pair(new_query, reference)
    assert v.pins == () and v.hovered is None
    assert v.explanation.score == pytest.approx(sv.explain(tiny, new_query, reference).score, rel=1e-6)
    assert np.array_equal(commands.last_image(v.query_canvas[0]), photo_rgba(v.explanation.query, (128, 128)))
    assert np.array_equal(query, originals[0]) and np.array_equal(reference, originals[1])

    other = sv.load_model("tiny_test", seed=1)
    v.set_model(other)
    assert v.model is other
    assert v.explanation.score == pytest.approx(sv.explain(other, new_query, reference).score, rel=1e-6)


def test_explorer_with_a_model(tiny):
    rng = np.random.default_rng(1)
    query, reference = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    explorer = PairExplorer(tiny, query, reference, size=128, panel_size=96)
    assert explorer.panel.explanation is explorer.viewer.explanation
    first = explorer.explanation.score
    explorer.set_pair(reference, query)  # swapped pair: same score (cosine is symmetric)
    assert explorer.panel.explanation is explorer.viewer.explanation
    assert explorer.explanation.score == pytest.approx(first, rel=1e-5)
    assert np.array_equal(explorer.explanation.query, reference)


# ------------------------------------------------------------------------------------------------
# panel and explorer


def test_panel_follows_hover_and_pins_on_the_score_curve(explanation):
    explorer = PairExplorer.from_explanation(explanation, size=320, panel_size=160)
    viewer, panel = explorer.viewer, explorer.panel
    assert panel.state is viewer.state
    # The cumulative curve of sorted query contributions ends at the score.
    assert panel.curve_marks["query"].y[-1] == pytest.approx(explanation.score, rel=1e-4)
    assert panel.curve_marks["reference"].y[-1] == pytest.approx(explanation.score, rel=1e-4)
    assert panel.score_mark.y.tolist() == pytest.approx([explanation.score] * 2)

    move(viewer, "query", 100, 50)
    cell = (int((100 + 0.5) * 7 / 224), int((50 + 0.5) * 7 / 224))
    values = explanation.query_map.ravel()
    order = np.argsort(-values, kind="stable")
    rank = int(np.where(order == cell[0] * 7 + cell[1])[0][0])
    assert panel.hover_mark.x.tolist() == pytest.approx([(rank + 1) / 49])
    assert panel.hover_mark.y.tolist() == pytest.approx([np.sort(values)[::-1][: rank + 1].sum()], rel=1e-4)
    viewer._handle_event("query", {"type": "mouseleave"})
    assert panel.hover_mark.x.tolist() == []

    click(viewer, "reference", 10, 10)
    click(viewer, "query", 200, 200)
    assert list(panel.pin_marks.colors) == list(PIN_COLOURS[:2])
    assert len(panel.pin_marks.x) == 2


def test_panel_colour_bar_shows_the_real_signed_scale(explanation, commands):
    panel = OverallPanel(explanation, size=160)
    limit = float(max(np.abs(explanation.query_map).max(), np.abs(explanation.reference_map).max()))
    assert panel.limits == pytest.approx((-limit, limit))
    values = [v for v, _, _ in panel.colorbar_labels]
    assert values == pytest.approx([-limit, -limit / 2, 0.0, limit / 2, limit])
    ys = [y for _, y, _ in panel.colorbar_labels]
    assert ys[2] == pytest.approx((ys[0] + ys[-1]) / 2)  # 0 in the middle of a diverging bar
    texts = [c["args"][0] for c in commands.on(panel.colorbar_canvas) if c["name"] == "fillText"]
    assert f"{limit:.3g}" in texts and "0" in texts
    gradient = commands.last_image(panel.colorbar_canvas)
    lut = colormap_lut("RdBu_r")
    assert np.array_equal(gradient[0, 0, :3], lut[255, :3]) and np.array_equal(gradient[-1, 0, :3], lut[0, :3])


def test_explorer_panel_follows_the_viewer(explanation):
    explorer = PairExplorer.from_explanation(explanation)
    new = make_explanation(seed=5)
    explorer.set_explanation(new)
    assert explorer.panel.explanation is new and explorer.explanation is new
    explorer.viewer.cmap_dropdown.value = "coolwarm"
    explorer.viewer.opacity_slider.value = 0.8
    assert explorer.panel.cmap == "coolwarm" and explorer.panel.alpha == 0.8


# ------------------------------------------------------------------------------------------------
# static form


def test_static_png_has_the_pins(viewer, explanation):
    click(viewer, "query", 100, 50)
    picture = Image.open(io.BytesIO(viewer.to_png()))
    assert picture.format == "PNG"
    assert picture.size == (320 + 8 + 320, 18 + 320)
    pixels = np.array(picture.convert("RGB"))
    # The pin is drawn in its colour at its place on the query tile.
    y, x = viewer.canvas_position("query", 100, 50)
    colour = tuple(int(PIN_COLOURS[0][k:k + 2], 16) for k in (1, 3, 5))
    assert tuple(pixels[18 + int(y), int(x)]) == colour

    explorer = PairExplorer.from_explanation(explanation)
    shown = []
    import IPython.display

    original = IPython.display.display
    IPython.display.display = lambda obj, raw=False, **kw: shown.append(obj)
    try:
        explorer._ipython_display_()
    finally:
        IPython.display.display = original
    assert shown[0]["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert f"simviz-fallback-{explorer.viewer.model_id}" in shown[1]["text/html"]


def test_to_figure_uses_query_pins_as_points(viewer):
    click(viewer, "query", 100, 50)
    click(viewer, "reference", 10, 10)
    figure = viewer.to_figure()
    labels = {ax.get_label() for ax in figure.get_axes()}
    assert {"query", "reference", "query_map", "reference_map", "point_0"} <= labels
    assert "point_1" not in labels  # one query pin -> one point map


def test_close_frees_every_widget_and_stops_following_the_state(explanation):
    from ipywidgets import Widget

    explorer = PairExplorer.from_explanation(explanation)
    inner = [explorer.viewer.query_canvas, *(explorer.viewer.reference_canvas[k] for k in range(3)),
             explorer.viewer.opacity_slider, explorer.viewer.colorbar.low, explorer.panel.chart,
             *explorer.viewer._events]
    ids = [w.model_id for w in inner]
    assert all(i in Widget.widgets for i in ids)
    state = explorer.state
    explorer.close()
    explorer.close()  # twice is harmless (ipywidgets closes again when collected)
    assert all(w.comm is None for w in inner)
    assert not any(i in Widget.widgets for i in ids)
    state.add_pin("query", 1, 1)  # nothing is listening any more: no error, no drawing
    assert state._trait_notifiers.get("pins", {}).get("change", []) == []


# ------------------------------------------------------------------------------------------------
# a closed widget refuses every change


def _forward_counter(model):
    """A list that grows by one per forward pass of ``model``'s module, and the hook's handle."""
    calls = []
    handle = model.module.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_a_closed_viewer_refuses_every_change_and_runs_no_model():
    """Was: after close() the viewer still pinned and cleared the shared state's pins, and hovering or
    changing the colormap failed deep inside ipywidgets ('NoneType' has no attribute 'comm_id')."""
    import simviz_widgets as sv
    from simviz_widgets.checks import SimvizError
    from simviz_widgets.widgets.session import WidgetClosedError

    model = sv.load_model("tiny_test", seed=3)
    rng = np.random.default_rng(4)
    query, reference = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    state = HoverState()
    v = PairViewer(model, query, reference, size=64, state=state)
    v.pin("query", 3, 3)
    pins, shown = state.pins, v.explanation
    calls, handle = _forward_counter(model)
    try:
        v.close()
        v.close()  # twice is fine
        changes = {
            "set_pair": lambda: v.set_pair(reference, query),
            "set_model": lambda: v.set_model(model),
            "set_explanation": lambda: v.set_explanation(shown),
            "method": lambda: setattr(v, "method", "gradcam"),
            "hover": lambda: v.hover("query", 3, 3),
            "unhover": v.unhover,
            "pin": lambda: v.pin("query", 5, 5),
            "clear_pins": v.clear_pins,
            "cancel_background": v.cancel_background,
            "cmap": lambda: setattr(v, "cmap", "gray"),
            "alpha": lambda: setattr(v, "alpha", 0.3),
            "reading": lambda: setattr(v, "reading", "correspondence"),
            "show_overall": lambda: setattr(v, "show_overall", False),
            "explanation": lambda: setattr(v, "explanation", shown),
            "overlay_max_side": lambda: setattr(v, "overlay_max_side", 8),
        }
        for name, change in changes.items():
            with pytest.raises(WidgetClosedError, match="this PairViewer is closed") as info:
                change()
            assert isinstance(info.value, SimvizError) and isinstance(info.value, RuntimeError), name
        # Browser events that arrive after close are dropped, not errors in a callback.
        assert not v._handle_event("query", {"type": "mousemove", "relativeX": 3.0, "relativeY": 3.0})
    finally:
        handle.remove()
    assert calls == [], "a closed viewer ran the model"
    assert state.pins == pins and v.explanation is shown and v.cmap is None and v.alpha == DEFAULT_ALPHA
    with pytest.raises(WidgetClosedError):
        from simviz_widgets.widgets.comparison import MethodComparisonPanel

        MethodComparisonPanel.for_viewer(v)


def test_a_closed_explorer_refuses_changes_by_name(tiny):
    from simviz_widgets.widgets.session import WidgetClosedError

    rng = np.random.default_rng(5)
    query, reference = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    explorer = PairExplorer(tiny, query, reference, size=64, panel_size=64)
    shown = explorer.explanation
    calls, handle = _forward_counter(tiny)
    try:
        explorer.close()
        explorer.close()
        for change in (lambda: explorer.set_pair(reference, query), lambda: explorer.set_model(tiny),
                       lambda: explorer.set_explanation(shown)):
            with pytest.raises(WidgetClosedError, match="this PairExplorer is closed"):
                change()
        with pytest.raises(WidgetClosedError, match="this OverallPanel is closed"):
            explorer.panel.alpha = 0.2
    finally:
        handle.remove()
    assert calls == []

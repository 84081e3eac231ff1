"""The pair viewer's browser hover path, kernel side (no browser): what goes to the page, what the
kernel does with the throttled hover reports, and what it no longer draws.

tests/browser/test_browser_hover.py checks the same path in Chromium: pixels, latency, no kernel.
"""

import base64
import io

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image
from widget_helpers import click, make_explanation, move

from simviz_widgets.checks import InputError
from simviz_widgets.web.payload import explanation_payload
from simviz_widgets.widgets import PairViewer
from simviz_widgets.widgets.hover_layer import HoverLayer


def layer_report(viewer, source, row, col, *, generation=None, stamp=None):
    """What the page's hover layer sends the kernel for a move over display pixel (row, col)."""
    y, x = viewer.canvas_position(source, row, col)
    rows, cols = viewer.logic.geometry[source].canvas
    generation = viewer.browser.generation if generation is None else generation
    content = {"type": "mousemove", "relativeX": x, "relativeY": y, "boundingRectWidth": cols,
               "boundingRectHeight": rows, "generation": generation}
    if stamp is not None:
        content["timeStamp"] = stamp
    viewer.browser._on_message(source, viewer.browser.layers[source], content, [])


def layer_ready(viewer, generation=None):
    """What a hover layer sends once it has drawn the payload of ``generation`` (default: current)."""
    generation = viewer.browser.generation if generation is None else generation
    viewer.browser._on_message("query", None, {"type": "ready", "generation": generation}, [])


@pytest.fixture
def explanation():
    return make_explanation()


@pytest.fixture
def viewer(explanation):
    v = PairViewer.from_explanation(explanation, size=320)
    layer_ready(v)
    return v


def moves_watched(viewer) -> int:
    return [list(event.watched_events) for event in viewer._events].count(["mousemove"])


def test_the_kernel_draws_hovers_until_a_layer_is_ready(explanation, commands):
    """Where the layer cannot run (no anywidget front-end), hover must keep working."""
    v = PairViewer.from_explanation(explanation, size=320)
    assert v.browser.wanted and not v.browser.active and moves_watched(v) == 2
    commands.clear()
    move(v, "query", 100, 50)
    assert commands.images(v.reference_canvas[1])  # drawn by the kernel
    layer_ready(v, generation=v.browser.generation - 1)  # a layer still on an older explanation
    assert not v.browser.active
    commands.clear()
    layer_ready(v)
    assert v.browser.active and moves_watched(v) == 0
    # the point map the kernel drew goes back to the rest view (the page draws hovers now)
    assert [c["name"] for c in commands.on(v.reference_canvas[1])].count("putImageData") == 1
    assert commands.last_image(v.reference_canvas[1]).shape[:2] == (5 * 3, 9 * 3)  # the 5x9 overall map, x3


def test_payload_goes_to_the_page_once_as_binary_buffers(viewer, explanation):
    data = viewer.browser.data
    payload = data.payload
    assert viewer.browser.active and payload["generation"] == viewer.browser.generation == 1
    expected = explanation_payload(explanation, size=320, generation=1, binary="bytes")
    assert payload["point"] == expected["point"] and payload["point"]["encoding"] == "factors"  # 16 < 49 x 45
    # ipywidgets sends bytes as binary buffers (not JSON lists of numbers)
    state, buffer_paths, buffers = _remove_buffers(data.get_state())
    assert ["payload", "point", "factors", "contribution", "query"] in buffer_paths
    assert ["payload", "sides", "query", "photo"] in buffer_paths
    assert sum(len(b) for b in buffers) >= 2 * (49 + 45) * 16 * 4
    assert all(isinstance(layer, HoverLayer) and layer.data is data for layer in viewer.browser.layers.values())
    assert "export default" in viewer.browser.layers["query"]._esm


def test_layers_sit_in_the_event_pads_and_ipyevents_stops_sending_moves(viewer):
    for side in ("query", "reference"):
        assert viewer.browser.layers[side] in viewer._pads[side].children
        assert viewer.browser.layers[side].side == side
    watched = [list(event.watched_events) for event in viewer._events]
    assert watched.count([]) == 2 and watched.count(["mouseleave", "click"]) == 2  # moves come from the layer


def test_a_layer_report_moves_the_kernel_state_without_drawing_the_map(viewer, commands):
    commands.clear()
    layer_report(viewer, "query", 100, 50)
    side, row, col = viewer.hovered
    assert side == "query" and abs(row - 100) < 1e-6 and abs(col - 50) < 1e-6
    assert viewer.state.hovered == viewer.hovered
    assert "adds" in viewer.status_label.value and "best match" in viewer.status_label.value
    values = viewer.explanation.from_query(row, col)
    assert viewer.colorbar.high.value == f"{np.abs(values).max():.3g}".replace("-", "−")
    # the page drew the map, the crosshair and the peak: the kernel sends no drawing for a hover
    assert commands.calls == []
    move(viewer, "query", 100, 50, type="mouseleave")
    assert viewer.hovered is None


def test_reports_about_an_older_explanation_are_dropped(viewer, explanation):
    old_generation = viewer.browser.generation
    viewer.set_explanation(make_explanation(seed=3))
    assert viewer.browser.generation == old_generation + 1
    assert viewer.browser.data.payload["generation"] == viewer.browser.generation
    layer_ready(viewer)
    layer_report(viewer, "query", 100, 50, generation=old_generation)
    assert viewer.hovered is None
    layer_report(viewer, "query", 100, 50)
    assert viewer.hovered is not None
    viewer.browser._on_message("query", None, "not a dict", [])  # ignored, not an error


def test_an_older_move_after_a_leave_is_ignored(viewer):
    layer_report(viewer, "query", 10, 10, stamp=100.0)
    viewer._handle_event("query", {"type": "mouseleave", "timeStamp": 200.0})
    layer_report(viewer, "query", 20, 20, stamp=150.0)  # the throttled trailing move, late
    assert viewer.hovered is None


def test_methods_without_point_maps_stay_on_the_kernel_path(commands):
    v = PairViewer.from_explanation(make_explanation(with_p2p=False), size=320)
    layer_ready(v)
    payload = v.browser.data.payload
    assert not v.browser.active and payload["point"] is None  # photos and maps only: the rest view
    assert payload["sides"]["query"]["photo"][:4] == b"\x89PNG"
    assert moves_watched(v) == 2
    layer_report(v, "query", 100, 50)  # a layer never reports then; if it did, it is ignored
    assert v.hovered is None
    move(v, "query", 100, 50)
    assert v.hovered is not None


def test_kernel_mode_draws_every_hover_in_the_kernel(explanation, commands):
    v = PairViewer.from_explanation(explanation, size=320, hover="kernel")
    layer_ready(v)
    assert not v.browser.active and v.browser.data.payload["point"] is None
    commands.clear()
    move(v, "query", 100, 50)
    assert commands.images(v.reference_canvas[1])


def test_look_follows_controls_and_pins(viewer):
    viewer.cmap, viewer.alpha, viewer.reading = "viridis", 0.5, "correspondence"
    click(viewer, "query", 100, 50)
    look = viewer.browser.data.look
    assert (look["cmap"], look["alpha"], look["reading"]) == ("viridis", 0.5, "correspondence")
    pin = viewer.pins[0]
    assert look["pins"][0]["source"] == "query" and look["pins"][0]["colour"] == pin.colour
    assert tuple(look["pins"][0]["match"]) == viewer.logic.best_match(pin)
    viewer.clear_pins()
    assert viewer.browser.data.look["pins"] == []


def test_hover_option_is_checked():
    with pytest.raises(InputError, match="hover"):
        PairViewer.from_explanation(make_explanation(), hover="page")


def test_close_closes_the_layers(viewer):
    layers, data = list(viewer.browser.layers.values()), viewer.browser.data
    viewer.close()
    assert all(layer.comm is None for layer in layers) and data.comm is None


def test_display_writes_the_widget_and_a_static_fallback(viewer, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False, **kw: shown.append(obj))
    click(viewer, "query", 100, 50)
    viewer._ipython_display_()
    widget, fallback = shown
    assert widget["application/vnd.jupyter.widget-view+json"]["model_id"] == viewer.model_id
    html = fallback["text/html"]
    assert f"simviz-fallback-{viewer.model_id}" in html and "<iframe" in html and "srcdoc=" in html
    png = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert Image.open(io.BytesIO(base64.b64decode(png))).format == "PNG"
    # the rule that hides the fallback names the class the layers put on themselves once drawn
    assert all(layer.live_class == f"simviz-live-{viewer.model_id}" for layer in viewer.browser.layers.values())
    assert f".simviz-live-{viewer.model_id}" in viewer.live_css() and viewer.live_css() in str(
        [child.value for child in viewer.children[1].children if hasattr(child, "value")])


def test_to_html_writes_a_page_with_the_viewers_look(viewer, tmp_path):
    viewer.cmap = "gray"
    click(viewer, "reference", 20, 30)
    path = viewer.to_html(tmp_path / "viewer.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "mountPairView" in page
    payload = viewer.page_payload()
    assert payload["cmap"] == "gray" and payload["pins"][0]["source"] == "reference"
    assert payload["point"]["factors"]["contribution"]["query"] in page


def test_a_colormap_outside_the_menu_sends_its_lut(viewer):
    generation = viewer.browser.generation
    assert "twilight" not in viewer.browser.data.payload["luts"]
    viewer.cmap = "twilight"
    assert "twilight" in viewer.browser.data.payload["luts"] and viewer.browser.data.look["cmap"] == "twilight"
    assert viewer.browser.generation == generation  # the same explanation: hover reports stay valid


def test_pin_matches_follow_a_new_explanation(viewer):
    click(viewer, "query", 100, 50)
    viewer.set_explanation(make_explanation(seed=5))  # same sizes: the pin stays, its match moves
    layer_ready(viewer)
    pin = viewer.pins[0]
    assert tuple(viewer.browser.data.look["pins"][0]["match"]) == viewer.logic.best_match(pin)
    viewer.set_explanation(make_explanation(seed=5, with_p2p=False))
    assert viewer.browser.data.look["pins"][0]["match"] is None and moves_watched(viewer) == 2
    viewer.set_explanation(make_explanation(seed=6))
    layer_ready(viewer)
    assert tuple(viewer.browser.data.look["pins"][0]["match"]) == viewer.logic.best_match(pin)
    assert viewer.browser.active and moves_watched(viewer) == 0


def test_a_point_part_too_big_to_send_stays_on_the_kernel_path(explanation, monkeypatch):
    import simviz_widgets.widgets.hover_layer as hover_layer

    monkeypatch.setattr(hover_layer, "MAX_POINT_BYTES", 1000)  # this explanation's part is ~12 KB
    v = PairViewer.from_explanation(explanation, size=320)
    layer_ready(v)
    assert not v.browser.wanted and not v.browser.active and v.browser.data.payload["point"] is None
    assert moves_watched(v) == 2

"""js/pair_view.js in headless Chromium, without JupyterLab: the standalone page (mountPairView) and
the notebook hover layer (its anywidget ``render``, driven through stand-in models).

Each check compares the canvases with what Python paints for the same explanation (render.overlay
on the same scales), so the browser shows the kernel's pixels. The default pair's page is also
screenshotted into ``out/screenshots/`` (page_rest.png, page_hover_eye.png, page_pins.png) and its
hover cost in the page is reported (not asserted: machines differ).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.explain.base import PairExplanation, PointToPoint
from simviz_widgets.render import overlay
from simviz_widgets.web.assets import bundle
from simviz_widgets.web.display import photo_rgba
from simviz_widgets.web.page import iframe_html, page_size, standalone_html
from simviz_widgets.web.payload import explanation_payload
from simviz_widgets.web.scales import overall_scale, point_scale
from simviz_widgets.widgets.hover import HoverLogic

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"
SIZE = 40  # canvas pixels of the small explanation's 20 x 20 images
ALPHA = 0.8

_READ_CANVAS_JS = """
(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  return {rows: canvas.height, cols: canvas.width, rgba: Array.from(data)};
}
"""


def small_explanation(*, point: bool = True, missing=()) -> PairExplanation:
    """A 20 x 20 pair with random photos, signed 2 x 2 maps and a random rank-3 point-to-point part."""
    rng = np.random.default_rng(3)
    query = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    p2p = PointToPoint(rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32), 0.5,
                       (2, 2), (2, 2)) if point else None
    return PairExplanation("decomposition", 0.75, query, reference, rng.normal(size=(2, 2)), rng.normal(size=(2, 2)),
                           True, point_to_point=p2p, completeness_error=0.0 if point else None,
                           missing_maps=tuple(missing))


def blended(exp, side, values, scale) -> np.ndarray:
    photo = photo_rgba(exp.image(side), (SIZE, SIZE))[..., :3]
    return overlay(photo, values, alpha=ALPHA, cmap=scale.cmap, mode=scale.mode, vmin=scale.lo, vmax=scale.hi,
                   alpha_from_value=True)


def canvas_rgba(page, selector: str) -> np.ndarray:
    result = page.evaluate(_READ_CANVAS_JS, selector)
    return np.asarray(result["rgba"], np.uint8).reshape(result["rows"], result["cols"], 4)


def away_from(shape, centre, radius) -> np.ndarray:
    """Mask of the pixels farther than ``radius`` (Chebyshev) from canvas position (y, x) ``centre``."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.maximum(abs(rows + 0.5 - centre[0]), abs(cols + 0.5 - centre[1])) > radius


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.console_errors, page.requests = [], []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.on("request", lambda request: page.requests.append(request.url))
    yield page
    context.close()


def open_page(page, tmp_path, exp, name="pair.html", **options):
    payload = explanation_payload(exp, size=options.pop("size", SIZE), alpha=ALPHA, binary="base64", **options)
    path = tmp_path / name
    path.write_text(standalone_html(payload, title="test pair"), encoding="utf-8")
    width, height = page_size(payload)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(path.as_uri())
    page.wait_for_function("() => document.getElementById('simviz-root').simvizView")
    page.evaluate("() => document.getElementById('simviz-root').simvizView.ready.then(() => true)")
    return payload


def assert_fits(page, payload):
    """The viewer lies inside page_size(payload) and its status line shows all its text."""
    width, height = page_size(payload)
    box = page.locator(".simviz-pair").bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    assert page.evaluate("() => { const s = document.querySelector('.sv-status'); "
                         "return s.scrollHeight <= s.clientHeight && s.scrollWidth <= s.clientWidth; }")


def test_page_mounts_and_paints_what_python_computes(page, tmp_path):
    exp = small_explanation()
    payload = open_page(page, tmp_path, exp)
    rest = overall_scale(exp)
    for side in ("query", "reference"):  # at rest: each photo with its overall map on the shared scale
        expected = blended(exp, side, exp.map(side), rest)
        np.testing.assert_array_equal(canvas_rgba(page, f"canvas.sv-{side}")[..., :3], expected)
    assert_fits(page, payload)

    # a real mouse move over query canvas position (y, x) = (9, 29): image pixel (4.0, 14.0)
    box = page.locator("canvas.sv-query").bounding_box()
    page.mouse.move(box["x"] + 29 * box["width"] / SIZE, box["y"] + 9 * box["height"] / SIZE)
    logic = HoverLogic(exp, canvas_size=SIZE)
    logic.hover("query", 4.0, 14.0)
    assert page.locator(".sv-status").text_content() == logic.status_text()
    values = exp.point_map("query", 4.0, 14.0)
    scale = point_scale(values, "contribution")
    peak = [(v + 0.5) * SIZE / 20 for v in logic.peak[1:]]
    shown = canvas_rgba(page, "canvas.sv-reference")
    assert (shown[..., 3] == 255).all()
    keep = away_from(shown.shape, peak, 13)  # all but the peak diamond
    np.testing.assert_array_equal(shown[..., :3][keep], blended(exp, "reference", values, scale)[keep])
    bar = page.locator(".sv-meaning").text_content()
    assert bar == scale.meaning

    page.mouse.move(0, 0)  # leave: back to rest, status empty
    np.testing.assert_array_equal(canvas_rgba(page, "canvas.sv-reference")[..., :3],
                                  blended(exp, "reference", exp.reference_map, rest))
    assert page.locator(".sv-status").text_content().startswith("hover a point of either image")

    page.mouse.click(box["x"] + 29 * box["width"] / SIZE, box["y"] + 9 * box["height"] / SIZE)
    logic.state.add_pin("query", 4.0, 14.0)
    (pin, value, share), = logic.pin_lines()
    assert page.locator(".sv-pin-line").text_content() == f"query (4, 14): {value:+.4f}{share}"
    page.evaluate("() => document.getElementById('simviz-root').simvizView.setReading('correspondence')")
    page.evaluate("() => document.getElementById('simviz-root').simvizView.hover('query', 4, 14)")
    logic.reading = "correspondence"
    logic.refresh_point()
    assert page.locator(".sv-status").text_content() == logic.status_text()
    assert page.console_errors == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in page.requests), page.requests


def test_page_without_point_maps_or_reference_map(page, tmp_path):
    exp = small_explanation(point=False, missing=("reference",))
    open_page(page, tmp_path, exp, size=160)
    assert page.locator(".sv-reading").is_hidden()
    photo = photo_rgba(exp.reference, (160, 160))[..., :3]
    shown = canvas_rgba(page, "canvas.sv-reference")[..., :3]
    rows = np.flatnonzero(np.any(shown != photo, axis=(1, 2)))  # the photo alone, under a centred "n/a" box
    assert len(rows) > 20 and abs((rows[0] + rows[-1]) / 2 - 80) < 2 and not np.any(shown[:, :4] != photo[:, :4])
    page.evaluate("() => document.getElementById('simviz-root').simvizView.hover('query', 4, 14)")
    assert page.locator(".sv-status").text_content() == (
        "query pixel (4, 14) · method 'decomposition' gives overall maps only")
    np.testing.assert_array_equal(canvas_rgba(page, "canvas.sv-reference")[..., :3], shown)
    page.evaluate("() => { const view = document.getElementById('simviz-root').simvizView; "
                  "view.pin('query', 4, 14); view.pin('reference', 4, 14); }")
    value = HoverLogic(exp, canvas_size=160).contribution("query", 4, 14)
    # a relevance map is no share of the score, and a side without a map has no value
    assert page.locator(".sv-pin-line").all_text_contents() == [f"query (4, 14): map value {value:+.4f}",
                                                                 "reference (4, 14): no reference map"]
    assert page.console_errors == []


def test_page_says_when_point_maps_were_left_out(page, tmp_path):
    open_page(page, tmp_path, small_explanation(), size=160, max_point_bytes=0)
    assert page.locator(".sv-reading").is_hidden()
    page.evaluate("() => document.getElementById('simviz-root').simvizView.hover('query', 4, 14)")
    status = page.locator(".sv-status").text_content()
    assert status.startswith("query pixel (4, 14) · point maps left out of this page") and "overall maps only" in status
    assert page.console_errors == []


def test_page_runs_inside_the_sandboxed_iframe(page, tmp_path):
    exp = small_explanation()
    payload = explanation_payload(exp, size=SIZE, alpha=ALPHA, binary="base64")
    fallback = tmp_path / "fallback.png"
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(fallback)
    host = tmp_path / "host.html"
    host.write_text("<!DOCTYPE html><meta charset='utf-8'><body style='background:#333'>" + iframe_html(
        standalone_html(payload, title="in a frame"), fallback_png=fallback.read_bytes(), size=page_size(payload)))
    page.goto(host.as_uri())
    frame = page.frame_locator("iframe")
    frame.locator(".sv-status").wait_for()
    frame.locator("canvas.sv-query").hover(position={"x": 29, "y": 9})
    assert frame.locator(".sv-status").text_content().startswith("query pixel (4, 14)")
    assert page.console_errors == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in page.requests), page.requests


# ---------------------------------------------------------------- the notebook hover layer

_LAYER_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<style>body {{ margin: 0; background: #fff; }} .pad {{ position: relative; width: 80px; height: 80px;
  display: inline-block; margin: 10px; background: #808080; }} .layer {{ position: absolute; inset: 0; }}</style>
</head><body>
<div class="pad"><div class="layer" id="layer-query"></div></div>
<div class="pad"><div class="layer" id="layer-reference"></div></div>
<script type="module">
{bundle}
class StandInModel {{  // the parts of a Backbone widget model the layer uses
  constructor(attributes) {{ this.attributes = attributes; this.handlers = []; this.sent = []; }}
  get(name) {{ return this.attributes[name]; }}
  set(name, value) {{ this.attributes[name] = value; this.trigger(`change:${{name}}`, this, value); }}
  on(name, callback, context) {{ this.handlers.push({{name, callback, context}}); }}
  off(name, callback, context) {{
    this.handlers = this.handlers.filter((h) => !((name == null || h.name === name)
      && (callback == null || h.callback === callback) && (context == null || h.context === context)));
  }}
  trigger(name, ...args) {{ for (const h of this.handlers.slice()) if (h.name === name) h.callback(...args); }}
  send(message) {{ this.sent.push(message); }}
}}
const data = new StandInModel({{payload: {payload}, look: {look}}});
data.comm_live = {live};
const layers = {{}};
for (const side of ["query", "reference"]) {{
  const model = new StandInModel({{side, data: "IPY_MODEL_0123abc", throttle_ms: 200}});
  model.widget_manager = {{ get_model: async (id) => (id === "0123abc" ? data : null) }};
  const cleanup = await renderHoverLayer({{model, el: document.getElementById(`layer-${{side}}`)}});
  layers[side] = {{model, cleanup}};
}}
window.__layers = {{data, layers}};
</script></body></html>
"""


def open_layers(page, tmp_path, exp, *, live=True, look=None):
    payload = explanation_payload(exp, size=SIZE, alpha=ALPHA, binary="base64")
    look = {"alpha": ALPHA, "cmap": None, "reading": "contribution", "show_peak": True, "pins": [], **(look or {})}
    path = tmp_path / "layers.html"
    path.write_text(_LAYER_PAGE.format(bundle=bundle("pair_view.js"), payload=json.dumps(payload),
                                       look=json.dumps(look), live=json.dumps(live)), encoding="utf-8")
    page.goto(path.as_uri())
    page.wait_for_function("() => window.__layers")


def sent(page, side):
    """The hover reports ``side``'s layer sent the kernel (its "ready" messages apart: see ``readies``)."""
    return [m for m in page.evaluate(f"() => window.__layers.layers.{side}.model.sent") if m["type"] != "ready"]


def readies(page, side):
    return [m for m in page.evaluate(f"() => window.__layers.layers.{side}.model.sent") if m["type"] == "ready"]


def move_over(page, side, y, x):
    """The mouse to canvas position (y, x) of ``side``'s layer (its 80 x 80 CSS box shows 40 x 40 pixels)."""
    box = page.locator(f"#layer-{side}").bounding_box()
    page.mouse.move(box["x"] + x * box["width"] / SIZE, box["y"] + y * box["height"] / SIZE)


def dispatch(page, side, events):
    """Mouse events (type, canvas y, canvas x) dispatched on ``side``'s layer in one go (one throttle window)."""
    page.evaluate("""([side, events]) => {
      const el = document.getElementById(`layer-${side}`);
      const box = el.getBoundingClientRect();
      for (const [type, y, x] of events) {
        el.dispatchEvent(new MouseEvent(type, {clientX: box.left + x * 2, clientY: box.top + y * 2, bubbles: true}));
      }
    }""", [side, events])


def test_hover_layers_paint_the_other_image_and_tell_the_kernel_slowly(page, tmp_path):
    exp = small_explanation()
    pin = {"source": "reference", "row": 15.0, "col": 3.0, "colour": "#00e5ff", "match": [2.0, 5.0]}
    open_layers(page, tmp_path, exp, look={"pins": [pin]})
    for side in ("query", "reference"):  # at rest the kernel's canvases show through
        assert (canvas_rgba(page, f".simviz-{side}-hover")[..., 3] == 0).all()
        assert readies(page, side) == [{"type": "ready", "generation": 0}]  # drawn: the kernel may stop drawing

    move_over(page, "query", 9, 29)  # image pixel (4.0, 14.0)
    mine = canvas_rgba(page, ".simviz-query-hover")
    assert 0 < (mine[..., 3] > 0).mean() < 0.5  # a crosshair and nothing else
    other = canvas_rgba(page, ".simviz-reference-hover")
    assert (other[..., 3] == 255).all()
    values = exp.point_map("query", 4.0, 14.0)
    logic = HoverLogic(exp, canvas_size=SIZE)
    logic.hover("query", 4.0, 14.0)
    keep = away_from(other.shape, [(v + 0.5) * SIZE / 20 for v in logic.peak[1:]], 13)
    keep &= away_from(other.shape, [(v + 0.5) * SIZE / 20 for v in pin["match"]], 13)  # the pin's ring
    expected = blended(exp, "reference", values, point_scale(values, "contribution"))
    np.testing.assert_array_equal(other[..., :3][keep], expected[keep])

    messages = sent(page, "query")
    assert len(messages) == 1 and sent(page, "reference") == []  # leading edge only, so far
    message = messages[0]
    assert message["type"] == "mousemove" and message["generation"] == 0
    assert message["relativeX"] == pytest.approx(58, abs=1) and message["relativeY"] == pytest.approx(18, abs=1)
    assert (message["boundingRectWidth"], message["boundingRectHeight"]) == (80, 80)
    page.wait_for_timeout(300)  # past the throttle: the next move goes at once, a burst after it once more
    dispatch(page, "query", [("mousemove", 10 + step, 20) for step in range(5)])
    page.wait_for_timeout(300)
    messages = sent(page, "query")
    assert [m["relativeY"] for m in messages[1:]] == [pytest.approx(20, abs=1), pytest.approx(28, abs=1)]

    page.wait_for_timeout(250)  # the trailing message went ~200 ms after the leading one
    dispatch(page, "query", [("mousemove", 12, 20), ("mousemove", 13, 20), ("mouseleave", 13, 20)])
    page.wait_for_timeout(300)  # the pending trailing move was dropped on leave
    assert len(sent(page, "query")) == 4
    for side in ("query", "reference"):
        assert (canvas_rgba(page, f".simviz-{side}-hover")[..., 3] == 0).all()

    page.wait_for_timeout(250)
    dispatch(page, "query", [("mousemove", 12, 20), ("mousemove", 14, 20), ("mousedown", 14, 20)])
    # a press sends the pending report at once: the kernel's hovered point is not older than the pin
    messages = sent(page, "query")
    assert len(messages) == 6 and messages[-1]["relativeY"] == pytest.approx(28, abs=1)

    page.evaluate("() => window.__layers.layers.query.cleanup()")
    page.evaluate("() => window.__layers.layers.reference.cleanup()")
    assert page.evaluate("() => window.__layers.data.handlers.length") == 0
    assert page.console_errors == []


def test_hover_layer_without_a_kernel_paints_the_rest_view(page, tmp_path):
    exp = small_explanation()
    open_layers(page, tmp_path, exp, live=False)
    rest = overall_scale(exp)
    for side in ("query", "reference"):
        np.testing.assert_array_equal(canvas_rgba(page, f".simviz-{side}-hover")[..., :3],
                                      blended(exp, side, exp.map(side), rest))
    move_over(page, "reference", 30, 8)
    shown = canvas_rgba(page, ".simviz-query-hover")
    assert (shown[..., 3] == 255).all() and not np.array_equal(shown[..., :3], blended(exp, "query", exp.query_map,
                                                                                          rest))
    page.evaluate("() => window.__layers.data.set('look', {...window.__layers.data.get('look'), alpha: 0.3})")
    page.mouse.move(500, 500)
    assert all(sent(page, side) == readies(page, side) == [] for side in ("query", "reference"))  # no kernel
    np.testing.assert_array_equal(
        canvas_rgba(page, ".simviz-query-hover")[..., :3],
        overlay(photo_rgba(exp.query, (SIZE, SIZE))[..., :3], exp.query_map, alpha=0.3, cmap=rest.cmap,
                mode=rest.mode, vmin=rest.lo, vmax=rest.hi, alpha_from_value=True))
    assert page.console_errors == []


def test_hover_layer_stays_out_of_the_way_without_point_maps(page, tmp_path):
    open_layers(page, tmp_path, small_explanation(point=False))
    move_over(page, "query", 9, 29)
    page.wait_for_timeout(50)
    for side in ("query", "reference"):
        assert (canvas_rgba(page, f".simviz-{side}-hover")[..., 3] == 0).all()
        assert sent(page, side) == []
    assert page.console_errors == []


# ---------------------------------------------------------------- the default pair, looked at


def test_default_pair_page_screenshots_and_hover_cost(page, tmp_path):
    import simviz_widgets as sv
    from simviz_widgets.datasets import load_photo, views

    model = sv.models.load("efficientnet_lite0")
    query = load_photo("chelsea")
    exp = sv.explain(model, query, views(query, "mirror").image)
    payload = open_page(page, tmp_path, exp, "default.html", size=320)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT_DIR / "page_rest.png"))
    box = page.locator("canvas.sv-query").bounding_box()
    eye = (box["x"] + 1.5 * 320 / 7, box["y"] + 2.5 * 320 / 7)  # feature cell (2, 1): the cat's left eye
    page.mouse.move(*eye)
    page.screenshot(path=str(OUT_DIR / "page_hover_eye.png"))
    assert page.locator(".sv-status").text_content().startswith("query pixel (")
    page.mouse.click(*eye)
    page.mouse.click(box["x"] + 250, box["y"] + 250)
    page.mouse.move(box["x"] + 160, box["y"] + 230)
    page.screenshot(path=str(OUT_DIR / "page_pins.png"))
    assert page.locator(".sv-pin-line").count() == 2
    page.evaluate("""() => { const view = document.getElementById('simviz-root').simvizView;
      for (let k = 0; k < 6; k++) view.pin(k % 2 ? 'reference' : 'query', 10 + 30 * k, 200 - 25 * k);
      view.setReading('correspondence');
      view.hover('reference', 223, 223); }""")  # the tallest layout: every pin, the longest status
    assert page.locator(".sv-pin-line").count() == 6
    assert_fits(page, payload)
    page.evaluate("() => { const view = document.getElementById('simviz-root').simvizView; view.clearPins(); "
                  "view.setReading('contribution'); view.leave(); }")
    cost = page.evaluate("""async () => {
      const canvas = document.querySelector('canvas.sv-query');
      const box = canvas.getBoundingClientRect();
      const times = [];
      for (let k = 0; k < 200; k++) {
        const start = performance.now();
        canvas.dispatchEvent(new MouseEvent('mousemove', {bubbles: true,
          clientX: box.left + 5 + (k * 37) % 310, clientY: box.top + 5 + (k * 53) % 310}));
        times.push(performance.now() - start);
        if (k % 10 === 0) await new Promise((resolve) => requestAnimationFrame(resolve));
      }
      times.sort((a, b) => a - b);
      return {p50: times[100], p95: times[190], max: times[199]};
    }""")
    print(f"\nstandalone page, 320 x 320 canvases: hover costs {cost['p50']:.1f} ms per move (p50), "
          f"{cost['p95']:.1f} ms (p95), {cost['max']:.1f} ms (max); screenshots in {OUT_DIR}")
    assert page.console_errors == []

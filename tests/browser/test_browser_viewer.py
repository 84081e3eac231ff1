"""The pair viewer in a real JupyterLab, on both hover paths: hover the query image, the reference
image repaints where the hovered thing is. Pair: chelsea and its mirror image (query column c <->
reference column W-1-c) on the default model (EfficientNet-Lite0).

One notebook per module (built once, on the session's low-latency server) holds three viewers:

* ``.hv-kernel``: ``hover="kernel"``: every hover a kernel round trip; the kernel draws the map on
  the ipycanvas reference canvas;
* ``.hv-browser``: ``hover="browser"`` (the default): the page's hover layer (a <canvas> inside
  ``.simviz-hover-layer`` in each ``.simviz-{side}-pad``) paints the map; the ipycanvas canvases stay
  at rest underneath and the kernel hears the point at a low rate;
* ``.hv-menu``: a default viewer whose method menu the slow-method test drives.

The first two are shown with a gray colormap at full opacity, so the painted pixels are the map
itself (brighter = higher), and with the "correspondence" reading, which peaks at the matching
position. Hover-to-paint latency is measured and reported, not asserted (timing belongs to
benchmarks/bench_browser_hover.py).
"""

import json
import os

import numpy as np
import pytest
from lab_harness import hover_path, run_notebook, summary, timed_hovers

pytestmark = pytest.mark.browser

GRID = 7  # EfficientNet-Lite0's feature grid for a 224 x 224 input
LATENCY_MOVES = 60
AWAY = (5, 5)  # a page point outside every widget
STOCK_KERNEL_WEBSOCKET = os.environ.get("SIMVIZ_STOCK_KERNEL_WEBSOCKET") == "1"  # see conftest.py

PATHS = {
    # hover path: (viewer class, query element hovered, reference canvas that shows the hover)
    "kernel": (".hv-kernel", ".simviz-query-canvas", ".simviz-reference-canvas"),
    "browser": (".hv-browser", ".simviz-query-hover", ".simviz-reference-hover"),
}

VIEWER_CELLS = [
    """\
import simviz_widgets.models
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.widgets import PairViewer

model = simviz_widgets.models.load("efficientnet_lite0")
query = load_photo("chelsea")
reference = views(query, "mirror").image
look = dict(cmap="gray", alpha=1.0, size=320, reading="correspondence")
""",
    """\
viewer_kernel = PairViewer(model, query, reference, hover="kernel", **look)
viewer_kernel.add_class("hv-kernel")
viewer_kernel
""",
    """\
viewer_browser = PairViewer(model, query, reference, hover="browser", **look)
viewer_browser.add_class("hv-browser")
viewer_browser
""",
    """\
menu_viewer = PairViewer(model, query, reference)
menu_viewer.add_class("hv-menu")
menu_viewer
""",
]


def _luminance(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3].astype(np.float64).mean(axis=-1)


def _box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edge-clipped), via a summed-area table."""
    rows, cols = values.shape
    table = np.zeros((rows + 1, cols + 1))
    table[1:, 1:] = values.cumsum(0).cumsum(1)
    r0 = np.clip(np.arange(rows) - radius, 0, rows)
    r1 = np.clip(np.arange(rows) + radius + 1, 0, rows)
    c0 = np.clip(np.arange(cols) - radius, 0, cols)
    c1 = np.clip(np.arange(cols) + radius + 1, 0, cols)
    sums = table[r1][:, c1] - table[r0][:, c1] - table[r1][:, c0] + table[r0][:, c0]
    return sums / ((r1 - r0)[:, None] * (c1 - c0)[None, :])


def _brightest(rgba: np.ndarray, radius: int) -> tuple[int, int]:
    smooth = _box_mean(_luminance(rgba), radius)
    row, col = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return int(row), int(col)


def _cell_centre(cell_row: int, cell_col: int, rows: int, cols: int) -> tuple[int, int]:
    return int((cell_row + 0.5) * rows / GRID), int((cell_col + 0.5) * cols / GRID)


@pytest.fixture(scope="module")
def viewer_notebook(module_page, lab_server):
    name = "viewer_paths.ipynb"
    notebook = run_notebook(module_page, lab_server, name, VIEWER_CELLS)
    for viewer, query, reference in PATHS.values():
        notebook.wait_for_canvas(f"{viewer} .simviz-query-canvas")
        notebook.wait_for_canvas(f"{viewer} .simviz-reference-canvas")
    yield notebook
    lab_server.close_sessions([name])


@pytest.fixture
def notebook(viewer_notebook):
    viewer_notebook.page.mouse.move(*AWAY)  # no hover left over from an earlier test
    return viewer_notebook


@pytest.mark.parametrize("path", list(PATHS))
def test_hover_paints_the_mirrored_match(notebook, path):
    viewer, query_selector, reference_selector = PATHS[path]
    query, reference = f"{viewer} {query_selector}", f"{viewer} {reference_selector}"
    rest_canvas = f"{viewer} .simviz-reference-canvas"  # what the reader sees at rest (ipycanvas)
    box = notebook.canvas_box(query)
    resting = notebook.canvas_pixels(rest_canvas)
    rows, cols = resting.shape[:2]
    assert (rows, cols) == (320, 320)  # size=320 on a 224 x 224 display image
    assert (box.pixel_height, box.pixel_width) == (rows, cols)
    if path == "browser":  # the hover layer is transparent at rest: the kernel's canvas shows through
        layer = notebook.canvas_pixels(reference)
        assert layer.shape[:2] == (rows, cols) and (layer[..., 3] == 0).all()
    tolerance = cols / GRID  # one feature cell

    seen = []
    for cell in [(2, 1), (4, 5)]:  # the display crop is the cat's face: left eye, right of the nose
        row, col = _cell_centre(*cell, rows, cols)
        before = notebook.canvas_pixels(reference)
        notebook.hover(box, row, col)
        painted = notebook.wait_for_change(reference, before)
        # One more frame may still be on its way (coalesced moves): wait until it settles.
        settled = notebook.wait_settled(reference, painted)
        if path == "browser":
            assert (settled[..., 3] == 255).all(), "the hover layer painted a partly transparent map"
        peak = _brightest(settled, radius=int(tolerance // 4))
        expected = (row, cols - 1 - col)
        print(f"\n{path} path, hover query {(row, col)}: brightest reference region {peak}, mirrored point {expected}")
        assert abs(peak[0] - expected[0]) <= tolerance and abs(peak[1] - expected[1]) <= tolerance, (
            f"{path} path, hovering query {(row, col)}: brightest reference region at {peak}, mirror is {expected}"
        )
        seen.append(settled)

    def differs(a, b):
        return float(np.abs(_luminance(a) - _luminance(b)).mean())

    assert differs(seen[0], resting) > 5.0, "hovering did not replace the resting overall map"
    assert differs(seen[0], seen[1]) > 5.0, "two far-apart hovers painted (almost) the same map"

    if path == "browser":  # the kernel's canvas stayed at rest; leaving clears the layer
        np.testing.assert_array_equal(notebook.canvas_pixels(rest_canvas), resting)
        before = notebook.canvas_pixels(reference)
        notebook.page.mouse.move(*AWAY)
        left = notebook.wait_for_change(reference, before)
        assert (left[..., 3] == 0).all(), "the hover layer kept pixels after the mouse left"


@pytest.mark.parametrize("path", list(PATHS))
def test_hover_to_paint_latency(notebook, path, tmp_path, record_property):
    viewer, query_selector, reference_selector = PATHS[path]
    box = notebook.canvas_box(f"{viewer} {query_selector}")
    notebook.install_latency_probe(f"{viewer} {reference_selector}")
    moves = hover_path(box.pixel_height, box.pixel_width, GRID, LATENCY_MOVES)

    notebook.sent_messages(reset=True)
    # Kernel path: a pause past the viewer's 30 ms ipyevents throttle after each move, so each move
    # is one message. Browser path: moves as fast as the harness makes them (a hand's pace).
    result = timed_hovers(notebook, box, moves, pause_ms=50 if path == "kernel" else 0)
    missed = result["missed"]
    assert not missed, f"{len(missed)} of {len(moves)} moves never repainted the reference canvas: {missed}"
    sent = notebook.sent_messages()
    comm_messages = sum(1 for message in sent if message["type"] == "comm_msg")
    canvas_mouse = sum(1 for message in sent if message["ipycanvasMouse"])
    # ipycanvas's own view would add one unthrottled mouse_move per move (the canvases take no
    # pointer events; see _canvas.py).
    assert canvas_mouse == 0, f"ipycanvas sent {canvas_mouse} mouse messages of its own for {len(moves)} moves"
    if path == "kernel":  # one kernel message per hover: the viewer's throttled ipyevents move
        assert len(moves) <= comm_messages <= len(moves) + 2, (
            f"{comm_messages} comm messages to the kernel for {len(moves)} moves: {sent[:10]}"
        )
    else:  # the hover layer tells the kernel at most once per throttle_ms (100 ms), plus the trailing move
        throttle_ms = notebook.kernel_eval("viewer_browser.browser.layers['query'].throttle_ms")
        bound = result["elapsed_ms"] / throttle_ms + 2
        assert 1 <= comm_messages <= bound, (
            f"{comm_messages} comm messages for {len(moves)} moves in {result['elapsed_ms']:.0f} ms "
            f"(throttle {throttle_ms} ms: at most {bound:.0f})"
        )
    report = {
        **summary(result["latencies"]),
        "hover_path": path,
        "kernel_websocket": "stock" if STOCK_KERNEL_WEBSOCKET else "low-latency",
        "kernel_messages_per_move": round(comm_messages / len(moves), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the machine is shared: context for the numbers
        "latencies_ms": [round(float(v), 2) for v in result["latencies"]],
    }
    out = tmp_path / f"hover_latency_{path}.json"
    out.write_text(json.dumps(report, indent=1))
    for key in ("moves", "p50_ms", "p95_ms", "max_ms", "kernel_messages_per_move"):
        record_property(f"hover_latency_{path}_{key}", report[key])
    print(
        f"\n{path} path hover-to-paint latency over {report['moves']} moves: p50 {report['p50_ms']} ms, "
        f"p95 {report['p95_ms']} ms, max {report['max_ms']} ms; {report['kernel_messages_per_move']} kernel "
        f"messages per move ({report['kernel_websocket']} kernel websocket; "
        f"load average {report['load_average_1min']}); written to {out}"
    )


def test_slow_method_chosen_in_the_menu_lands_without_wait(notebook):
    """A menu choice arrives as a comm message; its background job's result must be applied on the
    kernel's event loop by itself (nobody calls viewer.wait() in a live notebook), and a later
    choice must win over an earlier slow one."""
    menu = notebook.page.locator(".hv-menu select").first
    menu.scroll_into_view_if_needed()
    menu.select_option("sliding_window")
    notebook.poll_kernel("[menu_viewer.explanation.method, menu_viewer.computing]", ["sliding_window", None],
                         timeout_s=120)
    assert notebook.kernel_eval("menu_viewer.method_dropdown.value") == "sliding_window"

    menu.select_option("rise")  # thousands of passes: still running when the next choice comes
    notebook.poll_kernel("menu_viewer.computing", "rise", timeout_s=30)
    menu.select_option("gradcam")
    notebook.poll_kernel("[menu_viewer.explanation.method, menu_viewer.computing]", ["gradcam", None],
                         timeout_s=60)
    assert notebook.kernel_eval("menu_viewer.session.runner.join_all(60)") is True  # the cancelled RISE thread ended
    assert notebook.kernel_eval("[menu_viewer.explanation.method, menu_viewer.method_dropdown.value]") == [
        "gradcam", "gradcam"]

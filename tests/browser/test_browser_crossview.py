"""The cross-view explorer in a real JupyterLab: chelsea and its 30-degree rotation on the default
model (EfficientNet-Lite0), one notebook per module.

Checked in the page's pixels: the match lines are drawn on the canvas over both images (across the
gap between them, in their strength colours); hovering a query point paints its map in the other
image (the viewer's browser hover layer) and, once the kernel hears the point, the line to its best
match with a ring there; the alignment canvas shows the reference at blend 0 and the warped query
at blend 1 (the slider dragged with the mouse). Screenshots go to ``out/screenshots/`` with the
other widgets' (test_browser_screenshots.py):

  crossview_rest.png, crossview_hover.png, crossview_blend.png (and crossview_shared.png when a
  "feature_occlusion" method is registered)
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from lab_harness import run_notebook

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"
EXPLORER = ".shot-crossview"
LINES = f"{EXPLORER} .simviz-crossview-lines"
ALIGNMENT = f"{EXPLORER} .simviz-crossview-alignment"
QUERY_LAYER, REFERENCE_LAYER = f"{EXPLORER} .simviz-query-hover", f"{EXPLORER} .simviz-reference-hover"
AWAY = (5, 5)  # a page point outside every widget
HOVER_PIXEL = (92.0, 66.0)  # display pixel of the query: the cat's left eye

CELLS = [
    """\
import simviz_widgets as sv
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.widgets import CrossViewExplorer
from simviz_widgets.widgets._canvas import photo_rgba
model = sv.load_model("efficientnet_lite0")
cat = load_photo("chelsea")
rotated = views(cat, "rotation", angle=30).image
""",
    """\
explorer = CrossViewExplorer(model, cat, rotated)
explorer.add_class("shot-crossview")
explorer
""",
]


@pytest.fixture(scope="module")
def crossview_notebook(module_page, lab_server):
    name = "crossview.ipynb"
    notebook = run_notebook(module_page, lab_server, name, CELLS)
    notebook.wait_for_canvas(f"{EXPLORER} .simviz-query-canvas")
    notebook.wait_for_canvas(LINES)
    notebook.wait_for_canvas(ALIGNMENT)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    yield notebook
    lab_server.close_sessions([name])


@pytest.fixture
def notebook(crossview_notebook):
    crossview_notebook.page.mouse.move(*AWAY)
    return crossview_notebook


def _shoot(notebook, name: str, *, scroll: bool = True) -> Path:
    """Element screenshot of the explorer, once its readout has stopped changing."""
    return notebook.screenshot_element(EXPLORER, OUT_DIR / name, stable=f"{EXPLORER} .simviz-crossview-readout",
                                       scroll=scroll)


def _rgb(css: str) -> np.ndarray:
    return np.array([int(v) for v in re.findall(r"\d+", css)[:3]], dtype=float)


def _near(pixels: np.ndarray, y: float, x: float, radius: int) -> np.ndarray:
    rows, cols = pixels.shape[:2]
    r0, r1 = max(0, int(y) - radius), min(rows, int(y) + radius + 1)
    c0, c1 = max(0, int(x) - radius), min(cols, int(x) + radius + 1)
    return pixels[r0:r1, c0:c1].reshape(-1, pixels.shape[-1])


def test_match_lines_are_drawn_across_both_images(notebook):
    pixels = notebook.wait_settled(LINES)
    info = notebook.kernel_eval(
        "[[list(explorer.line_position('query', *l.query)), list(explorer.line_position('reference', *l.reference)),"
        " l.colour, l.style] for l in explorer.state.lines()]")
    (q_rows, q_cols) = notebook.kernel_eval("list(explorer.viewer.logic.geometry['query'].canvas)")
    gap = notebook.kernel_eval("__import__('simviz_widgets.widgets.crossview_draw', fromlist=['x']).GAP_PX")
    assert len(info) >= 10, f"only {len(info)} match lines on a rotated photo"
    drawn = pixels[..., 3] > 0
    across = drawn[:, q_cols:q_cols + gap].any(axis=0).mean()
    print(f"\n{len(info)} lines; {100 * drawn.mean():.1f} % of the line canvas drawn; "
          f"{100 * across:.0f} % of the gap's columns crossed")
    assert across > 0.9, "the match lines do not cross the gap between the images"
    (qy, qx), (ry, rx), colour, style = info[-1]  # the strongest inlier: drawn last, on top
    assert style == "inlier"
    middle = _near(pixels, (qy + ry) / 2, (qx + rx) / 2, 1)
    distance = np.abs(middle[:, :3] - _rgb(colour)).max(axis=1).min()
    assert distance <= 40, f"the strongest line is not {colour} at its middle ({middle[:, :3].tolist()})"
    for (qy, qx), (ry, rx), _colour, _style in info:
        assert (_near(pixels, qy, qx, 2)[:, 3] > 0).any() and (_near(pixels, ry, rx, 2)[:, 3] > 0).any()
    _shoot(notebook, "crossview_rest.png")


def test_hover_paints_the_map_and_the_line_to_the_best_match(notebook):
    box = notebook.canvas_box(QUERY_LAYER)
    canvas_rows, canvas_cols = box.pixel_height, box.pixel_width
    row, col = ((HOVER_PIXEL[0] + 0.5) * canvas_rows / 224 - 0.5, (HOVER_PIXEL[1] + 0.5) * canvas_cols / 224 - 0.5)
    reference_before = notebook.canvas_pixels(REFERENCE_LAYER)
    lines_before = notebook.canvas_pixels(LINES)
    notebook.hover(box, row, col)
    reference = notebook.wait_settled(REFERENCE_LAYER, notebook.wait_for_change(REFERENCE_LAYER, reference_before))
    assert (reference[..., 3] == 255).all(), "the hovered point's map was not painted over the reference"
    # the kernel hears the point (throttled) and draws the line to its best match over both images
    deadline = time.monotonic() + 30
    while (line := notebook.kernel_eval(
            "None if explorer.state.hover_line is None else [list(explorer.line_position('query', "
            "*explorer.state.hover_line.query)), list(explorer.line_position('reference', "
            "*explorer.state.hover_line.reference))]")) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert line is not None, "the kernel never heard the hovered point"
    lines = notebook.wait_settled(LINES, notebook.wait_for_change(LINES, lines_before))
    (qy, qx), (ry, rx) = line
    ring = _near(lines, ry, rx, 11)
    white = (ring[:, 3] > 200) & (ring[:, :3].min(axis=1) >= 225)
    black = (ring[:, 3] > 200) & (ring[:, :3].max(axis=1) <= 40)
    print(f"\nhover query canvas ({row:.0f}, {col:.0f}); best match on the line canvas (y {ry:.0f}, x {rx:.0f}): "
          f"{int(white.sum())} white and {int(black.sum())} black pixels around it")
    assert white.sum() >= 10 and black.sum() >= 10, "no white-on-black ring at the best match"
    middle = _near(lines, (qy + ry) / 2, (qx + rx) / 2, 2)
    assert ((middle[:, 3] > 200) & (middle[:, :3].min(axis=1) >= 225)).any(), "no white hover line between them"
    _shoot(notebook, "crossview_hover.png", scroll=False)
    before = notebook.canvas_pixels(LINES)
    notebook.page.mouse.move(*AWAY)
    notebook.wait_for_change(LINES, before)  # leaving removes the hover line and undims the matches
    notebook.poll_kernel("explorer.state.hover_line is None", True)


def test_alignment_follows_the_blend_slider(notebook):
    def expected(blend: float) -> np.ndarray:
        return notebook.kernel_array(f"photo_rgba(explorer.state.alignment_image({blend})[0], explorer.alignment.size)")

    def agreement(pixels: np.ndarray, target: np.ndarray) -> float:
        return float((np.abs(pixels[..., :3].astype(int) - target[..., :3].astype(int)).max(-1) <= 2).mean())

    notebook.kernel_exec("explorer.blend = 0.0")
    notebook.poll_kernel("explorer.blend_slider.value", 0.0)
    at_zero = notebook.wait_settled(ALIGNMENT)
    reference = expected(0.0)
    assert agreement(at_zero, reference) > 0.9, "blend 0 does not show the reference"
    # drag the slider's handle to its right end with the mouse, as a user would
    handle = notebook.page.locator(f"{EXPLORER} .simviz-crossview-blend .noUi-handle").filter(visible=True).first
    track = notebook.page.locator(f"{EXPLORER} .simviz-crossview-blend .noUi-target").filter(visible=True).first
    handle.scroll_into_view_if_needed()
    start, end = handle.bounding_box(), track.bounding_box()
    notebook.page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    notebook.page.mouse.down()
    notebook.page.mouse.move(end["x"] + end["width"] + 20, start["y"] + start["height"] / 2, steps=8)
    notebook.page.mouse.up()
    notebook.poll_kernel("explorer.blend", 1.0)
    at_one = notebook.wait_settled(ALIGNMENT, notebook.wait_for_change(ALIGNMENT, at_zero))
    warped = expected(1.0)
    changed = float((np.abs(at_one[..., :3].astype(int) - at_zero[..., :3].astype(int)).max(-1) > 20).mean())
    print(f"\nalignment: blend 0 agrees with the reference on {100 * agreement(at_zero, reference):.0f} % of pixels, "
          f"blend 1 with the warped query on {100 * agreement(at_one, warped):.0f} %; {100 * changed:.0f} % changed")
    assert agreement(at_one, warped) > 0.9, "blend 1 does not show the warped query"
    assert changed > 0.2, "the alignment canvas hardly changed between blend 0 and 1"
    notebook.page.mouse.move(*AWAY)
    _shoot(notebook, "crossview_blend.png")
    notebook.kernel_exec("explorer.blend = 0.5")


def test_shared_content_overlay_when_the_method_is_registered(notebook):
    # feature_occlusion ships with the package (explain/feature_occlusion.py): no skip path.
    assert notebook.kernel_eval("'feature_occlusion' in sv.list_methods()") is True
    before = notebook.canvas_pixels(LINES)
    notebook.kernel_exec("explorer.show_shared = True")
    notebook.poll_kernel("explorer.state.shared is not None", True, timeout_s=600)
    notebook.wait_settled(LINES, notebook.wait_for_change(LINES, before))
    _shoot(notebook, "crossview_shared.png")
    notebook.kernel_exec("explorer.show_shared = False")

"""The retrieval explorer in a real JupyterLab, on the default model (EfficientNet-Lite0): a gallery
of six bundled photos and four views of each (30 items), and a query made of two halves, chelsea
(the cat, left) and coffee (the cup, right). One notebook per module.

Checked in the page: the query canvas shows the query's photo at rest and the grid shows the top 8
(thumbnail images loaded); a box dragged with the real mouse over the cup re-ranks in the kernel
exactly as ``gallery.search`` does for that box (coffee's views first, each card's rank change as
in the state), the canvas dims the query outside the box and keeps it inside; clicking a result
card opens the pair in the viewer below, which shares the explorer's hover state (a real hover over
the viewer's query reaches it). A brush stroke painted with the mouse becomes the region (its points
painted, nothing far from it) and the "whole image" button clears it. Screenshots (out/screenshots/):

  retrieval_rest.png, retrieval_brush.png, retrieval_box.png, retrieval_pair.png
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from lab_harness import run_notebook

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"
EXPLORER = ".shot-retrieval"
QUERY = f"{EXPLORER} .simviz-retrieval-query-canvas"
CARDS = f"{EXPLORER} .simviz-retrieval-card"
AWAY = (5, 5)
BOX = (24, 124, 200, 212)  # display pixels (top, left, bottom, right): the coffee cup on the right half

CELLS = [
    """\
import numpy as np
from PIL import Image
import simviz_widgets as sv
from simviz_widgets.datasets import load_photo
from simviz_widgets.retrieval import Gallery, demo_items
from simviz_widgets.widgets import RetrievalExplorer
model = sv.load_model("efficientnet_lite0")
images, names, _ = demo_items("photos")
keep = [k for k, n in enumerate(names)
        if n.split(" ")[0] in ("astronaut", "chelsea", "coffee", "horse", "rocket", "motorcycle_left")]
gallery = Gallery.build(model, [images[k] for k in keep], names=[names[k] for k in keep], show_progress=False)

def square(image, side=224):
    rows, cols = image.shape[:2]
    s = min(rows, cols)
    crop = image[(rows - s) // 2:(rows - s) // 2 + s, (cols - s) // 2:(cols - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((side, side)))

query = np.concatenate([square(load_photo("chelsea"))[:, 56:168], square(load_photo("coffee"))[:, 56:168]], axis=1)
""",
    """\
explorer = RetrievalExplorer(model, gallery, query, k=8)
explorer.add_class("shot-retrieval")
explorer
""",
]


@pytest.fixture(scope="module")
def retrieval_notebook(module_page, lab_server):
    name = "retrieval.ipynb"
    notebook = run_notebook(module_page, lab_server, name, CELLS)
    notebook.wait_for_canvas(QUERY)
    notebook.poll_kernel("explorer.computing", False, timeout_s=300)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    yield notebook
    lab_server.close_sessions([name])


@pytest.fixture
def notebook(retrieval_notebook):
    retrieval_notebook.page.mouse.move(*AWAY)
    return retrieval_notebook


def _shoot(notebook, name: str) -> Path:
    """Element screenshot of the explorer."""
    return notebook.screenshot_element(EXPLORER, OUT_DIR / name)


def _agreement(a: np.ndarray, b: np.ndarray, tolerance: int = 3) -> float:
    return float((np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)).max(-1) <= tolerance).mean())


def _cards_loaded(notebook) -> int:
    return notebook.page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
             .filter(el => el.getClientRects().length > 0)
             .filter(el => { const img = el.querySelector('img'); return img && img.complete && img.naturalWidth > 0; })
             .length""", CARDS)


def test_explorer_renders_the_query_and_the_results(notebook):
    photo = notebook.kernel_array("explorer.query_canvas.photo")
    pixels = notebook.wait_settled(QUERY)
    assert pixels.shape == photo.shape
    agreement = _agreement(pixels, photo)
    print(f"\nquery canvas agrees with the query photo on {100 * agreement:.1f} % of pixels")
    assert agreement > 0.97, "the query canvas does not show the query photo at rest"
    deadline = time.monotonic() + 60
    while _cards_loaded(notebook) < 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _cards_loaded(notebook) == 8, "the grid does not show 8 result thumbnails"
    first = notebook.page.locator(CARDS).filter(visible=True).first.inner_text()
    assert "#1" in first and "cosine" in first
    _shoot(notebook, "retrieval_rest.png")


def test_a_brush_stroke_with_the_mouse_paints_the_region_and_the_button_clears_it(notebook):
    page = notebook.page
    page.locator(f"{EXPLORER} .widget-toggle-button").filter(has_text="brush").first.click()
    notebook.poll_kernel("explorer.tool.tool", "brush")
    radius = notebook.kernel_eval("explorer.brush_size")
    box = notebook.canvas_box(QUERY)
    scale = box.pixel_height / 224
    points = [(112.0, 30.0), (112.0, 60.0), (90.0, 80.0)]  # display pixels: across the cat's eye
    page.mouse.move(*box.client_point(points[0][0] * scale, points[0][1] * scale))
    page.mouse.down()
    for row, col in points[1:]:
        page.mouse.move(*box.client_point(row * scale, col * scale), steps=6)
        page.wait_for_timeout(120)  # a hand's pace: the stroke's moves reach the kernel
    page.mouse.up()
    notebook.poll_kernel("None if explorer.region is None else explorer.region[0]", "mask", timeout_s=30)
    painted = notebook.kernel_array("explorer.region[1]")
    rows, cols = np.nonzero(painted)
    print(f"\nbrush radius {radius} px: {painted.sum()} px painted, rows {rows.min()}-{rows.max()}, "
          f"cols {cols.min()}-{cols.max()}")
    for row, col in points:  # every point of the stroke painted, nothing far from it
        assert painted[int(row), int(col)]
    assert rows.min() >= 90 - radius - 2 and rows.max() <= 112 + radius + 2
    assert cols.min() >= 30 - radius - 2 and cols.max() <= 80 + radius + 2
    same = notebook.kernel_eval("explorer.results.indices.tolist() == gallery.search(query, region=explorer.region[1], "
                                "k=8).indices.tolist()")
    assert same is True
    notebook.poll_kernel("explorer.computing", False, timeout_s=120)
    _shoot(notebook, "retrieval_brush.png")
    page.locator(f"{EXPLORER} button").filter(has_text="whole image").first.click()
    notebook.poll_kernel("explorer.region is None", True)
    page.locator(f"{EXPLORER} .widget-toggle-button").filter(has_text="box").first.click()
    notebook.poll_kernel("explorer.tool.tool", "box")


def test_a_box_dragged_with_the_mouse_reranks_and_dims_outside(notebook):
    before = notebook.canvas_pixels(QUERY)
    box = notebook.canvas_box(QUERY)
    (top, left), (bottom, right) = [notebook.kernel_eval(f"list(explorer.canvas_position({r}, {c}))")
                                    for r, c in ((BOX[0], BOX[1]), (BOX[2] - 1, BOX[3] - 1))]
    start = box.client_point(top - 0.5, left - 0.5)
    end = box.client_point(bottom - 0.5, right - 0.5)
    page = notebook.page
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=10)
    page.mouse.up()
    deadline = time.monotonic() + 30
    while (region := notebook.kernel_eval("None if explorer.region is None else [explorer.region[0], "
                                          "list(explorer.region[1])]")) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert region is not None, "the kernel never got the dragged box"
    kind, got = region
    print(f"\ndragged box {got} (aimed at {BOX})")
    assert kind == "box" and np.abs(np.array(got) - np.array(BOX)).max() <= 1
    same = notebook.kernel_eval("explorer.results.indices.tolist() == gallery.search(query, region=explorer.region[1], "
                                "k=8).indices.tolist()")
    assert same is True, "the explorer's results are not gallery.search's for the dragged box"
    names = notebook.kernel_eval("[row.name for row in explorer.rows]")
    print("results:", names)
    assert all(name.startswith("coffee") for name in names[:5]), "coffee's five views are not first for the cup"
    changes = notebook.kernel_eval("[__import__('simviz_widgets.widgets.retrieval_state', fromlist=['x'])"
                                   ".change_text(row, 8) for row in explorer.rows]")
    assert any(text.startswith("▲") for text in changes)
    notebook.poll_kernel("explorer.computing", False, timeout_s=120)
    pixels = notebook.wait_settled(QUERY, notebook.wait_for_change(QUERY, before))
    y0, x0 = box.pixel_height * BOX[0] / 224, box.pixel_width * BOX[1] / 224
    y1, x1 = box.pixel_height * BOX[2] / 224, box.pixel_width * BOX[3] / 224
    inner = (slice(int(y0) + 6, int(y1) - 6), slice(int(x0) + 6, int(x1) - 6))
    outer = (slice(0, int(y0) - 6), slice(0, box.pixel_width))
    inside = _agreement(pixels[inner], before[inner])
    ratio = pixels[outer][..., :3].astype(float).mean() / max(1.0, before[outer][..., :3].astype(float).mean())
    print(f"inside the box {100 * inside:.0f} % of pixels unchanged; outside at {100 * ratio:.0f} % brightness")
    assert inside > 0.97 and 0.3 < ratio < 0.6
    cards = notebook.page.locator(CARDS).filter(visible=True)
    for rank, text in enumerate(changes[:3]):
        assert text in cards.nth(rank).inner_text()
    _shoot(notebook, "retrieval_box.png")


def test_clicking_a_result_opens_the_pair_sharing_the_hover_state(notebook):
    card = notebook.page.locator(CARDS).filter(visible=True).nth(1)
    card.locator("img").click()
    notebook.poll_kernel("explorer.state.open_index == explorer.rows[1].index", True, timeout_s=60)
    assert notebook.kernel_eval("explorer.viewer.state is explorer.hover_state") is True
    viewer_query = f"{EXPLORER} .simviz-query-canvas"
    notebook.wait_for_canvas(viewer_query)
    notebook.wait_for_canvas(f"{EXPLORER} .simviz-reference-canvas")
    box = notebook.canvas_box(viewer_query)
    notebook.hover(box, box.pixel_height * 0.5, box.pixel_width * 0.75)
    deadline = time.monotonic() + 30
    while (hovered := notebook.kernel_eval("explorer.hover_state.hovered")) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"\nhover in the viewer reached the explorer's hover state: {hovered}")
    assert hovered is not None and hovered[0] == "query"
    assert "open below" in card.inner_text()
    _shoot(notebook, "retrieval_pair.png")
    notebook.page.mouse.move(*AWAY)

"""The similarity matrix in a real JupyterLab. One notebook per module with two matrices:

* ``.shot-matrix``: six bundled photos and four views of each (30 items) on the default model
  (EfficientNet-Lite0), clustered: the views of one photo should end side by side;
* ``.shot-matrix-40``: 40 synthetic scenes on the tiny test model (the largest size the widget is
  meant for: thumbnails 18 px).

Checked in the page: the thumbnail strips are drawn exactly beside the heatmap's rows and columns
(their boxes against the first and last cells' boxes, within a pixel) and show each row's and
column's thumbnail (pixels of the element screenshot against the kernel's thumbnails); a cell's
colour is its value's colour on the colour bar's scale; a real mouse move over a cell shows that
pair in the readout; a real click on a cell opens that pair (row image = query, column image =
reference) in the pair viewer below, which paints its images; a click on a row thumbnail sorts by
similarity to that image. Screenshots (out/screenshots/):

  similarity_matrix_rest.png, similarity_matrix_pair.png, similarity_matrix_sorted.png,
  similarity_matrix_40.png
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from lab_harness import run_notebook
from PIL import Image

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"
MATRIX = ".shot-matrix"
MATRIX_40 = ".shot-matrix-40"
AWAY = (5, 5)

CELLS = [
    """\
import numpy as np
import simviz_widgets as sv
from simviz_widgets.retrieval import Gallery, demo_gallery, demo_items
from simviz_widgets.widgets import SimilarityMatrix
from simviz_widgets.render import colormap_lut
model = sv.load_model("efficientnet_lite0")
images, names, _ = demo_items("photos")
keep = [k for k, n in enumerate(names)
        if n.split(" ")[0] in ("astronaut", "chelsea", "coffee", "horse", "rocket", "motorcycle_left")]
gallery = Gallery.build(model, [images[k] for k in keep], names=[names[k] for k in keep], show_progress=False)
tiny = sv.load_model("tiny_test")
scenes = demo_gallery("scenes", tiny, count=40, show_progress=False)
""",
    """\
m = SimilarityMatrix(gallery)
m.add_class("shot-matrix")
m
""",
    """\
m40 = SimilarityMatrix(scenes)
m40.add_class("shot-matrix-40")
m40
""",
]

# Boxes (client pixels) of the heatmap's first and last cells and of the two strip <image>s.
_GEOMETRY_JS = """
(scope) => {
  const root = Array.from(document.querySelectorAll(scope)).find(e => e.getClientRects().length > 0);
  if (!root) return null;
  const box = (el) => { const b = el.getBoundingClientRect();
                        return {x: b.left, y: b.top, width: b.width, height: b.height}; };
  const cells = Array.from(root.querySelectorAll('rect.heatmapcell'));
  const figure = root.querySelector('.simviz-matrix-figure');
  return {cells: cells.length, first: box(cells[0]), last: box(cells[cells.length - 1]),
          images: Array.from(root.querySelectorAll('.simviz-matrix-figure image')).map(box),
          figure: box(figure)};
}
"""


@pytest.fixture(scope="module")
def matrix_notebook(module_page, lab_server):
    name = "similarity_matrix.ipynb"
    notebook = run_notebook(module_page, lab_server, name, CELLS)
    notebook.wait_stable(f"{MATRIX} .simviz-matrix-figure")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    yield notebook
    lab_server.close_sessions([name])


@pytest.fixture
def notebook(matrix_notebook):
    matrix_notebook.page.mouse.move(*AWAY)
    return matrix_notebook


def _shoot(notebook, scope: str, name: str) -> Path:
    """Element screenshot of ``scope``."""
    return notebook.screenshot_element(scope, OUT_DIR / name)


def _geometry(notebook, scope: str) -> dict:
    notebook.page.locator(f"{scope} .simviz-matrix-figure").filter(visible=True).first.scroll_into_view_if_needed()
    geometry = notebook.page.evaluate(_GEOMETRY_JS, scope)
    assert geometry is not None and geometry["cells"] > 0, f"no heatmap cells in {scope}"
    return geometry


def _cell_point(geometry: dict, n: int, row: int, col: int) -> tuple[float, float]:
    """Client (x, y) of the centre of cell (row, col) (positions in the shown order)."""
    first, last = geometry["first"], geometry["last"]
    width = (last["x"] + last["width"] - first["x"]) / n
    height = (last["y"] + last["height"] - first["y"]) / n
    return first["x"] + (col + 0.5) * width, first["y"] + (row + 0.5) * height


def _figure_pixels(notebook, scope: str) -> tuple[np.ndarray, dict]:
    """RGB pixels of the figure element and its client box (device scale factor 1)."""
    locator = notebook.page.locator(f"{scope} .simviz-matrix-figure").filter(visible=True).first
    locator.scroll_into_view_if_needed()
    png = locator.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32), locator.bounding_box()


def _check_strips(notebook, scope: str, name: str) -> None:
    n = notebook.kernel_eval(f"{name}.state.n")
    geometry = _geometry(notebook, scope)
    assert geometry["cells"] == n * n, f"{geometry['cells']} heatmap cells, expected {n * n}"
    first, last = geometry["first"], geometry["last"]
    top, bottom = first["y"], last["y"] + last["height"]
    left, right = first["x"], last["x"] + last["width"]
    images = geometry["images"]
    assert len(images) == 2, f"{len(images)} strip images drawn, expected 2"
    rows = min(images, key=lambda b: b["x"])  # the row strip is the left one
    cols = max(images, key=lambda b: b["x"])
    print(f"\n{scope}: matrix ({left:.1f}, {top:.1f}) - ({right:.1f}, {bottom:.1f}); row strip {rows}; "
          f"column strip {cols}")
    for got, want, what in ((rows["y"], top, "row strip top"), (rows["y"] + rows["height"], bottom, "row strip bottom"),
                            (cols["x"], left, "column strip left"),
                            (cols["x"] + cols["width"], right, "column strip right")):
        assert abs(got - want) <= 1.0, f"{what} at {got:.1f} px, the matrix's edge at {want:.1f} px"
    assert rows["x"] + rows["width"] < left and cols["y"] + cols["height"] < top, "a strip overlaps the matrix"
    # Every row's and column's thumbnail is the one the kernel put at that position: compared as 4 x 4
    # blocks of mean colour (robust to the browser's resampling and sub-pixel placement of a
    # textured photo, still telling images apart), own thumbnail against every other one.
    pixels, box = _figure_pixels(notebook, scope)
    thumbs = notebook.kernel_array(f"np.stack([{name}._thumb(int(i)) for i in {name}.indices])")
    blocks = np.stack([_blocks(t) for t in thumbs])
    cell = (bottom - top) / n
    errors, misplaced, generic = [], [], []
    # the selected pair's thumbnails are framed by the selection outline, whose halo reaches into
    # their neighbours: judged by the others
    framed = notebook.kernel_eval(f"None if {name}.selected is None else "
                                  f"[{name}.state.position(i) for i in {name}.selected]") or [-9, -9]
    for position in range(n):
        for strip, (x0, y0) in (("row", (rows["x"], top + position * cell)),
                                ("column", (left + position * cell, cols["y"]))):
            if abs(position - framed[0 if strip == "row" else 1]) <= 1:
                continue
            r0, c0 = int(round(y0 - box["y"])), int(round(x0 - box["x"]))
            drawn = _blocks(pixels[r0:r0 + int(round(cell)), c0:c0 + int(round(cell))])
            distance = np.abs(blocks - drawn).mean(axis=(1, 2, 3))
            errors.append(float(distance[position]))
            if distance.argmin() != position and distance.min() < distance[position] - 3:
                misplaced.append((strip, position, int(distance.argmin())))
            if distance[position] >= np.median(np.delete(distance, position)):  # e.g. a blank strip
                generic.append((strip, position))
    print(f"thumbnails drawn vs the kernel's (4x4 block colours): mean abs error {np.mean(errors):.1f}, "
          f"worst {np.max(errors):.1f} ({len(errors)} thumbnails judged)")
    assert not misplaced, f"thumbnails that look like another position's (strip, position, looks like): {misplaced}"
    assert not generic, f"drawn thumbnails no closer to their own image than to a typical other one: {generic}"
    assert np.max(errors) < 25, f"a thumbnail is not drawn at its row/column (worst block error {np.max(errors):.1f})"


def _blocks(rgb: np.ndarray) -> np.ndarray:
    """(4, 4, 3) mean colours of a picture's 4 x 4 blocks."""
    picture = Image.fromarray(np.asarray(rgb, dtype=np.uint8)[..., :3])
    return np.asarray(picture.resize((4, 4), Image.Resampling.BOX), dtype=np.float64)


def test_thumbnails_align_with_rows_and_columns(notebook):
    _shoot(notebook, MATRIX, "similarity_matrix_rest.png")
    _check_strips(notebook, MATRIX, "m")


def test_thumbnails_align_at_40_images(notebook):
    _shoot(notebook, MATRIX_40, "similarity_matrix_40.png")
    _check_strips(notebook, MATRIX_40, "m40")


def test_cell_colours_follow_the_colour_scale(notebook):
    n = notebook.kernel_eval("m.state.n")
    values = notebook.kernel_array("m.colour_data()")
    lo, hi = notebook.kernel_eval("list(m.state.colour_range)")
    lut = notebook.kernel_array("colormap_lut(m.cmap)[:, :3]").astype(np.int32)
    geometry = _geometry(notebook, MATRIX)
    pixels, box = _figure_pixels(notebook, MATRIX)
    off = values + np.where(np.eye(n, dtype=bool), np.nan, 0.0)
    picks = [np.unravel_index(np.nanargmin(off), off.shape), np.unravel_index(np.nanargmax(off), off.shape),
             (0, 0), (n - 1, 1)]
    for row, col in picks:
        x, y = _cell_point(geometry, n, int(row), int(col))
        drawn = pixels[int(y - box["y"]) - 1:int(y - box["y"]) + 2, int(x - box["x"]) - 1:int(x - box["x"]) + 2]
        drawn = drawn.reshape(-1, 3).mean(axis=0)
        want = lut[int(round(255 * (values[row, col] - lo) / (hi - lo)))]
        print(f"cell ({row}, {col}) value {values[row, col]:.4f}: drawn {drawn.round().astype(int)}, colormap {want}")
        assert np.abs(drawn - want).max() <= 12, f"cell ({row}, {col}) is not its value's colour"


def test_hover_and_click_open_the_pair(notebook):
    n = notebook.kernel_eval("m.state.n")
    row, col = 3, 1  # two views of one photo (one cluster): a pair worth explaining
    query, reference = notebook.kernel_eval(f"list(m.state.pair_at({row}, {col}))")
    geometry = _geometry(notebook, MATRIX)
    x, y = _cell_point(geometry, n, row, col)
    notebook.page.mouse.move(x, y)
    notebook.poll_kernel("None if m.hovered is None else list(m.hovered)", [query, reference])
    readout = notebook.page.locator(f"{MATRIX} .simviz-matrix-readout").filter(visible=True).first
    names = notebook.kernel_eval(f"[m.state.names[{query}], m.state.names[{reference}]]")
    notebook.page.wait_for_function("([el, a, b]) => el.textContent.includes(a) && el.textContent.includes(b)",
                                    arg=[readout.element_handle(), *names], timeout=10000)
    notebook.page.mouse.click(x, y)
    notebook.poll_kernel("None if m.selected is None else list(m.selected)", [query, reference], timeout_s=120)
    same = notebook.kernel_eval(
        f"[bool(np.array_equal(m.viewer.inputs[0], gallery.image({query}))), "
        f"bool(np.array_equal(m.viewer.inputs[1], gallery.image({reference})))]")
    assert same == [True, True], "the viewer does not show the clicked pair (row = query, column = reference)"
    notebook.wait_for_canvas(f"{MATRIX} .simviz-query-canvas")
    notebook.wait_for_canvas(f"{MATRIX} .simviz-reference-canvas")
    notebook.page.mouse.move(*AWAY)
    notebook.poll_kernel("m.hovered", None)  # leaving the matrix: the readout shows the selected pair
    notebook.page.wait_for_function("(el) => el.textContent.includes('selected pair')", arg=readout.element_handle(),
                                    timeout=10000)
    _shoot(notebook, MATRIX, "similarity_matrix_pair.png")


def test_click_on_a_row_thumbnail_sorts_by_it(notebook):
    n = notebook.kernel_eval("m.state.n")
    position = 7
    index = notebook.kernel_eval(f"int(m.indices[{position}])")
    geometry = _geometry(notebook, MATRIX)
    rows = min(geometry["images"], key=lambda b: b["x"])
    _, y = _cell_point(geometry, n, position, 0)
    notebook.page.mouse.click(rows["x"] + rows["width"] / 2, y)
    notebook.poll_kernel("[m.order, m.anchor]", ["similarity", index])
    expected = notebook.kernel_eval("[int(i) for i in m.state.order_for('similarity')[1]]")
    assert notebook.kernel_eval("[int(i) for i in m.indices]") == expected
    assert notebook.kernel_eval("int(m.indices[0])") == index, "the chosen image is not first"
    notebook.page.mouse.move(*AWAY)
    _shoot(notebook, MATRIX, "similarity_matrix_sorted.png")
    _check_strips(notebook, MATRIX, "m")  # the page redrew the thumbnails in the new order
    colours = notebook.kernel_array("m.colour_data()")
    expected = notebook.kernel_array(
        "np.clip(m.state.colour_values(m.matrix[np.ix_(m.indices, m.indices)]), *m.state.colour_range)")
    assert np.array_equal(colours, expected), "the heatmap's colours are not the matrix in the new order"
    notebook.kernel_exec("m.order = 'cluster'")

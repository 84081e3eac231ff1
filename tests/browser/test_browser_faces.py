"""The pair viewer on the face model in a real JupyterLab: two photos of Barack Obama (the face crops
of "obama" and "obama3", 150 x 150), the correspondence reading, 300 px per image.

The real mouse hovers the query's eyes (the hand-measured landmarks of
``simviz_widgets.datasets.faces.face_points``, scaled to the displayed canvas); the page's hover
layer paints the eye's map over the reference with a peak marker. Checked:

- the kernel hears the hovered point (``viewer.hovered``) and its peak (``viewer.peak``, the best
  match) lies within one feature cell (150 / 8 = 18.75 display px) of the same eye measured on the
  reference;
- the marker the browser painted (the pixels that differ between ``show_peak`` on and off, the
  same point hovered) is centred there too: the page, not only the kernel, points at the eye;
- the face stays readable under the colours: the grey levels of what the page shows over the
  reference (a screenshot of the canvas box, every layer composited) correlate with the photo's,
  at rest and while hovering; the colour bar is a ramp.

Screenshots (``out/screenshots/``, with the other widgets'): faces_rest.png, faces_hover_eye.png.
Skipped only without the face data outside CI (tests/face_helpers.py), like the other face tests.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lab_harness import run_notebook
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/face_helpers.py
from face_helpers import require_face_data  # noqa: E402 - after the path above

from simviz_widgets.datasets.faces import FACE_SIZE, face_points  # noqa: E402

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"
VIEWER = ".shot-faces"
QUERY_LAYER, REFERENCE_LAYER = f"{VIEWER} .simviz-query-hover", f"{VIEWER} .simviz-reference-hover"
REFERENCE = f"{VIEWER} .simviz-reference-canvas"  # the kernel's canvas, under the hover layer
AWAY = (5, 5)  # a page point outside every widget: moving there ends a hover
CELL = FACE_SIZE / 8  # the face model's feature grid is 8 x 8 on the 150 px crop
# Pearson correlation of grey levels, screen vs photo, below which the face is taken as washed out.
# Measured on this pair: 0.98 at rest, 0.94-0.96 hovering an eye; a random 8 x 8 viridis map laid over
# the reference at one opacity everywhere gives 0.89 at 0.4, 0.65 at 0.6, 0.28 at 0.8, -0.05 at 1.
READABLE = 0.6

CELLS = [
    """\
import simviz_widgets as sv
from simviz_widgets.datasets import load_face
from simviz_widgets.widgets import PairViewer
model = sv.load_model("face_resnet")
a = load_face("obama", crop=True)
b = load_face("obama3", crop=True)
""",
    """\
viewer = PairViewer(model, a, b, reading="correspondence", size=300)
viewer.add_class("shot-faces")
viewer
""",
]


@pytest.fixture(scope="module")
def faces_notebook(module_page, lab_server):
    require_face_data()
    name = "faces_viewer.ipynb"
    notebook = run_notebook(module_page, lab_server, name, CELLS)
    notebook.wait_for_canvas(f"{VIEWER} .simviz-query-canvas")
    notebook.wait_for_canvas(REFERENCE)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    yield notebook
    lab_server.close_sessions([name])


@pytest.fixture
def notebook(faces_notebook):
    faces_notebook.page.mouse.move(*AWAY)
    return faces_notebook


def _shoot(notebook, name: str, *, scroll: bool = True) -> Path:
    page = notebook.page
    locator = page.locator(VIEWER).filter(visible=True).first
    if scroll:
        locator.scroll_into_view_if_needed()
    notebook.wait_stable(VIEWER)
    path = OUT_DIR / name
    locator.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


def _on_screen(notebook, selector: str) -> np.ndarray:
    """RGB of what the page shows over the canvas at `selector` (every layer composited)."""
    box = notebook.canvas_box(selector, scroll=False)
    clip = {"x": box.left, "y": box.top, "width": box.width, "height": box.height}
    png = notebook.page.screenshot(clip=clip)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def _grey_correlation(shown: np.ndarray, photo: np.ndarray) -> float:
    """Pearson correlation of the grey levels of `shown` and of `photo` resized to it."""
    rows, cols = shown.shape[:2]
    resized = np.asarray(Image.fromarray(photo).resize((cols, rows), Image.BILINEAR)).astype(float)
    grey = [img[..., :3] @ np.array([0.299, 0.587, 0.114]) for img in (shown, resized)]
    return float(np.corrcoef(grey[0].ravel(), grey[1].ravel())[0, 1])


def _leave(notebook) -> None:
    before = notebook.canvas_pixels(REFERENCE_LAYER)
    notebook.page.mouse.move(*AWAY)
    notebook.wait_settled(REFERENCE_LAYER, notebook.wait_for_change(REFERENCE_LAYER, before))


def _hover_settled(notebook, point) -> np.ndarray:
    """Hover display pixel `point` (row, col) of the query; the reference hover layer once painted."""
    box = notebook.canvas_box(QUERY_LAYER, scroll=False)
    row, col = ((point[0] + 0.5) * box.pixel_height / FACE_SIZE - 0.5,
                (point[1] + 0.5) * box.pixel_width / FACE_SIZE - 0.5)
    before = notebook.canvas_pixels(REFERENCE_LAYER)
    notebook.hover(box, row, col)
    return notebook.wait_settled(REFERENCE_LAYER, notebook.wait_for_change(REFERENCE_LAYER, before))


def _kernel_hover(notebook, point) -> tuple[list, list]:
    """(viewer.hovered, viewer.peak) once the kernel has heard a hover within a pixel of `point`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hovered, peak = notebook.kernel_eval("[None if viewer.hovered is None else list(viewer.hovered), "
                                             "None if viewer.peak is None else list(viewer.peak)]")
        heard = hovered is not None and max(abs(hovered[1] - point[0]), abs(hovered[2] - point[1])) <= 1
        if heard and peak is not None:
            return hovered, peak
        time.sleep(0.1)
    raise AssertionError(f"the kernel never heard the hover at {point}: viewer.hovered is {hovered}")


def _distance(a, b) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def test_rest_shows_the_faces_and_a_colour_bar(notebook):
    notebook.canvas_box(REFERENCE)  # scrolls the viewer into view
    photo = notebook.kernel_array("viewer.explanation.reference")
    rest = notebook.wait_settled(REFERENCE)
    shown = _on_screen(notebook, REFERENCE)
    correlation = _grey_correlation(shown, photo)
    gradient = notebook.page.locator(f"{VIEWER} .simviz-colorbar .simviz-colorbar-gradient").filter(visible=True)
    assert gradient.count() >= 1, "no visible colour bar in the viewer"
    ramp = np.asarray(Image.open(io.BytesIO(gradient.first.screenshot())).convert("RGB")).astype(int)
    if ramp.shape[0] > ramp.shape[1]:
        ramp = ramp.transpose(1, 0, 2)
    line = ramp[ramp.shape[0] // 2, 2:-2]
    distinct = len({tuple(px) for px in line})
    labels = notebook.page.locator(f"{VIEWER} .simviz-colorbar").filter(visible=True).first.inner_text()
    print(f"\nat rest: grey correlation of the shown reference with the photo {correlation:.2f}; "
          f"canvas {rest.shape[1]} x {rest.shape[0]}; colour bar {line.shape[0]} px, {distinct} colours, "
          f"text {labels!r}")
    _shoot(notebook, "faces_rest.png")
    assert correlation >= READABLE, f"the reference face is washed out at rest (grey correlation {correlation:.2f})"
    assert distinct >= 20, f"the colour bar shows {distinct} colours: not a ramp"


@pytest.mark.parametrize("eye", ["left_eye", "right_eye"])
def test_hovering_an_eye_points_at_the_same_eye(notebook, eye):
    query_eye, reference_eye = face_points("obama")[eye], face_points("obama3")[eye]
    photo = notebook.kernel_array("viewer.explanation.reference")
    notebook.canvas_box(QUERY_LAYER)  # scrolls the viewer into view, once
    on = _hover_settled(notebook, query_eye)
    assert (on[..., 3] == 255).all(), "the hovered eye's map was not painted over the reference"
    shown = _on_screen(notebook, REFERENCE)
    correlation = _grey_correlation(shown, photo)
    hovered, (side, peak_row, peak_col) = _kernel_hover(notebook, query_eye)
    if eye == "left_eye":
        _shoot(notebook, "faces_hover_eye.png", scroll=False)
    # The marker the page painted: what changes with show_peak off, the same point hovered.
    _leave(notebook)
    try:
        notebook.kernel_exec("viewer.show_peak = False")
        off = _hover_settled(notebook, query_eye)
    finally:
        notebook.kernel_exec("viewer.show_peak = True")
    _leave(notebook)
    changed = np.abs(on[..., :3].astype(int) - off[..., :3].astype(int)).max(-1) > 0
    white = changed & (on[..., :3].min(-1) >= 225)
    black = changed & (on[..., :3].max(-1) <= 40)
    scale = FACE_SIZE / on.shape[0]  # canvas -> display pixels
    ys, xs = np.nonzero(changed)
    marker = ((ys.mean() + 0.5) * scale - 0.5, (xs.mean() + 0.5) * scale - 0.5) if len(ys) else (np.nan, np.nan)
    extent = (np.ptp(ys) + 1, np.ptp(xs) + 1) if len(ys) else (0, 0)
    print(f"\n{eye}: hovered query {hovered[1]:.1f}, {hovered[2]:.1f} "
          f"(landmark {query_eye[0]:.1f}, {query_eye[1]:.1f}); "
          f"kernel peak ({peak_row:.1f}, {peak_col:.1f}) {_distance((peak_row, peak_col), reference_eye):.1f} px and "
          f"page marker ({marker[0]:.1f}, {marker[1]:.1f}) {_distance(marker, reference_eye):.1f} px from the "
          f"reference "
          f"landmark ({reference_eye[0]:.1f}, {reference_eye[1]:.1f}); marker {int(changed.sum())} px over "
          f"{extent[0]} x {extent[1]} canvas px ({int(white.sum())} white, {int(black.sum())} black); grey correlation "
          f"with the photo while hovering {correlation:.2f}")
    assert side == "reference"
    assert _distance((peak_row, peak_col), reference_eye) <= CELL, f"the kernel's best match for the {eye} is off"
    assert white.sum() >= 6 and black.sum() >= 6, "no white-and-black peak marker painted on the reference"
    assert max(extent) <= 2 * CELL / scale, f"show_peak changed pixels over {extent} canvas px: not one marker"
    assert _distance(marker, reference_eye) <= CELL, f"the page's peak marker for the {eye} is off the eye"
    assert _distance(marker, (peak_row, peak_col)) <= 2, "the page's marker and the kernel's peak disagree"
    assert correlation >= READABLE, f"the face is washed out while hovering (grey correlation {correlation:.2f})"

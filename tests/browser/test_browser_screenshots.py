"""Screenshots of the widgets in a real JupyterLab, and pixel checks of what makes them readable.

One notebook builds, on the default model (EfficientNet-Lite0) and chelsea / its mirror image:
a PairViewer (default look, and the default ``hover="browser"``: hovers are painted by the page's
hover layer, a <canvas> inside ``.simviz-hover-layer`` over each image, while the kernel's ipycanvas
canvases stay at rest underneath), a PairViewer on a RISE explanation (query-only: no reference map),
a PairExplorer (viewer + overall panel) with the method-comparison panel (RISE with 48 masks, a
coarse sliding window), and, on a random synthetic-scenes model, an AttributePanel for an
AttributePredictor trained for a few epochs (about a second). Element screenshots go to
``out/screenshots/`` (kept as CI artefacts; each path is printed):

  viewer_rest.png, viewer_hover_contribution.png, viewer_hover_correspondence.png,
  viewer_rise_na.png, explorer.png, comparison_panel.png, attribute_panel.png

Then the contracts are checked, each on its own (all are run and reported; the test fails
listing every one that does not hold):

- colour bar: ``.simviz-colorbar .simviz-colorbar-gradient`` in the viewer shows a ramp (>= 20
  distinct colours along its long side, ends far apart);
- browser hover: while a query pixel is hovered (the hover screenshots), the reference hover
  layer is opaque (it is what the screenshot shows) and the kernel's reference canvas is unchanged;
- peak marker: hovering a query pixel draws near-white and near-black pixels within ~10 px of
  ``viewer.canvas_position(*viewer.peak)`` on the reference hover layer, absent with
  ``viewer.show_peak = False`` and the same pixel hovered again;
- "n/a": with RISE (query-only) the reference canvas is the unmodified photo (against
  ``exp.reference`` resized to the canvas) apart from a label box saying "n/a";
- attribute legend: ``.simviz-attribute-legend .simviz-swatch`` swatches of pairwise different
  colours, the legend clear of the chart's plot area;
- comparison charts: titles inside their figure; every method's category label in full, inside
  the figure and not under the plot area (where the bars would cover it).

The notebook is built once; checks run in sequence on it, so the whole module takes ~1.5 min.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "out" / "screenshots"

VIEWER = ".shot-viewer"
RISE_VIEWER = ".shot-rise-viewer"
EXPLORER = ".shot-explorer"
COMPARISON = f"{EXPLORER} .simviz-comparison-panel"
ATTRIBUTE_BOX = ".shot-attribute-box"
ATTRIBUTES = ".shot-attributes"  # the AttributePanel itself
QUERY, REFERENCE = ".simviz-query-canvas", ".simviz-reference-canvas"  # the kernel's ipycanvas canvases
# The browser hover layer's canvases (js/hover_layer.js): the query one takes the mouse (it lies over
# the pad), the reference one shows the hovered point's map.
QUERY_LAYER, REFERENCE_LAYER = ".simviz-query-hover", ".simviz-reference-hover"
CANVAS_SIZE = 320  # PairViewer's default size on the 224 x 224 display image
GRID = 7  # EfficientNet-Lite0's feature grid
# The hovered query pixel, in canvas pixels: feature cell (2, 1), the cat's left eye.
HOVER = (int(2.5 * CANVAS_SIZE / GRID), int(1.5 * CANVAS_SIZE / GRID))
AWAY = (5, 5)  # a page point outside every widget: moving there ends a hover

CELLS = [
    """\
import ipywidgets as widgets
import simviz_widgets as sv
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.widgets import AttributePanel, PairExplorer, PairViewer
print("simviz_widgets from", sv.__file__)
model = sv.load_model("efficientnet_lite0")
cat = load_photo("chelsea")
mirror = views(cat, "mirror").image
""",
    """\
viewer = PairViewer(model, cat, mirror)
viewer.add_class("shot-viewer")
viewer
""",
    """\
rise_exp = sv.explain(model, cat, mirror, method="rise", masks=48, show_progress=False)
rise_viewer = PairViewer.from_explanation(rise_exp, model=model)
rise_viewer.add_class("shot-rise-viewer")
rise_viewer
""",
    """\
explorer = PairExplorer(model, cat, mirror, comparison={"method_options": {
    "rise": {"masks": 48}, "sliding_window": {"window": 64, "stride": 64}}})
explorer.add_class("shot-explorer")
explorer
""",
    """\
assert explorer.comparison.wait(600), "the comparison panel's background work did not finish"
""",
    """\
from simviz_widgets.adapters import SimilarityModel
from simviz_widgets.attributes import fit_attribute_predictor, synthetic_attribute_data
from simviz_widgets.datasets.synthetic import scene_pairs
from simviz_widgets.models.synthetic import SCENE_PREPROCESS, SceneEmbeddingNet

scene_model = SimilarityModel.wrap(SceneEmbeddingNet(width=16, dim=8, seed=1).eval(),
                                   preprocess=SCENE_PREPROCESS, name="scenes_random")
predictor = fit_attribute_predictor(scene_model, synthetic_attribute_data(scene_pairs(24, seed=4)),
                                    epochs=5, show_progress=False)
scene_pair = scene_pairs(3, seed=31)[0]
scene_viewer = PairViewer(scene_model, scene_pair.query.image, scene_pair.reference.image, size=256)
attribute_panel = AttributePanel.for_viewer(scene_viewer, predictor)
attribute_panel.add_class("shot-attributes")
attribute_box = widgets.HBox([scene_viewer, attribute_panel])
attribute_box.add_class("shot-attribute-box")
attribute_box
""",
]

# Every text drawn on a 2D canvas (ipycanvas's fill_text / stroke_text end here), with the size
# of the canvas it went to: labels drawn on canvases cannot be read back from pixels.
_CANVAS_TEXT_JS = """
window.__simvizCanvasTexts = [];
for (const ctor of [window.CanvasRenderingContext2D, window.OffscreenCanvasRenderingContext2D]) {
  if (!ctor) continue;
  for (const name of ['fillText', 'strokeText']) {
    const original = ctor.prototype[name];
    ctor.prototype[name] = function (text, ...rest) {
      window.__simvizCanvasTexts.push({text: String(text), width: this.canvas.width, height: this.canvas.height});
      return original.call(this, text, ...rest);
    };
  }
}
"""

# Boxes of the visible elements under `scope` whose own text (not their children's) matches /n\\/a/.
_NA_ELEMENTS_JS = """
(scope) => {
  const root = Array.from(document.querySelectorAll(scope)).find(e => e.getClientRects().length > 0);
  if (!root) return [];
  return Array.from(root.querySelectorAll('*'))
    .filter(el => el.getClientRects().length > 0
      && Array.from(el.childNodes).some(n => n.nodeType === Node.TEXT_NODE && /n\\/a/i.test(n.textContent)))
    .map(el => { const b = el.getBoundingClientRect();
                 return {text: el.textContent.trim(), x: b.left, y: b.top, width: b.width, height: b.height}; });
}
"""

# Per bqplot figure under `scope`: its box, plot area, title and tick labels (text and box).
_FIGURES_JS = """
(scope) => {
  const root = Array.from(document.querySelectorAll(scope)).find(e => e.getClientRects().length > 0);
  if (!root) return null;
  const box = (el) => {
    const b = el.getBoundingClientRect();
    return {x: b.left, y: b.top, width: b.width, height: b.height};
  };
  return Array.from(root.querySelectorAll('.bqplot.figure')).filter(f => f.getClientRects().length > 0).map(fig => ({
    box: box(fig),
    plot: Array.from(fig.querySelectorAll('rect.plotarea_background')).map(box)[0] || null,
    titles: Array.from(fig.querySelectorAll('text.mainheading')).filter(t => t.textContent.trim())
      .map(t => ({text: t.textContent.trim(), box: box(t)})),
    ticks: Array.from(fig.querySelectorAll('g.tick text')).map(t => ({text: t.textContent.trim(), box: box(t)})),
  }));
}
"""


# ---------------------------------------------------------------- helpers


class Checks:
    """Runs each contract check on its own and reports them all: one failing check must not hide
    the others (they share one expensive notebook)."""

    def __init__(self):
        self.results: list[tuple[str, bool, str]] = []

    @contextmanager
    def check(self, name: str):
        try:
            yield
        except AssertionError as error:
            # The check's own message, without pytest's rewritten "assert ..." explanation under it.
            message = str(error).split("\nassert ", 1)[0]
            self.results.append((name, False, message))
        except Exception as error:  # noqa: BLE001 - e.g. a Playwright timeout: reported with the check
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.results.append((name, False, f"{type(error).__name__} (not an assertion): {detail}"))
        else:
            self.results.append((name, True, ""))

    def report(self) -> None:
        print("\nscreenshot contract checks:")
        for name, ok, message in self.results:
            print(f"  {'PASS' if ok else 'FAIL'}  {name}" + (f": {message}" if message else ""))
        failed = [(name, message) for name, ok, message in self.results if not ok]
        if failed:
            pytest.fail(
                f"{len(failed)} of {len(self.results)} screenshot contract checks failed:\n"
                + "\n".join(f"- {name}: {message}" for name, message in failed),
                pytrace=False,
            )


def _visible(page, selector: str):
    return page.locator(selector).filter(visible=True)


def _shoot(notebook, selector: str, name: str) -> Path:
    """Element screenshot of the visible `selector` into OUT_DIR/name, once it has stopped changing."""
    return notebook.screenshot_element(selector, OUT_DIR / name)


def _image(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def _hover_settled(notebook, selector: str, box, point) -> np.ndarray:
    """Hover canvas pixel `point` (of the canvas `box` belongs to); the watched canvas once repainted."""
    before = notebook.canvas_pixels(selector)
    notebook.hover(box, *point)
    return notebook.wait_settled(selector, notebook.wait_for_change(selector, before))


def _leave(notebook, selector: str) -> None:
    """Move the mouse off the widgets; wait for the watched canvas to go back to its resting look."""
    before = notebook.canvas_pixels(selector)
    notebook.page.mouse.move(*AWAY)
    notebook.wait_settled(selector, notebook.wait_for_change(selector, before))


def _intersection(a: dict, b: dict) -> tuple[float, float]:
    """Width and height of the overlap of two {x, y, width, height} boxes (0 if none)."""
    width = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    height = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(0.0, width), max(0.0, height)


def _inside(inner: dict, outer: dict, tolerance: float = 1.0) -> bool:
    return (inner["x"] >= outer["x"] - tolerance and inner["y"] >= outer["y"] - tolerance
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + tolerance
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + tolerance)


def _fmt(box: dict) -> str:
    return f"(x {box['x']:.0f}..{box['x'] + box['width']:.0f}, y {box['y']:.0f}..{box['y'] + box['height']:.0f})"


def _shift_min_diff(picture: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per pixel, the smallest max-channel difference between `picture` and `expected` shifted by up
    to one pixel: tolerates the rounding of where a resized photo's pixel edges fall."""
    rows, cols = expected.shape[:2]
    padded = np.pad(expected, ((1, 1), (1, 1), (0, 0)), mode="edge")
    best = np.full((rows, cols), 255, dtype=np.int32)
    for dy, dx in itertools.product(range(3), range(3)):
        shifted = padded[dy : dy + rows, dx : dx + cols]
        best = np.minimum(best, np.abs(picture - shifted).max(axis=-1))
    return best


# ---------------------------------------------------------------- contract checks


def check_colorbar(notebook) -> None:
    page = notebook.page
    gradients = _visible(page, f"{VIEWER} .simviz-colorbar .simviz-colorbar-gradient")
    assert gradients.count() >= 1, (
        f"no visible .simviz-colorbar containing .simviz-colorbar-gradient in the viewer "
        f"(.simviz-colorbar elements there: {_visible(page, f'{VIEWER} .simviz-colorbar').count()})"
    )
    gradient = gradients.first
    css = gradient.evaluate("el => getComputedStyle(el).backgroundImage")
    pixels = _image(gradient.screenshot())
    rows, cols = pixels.shape[:2]
    assert rows >= 4 and cols >= 4, f"the colour bar gradient is {cols} x {rows} px"
    if rows > cols:  # a vertical bar: its ramp runs along the height
        pixels = pixels.transpose(1, 0, 2)
        rows, cols = cols, rows
    inner = pixels[rows // 4 : rows - rows // 4 or None, 2:-2]  # off any border
    middle = inner[inner.shape[0] // 2]
    distinct = len({tuple(int(c) for c in px) for px in middle})
    ends = _distance(inner[:, :3].reshape(-1, 3).mean(0), inner[:, -3:].reshape(-1, 3).mean(0))
    print(f"\ncolour bar gradient: {cols} x {rows} px, {distinct} distinct colours along it, "
          f"ends {ends:.0f} apart (RGB); CSS background-image {css[:60]!r}")
    assert distinct >= 20, f"the colour bar gradient shows {distinct} distinct colours along its length (< 20)"
    assert ends >= 100, f"the colour bar's two ends are only {ends:.0f} apart in RGB (< 100): not a ramp"


def _marker_pixels(on: np.ndarray, off: np.ndarray, centre, radius: float):
    """Near-white / near-black pixels within `radius` of centre (y, x) in `on` that are not so in `off`."""
    rows, cols = on.shape[:2]
    yy, xx = np.mgrid[0:rows, 0:cols]
    near = (yy + 0.5 - centre[0]) ** 2 + (xx + 0.5 - centre[1]) ** 2 <= radius**2
    rgb_on, rgb_off = on[..., :3].astype(int), off[..., :3].astype(int)
    new_white = near & (rgb_on.min(-1) >= 225) & ~(rgb_off.min(-1) >= 225)
    new_black = near & (rgb_on.max(-1) <= 40) & ~(rgb_off.max(-1) <= 40)
    return new_white, new_black


def check_browser_hover(notebook, layer: np.ndarray, kernel_rest: np.ndarray) -> None:
    """`layer`: the reference hover layer while hovering HOVER; `kernel_rest`: the kernel's reference
    canvas before the hover."""
    opaque = float((layer[..., 3] == 255).mean())
    kernel_now = notebook.canvas_pixels(f"{VIEWER} {REFERENCE}")
    changed = float(np.any(kernel_now != kernel_rest, axis=-1).mean())
    print(f"\nbrowser hover: reference hover layer {100 * opaque:.1f} % opaque; the kernel's reference canvas "
          f"{100 * changed:.2f} % changed")
    assert opaque == 1.0, f"the reference hover layer is only {100 * opaque:.1f} % opaque while hovering"
    assert changed == 0.0, f"the kernel redrew {100 * changed:.2f} % of its reference canvas on a browser hover"


def check_peak_marker(notebook, on: np.ndarray, hover_box) -> None:
    """`on`: the reference hover layer while hovering HOVER with the peak marker shown (the default)."""
    ref = f"{VIEWER} {REFERENCE_LAYER}"
    # The kernel hears the hovered point from the layer at a low rate (throttled): wait for it.
    deadline = time.monotonic() + 30
    while (info := notebook.kernel_eval(
        "None if viewer.peak is None else [list(viewer.peak), list(viewer.canvas_position(*viewer.peak))]"
    )) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert info is not None, "viewer.peak is None while a query pixel is hovered"
    (side, row, col), (y, x) = info
    assert side == "reference", f"viewer.peak is on the {side!r} side while a query pixel is hovered"
    _leave(notebook, ref)
    try:
        notebook.kernel_exec("viewer.show_peak = False")
        off = _hover_settled(notebook, ref, hover_box, HOVER)  # the same pixel as `on`
    finally:
        notebook.kernel_exec("viewer.show_peak = True")
    radius = 12.0  # "within ~10 px", plus the stroke width
    new_white, new_black = _marker_pixels(on, off, (y, x), radius)
    changed = np.abs(on[..., :3].astype(int) - off[..., :3].astype(int)).max(-1) > 0
    rows, cols = on.shape[:2]
    yy, xx = np.mgrid[0:rows, 0:cols]
    far = (yy + 0.5 - y) ** 2 + (xx + 0.5 - x) ** 2 > (2 * radius) ** 2
    marker = new_white | new_black
    quadrants = {(bool(r + 0.5 < y), bool(c + 0.5 < x)) for r, c in zip(*np.nonzero(marker))}
    print(f"\npeak {side} pixel ({row:.1f}, {col:.1f}) -> canvas (y {y:.1f}, x {x:.1f}); within {radius:.0f} px: "
          f"{int(new_white.sum())} new near-white, {int(new_black.sum())} new near-black pixels, in "
          f"{len(quadrants)} of 4 quadrants; show_peak changed {int(changed.sum())} pixels, "
          f"{int((changed & far).sum())} of them farther than {2 * radius:.0f} px")
    assert new_white.sum() >= 6 and new_black.sum() >= 6, (
        f"no white-and-black marker within {radius:.0f} px of the peak (canvas y {y:.1f}, x {x:.1f}): "
        f"{int(new_white.sum())} near-white and {int(new_black.sum())} near-black pixels appear there with "
        f"show_peak=True that are not there with show_peak=False (want >= 6 of each)"
    )
    assert len(quadrants) >= 3, (
        f"the marker pixels around the peak lie in {len(quadrants)} of the 4 quadrants around it: not a ring"
    )


def check_rise_na(notebook, lab_texts: list[dict]) -> None:
    page = notebook.page
    ref = f"{RISE_VIEWER} {REFERENCE}"
    pixels = notebook.wait_settled(ref)[..., :3].astype(np.int32)
    rows, cols = pixels.shape[:2]
    shape = notebook.kernel_eval("list(rise_viewer.explanation.reference.shape)")
    raw = notebook.kernel_eval("__import__('base64').b64encode(rise_viewer.explanation.reference.tobytes()).decode()")
    display = np.frombuffer(base64.b64decode(raw), dtype=np.uint8).reshape(shape)
    expected = np.asarray(Image.fromarray(display).resize((cols, rows), Image.Resampling.NEAREST), dtype=np.int32)
    not_photo = _shift_min_diff(pixels, expected) > 40
    share = float(not_photo.mean())
    assert share <= 0.25, (
        f"the RISE viewer's reference canvas is not the photo: {100 * share:.0f} % of its pixels differ from "
        f"exp.reference (resized to {cols} x {rows}) by more than 40 (a map or wash over the photo?)"
    )
    # The label: an element with "n/a" over the canvas, or a box drawn on the canvas.
    canvas_box = notebook.canvas_box(ref)
    client = {"x": canvas_box.left, "y": canvas_box.top, "width": canvas_box.width, "height": canvas_box.height}
    elements = [e for e in page.evaluate(_NA_ELEMENTS_JS, RISE_VIEWER) if all(_intersection(e, client))]
    scale_y, scale_x = rows / canvas_box.height, cols / canvas_box.width
    if elements:
        label = elements[0]
        top = max(0, int((label["y"] - client["y"]) * scale_y))
        left = max(0, int((label["x"] - client["x"]) * scale_x))
        bottom = min(rows, math.ceil((label["y"] + label["height"] - client["y"]) * scale_y))
        right = min(cols, math.ceil((label["x"] + label["width"] - client["x"]) * scale_x))
        shot = _image(page.screenshot(clip={"x": client["x"] + left / scale_x, "y": client["y"] + top / scale_y,
                                            "width": (right - left) / scale_x, "height": (bottom - top) / scale_y}))
        photo = np.asarray(Image.fromarray(expected[top:bottom, left:right].astype(np.uint8))
                           .resize((shot.shape[1], shot.shape[0])), dtype=np.int32)
        label_diff = float(np.abs(shot - photo).max(-1).mean())
        print(f"\nn/a label: element {label['text']!r} over the reference canvas, canvas rows {top}..{bottom}, "
              f"cols {left}..{right}; differs from the photo by {label_diff:.0f} on average")
        assert label_diff > 30, (
            f"the 'n/a' element over the reference canvas looks like the photo (diff {label_diff:.0f})")
    else:
        texts = sorted({t["text"] for t in lab_texts if "n/a" in t["text"].lower()
                        and (t["height"], t["width"]) == (rows, cols)})
        assert texts, (
            "no 'n/a' label on the RISE viewer's reference side: no element with 'n/a' over the canvas and "
            f"no text with 'n/a' drawn on a {cols} x {rows} canvas (canvas texts drawn: "
            f"{sorted({t['text'] for t in lab_texts})[:12]})"
        )
        assert not_photo.any(), f"'n/a' was drawn ({texts}) but no reference-canvas pixel differs from the photo"
        ys, xs = np.nonzero(not_photo)
        top, bottom, left, right = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        fill = float(not_photo[top:bottom, left:right].mean())
        area = (bottom - top) * (right - left) / (rows * cols)
        print(f"\nn/a label: canvas text {texts}; non-photo pixels in rows {top}..{bottom}, cols {left}..{right} "
              f"({100 * area:.1f} % of the canvas, {100 * fill:.0f} % of that box not photo)")
        assert area <= 0.25 and fill >= 0.5, (
            f"the pixels that are not the photo (rows {top}..{bottom}, cols {left}..{right}, {100 * area:.0f} % "
            f"of the canvas, {100 * fill:.0f} % filled) do not form one label box"
        )
    # Everywhere away from the label, the photo itself.
    away = np.ones((rows, cols), dtype=bool)
    away[max(0, top - 6) : bottom + 6, max(0, left - 6) : right + 6] = False
    stray = float(not_photo[away].mean())
    mean_diff = float(_shift_min_diff(pixels, expected)[away].mean())
    print(f"reference canvas away from the label: {100 * stray:.2f} % of pixels not the photo, "
          f"mean diff {mean_diff:.1f}")
    assert stray <= 0.01 and mean_diff <= 6, (
        f"away from the label the reference canvas is not the unmodified photo: {100 * stray:.1f} % of pixels "
        f"differ by > 40, mean difference {mean_diff:.1f} (want <= 1 % and <= 6)"
    )


def check_attribute_legend(notebook) -> None:
    page = notebook.page
    legends = _visible(page, f"{ATTRIBUTES} .simviz-attribute-legend")
    assert legends.count() >= 1, "no visible .simviz-attribute-legend in the attribute panel"
    legend = legends.first
    swatches = legend.locator(".simviz-swatch").filter(visible=True)
    count = swatches.count()
    assert count >= 2, f"the attribute legend has {count} visible .simviz-swatch elements (want one per component)"
    colours = []
    for k in range(count):
        picture = _image(swatches.nth(k).screenshot())
        rows, cols = picture.shape[:2]
        core = picture[rows // 4 : rows - rows // 4 or None, cols // 4 : cols - cols // 4 or None]  # off the border
        colours.append(tuple(int(v) for v in np.median(core.reshape(-1, 3), axis=0)))
    print(f"\nattribute legend swatch colours: {colours}")
    for (i, a), (j, b) in itertools.combinations(enumerate(colours), 2):
        assert _distance(a, b) >= 40, f"legend swatches {i} and {j} have (nearly) the same colour: {a} vs {b}"
    legend_box = legend.bounding_box()
    figures = page.evaluate(_FIGURES_JS, ATTRIBUTES) or []
    assert figures, "no visible bqplot figure (.bqplot.figure) in the attribute panel"
    for figure in figures:
        area = figure["plot"] or figure["box"]
        width, height = _intersection(legend_box, area)
        assert width <= 1 or height <= 1, (
            f"the attribute legend {_fmt(legend_box)} overlaps the chart's plot area {_fmt(area)} "
            f"by {width:.0f} x {height:.0f} px"
        )


def check_comparison_charts(notebook) -> None:
    page = notebook.page
    methods = notebook.kernel_eval("explorer.comparison.methods")
    scores = notebook.kernel_eval(
        "{m: {k: (v if v == v and abs(v) != float('inf') else None) for k, v in s.items()} "
        "for m, s in explorer.comparison.scores.items()}"
    )
    expected = [m for m in methods if all(v is not None for v in scores.get(m, {}).values())]
    left_out = sorted(set(methods) - set(expected))
    figures = page.evaluate(_FIGURES_JS, COMPARISON)
    assert figures, "no visible bqplot figure (.bqplot.figure) in the comparison panel"
    print(f"\ncomparison panel: {len(figures)} charts; methods with every score: {expected}"
          + (f"; left out (a score is missing or not finite): {left_out}" if left_out else ""))
    problems = []
    for k, figure in enumerate(figures):
        box, plot = figure["box"], figure["plot"]
        name = figure["titles"][0]["text"] if figure["titles"] else f"chart {k}"
        for title in figure["titles"]:
            if not _inside(title["box"], box):
                problems.append(f"{name!r}: title {_fmt(title['box'])} sticks out of its figure {_fmt(box)}")
        ticks = {}
        for tick in figure["ticks"]:
            ticks.setdefault(tick["text"], tick["box"])
        for method in expected:
            if method not in ticks:
                alike = [t for t in ticks if t[:4] == method[:4]]
                problems.append(f"{name!r}: no category label {method!r} in full (labels like it: {alike})")
                continue
            label = ticks[method]
            if not _inside(label, box):
                problems.append(f"{name!r}: label {method!r} {_fmt(label)} is cut by its figure {_fmt(box)}")
            if plot is not None:
                width, height = _intersection(label, plot)
                if width > 3 and height > 3:
                    problems.append(f"{name!r}: label {method!r} {_fmt(label)} reaches {width:.0f} x {height:.0f} px "
                                    f"into the plot area {_fmt(plot)}, under the bars")
    assert not problems, f"{len(problems)} chart text problems:\n    " + "\n    ".join(problems)


# ---------------------------------------------------------------- the test


def test_widget_screenshots(page, open_notebook):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    page.context.add_init_script(_CANVAS_TEXT_JS)  # runs in the notebook page open_notebook loads
    notebook = open_notebook("widget_screenshots.ipynb", CELLS)
    notebook.run_all()
    print(f"\nkernel imports simviz_widgets from {notebook.kernel_eval('sv.__file__')}")
    checks = Checks()

    # The viewer: at rest, hovering in both readings; colour bar and peak marker.
    # Hovers are drawn by the browser layer (hover="browser"): the mouse goes to the query layer and
    # the reference layer is watched; the kernel's canvases stay at rest underneath.
    for selector in (f"{VIEWER} {QUERY}", f"{VIEWER} {REFERENCE}"):
        notebook.wait_for_canvas(selector)
    query, ref = f"{VIEWER} {QUERY_LAYER}", f"{VIEWER} {REFERENCE_LAYER}"
    assert notebook.kernel_eval("viewer.browser.active") is True, "the viewer does not draw hovers in the browser"
    _visible(page, VIEWER).first.scroll_into_view_if_needed()  # no scrolling under the mouse later
    kernel_rest = notebook.wait_settled(f"{VIEWER} {REFERENCE}")
    _shoot(notebook, VIEWER, "viewer_rest.png")
    with checks.check("colour bar shows a colour ramp"):
        check_colorbar(notebook)

    hover_box = notebook.canvas_box(query)
    hovered = _hover_settled(notebook, ref, hover_box, HOVER)
    _shoot(notebook, VIEWER, "viewer_hover_contribution.png")
    with checks.check("browser hover: the layer paints, the kernel's canvas stays at rest"):
        check_browser_hover(notebook, notebook.canvas_pixels(ref), kernel_rest)
    with checks.check("peak marker while hovering (absent with show_peak=False)"):
        check_peak_marker(notebook, hovered, hover_box)
    _leave(notebook, ref)  # the check leaves the mouse on HOVER, however far it got
    notebook.kernel_exec("viewer.reading = 'correspondence'")
    hover_box = notebook.canvas_box(query)
    _hover_settled(notebook, ref, hover_box, HOVER)
    _shoot(notebook, VIEWER, "viewer_hover_correspondence.png")
    _leave(notebook, ref)

    # RISE: no reference map.
    for selector in (f"{RISE_VIEWER} {QUERY}", f"{RISE_VIEWER} {REFERENCE}"):
        notebook.wait_for_canvas(selector)
    _shoot(notebook, RISE_VIEWER, "viewer_rise_na.png")
    canvas_texts = page.evaluate("() => window.__simvizCanvasTexts || []")
    with checks.check("RISE reference side: unmodified photo and an n/a label"):
        check_rise_na(notebook, canvas_texts)

    # The explorer with its overall and comparison panels (the comparison cell waited for the
    # background work; the page may still be applying the last updates).
    notebook.wait_for_canvas(f"{EXPLORER} {REFERENCE}")
    notebook.wait_stable(COMPARISON, quiet_s=1.0)
    _shoot(notebook, EXPLORER, "explorer.png")
    _shoot(notebook, COMPARISON, "comparison_panel.png")
    with checks.check("comparison charts: titles inside, method labels in full"):
        check_comparison_charts(notebook)

    # The attribute panel.
    notebook.wait_for_canvas(f"{ATTRIBUTE_BOX} {REFERENCE}")
    _shoot(notebook, ATTRIBUTES, "attribute_panel.png")
    with checks.check("attribute legend: distinct swatches, clear of the plot area"):
        check_attribute_legend(notebook)

    checks.report()

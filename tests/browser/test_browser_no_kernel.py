"""A pair-viewer notebook reopened in JupyterLab without the kernel that made it.

The notebook is executed once (nbconvert, which stores widget state like "Save Widget State"), then
written four ways into the server's root: with or without widget state (JupyterLab saves none by
default), trusted (signed with the server's own notary) or not (a notebook from someone else).
Each is opened in JupyterLab and the tests check what a reader gets (docs/widgets.md, "Without a
kernel"):

* with state, trusted: the widget comes back from the saved models; its ipycanvas canvases are
  blank, but the hover layers paint the photos and maps themselves and hover works, no kernel behind;
* untrusted (with or without state): the widget output shows its text form (JupyterLab gives
  untrusted outputs only to "safe" renderers, and the widget renderer is not one), and under it the
  viewer's static fallback, which the sanitiser reduced to its PNG;
* without state, trusted: "model not found", and the fallback is the live standalone page.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from lab_harness import CanvasDriver, LabNotebook, private_jupyter_env
from nbformat.sign import NotebookNotary

pytestmark = pytest.mark.browser

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SHOTS = "out/screenshots"
CELLS = [
    """\
import simviz_widgets as sv
from simviz_widgets.datasets import default_pair
from simviz_widgets.widgets import PairViewer

model = sv.models.load("efficientnet_lite0")
query, reference = default_pair()""",
    """\
viewer = PairViewer(model, query, reference, size=240)
viewer""",
]
LAYER = ".simviz-{side}-pad .simviz-hover-layer canvas"


@pytest.fixture(scope="module")
def saved(lab_server, tmp_path_factory):
    """Names of the three saved notebooks in the server's root."""
    work = tmp_path_factory.mktemp("no_kernel")
    source = work / "viewer.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in CELLS]
    nbformat.write(notebook, source)
    env = private_jupyter_env(work / "jupyter")
    env.update(MPLBACKEND="Agg", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(source),
           "--output", "executed.ipynb", "--ExecutePreprocessor.timeout=600"]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"nbconvert failed ({done.returncode}):\n{done.stderr[-4000:]}"
    executed = nbformat.read(work / "executed.ipynb", as_version=4)
    assert executed.metadata["widgets"][WIDGET_STATE]["state"], "nbconvert stored no widget state"

    stripped = copy.deepcopy(executed)
    del stripped.metadata["widgets"]
    # The server's notary lives in its private JUPYTER_DATA_DIR (lab_harness.private_jupyter_env). It
    # trusts by content, so a trusted copy must differ from its untrusted twin.
    notary = NotebookNotary(data_dir=str(lab_server.root_dir.parent / "jupyter" / "data"))
    names = {}
    for state, base in (("with_state", executed), ("without_state", stripped)):
        for trust in ("untrusted", "trusted"):
            notebook = copy.deepcopy(base)
            notebook.metadata["simviz_test"] = f"{state}, {trust}"
            if trust == "trusted":
                notary.sign(notebook)
            names[state, trust] = f"saved_{state}_{trust}.ipynb"
            nbformat.write(notebook, lab_server.root_dir / names[state, trust])
    yield names
    lab_server.close_sessions(names.values())


def _visible(page, selector: str) -> int:
    return page.evaluate("(s) => Array.from(document.querySelectorAll(s)).filter(e => e.getClientRects().length"
                         " > 0 && getComputedStyle(e).display !== 'none').length", selector)


def _hover_changes(driver: CanvasDriver, query: str, reference: str) -> np.ndarray:
    box = driver.canvas_box(query)
    before = driver.canvas_pixels(reference)
    driver.hover(box, box.pixel_height * 0.35, box.pixel_width * 0.25)
    after = driver.wait_for_change(reference, before, timeout_s=15)
    changed = np.any(after != before, axis=-1).mean()
    assert changed > 0.5, f"hover changed only {changed:.1%} of the reference pixels"
    return after


def test_saved_with_widget_state_the_layers_paint_and_hover_without_a_kernel(page, lab_server, saved):
    # JupyterLab renders widget outputs of trusted notebooks only (its widget renderer is not "safe").
    notebook = LabNotebook(page, lab_server, saved["with_state", "trusted"]).open()
    for side in ("query", "reference"):
        notebook.wait_for_canvas(LAYER.format(side=side))  # painted by the layer: the models have no comm
        rest = notebook.canvas_pixels(LAYER.format(side=side))
        assert (rest[..., 3] == 255).mean() > 0.99, f"{side} layer does not show the rest view"
    assert _visible(page, ".simviz-fallback") == 0, "the widget rendered, so its fallback must be hidden"
    hovered = _hover_changes(notebook, LAYER.format(side="query"), LAYER.format(side="reference"))
    assert (hovered[..., 3] == 255).all()
    page.screenshot(path=f"{SHOTS}/reopened_with_state_hover.png")


@pytest.mark.parametrize("state", ["with_state", "without_state"])
def test_untrusted_shows_the_png(page, lab_server, saved, state):
    LabNotebook(page, lab_server, saved[state, "untrusted"]).open()
    page.wait_for_selector(".simviz-fallback img", timeout=60_000)
    # an untrusted output is not given to the widget renderer: its text form shows, state or not
    page.wait_for_selector(".jp-OutputArea-output >> text=PairViewer(", timeout=60_000)
    assert _visible(page, ".simviz-fallback img[src^='data:image/png']") == 1
    assert page.evaluate("() => document.querySelectorAll('.jp-OutputArea iframe').length") == 0  # sanitised
    size = page.evaluate("() => { const i = document.querySelector('.simviz-fallback img');"
                         " return [i.naturalWidth, i.naturalHeight]; }")
    assert size[0] > 400 and size[1] > 200, size  # both images side by side, decoded
    box = page.locator(".simviz-fallback").first.bounding_box()
    assert box["height"] < size[1] + 40, (box, size)  # the PNG's own size: no empty box the page's size
    page.locator(".simviz-fallback").first.screenshot(path=f"{SHOTS}/reopened_untrusted_{state}_png.png")


def test_saved_without_widget_state_trusted_shows_the_live_page(page, lab_server, saved):
    LabNotebook(page, lab_server, saved["without_state", "trusted"]).open()
    page.wait_for_selector("text=Error displaying widget: model not found", timeout=60_000)
    element = page.locator(".simviz-fallback iframe").first
    element.wait_for(state="visible", timeout=60_000)
    element.scroll_into_view_if_needed()
    frame = element.element_handle().content_frame()
    frame.wait_for_function("() => { const r = document.getElementById('simviz-root');"
                            " return r && r.simvizView && r.simvizView.state; }", timeout=60_000)
    frame.evaluate("() => document.getElementById('simviz-root').simvizView.ready.then(() => true)")
    corner = element.bounding_box()
    driver = CanvasDriver(page, frame, (corner["x"], corner["y"]))
    assert _visible(page, ".simviz-fallback img") == 0  # the live page replaces the PNG
    _hover_changes(driver, "canvas.sv-query", "canvas.sv-reference")  # js/pair_view.js's canvases
    page.locator(".simviz-fallback").first.screenshot(path=f"{SHOTS}/reopened_trusted_page_hover.png")


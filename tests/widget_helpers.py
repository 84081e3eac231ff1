"""Helpers for widget tests without a browser: hand-made explanations, simulated mouse events,
and a recorder of ipycanvas draw commands (what would reach the browser, PNG buffers decoded)."""

from __future__ import annotations

import io

import numpy as np
from ipycanvas import canvas as ipycanvas_canvas
from PIL import Image

from simviz_widgets.explain.base import PairExplanation, PointToPoint

NAMES = {code: name for name, code in ipycanvas_canvas.COMMANDS.items()}


# ------------------------------------------------------------------------------------------------
# helpers


def make_explanation(query_grid=(7, 7), reference_grid=(5, 9), query_size=(224, 224),
                     reference_size=(150, 270), dim=16, seed=0, with_p2p=True) -> PairExplanation:
    """A decomposition-shaped explanation from random factors: maps are the row/column sums of D
    and the score is its total, as for the real method."""
    rng = np.random.default_rng(seed)
    nq, nr = query_grid[0] * query_grid[1], reference_grid[0] * reference_grid[1]
    p2p = PointToPoint(rng.normal(size=(nq, dim)), rng.normal(size=(nr, dim)), 0.05, query_grid, reference_grid)
    d = p2p.matrix().astype(np.float64)
    return PairExplanation(
        method="decomposition", score=float(d.sum()),
        query=rng.integers(0, 256, size=(*query_size, 3), dtype=np.uint8),
        reference=rng.integers(0, 256, size=(*reference_size, 3), dtype=np.uint8),
        query_map=d.sum(axis=1).reshape(query_grid), reference_map=d.sum(axis=0).reshape(reference_grid),
        signed=True, point_to_point=p2p if with_p2p else None, completeness_error=0.0,
    )


class Commands:
    """Records every draw command sent to any canvas, decoding image buffers."""

    def __init__(self):
        self.calls = []

    def clear(self):
        self.calls.clear()

    def on(self, layer):
        return [c for c in self.calls if c["canvas"] is layer]

    def names(self, layer):
        return [c["name"] for c in self.on(layer)]

    def images(self, layer):
        return [c for c in self.on(layer) if c["name"] == "putImageData"]

    def texts(self, layer):
        return [c["args"][0] for c in self.on(layer) if c["name"] == "fillText"]

    def last_image(self, layer) -> np.ndarray:
        images = self.images(layer)
        assert images, "no image was drawn on this layer"
        return images[-1]["image"]


def record_commands(monkeypatch) -> Commands:
    """Record every ipycanvas draw command from now on (the ``commands`` fixture in conftest.py)."""
    manager = ipycanvas_canvas._CANVAS_MANAGER
    original = manager.send_draw_command
    recorder = Commands()

    def record(canvas, name, args=[], buffers=[]):
        # Array arguments travel as binary buffers: decode them back to arrays.
        decoded = [np.frombuffer(bytes(buffers[a["idx"]]), dtype=a["dtype"]).reshape(a["shape"])
                   if isinstance(a, dict) and "idx" in a and name != ipycanvas_canvas.COMMANDS["putImageData"] else a
                   for a in args]
        entry = {"canvas": canvas, "name": NAMES[name], "args": decoded}
        if entry["name"] == "putImageData":
            picture = Image.open(io.BytesIO(bytes(buffers[0])))
            entry["format"] = picture.format
            entry["image"] = np.array(picture)
        recorder.calls.append(entry)
        return original(canvas, name, args, buffers)

    monkeypatch.setattr(manager, "send_draw_command", record)
    return recorder


def move(viewer, source, row, col, **extra):
    """A mouse move over display pixel (row, col) of ``source``, as ipyevents would send it."""
    y, x = viewer.canvas_position(source, row, col)
    return viewer._handle_event(source, {"type": "mousemove", "relativeX": x, "relativeY": y, **extra})


def click(viewer, source, row, col):
    y, x = viewer.canvas_position(source, row, col)
    return viewer._handle_event(source, {"type": "click", "relativeX": x, "relativeY": y})

"""The browser's numerics (js/render.js, js/point_map.js, js/payload.js) against Python's, through Node's test runner.

js/test/fixtures.json holds what Python computes for tiny hand-set inputs (a fixed numpy seed):
upsampling, normalisation, colormaps, the photo/map blend, point-to-point rows in both encodings,
geometry and colour scales. ``test_fixtures_are_current`` keeps that file equal to what the Python
code computes now (``SIMVIZ_REGENERATE_JS_FIXTURES=1`` rewrites it instead); ``test_node_suite``
runs ``node --test js/``, whose tests compare the JavaScript with the fixtures. Without node the
suite is skipped locally and fails in CI (CI=true), like the browser tests.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from simviz_widgets.explain.base import PairExplanation
from simviz_widgets.explain.point_to_point import PointToPoint
from simviz_widgets.render import colormap_lut, normalize_map, overlay, upsample_bilinear
from simviz_widgets.render.colormap import map_to_rgba
from simviz_widgets.render.figure import cell_centre_pixels
from simviz_widgets.web.payload import point_arrays
from simviz_widgets.widgets._canvas import event_to_pixel, pixel_to_canvas
from simviz_widgets.widgets.hover import HoverLogic

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "js" / "test" / "fixtures.json"
REGENERATE_ENV = "SIMVIZ_REGENERATE_JS_FIXTURES"
NODE = os.environ.get("SIMVIZ_NODE") or shutil.which("node") or "/usr/bin/node"
NODE_TIMEOUT_S = 120
LUT_NAMES = ("gray", "RdBu_r", "viridis", "inferno")
SIDES = ("query", "reference")
READINGS = ("contribution", "correspondence")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# ---------------------------------------------------------------- encoding helpers


def _floats(values) -> list[float]:
    """Every value as a Python float (float32 values convert exactly; JSON round-trips doubles)."""
    return [float(v) for v in np.asarray(values).ravel()]


def _b64(array) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _short(values) -> np.ndarray:
    """Random data as float32 multiples of 1/1024: exact in float32 and ~12 characters in JSON."""
    return (np.round(np.asarray(values, np.float64) * 1024.0) / 1024.0).astype(np.float32)


def _none_or_float(value):
    return None if value is None else float(value)


# ---------------------------------------------------------------- fixture sections


def _rounding() -> dict:
    inputs = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 254.5, 255.5, 0.49999999999999994, 1.2, 1.7,
                       -0.3, -3.7, 0.0, -0.0, 7.0, 1e17 + 2.0, 12.500000000000002], np.float64)
    return {"inputs": _floats(inputs), "expected": _floats(np.round(inputs))}


def _upsampling(rng) -> list[dict]:
    cases = []
    for shape, size in (((1, 2), (1, 6)), ((2, 3), (7, 11)), ((1, 5), (4, 9)), ((5, 4), (3, 2)), ((4, 4), (4, 4)),
                        ((3, 1), (6, 4)), ((1, 1), (3, 3)), ((6, 7), (2, 13)), ((7, 7), (16, 15))):
        values = _short(rng.normal(size=shape))
        cases.append({"shape": list(shape), "size": list(size), "values": _floats(values),
                      "expected": _floats(upsample_bilinear(values, size))})
    return cases


def _normalisation(rng) -> list[dict]:
    signed = _short(rng.normal(size=(3, 4)))
    positive = _short(rng.uniform(0.1, 2.0, size=(2, 5)))
    zeros = np.zeros((2, 3), np.float32)
    constant = np.full((2, 2), 2.5, np.float32)
    inputs = [
        (signed, "symmetric", None, None), (signed, "symmetric", -0.5, None), (signed, "symmetric", None, 0.7),
        (signed, "symmetric", 3.0, 1.0), (signed, "minmax", None, None), (signed, "minmax", -0.3, 0.9),
        (signed, "minmax", -0.3, None), (signed, "minmax", None, 0.2), (positive, "minmax", None, None),
        (positive, "none", None, None), (positive, "none", 0.5, 1.5), (signed, "none", None, None),
        (zeros, "symmetric", None, None), (zeros, "minmax", None, None), (zeros, "none", None, None),
        (constant, "minmax", None, None), (constant, "symmetric", None, None), (constant, "none", None, None),
        (signed, "minmax", 0.4, 0.4), (signed, "minmax", 1.0, 0.0), (signed, "none", 2.0, None),
    ]
    cases = []
    for values, mode, vmin, vmax in inputs:
        case = {"shape": list(values.shape), "values": _floats(values), "mode": mode,
                "vmin": _none_or_float(vmin), "vmax": _none_or_float(vmax)}
        try:
            unit, lo, hi = normalize_map(values, mode=mode, vmin=vmin, vmax=vmax)
        except ValueError:
            case["error"] = True
        else:
            case.update(error=False, lo=float(lo), hi=float(hi), unit=_floats(unit))
        cases.append(case)
    return cases


def _tie_values() -> tuple[np.ndarray, np.ndarray]:
    """(k + 0.5) / 255 as float32, k = 0..255: unit * 255 and 255 * opacity land on (or next to) the
    half-way points np.round breaks to even; and the same values negated, for symmetric maps."""
    ties = ((np.arange(256, dtype=np.float64) + 0.5) / 255.0).astype(np.float32)
    return ties, -ties


#: Values of a symmetric map (limits -3 .. 3) whose opacity 255 * |unit - 0.5| * 2 rounds one way
#: with numpy's float32 steps and the other way in float64 (found by an exhaustive search over
#: float32 units): they check that the value-following opacity keeps every float32 rounding.
STRENGTH_VALUES = (-2.2294116020202637, -2.135293960571289, -2.0411763191223145, -1.9705880880355835,
                   -1.9235292673110962, -1.8764704465866089, -1.8294116258621216, -1.7823528051376343,
                   -1.735293984413147, -1.6882351636886597, -1.6411763429641724, -1.594117522239685,
                   -1.5470587015151978)


def _colour(rng) -> dict:
    ties, negative = _tie_values()
    sets = {"ramp": np.linspace(-1.0, 1.0, 255, dtype=np.float32)[None],  # every other LUT entry
            "ties": ties[None], "symmetric_ties": np.stack([negative, ties]),
            "mixed": _short(rng.normal(size=(5, 6))), "strength": np.array([STRENGTH_VALUES], np.float32)}
    plain, faded = ((False, 1.0), (False, 0.8), (True, 0.8)), ((True, 1.0), (True, 0.8))
    uses = (("ramp", "symmetric", None, None, plain), ("ties", "none", None, None, ((False, 1.0), *faded)),
            ("symmetric_ties", "symmetric", -1.0, 1.0, faded), ("mixed", "minmax", -0.8, 1.1, plain),
            ("strength", "symmetric", -3.0, 3.0, faded))
    cases = []
    for lut in LUT_NAMES:
        for name, mode, vmin, vmax, combinations in uses:
            for alpha_from_value, alpha in combinations:
                rgba = map_to_rgba(sets[name], cmap=lut, mode=mode, vmin=vmin, vmax=vmax, alpha=alpha,
                                   alpha_from_value=alpha_from_value)
                cases.append({"lut": lut, "values": name, "mode": mode, "lo": _none_or_float(vmin),
                              "hi": _none_or_float(vmax), "alpha": alpha, "alpha_from_value": alpha_from_value,
                              "expected": _b64(rgba.astype(np.uint8))})
    values = {name: {"shape": list(v.shape), "values": _floats(v)} for name, v in sets.items()}
    return {"values": values, "cases": cases}


def _blend_group(photo: np.ndarray, inputs) -> dict:
    cases = []
    for name, values, lut, mode, vmin, vmax, alpha in inputs:
        expected = overlay(photo[..., :3], values, alpha=alpha, cmap=lut, mode=mode, vmin=vmin, vmax=vmax,
                           alpha_from_value=True)
        cases.append({"name": name, "shape": list(values.shape), "values": _floats(values), "lut": lut,
                      "mode": mode, "lo": _none_or_float(vmin), "hi": _none_or_float(vmax), "alpha": alpha,
                      "expected": _b64(expected)})
    # The RGB photo is the RGBA one without its 4th channel (the tests take it from there).
    return {"size": list(photo.shape[:2]), "photo_rgba": _b64(photo), "cases": cases}


def _blend(rng) -> list[dict]:
    photo = rng.integers(0, 256, size=(40, 48, 4), dtype=np.uint8)
    signed = _short(rng.normal(size=(3, 4)))
    positive = _short(rng.uniform(0.0, 2.0, size=(2, 5)))
    fine = _short(rng.normal(size=(7, 7)))
    wide = _short(rng.normal(size=(8, 56)))  # wider than the photo: its columns shrink
    lo_hi = normalize_map(fine, mode="symmetric")[1:]
    general = _blend_group(photo, [
        ("signed_symmetric", signed, "RdBu_r", "symmetric", None, None, 0.8),
        ("positive_minmax_limits", positive, "viridis", "minmax", 0.3, 1.6, 0.8),
        ("fine_symmetric_scale", fine, "RdBu_r", "symmetric", *lo_hi, 0.8),
        ("fine_minmax", fine, "inferno", "minmax", None, None, 1.0),
        ("wide_shrinking", wide, "RdBu_r", "symmetric", None, None, 0.8),
        ("flat_zeros", np.zeros((2, 2), np.float32), "RdBu_r", "symmetric", None, None, 0.8),
        ("gray_none", positive / 2.0, "gray", "none", None, None, 0.5),
    ])
    # Rounding ties: the map has the photo's size (upsampling is the identity), so every pixel is a
    # tie value; values above 1 clip to full opacity, which at alpha 0.5 blends with a = 0.5 exactly.
    ties, negative = _tie_values()
    tie_photo = rng.integers(0, 256, size=(2, 256, 4), dtype=np.uint8)
    clipped = _short(rng.uniform(1.0, 2.0, size=256)).astype(np.float32)
    tied = _blend_group(tie_photo, [
        ("ties_none_half", np.stack([ties, clipped]), "gray", "none", None, None, 0.5),
        ("ties_symmetric", np.stack([negative, ties]), "RdBu_r", "symmetric", -1.0, 1.0, 0.8),
    ])
    # An upsampled value whose float32 cast decides a pixel: column 191 gets opacity 170 from the
    # float32 value but 169 from the float64 one, which over this photo changes every channel
    # (found by a search).
    cast = np.array([[-0.8148643970489502, -0.6641169786453247]], np.float32)
    dark = np.full((1, 256, 4), 8, np.uint8)
    casting = _blend_group(dark, [("float32_cast_decides", cast, "RdBu_r", "symmetric", -1.0, 1.0, 0.8)])
    strength = np.array([STRENGTH_VALUES], np.float32)
    dark = np.full((1, strength.shape[1], 4), 8, np.uint8)
    opacity = _blend_group(dark, [("float32_opacity_decides", strength, "RdBu_r", "symmetric", -3.0, 3.0, 0.8)])
    # Gray at value idx / 255 has colour = opacity = idx; over these photo values at alpha 0.85 the
    # blend rounds the other way if a = alpha * (idx / 255) is computed as (alpha * idx) / 255
    # (found by a search), so this checks overlay's very operations.
    found = [(57, 207), (82, 7), (87, 237), (110, 5)]
    grey = np.array([[[p, p, p, 255] for _, p in found]], np.uint8)
    levels = np.array([[idx / 255.0 for idx, _ in found]], np.float32)
    order = _blend_group(grey, [("blend_weight_order", levels, "gray", "none", None, None, 0.85)])
    return [general, tied, casting, opacity, order]


def _point_config(rng, name: str, query_grid, reference_grid, image_sizes, scale: float, vector_width=None) -> dict:
    """One hand-set PointToPoint (K = 6), both encodings as the payload writes them
    (web.payload.point_arrays), and Python's maps for many pixels. ``vector_width``: give the
    correspondence reading its own embedding vectors (as the Euclidean metric does), not the factors."""
    width = 6
    nq, nr = query_grid[0] * query_grid[1], reference_grid[0] * reference_grid[1]
    gq = _short(rng.normal(size=(nq, width)))
    gr = _short(rng.normal(size=(nr, width)))
    vectors = {}
    if vector_width:
        vectors = {"query_vectors": _short(rng.normal(size=(nq, vector_width))),
                   "reference_vectors": _short(rng.normal(size=(nr, vector_width)))}
    p2p = PointToPoint(gq, gr, scale, tuple(query_grid), tuple(reference_grid), **vectors)
    photos = {side: np.zeros((*image_sizes[side], 3), np.uint8) for side in SIDES}
    exp = PairExplanation("decomposition", 1.0, photos["query"], photos["reference"], np.zeros(query_grid),
                          np.zeros(reference_grid), True, point_to_point=p2p, completeness_error=0.0)

    def as_lists(tree):
        if isinstance(tree, dict):
            return {key: as_lists(value) for key, value in tree.items()}
        return _floats(tree) if isinstance(tree, np.ndarray) else tree

    matrix, factors = point_arrays(p2p, "matrix"), point_arrays(p2p, "factors")
    point = {"grids": {"query": list(query_grid), "reference": list(reference_grid)},
             "matrix": as_lists(matrix["matrix"]), "factors": as_lists(factors["factors"])}
    maps = []
    for side in SIDES:
        rows, cols = image_sizes[side]
        grid = p2p.query_grid if side == "query" else p2p.reference_grid
        other = "reference" if side == "query" else "query"
        pixels = [(-0.5, -0.5), (rows - 0.5, cols - 0.5), (0.0, cols - 1.0), (rows - 1.0, 0.0),
                  ((rows - 1) / 2, (cols - 1) / 2), (rows * 0.37, cols * 0.81), (1.25, cols - 2.75),
                  cell_centre_pixels(grid[0] - 1, 0, grid, (rows, cols))]
        for row, col in pixels:
            row, col = float(row), float(col)
            for reading in READINGS:
                values = exp.point_map(side, row, col, reading=reading)
                cell = np.unravel_index(int(np.argmax(values)), values.shape)
                maps.append({
                    "source": side, "pixel": [row, col], "reading": reading,
                    "cell": [float(v) for v in exp.pixel_to_cell(side, row, col)],
                    "expected": _floats(values), "grid": list(values.shape),
                    "peak": [int(cell[0]), int(cell[1])],
                    "peak_pixel": [float(v) for v in cell_centre_pixels(cell[0], cell[1], values.shape,
                                                                        image_sizes[other])],
                    "sum": float(np.sum(values, dtype=np.float64)),
                })
    rows_ = []
    for side in SIDES:
        h, w = p2p.query_grid if side == "query" else p2p.reference_grid
        for cell in ((-0.5, -0.5), (h - 0.5, w - 0.5), (0.0, 0.0), (h - 1.0, w - 1.0), (0.3, w - 1.6),
                     ((h - 1) / 2, 0.75)):
            for reading in READINGS:
                rows_.append({"source": side, "cell": [float(cell[0]), float(cell[1])], "reading": reading,
                              "expected": _floats(p2p.row(side, cell[0], cell[1], reading))})
    return {"name": name, "images": {side: list(image_sizes[side]) for side in SIDES}, "point": point,
            "maps": maps, "rows": rows_}


def _points(rng) -> list[dict]:
    return [
        _point_config(rng, "grids 3x4 / 2x5", (3, 4), (2, 5), {"query": (30, 41), "reference": (20, 50)}, 0.37),
        _point_config(rng, "grids 1x5 / 4x2", (1, 5), (4, 2), {"query": (17, 64), "reference": (48, 24)}, 2.5),
        _point_config(rng, "own vectors (euclidean)", (2, 3), (3, 3), {"query": (20, 30), "reference": (30, 30)},
                      0.8, vector_width=4),
    ]


def _peaks() -> list[dict]:
    cases = [
        ([[1.0, 3.0, 3.0], [2.0, 3.0, 0.0]]),
        ([[-5.0, -1.0], [-1.0, -2.0]]),
        ([[0.0, 0.0, 0.0, 0.0]]),
        ([[1.0], [4.0], [4.0]]),
        ([[0.25, -0.5, 7.5], [7.5, 7.25, 7.5]]),
    ]
    out = []
    for values in cases:
        arr = np.asarray(values, np.float32)
        cell = np.unravel_index(int(np.argmax(arr)), arr.shape)
        out.append({"grid": list(arr.shape), "values": _floats(arr), "peak": [int(cell[0]), int(cell[1])]})
    return out


def _centres() -> list[dict]:
    cases = [((0, 1), (2, 2), (8, 8)), ((2, 3), (3, 4), (30, 41)), ((0, 0), (7, 7), (320, 213)),
             ((6, 6), (7, 7), (224, 224)), ((1, 4), (2, 5), (20, 50))]
    return [{"cell": list(cell), "grid": list(grid), "image": list(image),
             "expected": [float(v) for v in cell_centre_pixels(cell[0], cell[1], grid, image)]}
            for cell, grid, image in cases]


def _canvas() -> dict:
    pixels = []
    for canvas, image in (((320, 320), (224, 224)), ((160, 320), (30, 41)), ((213, 320), (480, 720)),
                          ((20, 20), (20, 20))):
        rows, cols = image
        for row, col in ((0.0, 0.0), (-0.5, -0.5), (rows - 0.5, cols - 0.5), (rows / 3, cols / 7), (1.25, 2.5)):
            y, x = pixel_to_canvas(row, col, canvas, image)
            back = event_to_pixel({"relativeX": x, "relativeY": y}, canvas, image)
            pixels.append({"canvas": list(canvas), "image": list(image), "pixel": [row, col], "position": [y, x],
                           "back": [float(back[0]), float(back[1])]})
    positions = []
    for canvas, image in (((160, 320), (30, 41)), ((20, 20), (20, 20))):
        for y, x in ((0.0, 0.0), (float(canvas[0]), float(canvas[1])), (-0.01, 3.0), (3.0, canvas[1] + 0.01),
                     (canvas[0] / 2, canvas[1] / 3), (7.3, 11.9)):
            pixel = event_to_pixel({"relativeX": x, "relativeY": y}, canvas, image)
            positions.append({"canvas": list(canvas), "image": list(image), "position": [y, x],
                              "expected": None if pixel is None else [float(pixel[0]), float(pixel[1])]})
    return {"pixels": pixels, "positions": positions}


def _scales(rng) -> dict:
    g = np.eye(4, dtype=np.float32)
    photo = np.zeros((20, 20, 3), np.uint8)
    exp = PairExplanation("decomposition", 4.0, photo, photo, np.ones((2, 2)), np.ones((2, 2)), True,
                          point_to_point=PointToPoint(g, g, 1.0, (2, 2), (2, 2)), completeness_error=0.0)
    maps = {"signed": _short(rng.normal(size=(3, 4))),
            "positive": _short(rng.uniform(0.2, 0.9, size=(2, 5))),
            "flat": np.zeros((2, 2), np.float32)}
    readings = {}
    cases = []
    for reading in READINGS:
        default = HoverLogic(exp, canvas_size=20, reading=reading).scale(maps["signed"], point=True)
        readings[reading] = {"cmap": default.cmap, "mode": default.mode, "meaning": default.meaning}
        for name, values in maps.items():
            for cmap in (None, "magma"):
                scale = HoverLogic(exp, canvas_size=20, reading=reading, cmap=cmap).scale(values, point=True)
                cases.append({"values": _floats(values), "map": name, "reading": reading, "cmap": cmap,
                              "expected": {"cmap": scale.cmap, "mode": scale.mode, "lo": float(scale.lo),
                                           "hi": float(scale.hi), "meaning": scale.meaning}})
    return {"readings": readings, "cases": cases}


def _sums(rng) -> list[dict]:
    cases = []
    for n in (1, 5, 8, 9, 100, 128, 129, 300):
        values = (rng.normal(size=n) * 10.0 ** rng.integers(-8, 9, size=n)).astype(np.float32)
        cases.append({"values": _floats(values), "expected": float(np.sum(values, dtype=np.float64))})
    return cases


def _payloads(rng) -> dict:
    """Payloads in js/README.md's format with base64 fields (as a standalone page gets them)."""
    query_map = _short(rng.normal(size=(2, 3)))
    grids = {"query": [2, 3], "reference": [1, 2]}
    matrix = {"contribution": _short(rng.normal(size=(6, 2))),
              "correspondence": _short(rng.uniform(-1, 1, size=(6, 2)))}
    factors = {reading: {"query": _short(rng.normal(size=(6, 3))),
                         "reference": _short(rng.normal(size=(2, 3))),
                         "width": 3, "scale": scale}
               for reading, scale in (("contribution", 0.5), ("correspondence", 1.0))}
    photo = b"\x89PNG\r\n\x1a\n" + bytes(range(24))  # only carried through, never decoded here
    sides = {
        "query": {"image": [4, 6], "canvas": [40, 60], "photo": base64.b64encode(photo).decode("ascii"),
                  "map": {"shape": [2, 3], "values": _b64(query_map)}, "missing": None},
        "reference": {"image": [5, 5], "canvas": [60, 60], "photo": base64.b64encode(photo).decode("ascii"),
                      "map": None, "missing": "n/a: no map"},
    }
    readings = {"contribution": {"cmap": "RdBu_r", "mode": "symmetric", "meaning": "contribution"},
                "correspondence": {"cmap": "viridis", "mode": "minmax", "meaning": "correspondence"}}
    base = {"format": 1, "generation": 3, "method": "decomposition", "metric": "cosine", "score": 0.5,
            "completeness_error": 0.0, "signed": True, "sums_to_score": True, "alpha": 0.8, "show_overall": True,
            "show_peak": True, "reading": "contribution", "cmap": None,
            "luts": {"gray": _b64(colormap_lut("gray"))},
            "overall": {"cmap": "RdBu_r", "mode": "symmetric", "lo": -1.0, "hi": 1.0, "meaning": "overall"},
            "sides": sides, "pins": [{"source": "query", "row": 1.0, "col": 2.0, "colour": "#ff0000", "match": None}]}
    with_matrix = {**base, "point": {"grids": grids, "readings": readings, "encoding": "matrix",
                                     "matrix": {k: _b64(v) for k, v in matrix.items()}}}
    with_factors = {**base, "point": {"grids": grids, "readings": readings, "encoding": "factors", "factors": {
        reading: {"query": _b64(f["query"]), "reference": _b64(f["reference"]), "width": f["width"],
                  "scale": f["scale"]} for reading, f in factors.items()}}}
    expected = {
        "photo": list(photo), "gray": _floats(colormap_lut("gray")), "query_map": _floats(query_map),
        "matrix": {k: _floats(v) for k, v in matrix.items()},
        "factors": {reading: {"query": _floats(f["query"]), "reference": _floats(f["reference"])}
                    for reading, f in factors.items()},
    }
    return {"matrix": with_matrix, "factors": with_factors, "expected": expected}


def build_fixtures() -> dict:
    """Everything js/test/*.test.mjs compares with, computed by the Python code now."""
    rng = np.random.default_rng(20240611)
    return {
        "about": "Generated by tests/test_js.py from the Python code; do not edit "
                 f"({REGENERATE_ENV}=1 pytest tests/test_js.py rewrites it).",
        "round": _rounding(),
        "upsample": _upsampling(rng),
        "normalize": _normalisation(rng),
        "luts": {name: _b64(colormap_lut(name)) for name in LUT_NAMES},
        "colour": _colour(rng),
        "blend": _blend(rng),
        "points": _points(rng),
        "peaks": _peaks(),
        "centres": _centres(),
        "canvas": _canvas(),
        "scales": _scales(rng),
        "sums": _sums(rng),
        "payloads": _payloads(rng),
    }


def fixtures_text() -> str:
    """The fixtures as written: sorted keys, one line per top-level section, a final newline."""
    data = build_fixtures()
    lines = [f"  {json.dumps(key)}: {json.dumps(data[key], sort_keys=True, separators=(',', ':'), allow_nan=False)}"
             for key in sorted(data)]
    return "{\n" + ",\n".join(lines) + "\n}\n"


# ---------------------------------------------------------------- tests


def test_fixtures_are_current():
    text = fixtures_text()
    assert len(text.encode()) < 350_000, "js/test/fixtures.json grew past ~350 KB; keep the cases small"
    if os.environ.get(REGENERATE_ENV) == "1":
        FIXTURES.parent.mkdir(parents=True, exist_ok=True)
        FIXTURES.write_text(text, encoding="utf-8")
        print(f"{REGENERATE_ENV}=1: rewrote {FIXTURES.relative_to(REPO_ROOT)} ({len(text.encode())} bytes)")
        return
    assert FIXTURES.is_file(), f"{FIXTURES} is missing; run with {REGENERATE_ENV}=1 to write it"
    committed = FIXTURES.read_text(encoding="utf-8")
    if committed != text:
        old, new = json.loads(committed), json.loads(text)
        changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
        pytest.fail(f"js/test/fixtures.json is stale (sections {changed} differ from what the Python code computes "
                    f"now); run `{REGENERATE_ENV}=1 pytest tests/test_js.py` and commit the result", pytrace=False)


def _node_unavailable_reason() -> str | None:
    if not (os.path.isfile(NODE) and os.access(NODE, os.X_OK)):
        return f"node not found (looked for {NODE!r}; set SIMVIZ_NODE to its path)"
    return None


def test_node_suite():
    reason = _node_unavailable_reason()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"CI=true but the JavaScript tests cannot run: {reason}", pytrace=False)
        pytest.skip(f"JavaScript tests need node >= 20: {reason}; CI=true turns this into a failure")
    try:
        result = subprocess.run([NODE, "--test", "js/"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=NODE_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"node --test js/ took more than {NODE_TIMEOUT_S} s:\n{err.stdout or ''}\n{err.stderr or ''}",
                    pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"node --test js/ exited with {result.returncode}:\n{result.stdout}\n{result.stderr}",
                    pytrace=False)


def test_pin_colours_match_python():
    """js/draw.js keeps its own copy of the pin colours (its CSS needs the count at load time)."""
    import re

    from simviz_widgets.widgets.state import PIN_COLOURS

    text = (REPO_ROOT / "js" / "draw.js").read_text()
    match = re.search(r"VIEW_PIN_COLOURS = \[([^\]]*)\]", text)
    assert match, "VIEW_PIN_COLOURS not found in js/draw.js"
    assert tuple(re.findall(r'"(#[0-9a-fA-F]{6})"', match.group(1))) == PIN_COLOURS

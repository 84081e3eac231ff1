"""An explanation as the browser needs it: one payload dict (format in js/README.md), sent once
per explanation, from which js/ renders every hover without the kernel.

The point-to-point part goes as whichever is smaller: the matrix ``D`` itself (N_q x N_r, plus the
correspondence matrix) or its factors (N x K per image). For the default model's 7x7 grids that is
the matrices, 2 x 9.4 KB; for a 28x28 grid with K = 1280 the matrices (2 x 2.4 MB) still win over
the factors (2 x 8 MB).

>>> import numpy as np
>>> from simviz_widgets.explain.base import PairExplanation, PointToPoint
>>> g = np.eye(4, dtype=np.float32)
>>> photo = np.zeros((20, 20, 3), np.uint8)
>>> exp = PairExplanation("decomposition", 4.0, photo, photo, np.ones((2, 2)), np.ones((2, 2)), True,
...                       point_to_point=PointToPoint(g, g, 1.0, (2, 2), (2, 2)), completeness_error=0.0)
>>> payload = explanation_payload(exp, size=40)
>>> payload["sides"]["query"]["canvas"], payload["point"]["encoding"], sorted(payload["luts"])[:2]
([40, 40], 'matrix', ['PiYG', 'PuOr_r'])
"""

from __future__ import annotations

import base64
from typing import Protocol, runtime_checkable

import numpy as np

from ..checks import check_bool, check_choice, check_colormap, check_float, check_instance, check_int, check_sequence
from ..explain.point_to_point import READINGS, SIDES
from ..render import colormap_lut
from .display import display_size, photo_rgba
from .png import png_bytes
from .scales import CMAP_CHOICES, overall_scale, reading_styles

__all__ = ["explanation_payload", "point_arrays", "point_nbytes", "payload_nbytes", "FORMAT", "DEFAULT_ALPHA",
           "MAX_POINT_BYTES"]

FORMAT = 1
#: The most point-to-point data a payload carries by default (16 MiB: a 28x28 grid's 4.9 MB fits);
#: notebook displays, stored in the notebook file, take less (web/export.py).
MAX_POINT_BYTES = 16 * 2**20
#: Peak opacity of every map (value-following opacity; see simviz_widgets/widgets/_canvas.py).
DEFAULT_ALPHA = 0.8
BINARY_FORMS = ("base64", "bytes")


@runtime_checkable
class Explanation(Protocol):
    """What a payload reads of a :class:`~simviz_widgets.explain.base.PairExplanation` (web/ sits
    beside render/: explain's ``to_html`` calls it, so it does not import explain.base back)."""

    method: str
    metric: str
    score: float
    signed: bool
    point_to_point: object
    completeness_error: object

    def image(self, side): ...
    def size(self, side): ...
    def map(self, side): ...
    def has_map(self, side): ...


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norm, 1e-12)


def point_arrays(p2p, encoding: str | None = None) -> dict:
    """The point-to-point part as float32 arrays: ``{"encoding", "matrix" | "factors"}``.

    ``encoding`` None picks the smaller form. The matrices are computed in float64 and stored as
    float32 (what the browser reads); the factors are stored as they are (float32).
    """
    nq, nr = (g[0] * g[1] for g in (p2p.query_grid, p2p.reference_grid))
    unit_q, unit_r = _unit_rows(p2p.query_vectors), _unit_rows(p2p.reference_vectors)
    matrix_size = 2 * nq * nr
    factor_size = (nq + nr) * (p2p.query_factors.shape[1] + unit_q.shape[1])
    if encoding is None:
        encoding = "matrix" if matrix_size <= factor_size else "factors"
    encoding = check_choice(encoding, "encoding", ("matrix", "factors"))
    if encoding == "matrix":
        return {"encoding": "matrix", "matrix": {
            "contribution": p2p.matrix().astype(np.float32),
            "correspondence": (unit_q @ unit_r.T).astype(np.float32),
        }}
    return {"encoding": "factors", "factors": {
        "contribution": {"query": p2p.query_factors.astype(np.float32),
                         "reference": p2p.reference_factors.astype(np.float32),
                         "width": int(p2p.query_factors.shape[1]), "scale": float(p2p.scale)},
        "correspondence": {"query": unit_q.astype(np.float32), "reference": unit_r.astype(np.float32),
                           "width": int(unit_q.shape[1]), "scale": 1.0},
    }}


def point_nbytes(p2p) -> int:
    """Bytes the point-to-point part takes in a payload (the smaller encoding), before base64."""
    nq, nr = (g[0] * g[1] for g in (p2p.query_grid, p2p.reference_grid))
    factors = (nq + nr) * (p2p.query_factors.shape[1] + p2p.query_vectors.shape[1])
    return 4 * min(2 * nq * nr, factors)


def _encode(tree, binary: str):
    """Arrays and bytes -> bytes (widgets: sent as binary buffers) or base64 text (a page)."""
    if isinstance(tree, dict):
        return {key: _encode(value, binary) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_encode(value, binary) for value in tree]
    if isinstance(tree, np.ndarray):
        tree = np.ascontiguousarray(tree).tobytes()
    if isinstance(tree, bytes):
        return tree if binary == "bytes" else base64.b64encode(tree).decode("ascii")
    return tree


def payload_nbytes(payload: dict) -> dict[str, int]:
    """Bytes of binary data in a payload (``binary="bytes"`` form), by part: photos, maps, point, luts."""
    def size(tree) -> int:
        if isinstance(tree, dict):
            return sum(size(v) for v in tree.values())
        if isinstance(tree, (list, tuple)):
            return sum(size(v) for v in tree)
        return len(tree) if isinstance(tree, (bytes, bytearray, memoryview)) else 0

    sides = payload["sides"]
    return {"photos": sum(size(sides[s]["photo"]) for s in SIDES),
            "maps": sum(size(sides[s]["map"]) for s in SIDES),
            "point": size(payload["point"]), "luts": size(payload["luts"])}


def _pin_entry(pin) -> dict:
    if isinstance(pin, dict):
        entry = dict(pin)
    else:  # a widgets.state.Pin, optionally (pin, match)
        pin, match = pin if isinstance(pin, tuple) and len(pin) == 2 and not isinstance(pin[0], str) else (pin, None)
        entry = {"source": pin.source, "row": pin.row, "col": pin.col, "colour": pin.colour, "match": match}
    match = entry.get("match")
    entry["match"] = None if match is None else [float(match[0]), float(match[1])]
    entry["row"], entry["col"] = float(entry["row"]), float(entry["col"])
    return entry


def explanation_payload(explanation, *, size: int = 320, cmap: str | None = None, alpha: float = DEFAULT_ALPHA,
                        reading: str = "contribution", pins=(), show_overall: bool = True, show_peak: bool = True,
                        generation: int = 0, binary: str = "base64", cmaps=CMAP_CHOICES,
                        encoding: str | None = None, point: bool = True,
                        max_point_bytes: int | None = MAX_POINT_BYTES) -> dict:
    """The payload of ``explanation`` for js/ (format: js/README.md).

    ``size``: display pixels of each image's longer side. ``binary``: "base64" (a page's JSON) or
    "bytes" (widget traits, sent as binary buffers). ``cmaps``: colormaps the page may switch to
    (their LUTs are included, 1 KB each). ``pins``: dicts with source, row, col, colour and match.
    ``point``: include the point-to-point part (False: the page shows overall maps only).
    ``max_point_bytes``: leave the point-to-point part out (saying so in ``point_note``) when it
    would take more (None: no limit); a 28x28 grid takes 4.9 MB.
    """
    exp = check_instance(explanation, "explanation", Explanation,
                         "PairExplanation (from simviz_widgets.explain(model, query, reference))")
    size = check_int(size, "size", minimum=16)
    cmap = check_colormap(cmap, "cmap", optional=True)
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=1.0)
    reading = check_choice(reading, "reading", READINGS)
    binary = check_choice(binary, "binary", BINARY_FORMS)
    generation = check_int(generation, "generation", minimum=0)
    cmaps = tuple(check_colormap(name, "cmaps entry") for name in check_sequence(cmaps, "cmaps"))

    # Default colormaps go in the payload; ``cmap`` (the user's choice, None for the defaults) is
    # applied by the page, which can switch back to the defaults.
    overall = overall_scale(exp)
    styles = reading_styles()
    sides = {}
    for side in SIDES:
        image_size = exp.size(side)
        canvas = display_size(image_size, size)
        values = exp.map(side)
        sides[side] = {
            "image": list(image_size), "canvas": list(canvas),
            "photo": png_bytes(photo_rgba(exp.image(side), canvas)[..., :3]),
            "map": {"shape": list(values.shape), "values": values.astype(np.float32)} if exp.has_map(side) else None,
            "missing": None if exp.has_map(side) else f"n/a: {exp.method} gives no map for the {side} image",
        }
    include_point = check_bool(point, "point")
    if max_point_bytes is not None:
        max_point_bytes = check_int(max_point_bytes, "max_point_bytes", minimum=0)
    point, point_note = None, None
    if include_point and exp.point_to_point is not None and max_point_bytes is not None \
            and point_nbytes(exp.point_to_point) > max_point_bytes:
        size = point_nbytes(exp.point_to_point)
        point_note = (f"point maps left out of this page ({size / 1e6:.1f} MB of data, over its "
                      f"{max_point_bytes / 1e6:.1f} MB limit): overall maps only")
    elif include_point and exp.point_to_point is not None:
        p2p = exp.point_to_point
        point = {"grids": {"query": list(p2p.query_grid), "reference": list(p2p.reference_grid)},
                 "readings": styles, **point_arrays(p2p, encoding)}
    names = {*cmaps, overall.cmap, *(style["cmap"] for style in styles.values())} | ({cmap} if cmap else set())
    payload = {
        "format": FORMAT, "generation": generation,
        "method": exp.method, "metric": exp.metric, "score": float(exp.score),
        "completeness_error": None if exp.completeness_error is None else float(exp.completeness_error),
        "signed": bool(exp.signed), "sums_to_score": bool(exp.sums_to_score),
        "alpha": alpha, "cmap": cmap, "reading": reading,
        "show_overall": check_bool(show_overall, "show_overall"), "show_peak": check_bool(show_peak, "show_peak"),
        "luts": {name: colormap_lut(name) for name in sorted(names)},
        "overall": {"cmap": overall.cmap, "mode": overall.mode, "lo": overall.lo, "hi": overall.hi,
                    "meaning": overall.meaning},
        "sides": sides, "point": point, "point_note": point_note,
        "pins": [_pin_entry(pin) for pin in pins],
    }
    return _encode(payload, binary)

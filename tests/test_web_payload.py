"""The payload js/ renders from: what it holds must reproduce the explanation's own maps.

Both encodings of the point-to-point part (the matrices, or the factors) are decoded here the way
js/point_map.js reads them and compared with ``from_query`` / ``from_reference`` at pixels, so a
wrong orientation (a row where a column belongs), a lost scale or a wrong reading fails.
"""

import base64
import json

import numpy as np
import pytest

from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.explain.base import PairExplanation, PointToPoint
from simviz_widgets.render import colormap_lut
from simviz_widgets.web.display import display_size, photo_rgba
from simviz_widgets.web.payload import explanation_payload, payload_nbytes, point_arrays, point_nbytes
from simviz_widgets.web.scales import overall_scale


def _explanation(metric_scale=0.7, grids=((3, 4), (2, 5)), k=6, seed=0, sizes=((30, 40), (24, 50))):
    rng = np.random.default_rng(seed)
    gq = rng.normal(size=(grids[0][0] * grids[0][1], k)).astype(np.float32)
    gr = rng.normal(size=(grids[1][0] * grids[1][1], k)).astype(np.float32)
    p2p = PointToPoint(gq, gr, metric_scale, grids[0], grids[1])
    d = p2p.matrix()
    photos = [rng.integers(0, 256, size=(*s, 3), dtype=np.uint8) for s in sizes]
    return PairExplanation("decomposition", float(d.sum()), photos[0], photos[1],
                           d.sum(1).reshape(grids[0]), d.sum(0).reshape(grids[1]), True,
                           point_to_point=p2p, completeness_error=0.0)


def _float32(field) -> np.ndarray:
    raw = base64.b64decode(field) if isinstance(field, str) else field
    return np.frombuffer(raw, dtype=np.float32)


def _row_from_payload(point, source, u, v, reading):
    """A point map the way js/point_map.js pointRow computes it (bilinear in the source grid)."""
    grids = point["grids"]
    h, w = grids[source]
    nq, nr = (grids[s][0] * grids[s][1] for s in ("query", "reference"))
    r0, c0 = int(np.floor(u)), int(np.floor(v))
    r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
    fr, fc = u - r0, v - c0
    # a list, not a dict: at the last row/column both neighbours are the same cell
    weights = [((r0, c0), (1 - fr) * (1 - fc)), ((r0, c1), (1 - fr) * fc),
               ((r1, c0), fr * (1 - fc)), ((r1, c1), fr * fc)]
    other = "reference" if source == "query" else "query"
    if point["encoding"] == "matrix":
        matrix = _float32(point["matrix"][reading]).reshape(nq, nr).astype(np.float64)
        rows = matrix if source == "query" else matrix.T
        out = sum(wt * rows[r * w + c] for (r, c), wt in weights)
    else:
        part = point["factors"][reading]
        mine = _float32(part[source]).reshape(-1, part["width"]).astype(np.float64)
        theirs = _float32(part[other]).reshape(-1, part["width"]).astype(np.float64)
        vec = sum(wt * mine[r * w + c] for (r, c), wt in weights)
        out = part["scale"] * (theirs @ vec)
    return out.reshape(grids[other])


@pytest.mark.parametrize("encoding", ["matrix", "factors"])
@pytest.mark.parametrize("reading", ["contribution", "correspondence"])
def test_point_part_reproduces_from_query_and_from_reference(encoding, reading):
    exp = _explanation()
    point = explanation_payload(exp, encoding=encoding)["point"]
    assert point["encoding"] == encoding
    rng = np.random.default_rng(1)
    for source in ("query", "reference"):
        rows, cols = exp.size(source)
        pixels = [(-0.5, -0.5), (rows - 0.5, cols - 0.5), (0, cols - 1)]
        pixels += [tuple(rng.uniform(-0.5, [rows - 0.5, cols - 0.5])) for _ in range(6)]
        for row, col in pixels:
            u, v = exp.pixel_to_cell(source, row, col)
            expected = exp.point_map(source, row, col, reading=reading)
            got = _row_from_payload(point, source, u, v, reading)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * max(1.0, np.abs(expected).max()))


def test_encoding_is_the_smaller_one():
    small_k = point_arrays(_explanation(k=2).point_to_point)  # factors: (12 + 10) x 4 < 2 x 120
    big_k = point_arrays(_explanation(k=64).point_to_point)
    assert small_k["encoding"] == "factors" and big_k["encoding"] == "matrix"


def test_sides_photos_maps_and_scales():
    exp = _explanation()
    payload = explanation_payload(exp, size=60, binary="bytes", cmap="viridis", alpha=0.6, reading="correspondence")
    for side in ("query", "reference"):
        entry = payload["sides"][side]
        canvas = display_size(exp.size(side), 60)
        assert entry["image"] == list(exp.size(side)) and entry["canvas"] == list(canvas)
        from io import BytesIO

        from PIL import Image

        decoded = np.asarray(Image.open(BytesIO(entry["photo"])).convert("RGB"))
        assert np.array_equal(decoded, photo_rgba(exp.image(side), canvas)[..., :3])  # lossless
        assert np.array_equal(_float32(entry["map"]["values"]).reshape(entry["map"]["shape"]), exp.map(side))
    scale = overall_scale(exp)
    assert payload["overall"]["lo"] == scale.lo and payload["overall"]["hi"] == scale.hi
    assert payload["overall"]["cmap"] == "RdBu_r"  # the default; the user's choice travels as `cmap`
    assert payload["cmap"] == "viridis" and payload["alpha"] == 0.6 and payload["reading"] == "correspondence"
    for name, lut in payload["luts"].items():
        assert lut == colormap_lut(name).tobytes()
    assert {"RdBu_r", "viridis", "gray"} <= set(payload["luts"])
    sizes = payload_nbytes(payload)
    assert sizes["point"] == 2 * 12 * 10 * 4 and sizes["maps"] == (12 + 10) * 4


def test_base64_form_is_json_and_matches_bytes_form():
    exp = _explanation()
    as_text = explanation_payload(exp)
    as_bytes = explanation_payload(exp, binary="bytes")
    json.dumps(as_text)  # nothing but JSON types
    assert base64.b64decode(as_text["point"]["matrix"]["contribution"]) == as_bytes["point"]["matrix"]["contribution"]


def test_missing_maps_and_no_point_part():
    exp = _explanation()
    exp = PairExplanation("rise", 0.5, exp.query, exp.reference, exp.query_map, np.zeros_like(exp.reference_map),
                          False, missing_maps=("reference",))
    payload = explanation_payload(exp)
    assert payload["point"] is None
    assert payload["sides"]["reference"]["map"] is None and "rise" in payload["sides"]["reference"]["missing"]
    assert payload["overall"]["mode"] == "minmax" and payload["overall"]["cmap"] == "inferno"


def test_pins_travel_with_their_matches():
    exp = _explanation()
    pins = [{"source": "query", "row": np.float64(3), "col": 4, "colour": "#e41a1c", "match": (np.float64(1.5), 2)}]
    entry = explanation_payload(exp, pins=pins)["pins"][0]
    assert entry == {"source": "query", "row": 3.0, "col": 4.0, "colour": "#e41a1c", "match": [1.5, 2.0]}
    assert json.dumps(entry)


@pytest.mark.parametrize("bad, error", [
    ({"size": 4}, InputError), ({"size": 3.5}, InputTypeError), ({"alpha": 1.5}, InputError),
    ({"reading": "both"}, InputError), ({"binary": "hex"}, InputError), ({"cmap": "nope"}, InputError),
    ({"generation": -1}, InputError), ({"encoding": "sparse"}, InputError), ({"show_peak": 1}, InputTypeError),
])
def test_bad_options_are_refused_by_name(bad, error):
    with pytest.raises(error, match=next(iter(bad))):
        explanation_payload(_explanation(), **bad)


def test_not_an_explanation():
    with pytest.raises(InputTypeError, match="explanation"):
        explanation_payload({"method": "decomposition"})


def test_point_part_over_the_limit_is_left_out_and_said_so():
    exp = _explanation()
    size = point_nbytes(exp.point_to_point)
    assert size == payload_nbytes(explanation_payload(exp, binary="bytes"))["point"]
    kept = explanation_payload(exp, max_point_bytes=size)
    assert kept["point"] is not None and kept["point_note"] is None
    left = explanation_payload(exp, max_point_bytes=size - 1)
    assert left["point"] is None and "left out" in left["point_note"] and "overall maps only" in left["point_note"]
    assert explanation_payload(exp, max_point_bytes=None)["point"] is not None


def test_notebook_display_caps_the_point_part_but_a_file_does_not(tmp_path):
    from simviz_widgets.web.export import DISPLAY_POINT_BYTES

    big = _explanation(grids=((24, 24), (24, 24)), k=1024, sizes=((48, 48), (48, 48)))
    assert point_nbytes(big.point_to_point) > DISPLAY_POINT_BYTES  # 2 x 576 x 576 float32 = 2.65 MB
    display = big._repr_html_()
    assert "left out of this page" in display
    page = big.to_html(tmp_path / "big.html").read_text(encoding="utf-8")
    assert "left out of this page" not in page and '"encoding":"matrix"' in page.replace(" ", "")

"""render/: colormap LUTs, normalisation, bilinear upsampling (vs torch), overlays, the figure."""

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from simviz_widgets.explain.base import PairExplanation, PointToPoint
from simviz_widgets.render import (
    cell_centre_pixels,
    colormap_lut,
    default_cmap,
    default_points,
    explanation_figure,
    map_to_rgba,
    normalize_map,
    overlay,
    upsample_bilinear,
)

# ----------------------------------------------------------------------------- colormap


def test_lut_matches_matplotlib_and_is_cached_read_only():
    lut = colormap_lut("inferno")
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    cmap = matplotlib.colormaps["inferno"]
    for k in (0, 77, 255):
        expected = np.round(np.array(cmap(k / 255.0)) * 255).astype(np.uint8)
        np.testing.assert_array_equal(lut[k], expected)
    assert colormap_lut("inferno") is lut
    with pytest.raises(ValueError):
        lut[0, 0] = 1


def test_unknown_cmap_names_it_and_suggests():
    with pytest.raises(ValueError, match=r"'infernoo'.*Did you mean 'inferno'"):
        colormap_lut("infernoo")


def test_default_cmap():
    assert default_cmap(True) == "RdBu_r"
    assert default_cmap(False) == "inferno"


def test_normalize_minmax_symmetric_none():
    m = np.array([[-1.0, 0.0], [1.0, 3.0]], np.float32)
    before = m.copy()
    unit, lo, hi = normalize_map(m, mode="minmax")
    np.testing.assert_allclose(unit, [[0, 0.25], [0.5, 1.0]])
    assert (lo, hi) == (-1.0, 3.0)
    unit, lo, hi = normalize_map(m, mode="symmetric")
    assert (lo, hi) == (-3.0, 3.0)
    np.testing.assert_allclose(unit, [[1 / 3, 0.5], [2 / 3, 1.0]], rtol=1e-6)
    unit, lo, hi = normalize_map(m, mode="none")
    np.testing.assert_allclose(unit, [[0, 0], [1, 1]])
    assert (lo, hi) == (0.0, 1.0)
    np.testing.assert_array_equal(m, before)  # input untouched


def test_normalize_explicit_limits_clip_and_symmetric_uses_largest():
    m = np.array([[-4.0, 0.5, 4.0]])
    unit, lo, hi = normalize_map(m, mode="minmax", vmin=0.0, vmax=1.0)
    np.testing.assert_allclose(unit, [[0.0, 0.5, 1.0]])
    unit, lo, hi = normalize_map(m, mode="symmetric", vmin=-1.0, vmax=2.0)
    assert (lo, hi) == (-2.0, 2.0)
    np.testing.assert_allclose(unit, [[0.0, 0.625, 1.0]])


def test_normalize_flat_maps():
    unit, lo, hi = normalize_map(np.full((2, 2), 3.0), mode="minmax")
    np.testing.assert_array_equal(unit, 0.0)
    unit, lo, hi = normalize_map(np.zeros((2, 2)), mode="symmetric")
    np.testing.assert_array_equal(unit, 0.5)


@pytest.mark.parametrize(
    "kwargs, values, message",
    [
        ({}, np.zeros((2, 2, 2)), "2-D"),
        ({}, np.array([[np.nan, 1.0]]), "NaN"),
        ({"mode": "zscore"}, np.zeros((2, 2)), "mode='zscore' is not one of"),
        ({"vmin": 2.0, "vmax": 1.0}, np.zeros((2, 2)), "vmax"),
        ({}, np.array([["a", "b"]]), "dtype"),
    ],
)
def test_normalize_rejects_bad_input(kwargs, values, message):
    with pytest.raises(ValueError, match=message):
        normalize_map(values, **kwargs)


def test_map_to_rgba_values_and_signed_default():
    rgba = map_to_rgba(np.array([[0.0, 0.5, 1.0]]), cmap="gray", mode="none", alpha=0.5)
    assert rgba.shape == (1, 3, 4) and rgba.dtype == np.uint8
    assert rgba[0, :, 0].tolist() == [0, 128, 255]
    assert rgba[0, :, 3].tolist() == [128, 128, 128]
    # Signed map, defaults: RdBu_r, symmetric -> 0 lands on the LUT's middle entry.
    signed = map_to_rgba(np.array([[-2.0, 0.0, 1.0]]))
    lut = colormap_lut("RdBu_r")
    np.testing.assert_array_equal(signed[0, 0], lut[0])
    np.testing.assert_array_equal(signed[0, 1], lut[128])
    np.testing.assert_array_equal(signed[0, 2], lut[191])  # 0.75 * 255 = 191.25


def test_map_to_rgba_alpha_from_value():
    rgba = map_to_rgba(np.array([[-1.0, 0.0, 0.5, 1.0]]), mode="symmetric", alpha_from_value=True)
    assert rgba[0, :, 3].tolist() == [255, 0, 128, 255]
    rgba = map_to_rgba(np.array([[0.0, 0.25, 1.0]]), mode="minmax", alpha_from_value=True, alpha=0.8)
    assert rgba[0, :, 3].tolist() == [0, 51, 204]


# ----------------------------------------------------------------------------- resize


@pytest.mark.parametrize("grid, size", [((7, 7), (224, 224)), ((3, 5), (17, 40)), ((6, 4), (6, 9)),
                                        ((9, 8), (4, 3)), ((1, 5), (3, 11))])
def test_upsample_matches_torch(grid, size):
    rng = np.random.default_rng(sum(grid) + sum(size))
    m = rng.normal(size=grid).astype(np.float32)
    ours = upsample_bilinear(m, size)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(m)[None, None], size=size, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert ours.dtype == np.float32 and ours.shape == size
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [1, 3, 5, 9])
def test_cell_centres_reproduce_cell_values_exactly(factor):
    rng = np.random.default_rng(factor)
    m = rng.normal(size=(4, 6)).astype(np.float32)
    up = upsample_bilinear(m, (4 * factor, 6 * factor))
    centre = (factor - 1) // 2  # pixel sitting on the centre of cell 0 for odd factors
    np.testing.assert_array_equal(up[centre::factor, centre::factor], m)


def test_upsample_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        upsample_bilinear(np.zeros((2, 2, 2)), (4, 4))
    with pytest.raises(ValueError, match="size"):
        upsample_bilinear(np.zeros((2, 2)), (0, 4))
    with pytest.raises(TypeError, match="size=4 must be a .rows, cols. pair"):
        upsample_bilinear(np.zeros((2, 2)), 4)


# ----------------------------------------------------------------------------- overlay


def _grey(h=40, w=60, value=100):
    return np.full((h, w, 3), value, np.uint8)


def test_overlay_alpha_zero_returns_photo_and_keeps_inputs():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    m = rng.normal(size=(3, 2)).astype(np.float32)
    photo_before, m_before = photo.copy(), m.copy()
    out = overlay(photo, m, alpha=0.0)
    np.testing.assert_array_equal(out, photo)
    assert out is not photo
    overlay(photo, m, alpha=0.7)
    np.testing.assert_array_equal(photo, photo_before)
    np.testing.assert_array_equal(m, m_before)


def test_overlay_high_and_low_cells_blend_their_colours():
    photo = _grey()
    m = np.zeros((2, 3), np.float32)
    m[0, 0] = 1.0  # one hot cell, top-left; cells are 20x20 px
    out = overlay(photo, m, alpha=0.5, cmap="inferno")
    lut = colormap_lut("inferno").astype(np.float64)
    # Cell centres (9.5, 9.5) and (29.5, 49.5): pixels near them show the pure cell values.
    hot = np.round(0.5 * 100 + 0.5 * lut[255, :3])
    cold = np.round(0.5 * 100 + 0.5 * lut[0, :3])
    np.testing.assert_array_equal(out[9, 9], hot)
    np.testing.assert_array_equal(out[30, 50], cold)
    assert np.abs(out[9, 9].astype(int) - out[30, 50].astype(int)).sum() > 100


def test_overlay_rgba_input_uses_its_alpha():
    photo = _grey(4, 4, 0)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[1, 1, 3] = 0
    out = overlay(photo, rgba, alpha=1.0)
    assert out[0, 0].tolist() == [255, 0, 0]  # fully opaque red cell
    assert out[3, 3].tolist() == [0, 0, 0]  # transparent cell: photo shows


@pytest.mark.parametrize(
    "image, values, kwargs, message",
    [
        (np.zeros((4, 4), np.uint8), np.zeros((2, 2)), {}, "image has shape"),
        (np.zeros((4, 4, 3), np.float32), np.zeros((2, 2)), {}, "image has dtype"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2, 3)), {}, "map has shape"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), {"alpha": 1.5}, "alpha"),
    ],
)
def test_overlay_rejects_bad_input(image, values, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlay(image, values, **kwargs)


# ----------------------------------------------------------------------------- figure


def _explanation(with_p2p=True, signed=True):
    """Hand-built explanation: query grid 4x5 over 64x80 px, reference 3x3 over 48x48 px.

    D is a 0/1 "permutation": query cell i matches reference cell perm[i] (for i < 9), so each
    point's map peaks at a known reference cell.
    """
    rng = np.random.default_rng(1)
    query = np.full((64, 80, 3), 90, np.uint8)
    reference = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    perm = np.array([4, 0, 8, 2, 6, 1, 3, 7, 5])
    gq = np.zeros((20, 9), np.float32)
    gq[np.arange(9), np.arange(9)] = 1.0
    gr = np.zeros((9, 9), np.float32)
    gr[perm, np.arange(9)] = 1.0  # reference cell perm[k] carries factor k
    p2p = PointToPoint(gq, gr, 1.0, (4, 5), (3, 3)) if with_p2p else None
    qmap = np.zeros((4, 5), np.float32)
    qmap[0, 0] = 2.0  # the hot cell: top-left
    qmap[3, 4] = -1.0 if signed else 0.5
    rmap = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
    if not signed:
        rmap = rmap + 1.0
    return PairExplanation(
        method="decomposition", score=0.8125, query=query, reference=reference, query_map=qmap,
        reference_map=rmap, signed=signed, point_to_point=p2p, completeness_error=3e-7,
    ), perm


def _labels(fig):
    return [ax.get_label() for ax in fig.axes]


def test_figure_layout_with_points():
    exp, _ = _explanation()
    fig = explanation_figure(exp)
    labels = _labels(fig)
    assert labels == ["query", "reference", "query_map", "reference_map", "colorbar", "colorbar",
                      "points", "point_0", "point_1", "point_2", "colorbar"]
    assert "decomposition" in fig._suptitle.get_text() and "0.8125" in fig._suptitle.get_text()
    assert len(_labels(explanation_figure(exp, points=4))) == 12
    assert "points" not in _labels(explanation_figure(exp, points=0))


def test_figure_without_point_to_point_has_one_row():
    exp, _ = _explanation(with_p2p=False)
    assert _labels(explanation_figure(exp)) == [
        "query", "reference", "query_map", "reference_map", "colorbar", "colorbar"]


def test_figure_overlay_pixels_follow_the_map_and_colorbar_shows_raw_scale():
    exp, _ = _explanation()
    fig = explanation_figure(exp, alpha=0.5)
    axes = {ax.get_label(): ax for ax in fig.axes if ax.get_label() != "colorbar"}
    shown = np.asarray(axes["query_map"].images[0].get_array())
    assert shown.shape == (64, 80, 3)
    lut = colormap_lut("RdBu_r").astype(np.float64)
    # Cells are 16x16 px; pixel (7, 7) sits within half a pixel of hot cell (0, 0)'s centre.
    # Symmetric limits +-2: value 2 -> top of RdBu_r (dark red), value 0 -> the middle (white-ish).
    assert np.abs(shown[7, 7] - np.round(0.5 * 90 + 0.5 * lut[255, :3])).max() <= 2
    np.testing.assert_array_equal(shown[40, 40], np.round(0.5 * 90 + 0.5 * lut[128, :3]))
    assert int(shown[7, 7, 0]) > int(shown[7, 7, 2]) + 30  # red where the map is high
    bars = [ax for ax in fig.axes if ax.get_label() == "colorbar"]
    np.testing.assert_allclose(bars[0].get_ylim(), (-2.0, 2.0))
    np.testing.assert_allclose(bars[1].get_ylim(), (-1.0, 1.0))


def test_figure_unsigned_uses_minmax_scale():
    exp, _ = _explanation(with_p2p=False, signed=False)
    fig = explanation_figure(exp)
    bars = [ax for ax in fig.axes if ax.get_label() == "colorbar"]
    np.testing.assert_allclose(bars[0].get_ylim(), (0.0, 2.0))
    np.testing.assert_allclose(bars[1].get_ylim(), (0.0, 2.0))


def test_default_points_are_top_cells_and_peaks_are_marked():
    exp, perm = _explanation()
    pts = default_points(exp, 3)
    np.testing.assert_allclose(pts[0], cell_centre_pixels(0, 0, (4, 5), (64, 80)))  # the hottest cell
    # Given points on query cells 0..2 (row 0): each map peaks at reference cell perm[k].
    points = [cell_centre_pixels(0, k, (4, 5), (64, 80)) for k in range(3)]
    fig = explanation_figure(exp, points=points)
    axes = {ax.get_label(): ax for ax in fig.axes}
    marker_rows = [line.get_ydata()[0] for line in axes["points"].lines]
    marker_cols = [line.get_xdata()[0] for line in axes["points"].lines]
    np.testing.assert_allclose(marker_rows, [p[0] for p in points])
    np.testing.assert_allclose(marker_cols, [p[1] for p in points])
    for k in range(3):
        line = axes[f"point_{k}"].lines[0]
        expected = cell_centre_pixels(*divmod(int(perm[k]), 3), (3, 3), (48, 48))
        assert (line.get_ydata()[0], line.get_xdata()[0]) == pytest.approx(expected)


def test_figure_saves_png():
    exp, _ = _explanation()
    buf = io.BytesIO()
    explanation_figure(exp, reading="correspondence", cmap="viridis").savefig(buf, format="png", dpi=50)
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        assert img.size[0] > 100 and img.size[1] > 50


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reading": "both"}, "reading='both' is not one of"),
        ({"points": [(100.0, 5.0)]}, r"points\[0\]"),
        ({"points": -1}, "points=-1 must be >= 0"),
        ({"points": np.zeros((2, 3))}, "points has shape"),
        ({"cmap": "nope_cmap"}, "nope_cmap"),
        ({"alpha": -0.1}, "alpha"),
    ],
)
def test_figure_rejects_bad_options(kwargs, message):
    exp, _ = _explanation()
    with pytest.raises(ValueError, match=message):
        explanation_figure(exp, **kwargs)


def test_render_imports_numpy_and_matplotlib_only():
    import ast
    import pathlib
    import sys

    import simviz_widgets.render as render

    allowed = {"numpy", "matplotlib"} | set(sys.stdlib_module_names)
    for path in pathlib.Path(render.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)


def test_figure_displays_as_png_without_pyplot():
    import io

    from PIL import Image

    from simviz_widgets.render.figure import DisplayFigure

    fig = DisplayFigure(figsize=(2, 1), dpi=50)
    fig.add_subplot().plot([0, 1], [0, 1])
    png = fig._repr_png_()
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_a_euclidean_title_gives_the_distance_too():
    """similarity = -distance²: face verification reads distances (dlib's threshold 0.6)."""
    exp, _ = _explanation()
    exp.metric, exp.score = "euclidean", -0.1010
    title = explanation_figure(exp)._suptitle.get_text()
    assert "euclidean similarity -0.1010" in title and "distance 0.318" in title
    exp.metric, exp.score = "cosine", 0.8125
    assert "distance" not in explanation_figure(exp)._suptitle.get_text()


def test_the_viewer_score_line_gives_a_euclidean_distance_too():
    from simviz_widgets.widgets.hover import HoverLogic

    exp, _ = _explanation()
    exp.metric, exp.score = "euclidean", -0.25
    assert "(distance 0.500)" in HoverLogic(exp).score_html()
    exp.metric, exp.score = "cosine", 0.8125
    assert "distance" not in HoverLogic(exp).score_html()

"""Readable by default: colour bar, peak marker, scales per reading, opacity following strength,
"n/a" where a method has no map. Each reproduces what a new user could not read on the earlier viewer."""

from __future__ import annotations

import numpy as np
import pytest
from widget_helpers import make_explanation, move

from simviz_widgets.explain.base import PairExplanation
from simviz_widgets.render import map_to_rgba
from simviz_widgets.render.figure import cell_centre_pixels
from simviz_widgets.widgets.colorbar import GRADIENT_CLASS, gradient_css
from simviz_widgets.widgets.hover import CORRESPONDENCE_CMAP, HoverLogic
from simviz_widgets.widgets.pair_viewer import DEFAULT_ALPHA, PairViewer


@pytest.fixture
def explanation():
    return make_explanation()


def test_colour_bar_says_what_the_values_mean_at_rest_and_while_hovering(explanation):
    v = PairViewer.from_explanation(explanation, size=320)
    assert "simviz-colorbar" in v.colorbar._dom_classes and GRADIENT_CLASS in v.colorbar.text
    assert gradient_css("RdBu_r") in v.colorbar.text  # the overall maps' diverging colormap
    limit = float(np.abs(np.concatenate([explanation.query_map.ravel(), explanation.reference_map.ravel()])).max())
    assert f"{limit:.3g}" in v.colorbar.text and "−" + f"{limit:.3g}" in v.colorbar.text
    move(v, "query", 100, 50)
    values = v.logic.point_values
    assert "what each cell adds to the score" in v.colorbar.text
    assert f"{float(np.abs(values).max()):.3g}" in v.colorbar.text  # the hovered map's own scale
    v.reading = "correspondence"
    values = v.logic.point_values
    assert gradient_css(CORRESPONDENCE_CMAP) in v.colorbar.text and "cosine" in v.colorbar.text
    assert f"{float(values.min()):.3g}".replace("-", "−") in v.colorbar.text
    v._handle_event("query", {"type": "mouseleave"})
    assert "overall map" in v.colorbar.text


def test_correspondence_uses_a_sequential_scale_over_its_own_range(explanation):
    """Was: a symmetric ±0.83 scale while the values sat in 0.3-0.8 (everything one colour)."""
    logic = HoverLogic(explanation, canvas_size=320, reading="correspondence")
    values = logic.hover("query", 100, 50)
    scale = logic.scale(values, point=True)
    assert scale.mode == "minmax" and scale.cmap == CORRESPONDENCE_CMAP
    assert (scale.lo, scale.hi) == pytest.approx((values.min(), values.max()))
    rgba = map_to_rgba(values, cmap=scale.cmap, mode=scale.mode, vmin=scale.lo, vmax=scale.hi)
    assert len({tuple(c) for c in rgba[..., :3].reshape(-1, 3)}) > values.size // 2  # spread over the LUT
    logic.reading = "contribution"
    scale = logic.scale(logic.point_map("query", 100, 50), point=True)
    assert scale.mode == "symmetric" and scale.lo == -scale.hi


def test_weak_cells_let_the_photo_through(explanation, commands):
    """Was: at a flat opacity 0.5 a diverging map tinted the whole photo (a uniform red wash)."""
    v = PairViewer.from_explanation(explanation, size=320, hover="kernel")
    v.overlay_max_side = 0
    move(v, "query", 100, 50)
    alpha = commands.last_image(v.reference_canvas[1])[..., 3].astype(float) / 255
    values = v.logic.point_values
    strength = np.abs(values) / np.abs(values).max()
    np.testing.assert_allclose(alpha, DEFAULT_ALPHA * strength, atol=1.5 / 255)
    assert np.median(alpha) < 0.5 * DEFAULT_ALPHA


def test_peak_marker_is_drawn_at_the_point_maps_peak(explanation, commands):
    v = PairViewer.from_explanation(explanation, size=320, hover="kernel")
    move(v, "query", 100, 50)
    values = v.logic.point_values
    cell = np.unravel_index(int(np.argmax(values)), values.shape)
    row, col = cell_centre_pixels(cell[0], cell[1], values.shape, explanation.reference_size)
    assert v.peak == ("reference", row, col)
    y, x = v.canvas_position("reference", row, col)
    polygons = [c for c in commands.on(v.reference_canvas[1]) if c["name"] == "strokePolygon"]
    assert len(polygons) == 2
    points = np.asarray(polygons[-1]["args"][0], dtype=float).reshape(-1, 2)
    assert points.mean(axis=0) == pytest.approx((x, y))  # a diamond centred on the peak (x, y)
    assert "best match in the reference" in v.status_label.value

    commands.clear()
    v.show_peak = False
    assert "strokePolygon" not in commands.names(v.reference_canvas[1])
    assert commands.images(v.reference_canvas[1])  # the map itself is redrawn


def test_a_side_without_a_map_says_na_instead_of_a_darkened_photo(explanation, commands):
    """Was: RISE / sliding window (query only) darkened the reference photo."""
    query_only = PairExplanation("rise", explanation.score, explanation.query, explanation.reference,
                                 explanation.query_map, np.zeros_like(explanation.reference_map), False,
                                 missing_maps=("reference",))
    assert not query_only.has_map("reference") and query_only.has_map("query")
    assert query_only.swapped().missing_maps == ("query",)
    v = PairViewer.from_explanation(query_only, size=320)
    names = commands.names(v.reference_canvas[1])
    assert "putImageData" not in names and "fillText" in names  # no map drawn over the photo: a label
    text = [c for c in commands.on(v.reference_canvas[1]) if c["name"] == "fillText"][-1]["args"][0]
    assert text.startswith("n/a") and "rise" in text
    assert commands.images(v.query_canvas[1])  # the query's map is there
    assert "not a share of the score" in v.colorbar.text  # RISE's maps are relevance, not a decomposition
    assert v.reading_toggle.disabled  # no point maps: nothing to read either way
    with pytest.raises(ValueError, match="missing_maps entry='ref' is not one of"):
        PairExplanation("rise", 0.0, explanation.query, explanation.reference, explanation.query_map,
                        explanation.reference_map, False, missing_maps=("ref",))


def test_side_vocabulary_replaces_ternaries(explanation):
    assert explanation.image("reference") is explanation.reference
    assert explanation.size("query") == explanation.query.shape[:2]
    assert explanation.map("reference") is explanation.reference_map
    from simviz_widgets.explain.base import other_side

    assert other_side("query") == "reference" and other_side("reference") == "query"
    with pytest.raises(ValueError, match="side='ref' is not one of"):
        explanation.image("ref")
    assert explanation.sums_to_score  # a decomposition: its maps sum to the score
    no_split = PairExplanation("gradcam", 0.5, explanation.query, explanation.reference, explanation.query_map,
                               explanation.reference_map, False)
    assert not no_split.sums_to_score

"""Pairs with known geometry: the mappings agree with the pixels (a warp of the query by the
stated geometry reproduces the reference), and the parameters are what the names say."""

import math

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from simviz_widgets.checks import InputError
from simviz_widgets.datasets.known_pairs import BRAIN_DATA, brain_slices, stereo_pair, view_pairs


def correlation_under_mapping(pair, samples=4000, seed=0):
    """Pearson correlation between reference pixels and the query pixels the mapping sends there
    (grey levels, points sampled uniformly over the query, valid matches only)."""
    rng = np.random.default_rng(seed)
    q = pair.query.mean(axis=2)
    r = pair.reference.mean(axis=2)
    rows = rng.uniform(0, q.shape[0] - 1, samples)
    cols = rng.uniform(0, q.shape[1] - 1, samples)
    tr, tc, valid = pair.mapping(rows, cols)
    valid &= (tr >= 0) & (tr <= r.shape[0] - 1) & (tc >= 0) & (tc <= r.shape[1] - 1)
    a = map_coordinates(q, [rows[valid], cols[valid]], order=1)
    b = map_coordinates(r, [tr[valid], tc[valid]], order=1)
    return float(np.corrcoef(a, b)[0, 1]), int(valid.sum())


def test_brain_slices_are_installed_by_the_test_setup():
    assert (BRAIN_DATA / "BrainProtonDensitySliceBorder20.png").exists(), \
        "scripts/install_test_data.sh installs insighttoolkit5-examples"


@pytest.mark.parametrize("index", range(4))
def test_brain_slice_moves_agree_with_the_pixels(index):
    pair = brain_slices()[index]
    corr, n = correlation_under_mapping(pair)
    assert n > 2000
    assert corr > 0.99, pair.name
    # The wrong direction of the same move must be clearly worse: the sign convention is tested.
    flipped = brain_slices()[index]
    if pair.rotation_deg != 0:
        from simviz_widgets.datasets import known_pairs as kp

        centre = ((pair.query.shape[0] - 1) / 2, (pair.query.shape[1] - 1) / 2)
        wrong = kp._similarity_matrix(-pair.rotation_deg, pair.scale, (0.0, 0.0), centre)
        flipped.mapping = kp._matrix_mapping(wrong, pair.query.shape[:2])
        assert correlation_under_mapping(flipped)[0] < corr - 0.05


def test_brain_slice_parameters_are_those_of_the_file_names():
    by_name = {p.name.split("/")[1]: p for p in brain_slices()}
    assert by_name["Shifted13x17y"].rotation_deg == 0.0
    assert by_name["Rotated10"].rotation_deg == pytest.approx(-10.0)
    assert by_name["R10X13Y17S12"].rotation_deg == pytest.approx(10.0)
    assert by_name["R10X13Y17S12"].scale == pytest.approx(1 / 1.2)
    shifted = by_name["Shifted13x17y"]
    rows, cols, _ = shifted.mapping(np.array([50.0]), np.array([60.0]))
    assert (rows[0], cols[0]) == (67.0, 73.0)
    # The opposite shift must be clearly worse: the direction is tested, not only the magnitude.
    right, _ = correlation_under_mapping(shifted)
    shifted.mapping = lambda r, c: (np.asarray(r, float) - 17, np.asarray(c, float) - 13, np.ones(np.shape(r), bool))
    assert correlation_under_mapping(shifted)[0] < right - 0.2


def test_brain_slices_say_how_to_install_them(tmp_path):
    with pytest.raises(InputError, match="insighttoolkit5-examples"):
        brain_slices(tmp_path)


def test_stereo_mapping_agrees_with_the_pixels():
    corr, n = correlation_under_mapping(stereo_pair())
    assert n > 3000 and corr > 0.9
    # Without the disparity (identity mapping) the same points correlate clearly less.
    pair = stereo_pair()
    pair.mapping = lambda r, c: (np.asarray(r, float), np.asarray(c, float), np.ones(np.shape(r), bool))
    assert correlation_under_mapping(pair)[0] < corr - 0.1


def test_view_pairs_draw_parameters_in_the_asked_ranges():
    pairs = view_pairs(("chelsea", "coffee"), seed=3)
    assert [p.kind for p in pairs] == ["rotation"] * 2 + ["crop_scale"] * 2 + ["perspective"] * 2
    for p in pairs:
        if p.kind == "rotation":
            assert 10 <= abs(p.rotation_deg) <= 45 and p.scale == 1.0
        elif p.kind == "crop_scale":
            assert 1 / 0.9 <= p.scale <= 1 / 0.6 and p.rotation_deg == 0.0
        else:
            assert math.isnan(p.rotation_deg)
        corr, _ = correlation_under_mapping(p)
        assert corr > 0.95, p.name
    again = view_pairs(("chelsea", "coffee"), seed=3)
    assert [p.params for p in again] == [p.params for p in pairs]
    with pytest.raises(InputError, match="kinds"):
        view_pairs(kinds=("shear",))

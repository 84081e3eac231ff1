"""Cross-view geometry on the default model against ground truth: a rotated view and a shifted
brain slice are recovered within the targets (rotation <= 3 deg, scale <= 5 %, corners <= 5 % of the
image side), and stereo matches land within 5 % of the image side of the true disparity for at
least 75 % of a lattice of points (measured 0.81; the model's own 7 x 7 grid alone: 0.48).
Tables over more pairs: benchmarks/bench_crossview.py."""

import warnings

import numpy as np
import pytest

import simviz_widgets as sv
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.datasets.known_pairs import brain_slices, stereo_pair
from simviz_widgets.evaluate import display_mapping
from simviz_widgets.geometry import cell_centres, match_points


@pytest.fixture(scope="module")
def model():
    return sv.load_model("efficientnet_lite0")


def matched(model, query, reference, mapping):
    with warnings.catch_warnings():
        # blocks.4's gradient x input is first order (residual ratio > 0.5): the explanation warns;
        # matching needs only where each vector points.
        warnings.simplefilter("ignore", UserWarning)
        matches = sv.match_pair(model, query, reference, resolution=14, show_progress=False)
    q, r = model.prepare(query), model.prepare(reference)
    return matches, display_mapping(q, r, mapping)


def test_a_rotated_view_is_recovered_within_the_targets(model):
    photo = load_photo("chelsea")
    view = views(photo, "rotation", angle=30.0)
    matches, truth = matched(model, photo, view.image, view.map_points)
    fit = sv.fit_geometry(matches, kind="similarity")
    assert fit.reliable
    assert abs(fit.rotation_deg - 30.0) <= 3.0
    assert abs(fit.scale - 1.0) <= 0.05
    assert fit.corner_error(truth) <= 0.05


def test_a_shifted_brain_slice_is_recovered_within_the_targets(model):
    pair = next(p for p in brain_slices() if p.name.endswith("Shifted13x17y"))
    matches, truth = matched(model, pair.query, pair.reference, pair.mapping)
    fit = sv.fit_geometry(matches, kind="similarity")
    assert fit.reliable
    assert abs(fit.rotation_deg) <= 3.0 and abs(fit.scale - 1.0) <= 0.05
    assert fit.corner_error(truth) <= 0.05


def test_stereo_matches_land_on_the_true_disparity(model):
    pair = stereo_pair()
    matches, truth = matched(model, pair.query, pair.reference, pair.mapping)
    fine, coarse = matches.info["explanation"], matches.info["coarse_explanation"]
    lattice = cell_centres((14, 14), fine.query_size)
    both = match_points(fine, lattice[:, 0], lattice[:, 1], coarse=coarse)
    own_grid = match_points(coarse, lattice[:, 0], lattice[:, 1])
    _, valid = both.errors(truth)
    assert valid.sum() > 150
    assert both.pck(truth)[0.05] >= 0.75
    assert both.pck(truth)[0.05] >= own_grid.pck(truth)[0.05] + 0.15
    # A rectified pair: most mutual matches stay on their row and move left.
    fit = sv.fit_geometry(matches, kind="disparity")
    assert fit.inlier_ratio >= 0.6
    assert np.median(fit.disparity[fit.inliers]) > 0

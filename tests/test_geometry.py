"""Correspondences from explanations and the geometry they imply: known answers on hand-set
factors, exact transforms on synthetic matches, and the conventions (row, col; counter-clockwise)."""

import math

import numpy as np
import pytest
from skimage import transform as sktransform

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.explain.base import PairExplanation
from simviz_widgets.explain.point_to_point import PointToPoint
from simviz_widgets.geometry import (
    GeometryFit,
    Matches,
    cell_centres,
    correspondences,
    fit_geometry,
    match_points,
    orb_matches,
)


def explanation_from_vectors(query_vectors, reference_vectors, grid_q, grid_r, size=(64, 64)):
    """A PairExplanation whose point-to-point part has the given per-cell vectors."""
    p2p = PointToPoint(query_vectors, reference_vectors, 1.0, grid_q, grid_r)
    blank = np.zeros(size + (3,), np.uint8)
    return PairExplanation("hand_set", 0.0, blank, blank, np.zeros(grid_q), np.zeros(grid_r), signed=True,
                           point_to_point=p2p)


def permuted_pair(rng, grid=(4, 4), dim=32):
    n = grid[0] * grid[1]
    reference = rng.normal(size=(n, dim))
    permutation = rng.permutation(n)
    query = reference[permutation] + 0.01 * rng.normal(size=(n, dim))
    return query, reference, permutation


# -- correspondences -----------------------------------------------------------------------------------

def test_mutual_nearest_neighbours_recover_a_permutation_of_cells():
    rng = np.random.default_rng(0)
    query, reference, permutation = permuted_pair(rng)
    exp = explanation_from_vectors(query, reference, (4, 4), (4, 4))
    matches = correspondences(exp, refine="none")
    assert len(matches) == 16
    assert np.array_equal(matches.reference_cells, permutation[matches.query_cells])
    centres = cell_centres((4, 4), (64, 64))
    assert np.allclose(matches.query_points, centres[matches.query_cells])
    assert np.allclose(matches.reference_points, centres[permutation[matches.query_cells]])
    assert np.all(np.diff(matches.strength) <= 0)  # strongest first
    assert matches.strength[0] > 0.99


def test_mutual_test_drops_one_way_matches_and_ratio_test_drops_ambiguous_ones():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(4, 8))
    # Query cells 0 and 1 both look like reference cell 0; only the closer one is mutual.
    query = np.stack([reference[0] + 0.01, reference[0] + 0.2, reference[2], reference[3]])
    exp = explanation_from_vectors(query, reference, (2, 2), (2, 2))
    both = correspondences(exp, mutual=False, refine="none")
    assert sorted(both.query_cells.tolist()) == [0, 1, 2, 3]
    mutual = correspondences(exp, refine="none")
    assert sorted(mutual.query_cells.tolist()) == [0, 2, 3]
    # Ratio test on a 1 x 4 reference grid: the best cell outside the 3 x 3 around the best is the
    # second. Reference cell 3 made nearly equal to cell 0: query cell 0 is no longer distinctive.
    reference2 = rng.normal(size=(4, 8))
    reference2[3] = reference2[0] + 1e-3
    query2 = np.stack([reference2[0] + 0.05, reference2[1] + 0.01])
    exp2 = explanation_from_vectors(query2, reference2, (1, 2), (1, 4))
    loose = correspondences(exp2, mutual=False, refine="none")
    strict = correspondences(exp2, mutual=False, ratio=0.8, refine="none")
    assert sorted(loose.query_cells.tolist()) == [0, 1]
    assert strict.query_cells.tolist() == [1]
    assert loose.distinctiveness[loose.query_cells.tolist().index(0)] > 0.9


def test_soft_argmax_is_the_softmax_weighted_mean_of_the_neighbourhood():
    # One query cell against a 3x3 reference grid of unit vectors at chosen cosines.
    cosines = np.array([[0.1, 0.2, 0.1], [0.3, 0.9, 0.6], [0.1, 0.2, 0.1]])
    dim = 10
    reference = np.zeros((9, dim))
    query = np.zeros((1, dim))
    query[0, 0] = 1.0
    for k, c in enumerate(cosines.ravel()):
        reference[k, 0] = c
        reference[k, 1 + k] = math.sqrt(1 - c * c)
    exp = explanation_from_vectors(query, reference, (1, 1), (3, 3), size=(30, 30))
    got = correspondences(exp, refine="soft_argmax", temperature=0.1)
    w = np.exp((cosines - cosines.max()) / (0.1 * 0.9))  # temperature relative to the row's largest value
    w /= w.sum()
    rows, cols = np.mgrid[0:3, 0:3]
    expect = ((w * rows).sum() + 0.5) * 10 - 0.5, ((w * cols).sum() + 0.5) * 10 - 0.5
    assert np.allclose(got.reference_points[0], expect)
    none = correspondences(exp, refine="none")
    assert np.allclose(none.reference_points[0], (14.5, 14.5))
    # Parabola through 0.3, 0.9, 0.6 along columns: vertex offset 0.5 * (0.3 - 0.6) / (0.3 - 1.8 + 0.6).
    para = correspondences(exp, refine="parabola")
    dc = 0.5 * (0.3 - 0.6) / (0.3 - 1.8 + 0.6)
    dr = 0.5 * (0.2 - 0.2) / (0.2 - 1.8 + 0.2)
    assert np.allclose(para.reference_points[0], ((1 + dr + 0.5) * 10 - 0.5, (1 + dc + 0.5) * 10 - 0.5))


def test_identical_images_match_every_cell_to_itself_with_the_tiny_model():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    exp = sv.explain(model, cat, cat)
    matches = sv.correspondences(exp, refine="none")
    assert len(matches) == exp.point_to_point.query_grid[0] * exp.point_to_point.query_grid[1]
    assert np.allclose(matches.query_points, matches.reference_points)


def test_match_points_follows_the_hover_map_argmax():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    exp = sv.explain(model, cat, cat[:, ::-1])
    rows, cols = np.array([5.0, 30.0, 60.0]), np.array([10.0, 33.0, 50.0])
    m = match_points(exp, rows, cols, refine="none")
    hr, wr = exp.point_to_point.reference_grid
    for k in range(3):
        argmax = int(exp.from_query(rows[k], cols[k], reading="correspondence").argmax())
        assert m.reference_cells[k] == argmax
        centre = cell_centres((hr, wr), exp.reference_size)[argmax]
        assert np.allclose(m.reference_points[k], centre)
    assert np.allclose(m.query_points, np.stack([rows, cols], 1))


def test_correspondences_refuse_bad_input():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    exp = sv.explain(model, cat, cat)
    with pytest.raises(InputTypeError, match="mutual"):
        correspondences(exp, mutual="yes")
    with pytest.raises(InputError, match="ratio"):
        correspondences(exp, ratio=1.5)
    with pytest.raises(InputError, match="refine"):
        correspondences(exp, refine="bicubic")
    with pytest.raises(InputError, match="ratio"):
        correspondences(exp, reading="contribution", ratio=0.8)
    with pytest.raises(InputTypeError, match="explanation"):
        correspondences("not an explanation")
    overall_only = sv.explain(model, cat, cat, method="gradcam")
    with pytest.raises(InputError, match="point-to-point"):
        correspondences(overall_only)


# -- fit_geometry ------------------------------------------------------------------------------------

def synthetic_matches(transform_xy, n=60, outliers=0.3, size=(200, 240), seed=0):
    rng = np.random.default_rng(seed)
    q = np.stack([rng.uniform(0, size[0] - 1, n), rng.uniform(0, size[1] - 1, n)], 1)
    r = transform_xy(q[:, ::-1])[:, ::-1]
    bad = rng.random(n) < outliers
    r[bad] = np.stack([rng.uniform(0, size[0] - 1, bad.sum()), rng.uniform(0, size[1] - 1, bad.sum())], 1)
    return Matches(q, r, np.ones(n), size, size), ~bad


@pytest.mark.parametrize("kind", ["similarity", "affine", "homography"])
def test_ransac_recovers_a_known_transform_and_its_inliers(kind):
    # Counter-clockwise on screen by 25 degrees is a negative skimage rotation (y points down).
    truth = sktransform.SimilarityTransform(rotation=math.radians(-25), scale=1.3, translation=(12, -7))
    matches, good = synthetic_matches(truth)
    fit = fit_geometry(matches, kind=kind, residual_threshold=1.0)
    assert fit.reliable and fit.warning is None
    assert np.array_equal(fit.inliers, good)
    assert fit.rotation_deg == pytest.approx(25.0, abs=1e-6)
    assert fit.scale == pytest.approx(1.3, rel=1e-6)
    centre = np.array([[(240 - 1) / 2, (200 - 1) / 2]])
    moved = truth(centre)[0] - centre[0]
    assert fit.translation == pytest.approx((moved[1], moved[0]), abs=1e-5)
    rows, cols = np.array([0.0, 50.0]), np.array([0.0, 70.0])
    expect = truth(np.stack([cols, rows], 1))
    assert np.allclose(np.stack(fit.map_points(rows, cols), 1), expect[:, ::-1], atol=1e-6)
    assert fit.inlier_ratio == pytest.approx(good.mean())


def test_rotation_sign_matches_the_views_convention():
    view = views(np.zeros((120, 160, 3), np.uint8), "rotation", angle=20.0)
    rng = np.random.default_rng(3)
    q = np.stack([rng.uniform(20, 100, 40), rng.uniform(20, 140, 40)], 1)
    r_rows, r_cols, _ = view.map_points(q[:, 0], q[:, 1])
    fit = fit_geometry(Matches(q, np.stack([r_rows, r_cols], 1), np.ones(40), (120, 160), (120, 160)))
    assert fit.rotation_deg == pytest.approx(20.0, abs=1e-6)
    assert fit.scale == pytest.approx(1.0, abs=1e-9)
    assert fit.corner_error(view.map_points) == pytest.approx(0.0, abs=1e-9)


def test_too_few_matches_or_inliers_are_flagged_not_fitted_silently():
    m = Matches(np.zeros((1, 2)), np.ones((1, 2)), np.ones(1), (50, 50), (50, 50))
    fit = fit_geometry(m, kind="similarity")
    assert fit.transform is None and not fit.reliable and "needs at least 2" in fit.warning
    assert math.isnan(fit.rotation_deg) and math.isnan(fit.corner_error(lambda r, c: (r, c)))
    with pytest.raises(InputError, match="reliable"):
        fit.warp(np.zeros((50, 50, 3), np.uint8))
    rng = np.random.default_rng(5)
    noise = Matches(rng.uniform(0, 99, (40, 2)), rng.uniform(0, 99, (40, 2)), np.ones(40), (100, 100), (100, 100))
    fit = fit_geometry(noise, kind="homography", residual_threshold=1.0)
    assert not fit.reliable and "not meaningful" in fit.warning


def test_disparity_model_keeps_rows_and_refuses_rightward_moves():
    rng = np.random.default_rng(7)
    q = np.stack([rng.uniform(0, 99, 50), rng.uniform(40, 199, 50)], 1)
    d = rng.uniform(5, 30, 50)
    r = q.copy()
    r[:, 1] -= d
    r[:5, 1] = q[:5, 1] + 20  # moved right: impossible in a rectified left -> right pair
    r[5:10, 0] += 15  # off the row
    fit = fit_geometry(Matches(q, r, np.ones(50), (100, 200), (100, 200)), kind="disparity",
                       residual_threshold=1.0)
    assert fit.inliers[10:].all() and not fit.inliers[:10].any()
    assert np.allclose(fit.disparity[10:], d[10:])
    assert fit.translation[0] == pytest.approx(0.0, abs=1e-9)
    assert fit.translation[1] == pytest.approx(-np.median(d[10:]))


def test_warp_moves_pixels_by_the_fitted_translation():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    q = rng.uniform(0, 39, (30, 2))
    m = Matches(q, q + [5.0, 3.0], np.ones(30), (40, 50), (40, 50))
    fit = fit_geometry(m, kind="similarity", residual_threshold=0.5)
    warped, valid = fit.warp(image)
    assert np.array_equal(warped[5:, 3:], image[:-5, :-3])
    assert not valid[:5].any() and valid[5:, 3:].all()
    with pytest.raises(InputError, match="query display size"):
        fit.warp(image[:20])


def test_fit_geometry_refuses_bad_options():
    m = Matches(np.zeros((3, 2)), np.zeros((3, 2)), np.ones(3), (10, 10), (10, 10))
    with pytest.raises(InputError, match="kind"):
        fit_geometry(m, kind="rigid3d")
    with pytest.raises(InputTypeError, match="residual_threshold"):
        fit_geometry(m, residual_threshold="2")
    with pytest.raises(InputTypeError, match="matches"):
        fit_geometry([(0, 0)])
    with pytest.raises(InputError, match="as many"):
        Matches(np.zeros((3, 2)), np.zeros((2, 2)), np.ones(3), (10, 10), (10, 10))


def test_orb_recovers_a_pure_shift_of_a_photo():
    photo = load_photo("astronaut")[100:356, 100:356]
    shifted = np.zeros_like(photo)
    shifted[9:, 4:] = photo[:-9, :-4]
    matches = orb_matches(photo, shifted)
    assert len(matches) > 50
    fit = fit_geometry(matches, kind="similarity")
    assert fit.reliable
    assert fit.translation == pytest.approx((9.0, 4.0), abs=0.5)
    assert len(orb_matches(np.zeros((64, 64)), photo)) == 0  # a flat image has no keypoints


def test_geometry_fit_repr_says_when_it_is_unreliable():
    rng = np.random.default_rng(5)
    noise = Matches(rng.uniform(0, 99, (40, 2)), rng.uniform(0, 99, (40, 2)), np.ones(40), (100, 100), (100, 100))
    fit = fit_geometry(noise, kind="affine", residual_threshold=1.0)
    assert isinstance(fit, GeometryFit) and "UNRELIABLE" in repr(fit)


def test_coarse_level_is_the_mean_of_fine_and_interpolated_coarse_cosines():
    rng = np.random.default_rng(4)
    fine_q, fine_r = rng.normal(size=(16, 6)), rng.normal(size=(16, 6))
    coarse_q, coarse_r = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    fine = explanation_from_vectors(fine_q, fine_r, (4, 4), (4, 4))
    coarse = explanation_from_vectors(coarse_q, coarse_r, (2, 2), (2, 2))
    from simviz_widgets.geometry.matches import _similarities

    sim = _similarities(fine, "correspondence", coarse)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    # Fine cell (0, 0) sits at coarse position (-0.25, -0.25) -> clamped to coarse cell (0, 0);
    # fine cell (1, 2) at coarse (0.25, 0.75): a bilinear mix of all four coarse cells.
    def coarse_at(vectors, u, v):
        grid = unit(vectors).reshape(2, 2, -1)
        u, v = min(max(u, 0), 1), min(max(v, 0), 1)
        mix = ((1 - u) * ((1 - v) * grid[0, 0] + v * grid[0, 1]) + u * ((1 - v) * grid[1, 0] + v * grid[1, 1]))
        return unit(mix)

    for i, (ui, vi) in [(0, (-0.25, -0.25)), (6, (0.25, 0.75))]:
        for j, (uj, vj) in [(0, (-0.25, -0.25)), (15, (1.25, 1.25)), (9, (0.75, 0.25))]:
            coarse_cos = coarse_at(coarse_q, ui, vi) @ coarse_at(coarse_r, uj, vj)
            expect = 0.5 * (unit(fine_q[i]) @ unit(fine_r[j]) + coarse_cos)
            assert sim[i, j] == pytest.approx(expect, abs=1e-12)
    with pytest.raises(InputError, match="same pair"):
        correspondences(fine, coarse=explanation_from_vectors(coarse_q, coarse_r, (2, 2), (2, 2), size=(32, 32)))
    with pytest.raises(InputError, match="correspondence"):
        match_points(fine, [1.0], [1.0], reading="contribution", coarse=coarse)


def test_match_points_strength_is_the_hover_map_maximum():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    exp = sv.explain(model, cat, cat[::-1])
    m = match_points(exp, [12.3, 40.7], [50.2, 3.9], refine="none")
    for k, (r, c) in enumerate(m.query_points):
        assert m.strength[k] == pytest.approx(float(exp.from_query(r, c, reading="correspondence").max()), abs=1e-6)


def test_match_and_alignment_figures_draw_what_they_say():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    exp = sv.explain(model, cat, cat[:, ::-1])
    matches = correspondences(exp)
    fit = fit_geometry(matches, kind="affine")
    fig = matches.to_figure(exp.query, exp.reference, fit=fit, max_lines=5)
    ax = next(a for a in fig.axes if a.get_label() == "matches")
    assert len(ax.lines) == 2 * min(5, len(matches))  # a line and its end points per match
    other = correspondences(exp, max_matches=3)
    with pytest.raises(InputError, match="other matches"):
        other.to_figure(exp.query, exp.reference, fit=fit)
    fig = fit.alignment_figure(exp.query, exp.reference, blend=1.0)
    assert [a.get_label() for a in fig.axes] == ["reference", "query warped by the fit", "blend 100% warped"]
    blended = fig.axes[2].images[0].get_array()
    warped, valid = fit.warp(exp.query)
    assert np.array_equal(np.asarray(blended)[valid], warped[valid])


def test_match_pair_explains_at_the_asked_grid_with_the_model_grid_as_coarse_level():
    model = sv.load_model("tiny_test")
    cat = load_photo("chelsea")
    matches = sv.match_pair(model, cat, cat[:, ::-1], resolution=16, show_progress=False)
    fine, coarse = matches.info["explanation"], matches.info["coarse_explanation"]
    assert fine.point_to_point.query_grid == (16, 16) and coarse.point_to_point.query_grid == (8, 8)
    again = correspondences(fine, coarse=coarse)
    assert np.array_equal(again.query_points, matches.query_points)
    assert np.array_equal(again.reference_points, matches.reference_points)
    assert matches.info["coarse_grid"] == (8, 8)
    own = sv.match_pair(model, cat, cat[:, ::-1])
    assert own.query_grid == (8, 8) and own.info["coarse_explanation"] is None
    single = sv.match_pair(model, cat, cat, resolution=16, multiscale=False, show_progress=False)
    assert single.info["coarse_explanation"] is None
    with pytest.raises(InputTypeError, match="multiscale"):
        sv.match_pair(model, cat, cat, multiscale="no")


@pytest.mark.parametrize("refine", ["parabola", "soft_argmax"])
def test_sub_cell_shift_is_recovered_not_doubled(refine):
    # Smooth random Fourier features of the continuous position; the reference sees the scene moved
    # by 0.4 cell to the left: query position p matches reference position p - 0.4 (columns).
    rng = np.random.default_rng(11)
    freq = rng.normal(scale=0.35, size=(64, 2))
    phase = rng.uniform(0, 2 * np.pi, 64)

    def features(rows, cols):
        return np.cos(np.stack([rows.ravel(), cols.ravel()], 1) @ freq.T + phase)

    r, c = np.mgrid[0:9, 0:9].astype(float)
    exp = explanation_from_vectors(features(r, c), features(r, c + 0.4), (9, 9), (9, 9), size=(90, 90))
    matches = correspondences(exp, refine=refine)
    inner = ((matches.reference_cells % 9 > 0) & (matches.reference_cells % 9 < 8)
             & (matches.query_cells % 9 > 0) & (matches.query_cells % 9 < 8))
    shift = (matches.query_points[inner, 1] - matches.reference_points[inner, 1]) / 10.0  # in cells
    assert inner.sum() >= 20
    assert np.median(shift) == pytest.approx(0.4, abs=0.12)
    assert np.allclose(matches.query_points[inner, 0], matches.reference_points[inner, 0], atol=1.5)

"""The transform a set of matches implies, fitted robustly with scikit-image's RANSAC (docs/crossview.md).

``fit_geometry(matches, kind=...)`` hands the query -> reference point pairs to
``skimage.measure.ransac`` with one of scikit-image's transforms (similarity, affine, projective),
or, for rectified stereo, with a horizontal-disparity model: both views share rows (up to one
vertical offset) and every point moves left by its own non-negative disparity. scikit-image works
in (x, y) = (col, row); everything this module returns to the user is (row, col) except the
``transform`` itself, which is scikit-image's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage import transform as sktransform
from skimage.measure import ransac

from ..checks import InputError, check_array, check_callable, check_choice, check_float, check_instance, check_int
from .matches import Matches

__all__ = ["GeometryFit", "fit_geometry", "GEOMETRY_KINDS", "HorizontalDisparity"]

GEOMETRY_KINDS = ("similarity", "affine", "homography", "disparity")
_MIN_SAMPLES = {"similarity": 2, "affine": 3, "homography": 4, "disparity": 1}
_SKIMAGE_MODELS = {
    "similarity": sktransform.SimilarityTransform,
    "affine": sktransform.AffineTransform,
    "homography": sktransform.ProjectiveTransform,
}


class HorizontalDisparity:
    """RANSAC model for a rectified stereo pair, in scikit-image's (x, y) order: ``dst_y = src_y +
    offset`` (one vertical offset for every point, ideally 0) and ``dst_x = src_x - d`` with a
    disparity ``d >= 0`` of the point's own. The residual is the vertical misfit; a point moving
    right (negative disparity beyond ``slack`` px, the residual threshold: a match on a grid is no
    more precise than that) is an outlier whatever its row."""

    slack = 1.0

    def __init__(self, offset: float = 0.0):
        self.offset = float(offset)

    @classmethod
    def from_estimate(cls, src, dst):
        src, dst = np.asarray(src, float), np.asarray(dst, float)
        if len(src) == 0:
            return None  # ransac skips a falsy model
        return cls(float(np.median(dst[:, 1] - src[:, 1])))

    def residuals(self, src, dst):
        src, dst = np.asarray(src, float), np.asarray(dst, float)
        vertical = np.abs(dst[:, 1] - src[:, 1] - self.offset)
        wrong_way = (src[:, 0] - dst[:, 0]) < -self.slack
        return np.where(wrong_way, np.inf, vertical)


@dataclass
class GeometryFit:
    """A transform fitted to matches: query pixels -> reference pixels.

    ``transform``: a scikit-image transform over (x, y) = (col, row) (None when there were fewer
    matches than the model needs); ``inliers`` (N,) bool over ``matches``; ``reliable``: False when
    too few inliers (fewer than ``min_inliers`` or an inlier ratio under ``min_inlier_ratio``) make
    the fit meaningless, and then ``warning`` says why. ``rotation_deg`` (counter-clockwise on
    screen) and ``scale`` are read from the transform's local linear part at the query image's
    centre (exact for similarity transforms); ``translation`` is where the query centre lands minus
    where it was, in (row, col) pixels. For ``kind="disparity"``, ``disparity`` (N,) is each match's
    query col - reference col and the transform is the shift by the inliers' median disparity.
    """

    kind: str
    transform: object | None
    inliers: np.ndarray
    matches: Matches
    residual_threshold: float
    reliable: bool
    warning: str | None = None
    disparity: np.ndarray | None = None

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def inlier_ratio(self) -> float:
        return self.n_inliers / len(self.inliers) if len(self.inliers) else 0.0

    def _centre(self) -> np.ndarray:
        h, w = self.matches.query_size
        return np.array([(w - 1) / 2, (h - 1) / 2])  # (x, y)

    def _jacobian(self) -> np.ndarray | None:
        if self.transform is None:
            return None
        c = self._centre()
        step = 1.0
        pts = np.array([c + [step, 0], c - [step, 0], c + [0, step], c - [0, step]])
        out = self.transform(pts)
        return np.stack([(out[0] - out[1]) / (2 * step), (out[2] - out[3]) / (2 * step)], axis=1)

    @property
    def rotation_deg(self) -> float:
        J = self._jacobian()
        if J is None:
            return float("nan")
        # Counter-clockwise on screen with y pointing down: x' = x cos + y sin, y' = -x sin + y cos.
        return math.degrees(math.atan2(J[0, 1] - J[1, 0], J[0, 0] + J[1, 1]))

    @property
    def scale(self) -> float:
        J = self._jacobian()
        return float("nan") if J is None else math.sqrt(abs(np.linalg.det(J)))

    @property
    def translation(self) -> tuple[float, float]:
        if self.transform is None:
            return (float("nan"), float("nan"))
        c = self._centre()
        x, y = self.transform(c[None])[0] - c
        return (float(y), float(x))

    def map_points(self, rows, cols) -> tuple[np.ndarray, np.ndarray]:
        """Query pixels (rows, cols) -> reference pixels under the fitted transform."""
        if self.transform is None:
            raise InputError("this fit has no transform (too few matches); check fit.reliable first")
        rows = check_array(rows, "rows", kinds="iuf", empty=True).astype(float)
        cols = check_array(cols, "cols", kinds="iuf", empty=True).astype(float)
        if rows.shape != cols.shape:
            raise InputError(f"rows has shape {rows.shape} and cols {cols.shape}; expected the same shape")
        xy = self.transform(np.stack([cols.ravel(), rows.ravel()], axis=1))
        return xy[:, 1].reshape(rows.shape), xy[:, 0].reshape(cols.shape)

    def warp(self, image) -> tuple[np.ndarray, np.ndarray]:
        """The query ``image`` (the display image of the matches' query side, (H, W[, 3])) warped
        into the reference frame: (warped uint8 image of the reference size, valid mask)."""
        if self.transform is None:
            raise InputError("this fit has no transform (too few matches); check fit.reliable first")
        image = check_array(image, "image", ndim=(2, 3), dtype=np.uint8, expected="a uint8 display image")
        if tuple(image.shape[:2]) != self.matches.query_size:
            raise InputError(f"image is {image.shape[0]}x{image.shape[1]}; expected the query display size "
                             f"{self.matches.query_size[0]}x{self.matches.query_size[1]}")
        inverse = self.transform.inverse
        shape = self.matches.reference_size
        warped = sktransform.warp(image, inverse, output_shape=shape, order=1, preserve_range=True)
        valid = sktransform.warp(np.ones(image.shape[:2]), inverse, output_shape=shape, order=0) > 0.5
        return np.clip(np.rint(warped), 0, 255).astype(np.uint8), valid

    def alignment_figure(self, query_image, reference_image, *, blend: float = 0.5, title: str = ""):
        """Reference | query warped by this fit | their blend: does the transform line them up?"""
        from ..render.matches_figure import alignment_figure

        warped, valid = self.warp(query_image)
        return alignment_figure(reference_image, warped, valid, blend=blend, title=title)

    def corner_error(self, mapping) -> float:
        """Mean distance between where the fitted and the true ``mapping`` (query (rows, cols) ->
        reference (rows, cols[, valid])) send the query image's four corner pixels, as a fraction of
        the reference image's larger side. NaN without a transform."""
        check_callable(mapping, "mapping")
        if self.transform is None:
            return float("nan")
        h, w = self.matches.query_size
        rows = np.array([0.0, 0.0, h - 1.0, h - 1.0])
        cols = np.array([0.0, w - 1.0, w - 1.0, 0.0])
        truth = mapping(rows, cols)
        fr, fc = self.map_points(rows, cols)
        err = np.hypot(fr - np.asarray(truth[0]), fc - np.asarray(truth[1]))
        return float(err.mean() / max(self.matches.reference_size))

    def __repr__(self) -> str:
        if self.transform is None:
            return f"GeometryFit({self.kind}, no transform: {self.warning})"
        flag = "" if self.reliable else ", UNRELIABLE"
        return (f"GeometryFit({self.kind}, rotation {self.rotation_deg:.1f} deg, scale {self.scale:.3f}, "
                f"inliers {self.n_inliers}/{len(self.inliers)}{flag})")


def _default_threshold(matches: Matches) -> float:
    """Half a reference cell (matches on a grid are only that precise), at least 2 px; 3 px for
    matches not on a grid (keypoints)."""
    if matches.reference_grid is None:
        return 3.0
    cell = max(matches.reference_size[0] / matches.reference_grid[0],
               matches.reference_size[1] / matches.reference_grid[1])
    return max(2.0, 0.5 * cell)


def fit_geometry(matches: Matches, *, kind: str = "similarity", residual_threshold: float | None = None,
                 max_trials: int = 2000, min_inliers: int | None = None, min_inlier_ratio: float = 0.2,
                 stop_probability: float = 0.999, seed: int = 0) -> GeometryFit:
    """Fit a ``kind`` transform (:data:`GEOMETRY_KINDS`) to ``matches`` (query -> reference) with
    ``skimage.measure.ransac``. ``residual_threshold`` in reference pixels (default: half a cell of
    the matches' grid, at least 2 px; 3 px for keypoint matches); ``min_inliers`` (default: twice
    the minimal sample plus two) and ``min_inlier_ratio`` decide ``reliable``; RANSAC stops early
    once it has drawn an all-inlier sample with ``stop_probability``; ``seed`` makes the random
    sampling repeatable."""
    check_instance(matches, "matches", Matches)
    kind = check_choice(kind, "kind", GEOMETRY_KINDS)
    threshold = (_default_threshold(matches) if residual_threshold is None
                 else check_float(residual_threshold, "residual_threshold", above=0.0))
    max_trials = check_int(max_trials, "max_trials", minimum=1)
    need = _MIN_SAMPLES[kind]
    min_inliers = 2 * need + 2 if min_inliers is None else check_int(min_inliers, "min_inliers", minimum=need)
    min_inlier_ratio = check_float(min_inlier_ratio, "min_inlier_ratio", minimum=0.0, maximum=1.0)
    stop_probability = check_float(stop_probability, "stop_probability", above=0.0, maximum=1.0)
    seed = check_int(seed, "seed", minimum=0)

    n = len(matches)
    src, dst = matches.query_xy(), matches.reference_xy()
    disparity = src[:, 0] - dst[:, 0] if kind == "disparity" else None
    if n < need:
        return GeometryFit(kind, None, np.zeros(n, bool), matches, threshold, False,
                           f"{n} matches; a {kind} fit needs at least {need}", disparity)
    if kind == "disparity":
        model_class = type("HorizontalDisparity", (HorizontalDisparity,), {"slack": threshold})
    else:
        model_class = _SKIMAGE_MODELS[kind]
    # stop_probability < 1: stop once a sample of inliers was drawn with this confidence (scikit-image
    # otherwise runs all max_trials; a homography refit took 0.5 s on the kernel's loop).
    model, inliers = ransac((src, dst), model_class, min_samples=need, residual_threshold=threshold,
                            max_trials=max_trials, stop_probability=stop_probability, rng=seed)
    if model is None or inliers is None or not model:
        return GeometryFit(kind, None, np.zeros(n, bool), matches, threshold, False,
                           f"RANSAC found no {kind} transform consistent with the {n} matches", disparity)
    inliers = np.asarray(inliers, bool)
    if kind == "disparity":
        shift = float(np.median(disparity[inliers]))
        model = sktransform.EuclideanTransform(translation=(-shift, model.offset))
    count, ratio = int(inliers.sum()), inliers.mean()
    warning = None
    if count < min_inliers or ratio < min_inlier_ratio:
        warning = (f"only {count} of {n} matches ({ratio:.0%}) agree with the {kind} fit; need at least "
                   f"{min_inliers} and {min_inlier_ratio:.0%}: the transform is not meaningful")
    return GeometryFit(kind, model, inliers, matches, threshold, warning is None, warning, disparity)

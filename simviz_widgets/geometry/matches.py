"""Correspondences between two images from an explanation's point-to-point part (docs/crossview.md).

Every query cell's embedding contribution e_i is compared with every reference cell's e_j by the
cosine of the two (the "correspondence" reading of Zhu, Yang, Chen, IEEE TIP 2021): a match is a
pair of cells that are each other's nearest neighbour (mutual), optionally distinctive (Lowe's ratio
test on the distance between unit vectors), with its reference position refined below one cell by a
soft-argmax over the 3x3 neighbourhood of the best cell. Points are image pixels in (row, col).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import InputError, InputTypeError, check_callable, check_choice, check_float, check_instance, check_int
from ..explain.base import READINGS, SIDES, PairExplanation, other_side

__all__ = ["Matches", "correspondences", "match_points", "best_match", "REFINEMENTS", "cell_centres"]

#: Sub-cell refinement of the reference position: a soft-argmax (softmax of the similarities over
#: the 3x3 neighbourhood, temperature ``temperature``), a parabola through the best cell and its
#: neighbours along each axis (as in block-matching stereo), or none (the cell centre).
REFINEMENTS = ("soft_argmax", "parabola", "none")


def cell_centres(grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(h*w, 2) pixel (row, col) of the cell centres of ``grid`` over an image of ``size``, in
    row-major cell order (half-pixel centres: cell i covers pixels [i*H/h - 0.5, (i+1)*H/h - 0.5])."""
    h, w = grid
    rows = (np.arange(h) + 0.5) * size[0] / h - 0.5
    cols = (np.arange(w) + 0.5) * size[1] / w - 0.5
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([r.ravel(), c.ravel()], axis=1)


@dataclass
class Matches:
    """Point matches between a query and a reference image, strongest first.

    ``query_points`` / ``reference_points``: (N, 2) float pixel (row, col) in the two display
    images; ``strength`` (N,): the similarity that made the match (cosine of the two contributions
    for the "correspondence" reading, in [-1, 1]; higher is stronger); ``distinctiveness`` (N,):
    distance to the best over distance to the best cell outside the 3 x 3 around it (lower = more
    distinctive; 0 when there is none; 1 for the contribution reading, which has no such test);
    ``query_cells`` / ``reference_cells`` (N,): row-major cell indices (-1 for matches not on a
    grid, e.g. ORB keypoints).
    """

    query_points: np.ndarray
    reference_points: np.ndarray
    strength: np.ndarray
    query_size: tuple[int, int]
    reference_size: tuple[int, int]
    query_cells: np.ndarray | None = None
    reference_cells: np.ndarray | None = None
    distinctiveness: np.ndarray | None = None
    query_grid: tuple[int, int] | None = None
    reference_grid: tuple[int, int] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.query_points = np.asarray(self.query_points, dtype=np.float64).reshape(-1, 2)
        self.reference_points = np.asarray(self.reference_points, dtype=np.float64).reshape(-1, 2)
        self.strength = np.asarray(self.strength, dtype=np.float64).reshape(-1)
        n = len(self.strength)
        if len(self.query_points) != n or len(self.reference_points) != n:
            raise InputError(
                f"matches need as many query points ({len(self.query_points)}) and reference points "
                f"({len(self.reference_points)}) as strengths ({n})"
            )
        missing = np.full(n, -1, dtype=np.int64)
        self.query_cells = missing.copy() if self.query_cells is None else np.asarray(self.query_cells, np.int64)
        self.reference_cells = (missing.copy() if self.reference_cells is None
                                else np.asarray(self.reference_cells, np.int64))
        self.distinctiveness = (np.ones(n) if self.distinctiveness is None
                                else np.asarray(self.distinctiveness, np.float64))
        self.query_size = tuple(int(v) for v in self.query_size)
        self.reference_size = tuple(int(v) for v in self.reference_size)

    def __len__(self) -> int:
        return len(self.strength)

    def __repr__(self) -> str:
        grid = f", grid {self.query_grid}" if self.query_grid else ""
        top = f", strongest {self.strength.max():.3f}" if len(self) else ""
        return f"Matches({len(self)} matches{grid}{top})"

    def subset(self, keep) -> "Matches":
        """The matches selected by a boolean mask or an index array (order kept as given)."""
        keep = np.asarray(keep)
        if keep.dtype == bool and keep.shape != (len(self),):
            raise InputError(f"keep is a boolean mask of shape {keep.shape}; expected ({len(self)},)")
        return Matches(
            self.query_points[keep], self.reference_points[keep], self.strength[keep],
            self.query_size, self.reference_size, self.query_cells[keep], self.reference_cells[keep],
            self.distinctiveness[keep], self.query_grid, self.reference_grid, dict(self.info),
        )

    def top(self, k: int) -> "Matches":
        """The ``k`` strongest matches."""
        k = check_int(k, "k", minimum=0)
        return self.subset(np.argsort(-self.strength, kind="stable")[:k])

    def errors(self, mapping) -> tuple[np.ndarray, np.ndarray]:
        """Distance (reference pixels) from each match's reference point to the true match of its
        query point under ``mapping`` (display query (rows, cols) -> display reference (rows, cols,
        valid)), and whether the truth is known there (``valid``)."""
        check_callable(mapping, "mapping")
        tr, tc, valid = mapping(self.query_points[:, 0], self.query_points[:, 1])
        err = np.hypot(np.asarray(tr, float) - self.reference_points[:, 0],
                       np.asarray(tc, float) - self.reference_points[:, 1])
        return err, np.asarray(valid, bool)

    def pck(self, mapping, fractions=(0.05, 0.1)) -> dict[float, float]:
        """Percentage of correct keypoints: for each fraction f, the share of matches with a known
        truth whose reference point lies within f * (the reference image's larger side) of it."""
        fractions = [check_float(f, "fractions", above=0.0) for f in np.atleast_1d(fractions)]
        err, valid = self.errors(mapping)
        side = max(self.reference_size)
        return {f: float(np.mean(err[valid] <= f * side)) if valid.any() else float("nan") for f in fractions}

    def to_figure(self, query_image, reference_image, *, fit=None, max_lines: int = 40, title: str = ""):
        """The two display images side by side with the ``max_lines`` strongest matches as lines
        coloured by strength; with a :class:`~simviz_widgets.geometry.GeometryFit` of these matches,
        its outliers drawn thin, dashed and grey."""
        from ..render.matches_figure import matches_figure

        inliers = None
        if fit is not None:
            same = fit.matches is self or (len(fit.matches) == len(self)
                                           and np.array_equal(fit.matches.query_points, self.query_points)
                                           and np.array_equal(fit.matches.reference_points, self.reference_points))
            if not same:
                raise InputError("fit was made from other matches; pass the fit of these matches")
            inliers = fit.inliers
        what = {"orb": "1 - normalised Hamming distance of the ORB descriptors",
                "contribution": "the exact share D(i, j) of the score"}.get(
            self.info.get("method") if self.info.get("method") == "orb" else self.info.get("reading"),
            "cosine of the two positions' contributions")
        return matches_figure(query_image, reference_image, self.query_points, self.reference_points,
                              self.strength, inliers=inliers, max_lines=max_lines, title=title,
                              strength_label=f"match strength ({what})")

    def query_xy(self) -> np.ndarray:
        """Query points as (x, y) = (col, row), the order scikit-image's transforms expect."""
        return self.query_points[:, ::-1].copy()

    def reference_xy(self) -> np.ndarray:
        """Reference points as (x, y) = (col, row)."""
        return self.reference_points[:, ::-1].copy()


def _resample_units(units: np.ndarray, grid: tuple[int, int], to_grid: tuple[int, int]) -> np.ndarray:
    """Unit vectors on ``grid`` bilinearly interpolated at the cell centres of ``to_grid`` over the
    same image (half-pixel centres, clamped at the outer centres), renormalised."""
    (h, w), (H, W) = grid, to_grid
    vectors = units.reshape(h, w, -1)

    def axis(n_to, n):
        u = np.clip((np.arange(n_to) + 0.5) * n / n_to - 0.5, 0, n - 1)
        lo = np.floor(u).astype(int)
        return lo, np.minimum(lo + 1, n - 1), u - lo

    r0, r1, fr = axis(H, h)
    c0, c1, fc = axis(W, w)
    fr, fc = fr[:, None, None], fc[None, :, None]
    out = ((1 - fr) * ((1 - fc) * vectors[r0][:, c0] + fc * vectors[r0][:, c1])
           + fr * ((1 - fc) * vectors[r1][:, c0] + fc * vectors[r1][:, c1])).reshape(H * W, -1)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _similarities(explanation: PairExplanation, reading: str, coarse: PairExplanation | None = None) -> np.ndarray:
    """(N_q, N_r) similarities of the cells of ``explanation``'s grids. With ``coarse`` (the same
    pair explained on a coarser grid), the mean of the fine and the coarse cosines, the coarse unit
    vectors interpolated to the fine cells: the cosine of a two-level hypercolumn."""
    p2p = explanation._require_p2p()
    if reading != "correspondence":
        return p2p.matrix()
    sim = p2p._unit("query") @ p2p._unit("reference").T
    if coarse is not None:
        c = coarse._require_p2p()
        uq = _resample_units(c._unit("query"), c.query_grid, p2p.query_grid)
        ur = _resample_units(c._unit("reference"), c.reference_grid, p2p.reference_grid)
        sim = 0.5 * (sim + uq @ ur.T)
    return sim


def _check_coarse(coarse, explanation: PairExplanation, reading: str) -> PairExplanation | None:
    if coarse is None:
        return None
    check_instance(coarse, "coarse", PairExplanation)
    coarse._require_p2p()
    if reading != "correspondence":
        raise InputError("coarse combines cosines of contributions; use it with reading='correspondence'")
    same = np.array_equal(coarse.query, explanation.query) and np.array_equal(coarse.reference, explanation.reference)
    if not same:
        raise InputError("coarse explains other images; expected the same pair as explanation (same display "
                         "images)")
    return coarse


def _refine(sim_row: np.ndarray, best: int, grid: tuple[int, int], how: str,
            temperature: float) -> tuple[float, float]:
    """Fractional cell (row, col) of the peak around cell ``best`` of ``sim_row`` (one cell's
    similarities over the other grid). Along an axis where ``best`` is an outer cell nothing moves:
    a window cut by the border could only pull inwards. ``temperature`` is relative to the row's
    largest magnitude, so the exact contribution reading (values of order 1e-3) refines as the
    cosines do."""
    h, w = grid
    r0, c0 = divmod(best, w)
    if how == "none":
        return float(r0), float(c0)
    sims = sim_row.reshape(h, w)
    inner_r, inner_c = 0 < r0 < h - 1, 0 < c0 < w - 1
    if how == "parabola":
        def offset(lo, mid, hi):
            curvature = lo - 2 * mid + hi
            return 0.0 if curvature >= 0 else float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5))

        dr = offset(sims[r0 - 1, c0], sims[r0, c0], sims[r0 + 1, c0]) if inner_r else 0.0
        dc = offset(sims[r0, c0 - 1], sims[r0, c0], sims[r0, c0 + 1]) if inner_c else 0.0
        return r0 + dr, c0 + dc
    rs = slice(r0 - 1, r0 + 2) if inner_r else slice(r0, r0 + 1)
    cs = slice(c0 - 1, c0 + 2) if inner_c else slice(c0, c0 + 1)
    window = sims[rs, cs]
    scale = max(float(np.abs(sim_row).max()), 1e-12)
    weights = np.exp((window - window.max()) / (temperature * scale))
    weights /= weights.sum()
    rr, cc = np.mgrid[rs, cs]
    return float((weights * rr).sum()), float((weights * cc).sum())


def _second_best(sim: np.ndarray, best: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Each row's best similarity outside the 3x3 cells around its best cell: on a grid, the cell
    next to the peak is nearly always second, and a ratio against it measures how sharp the peak
    is, not whether another place could be the match."""
    h, w = grid
    rows, cols = np.divmod(best, w)
    cell_r, cell_c = np.divmod(np.arange(h * w), w)
    near = (np.abs(cell_r[None] - rows[:, None]) <= 1) & (np.abs(cell_c[None] - cols[:, None]) <= 1)
    return np.where(near, -np.inf, sim).max(axis=1)


def correspondences(explanation: PairExplanation, *, reading: str = "correspondence", mutual: bool = True,
                    ratio: float | None = None, refine: str = "soft_argmax", temperature: float = 0.05,
                    min_strength: float | None = None, max_matches: int | None = None,
                    coarse: PairExplanation | None = None) -> Matches:
    """Matches between the two images of ``explanation`` (any method with a point-to-point part).

    For every query cell, its best reference cell by ``reading`` ("correspondence": cosine of the
    two positions' embedding contributions; "contribution": the exact share D(i, j) of the score).
    ``mutual=True`` keeps a pair only if the query cell is also the reference cell's best (mutual
    nearest neighbours); ``ratio`` (0 < ratio <= 1, "correspondence" reading only) keeps a match
    only when its distance between unit vectors is below ``ratio`` times the second best's (Lowe's
    ratio test against the best cell outside the 3 x 3 around the best); ``refine`` places a match
    below one cell (:data:`REFINEMENTS`): the query cell's content is found off the reference
    cell's centre, and, for a mutual pair, the reference cell's content off the query cell's; the
    match is the midpoint of those two corresponding pairs;
    ``min_strength`` drops weak matches; ``max_matches`` keeps the strongest. With
    ``refine="none"`` both ends are cell centres. ``coarse``: the same pair explained on a coarser
    grid (e.g. the model's own 7 x 7 beside a 14 x 14 any-layer explanation); the similarity is then
    the mean of the fine and the coarse cosines (a two-level hypercolumn): the coarse level removes
    far-off false peaks, the fine level places the match. Returns :class:`Matches`, strongest first.
    """
    check_instance(explanation, "explanation", PairExplanation)
    reading = check_choice(reading, "reading", READINGS)
    if not isinstance(mutual, bool):
        raise InputTypeError(f"mutual={mutual!r} must be True or False (got {type(mutual).__name__})")
    refine = check_choice(refine, "refine", REFINEMENTS)
    temperature = check_float(temperature, "temperature", above=0.0)
    if ratio is not None:
        ratio = check_float(ratio, "ratio", above=0.0, maximum=1.0)
        if reading != "correspondence":
            raise InputError("ratio is a test on distances between unit vectors; use it with "
                             "reading='correspondence'")
    if min_strength is not None:
        min_strength = check_float(min_strength, "min_strength")
    if max_matches is not None:
        max_matches = check_int(max_matches, "max_matches", minimum=0)

    p2p = explanation._require_p2p()
    coarse = _check_coarse(coarse, explanation, reading)
    sim = _similarities(explanation, reading, coarse)
    best = sim.argmax(axis=1)
    strength = sim[np.arange(len(best)), best]
    keep = np.ones(len(best), bool)
    if mutual:
        keep &= sim.argmax(axis=0)[best] == np.arange(len(best))
    distinct = np.ones(len(best))
    if reading == "correspondence":
        # Distances between unit vectors. No cell outside the best's neighbourhood (a tiny grid):
        # nothing else could be the match, 0.
        second = _second_best(sim, best, p2p.reference_grid)
        d1 = np.sqrt(np.maximum(2.0 - 2.0 * strength, 0.0))
        d2 = np.sqrt(np.maximum(2.0 - 2.0 * np.where(np.isfinite(second), second, 1.0), 0.0))
        distinct = np.where(d2 > 0, d1 / np.maximum(d2, 1e-12), np.where(np.isfinite(second), 1.0, 0.0))
        if ratio is not None:
            keep &= distinct < ratio
    if min_strength is not None:
        keep &= strength >= min_strength

    query_cells = np.flatnonzero(keep)
    order = query_cells[np.argsort(-strength[query_cells], kind="stable")]
    if max_matches is not None:
        order = order[:max_matches]
    hr, wr = p2p.reference_grid
    Hr, Wr = explanation.reference_size
    hq, wq = p2p.query_grid
    Hq, Wq = explanation.query_size
    ref_points = np.empty((len(order), 2))
    query_points = np.empty((len(order), 2))
    column_best = sim.argmax(axis=0)
    for k, i in enumerate(order):
        j = int(best[i])
        u, v = _refine(sim[i], j, p2p.reference_grid, refine, temperature)
        ru, rv = u - j // wr, v - j % wr  # where the query cell's content sits, off cell j's centre
        qu, qv = 0.0, 0.0
        if column_best[j] == i:
            # Cell j's content sits off cell i's centre by (qu, qv). Both pairs, (centre i, j + r)
            # and (i + q, centre j), correspond; so does their midpoint (exactly, for any affine
            # map): half of each offset. Adding both whole would double the shift. Along an axis
            # where one end is an outer cell (no refinement there) the other end's offset is whole.
            qu, qv = _refine(sim[:, j], int(i), p2p.query_grid, refine, temperature)
            qu, qv = qu - i // wq, qv - i % wq
            if 0 < i // wq < hq - 1 and 0 < j // wr < hr - 1:
                ru, qu = ru / 2, qu / 2
            if 0 < i % wq < wq - 1 and 0 < j % wr < wr - 1:
                rv, qv = rv / 2, qv / 2
        ref_points[k] = ((j // wr + ru + 0.5) * Hr / hr - 0.5, (j % wr + rv + 0.5) * Wr / wr - 0.5)
        query_points[k] = ((i // wq + qu + 0.5) * Hq / hq - 0.5, (i % wq + qv + 0.5) * Wq / wq - 0.5)
    info = {"method": explanation.method, "reading": reading, "mutual": mutual, "ratio": ratio,
            "refine": refine, "temperature": temperature, "candidates": int(len(best)),
            "coarse_grid": None if coarse is None else tuple(coarse.point_to_point.query_grid)}
    return Matches(query_points, ref_points, strength[order], explanation.query_size,
                   explanation.reference_size, order, best[order], distinct[order],
                   tuple(p2p.query_grid), tuple(p2p.reference_grid), info)


def match_points(explanation: PairExplanation, rows, cols, *, reading: str = "correspondence",
                 refine: str = "soft_argmax", temperature: float = 0.05,
                 coarse: PairExplanation | None = None) -> Matches:
    """The best match in the reference of each query pixel (``rows``, ``cols``: equal-length
    arrays): the argmax of the point's map (bilinearly interpolated in the query grid, as hover
    shows it), refined below one cell. One match per point, in the order given (no mutual or
    ratio test: this answers "where does this point go?" for every point). ``coarse`` as in
    :func:`correspondences`."""
    check_instance(explanation, "explanation", PairExplanation)
    reading = check_choice(reading, "reading", READINGS)
    refine = check_choice(refine, "refine", REFINEMENTS)
    temperature = check_float(temperature, "temperature", above=0.0)
    rows = np.atleast_1d(np.asarray(rows, dtype=float)).ravel()
    cols = np.atleast_1d(np.asarray(cols, dtype=float)).ravel()
    if rows.shape != cols.shape:
        raise InputError(f"rows ({rows.size}) and cols ({cols.size}) must have the same length")
    p2p = explanation._require_p2p()
    coarse = _check_coarse(coarse, explanation, reading)
    sim = _similarities(explanation, reading, coarse)
    hq, wq = p2p.query_grid
    hr, wr = p2p.reference_grid
    Hr, Wr = explanation.reference_size
    ref_points = np.empty((rows.size, 2))
    strength = np.empty(rows.size)
    best_cells = np.empty(rows.size, np.int64)
    for k, (r, c) in enumerate(zip(rows, cols)):
        # The point's map is the bilinear mix of its four cells' rows (the maps are linear in the
        # interpolated vector, so this is the map hover shows).
        u, v = explanation.pixel_to_cell("query", r, c)
        r0, c0 = int(np.floor(u)), int(np.floor(v))
        r1, c1 = min(r0 + 1, hq - 1), min(c0 + 1, wq - 1)
        fr, fc = u - r0, v - c0
        sims = ((1 - fr) * ((1 - fc) * sim[r0 * wq + c0] + fc * sim[r0 * wq + c1])
                + fr * ((1 - fc) * sim[r1 * wq + c0] + fc * sim[r1 * wq + c1]))
        best = int(sims.argmax())
        u, v = _refine(sims, best, p2p.reference_grid, refine, temperature)
        ref_points[k] = ((u + 0.5) * Hr / hr - 0.5, (v + 0.5) * Wr / wr - 0.5)
        strength[k], best_cells[k] = sims[best], best
    info = {"method": explanation.method, "reading": reading, "refine": refine, "temperature": temperature,
            "coarse_grid": None if coarse is None else tuple(coarse.point_to_point.query_grid)}
    return Matches(np.stack([rows, cols], axis=1), ref_points, strength, explanation.query_size,
                   explanation.reference_size, None, best_cells, None, tuple(p2p.query_grid),
                   tuple(p2p.reference_grid), info)


def best_match(explanation: PairExplanation, side: str, row: float, col: float, *,
               reading: str = "correspondence", refine: str = "soft_argmax",
               temperature: float = 0.05) -> tuple[float, float, float]:
    """Where display pixel (row, col) of ``side`` ('query' or 'reference') matches best in the
    other image: ``(row, col, strength)`` in the other image's display pixels — the argmax of the
    point's map (``explanation.point_map``, as hover shows it), refined below one cell as in
    :func:`match_points`. One point and no :class:`Matches` object: cheap enough for every hover
    (the cross-view explorer's hover line)."""
    check_instance(explanation, "explanation", PairExplanation)
    side = check_choice(side, "side", SIDES)
    reading = check_choice(reading, "reading", READINGS)
    refine = check_choice(refine, "refine", REFINEMENTS)
    temperature = check_float(temperature, "temperature", above=0.0)
    p2p = explanation._require_p2p()
    sims = explanation.point_map(side, row, col, reading=reading).astype(np.float64).ravel()
    grid = p2p.reference_grid if side == "query" else p2p.query_grid
    rows, cols = explanation.size(other_side(side))
    best = int(sims.argmax())
    u, v = _refine(sims, best, grid, refine, temperature)
    return (u + 0.5) * rows / grid[0] - 0.5, (v + 0.5) * cols / grid[1] - 0.5, float(sims[best])

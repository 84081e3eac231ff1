"""A static picture of point matches between two images, and of an alignment check.

``matches_figure``: the two images side by side with one line per match, coloured by strength on a
sequential colormap with a colour bar; inliers of a fitted transform solid, outliers thin, dashed
and grey. ``alignment_figure``: the reference, the query warped onto it, and their blend.
Arrays in, matplotlib Figure out (no pyplot state); (row, col) points.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patheffects import withStroke

from ..checks import InputError, check_array, check_float, check_int, check_str
from .figure import DisplayFigure

__all__ = ["matches_figure", "alignment_figure", "MATCH_CMAP"]

#: Sequential and bright at its strong end, so the strongest lines stand out over photos.
MATCH_CMAP = "viridis"
_HALO = [withStroke(linewidth=3.2, foreground="black", alpha=0.75)]


def matches_figure(query, reference, query_points, reference_points, strength, *, inliers=None,
                   max_lines: int = 40, title: str = "", cmap: str = MATCH_CMAP, width: float = 9.0,
                   strength_label: str = "match strength"):
    """Figure of the ``max_lines`` strongest matches between ``query`` and ``reference`` images
    ((H, W, 3) uint8); points (N, 2) in (row, col) pixels of each image; ``inliers`` (N,) bool or
    None. Lines: colour = strength; outliers thin dashed grey."""
    query = check_array(query, "query", ndim=3, kinds="u")
    reference = check_array(reference, "reference", ndim=3, kinds="u")
    qp = check_array(query_points, "query_points", kinds="iuf", empty=True).reshape(-1, 2)
    rp = check_array(reference_points, "reference_points", kinds="iuf", empty=True).reshape(-1, 2)
    strength = check_array(strength, "strength", kinds="iuf", empty=True).reshape(-1)
    if not (len(qp) == len(rp) == len(strength)):
        raise InputError(f"{len(qp)} query points, {len(rp)} reference points and {len(strength)} strengths; "
                         "expected as many of each")
    inliers = None if inliers is None else check_array(inliers, "inliers", kinds="b", empty=True).reshape(-1)
    if inliers is not None and len(inliers) != len(strength):
        raise InputError(f"inliers has {len(inliers)} flags; expected one per match ({len(strength)})")
    strength_label = check_str(strength_label, "strength_label")
    max_lines = check_int(max_lines, "max_lines", minimum=0)
    width = check_float(width, "width", above=0.0)
    title = check_str(title, "title", empty=True)

    gap = max(8, query.shape[1] // 20)
    h = max(query.shape[0], reference.shape[0])
    canvas = np.full((h, query.shape[1] + gap + reference.shape[1], 3), 255, np.uint8)
    canvas[: query.shape[0], : query.shape[1]] = query
    offset = query.shape[1] + gap
    canvas[: reference.shape[0], offset:] = reference

    fig = DisplayFigure(figsize=(width, width * h / canvas.shape[1] + 0.9), layout="constrained")
    ax = fig.add_subplot(1, 1, 1, label="matches")
    ax.imshow(canvas)
    ax.set_axis_off()
    order = np.argsort(-strength, kind="stable")[:max_lines]
    shown = strength[order]
    lo, hi = (float(shown.min()), float(shown.max())) if len(shown) else (0.0, 1.0)
    norm = Normalize(lo, hi if hi > lo else lo + 1e-6)
    colour = colormaps[cmap]
    # Outliers first, then inliers weakest to strongest: the strongest end on top.
    for k in sorted(order, key=lambda k: (inliers is None or bool(inliers[k]), strength[k])):
        (r0, c0), (r1, c1) = qp[k], rp[k]
        inlier = inliers is None or bool(inliers[k])
        style = dict(color=colour(norm(strength[k])), lw=1.8, path_effects=_HALO) if inlier else \
            dict(color="#bbbbbb", lw=1.0, ls=(0, (3, 2)), path_effects=_HALO)
        ax.plot([c0, c1 + offset], [r0, r1], **style)
        ax.plot([c0, c1 + offset], [r0, r1], "o", ms=3.5 if inlier else 2.5, mfc=style["color"], mec="black",
                mew=0.6)
    bar = fig.colorbar(ScalarMappable(norm, colour), ax=ax, orientation="horizontal", fraction=0.05, pad=0.02,
                       aspect=50)
    bar.set_label(strength_label + ("; grey dashed: outliers of the fit" if inliers is not None else ""))
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def alignment_figure(reference, warped, valid, *, blend: float = 0.5, title: str = "", width: float = 9.0):
    """Reference | query warped into the reference frame | their blend (``blend`` of the warped
    query where the warp is valid; the reference elsewhere)."""
    reference = check_array(reference, "reference", ndim=3, kinds="u")
    warped = check_array(warped, "warped", ndim=3, kinds="u", shape=reference.shape)
    valid = check_array(valid, "valid", ndim=2, kinds="b", shape=reference.shape[:2])
    blend = check_float(blend, "blend", minimum=0.0, maximum=1.0)
    title = check_str(title, "title", empty=True)
    mixed = reference.astype(np.float64)
    mixed[valid] = (1 - blend) * mixed[valid] + blend * warped[valid]
    fig = DisplayFigure(figsize=(width, width / 3 + 0.6), layout="constrained")
    for k, (image, label) in enumerate([(reference, "reference"), (warped, "query warped by the fit"),
                                        (np.rint(mixed).astype(np.uint8), f"blend {blend:.0%} warped")]):
        ax = fig.add_subplot(1, 3, k + 1, label=label)
        ax.imshow(image)
        ax.set_title(label, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    return fig

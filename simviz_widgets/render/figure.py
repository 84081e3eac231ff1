"""A static matplotlib picture of a :class:`PairExplanation` (what ``explanation.to_figure()`` shows).

Row 1: query photo, reference photo, query overall map and reference overall map overlaid on their
photos, each map with a colorbar on its raw value scale (signed maps: diverging, centred at 0).
Row 2 (methods with a point-to-point part): the query with a few numbered points, then for each
point its map over the reference (``from_query``) on one shared symmetric scale, with the cell it
peaks at crossed.

Built on :class:`matplotlib.figure.Figure` directly (no pyplot state), so it works under any
backend, in threads, and leaks no open figures. Axes carry labels (``ax.get_label()``):
``"query"``, ``"reference"``, ``"query_map"``, ``"reference_map"``, ``"points"``, ``"point_0"``...
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..checks import check_array, check_choice, check_colormap, check_float, check_int, check_pixel
from .colormap import default_cmap, normalize_map
from .overlay import overlay


class DisplayFigure(Figure):
    """A matplotlib Figure that shows itself as a PNG in Jupyter without pyplot or
    ``%matplotlib inline`` (a bare Figure otherwise displays as its text repr)."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()


__all__ = ["explanation_figure", "default_points", "cell_centre_pixels", "POINT_COLOURS"]

# Bright hues kept clear of both RdBu_r's blue/red and inferno's dark-to-yellow run, and drawn
# with a black edge, so markers stay visible over any overlay.
POINT_COLOURS = ("#00e5ff", "#76ff03", "#ff40ff", "#ffffff", "#ffab00", "#b388ff")
READINGS = ("contribution", "correspondence")
_DEFAULT_POINT_COUNT = 3


def cell_centre_pixels(cell_rows, cell_cols, grid, image_size):
    """Cell (row, col) of a (h, w) grid -> pixel (row, col) of its centre in an (H, W) image.

    Inverse of the half-pixel-centre rule ``u = (p + 0.5) * h / H - 0.5``.

    >>> cell_centre_pixels(0, 1, (2, 2), (8, 8))
    (1.5, 5.5)
    """
    (h, w), (height, width) = grid, image_size
    rows = (np.asarray(cell_rows, np.float64) + 0.5) * height / h - 0.5
    cols = (np.asarray(cell_cols, np.float64) + 0.5) * width / w - 0.5
    if rows.ndim == 0:
        return float(rows), float(cols)
    return rows, cols


def default_points(explanation, count: int = _DEFAULT_POINT_COUNT) -> np.ndarray:
    """``count`` query pixels (row, col) worth showing: centres of the query map's top cells.

    Cells are taken by decreasing value, skipping cells closer (Chebyshev, in cells) than a
    third of the grid's short side to one already taken, so the points spread over the object
    instead of piling up on one peak; if too few survive, the spacing rule is dropped.
    Returns a (count, 2) float array (fewer if the grid has fewer cells).
    """
    values = np.asarray(explanation.query_map, dtype=np.float64)
    h, w = values.shape
    count = min(check_int(count, "count", minimum=0), h * w)
    order = np.argsort(-values, axis=None, kind="stable")
    spacing = max(1, min(h, w) // 3)
    chosen: list[tuple[int, int]] = []
    for flat in order:
        r, c = divmod(int(flat), w)
        if all(max(abs(r - r2), abs(c - c2)) >= spacing for r2, c2 in chosen):
            chosen.append((r, c))
        if len(chosen) == count:
            break
    for flat in order:  # fill up without the spacing rule if needed
        if len(chosen) == count:
            break
        cell = divmod(int(flat), w)
        if cell not in chosen:
            chosen.append(cell)
    cells = np.array(chosen, dtype=np.float64).reshape(-1, 2)
    rows, cols = cell_centre_pixels(cells[:, 0], cells[:, 1], (h, w), explanation.query.shape[:2])
    return np.stack([rows, cols], axis=1)


def _resolve_points(explanation, points) -> np.ndarray:
    if points is None:
        return default_points(explanation)
    if isinstance(points, (int, np.integer)) and not isinstance(points, (bool, np.bool_)):
        count = check_int(points, "points", minimum=0)
        return default_points(explanation, count) if count else np.zeros((0, 2))
    arr = check_array(points, "points", ndim=(1, 2), kinds="iuf", empty=True,
                      expected="a count or (row, col) pixel pairs of the query").astype(np.float64)
    if arr.shape == (2,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 2:
        check_array(arr, "points", shape=(None, 2), expected="a count or (row, col) pixel pairs of the query")
    size = explanation.query.shape[:2]
    for k, (r, c) in enumerate(arr):
        check_pixel(r, c, size, f"points[{k}] (query)")
    return arr


def _limits(values: np.ndarray, signed: bool) -> tuple[float, float, str]:
    mode = "symmetric" if signed else "minmax"
    _, lo, hi = normalize_map(values, mode=mode)
    if hi <= lo:  # a flat map: widen so the colorbar still has a scale
        pad = max(abs(lo), 1.0) * 1e-6
        lo, hi = lo - pad, hi + pad
    return lo, hi, mode


def _colorbar(fig, ax, cmap: str, lo: float, hi: float, label: str):
    mappable = ScalarMappable(norm=Normalize(vmin=lo, vmax=hi), cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.03)
    bar.ax.set_label("colorbar")
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def _show(ax, image: np.ndarray, title: str, label: str):
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_label(label)
    ax.set_xticks([])
    ax.set_yticks([])


def explanation_figure(
    explanation,
    *,
    points: Any = None,
    cmap: str | None = None,
    alpha: float = 0.5,
    reading: str = "contribution",
    panel_size: float = 3.0,
) -> Figure:
    """Draw ``explanation`` as a matplotlib :class:`~matplotlib.figure.Figure`.

    ``points``: query pixels (row, col) for row 2 — a list of pairs, a count, or None for 3 points
    at the query map's top cells (:func:`default_points`); 0 leaves row 2 out. ``cmap``: one
    colormap for every map (default: :func:`default_cmap` of the map's signedness; point maps are
    always signed). ``alpha``: map opacity over the photos. ``reading``: "contribution" or
    "correspondence" (see ``PairExplanation.from_query``).
    """
    check_choice(reading, "reading", READINGS)
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=1.0)
    cmap = check_colormap(cmap, "cmap", optional=True)  # here, with its name, not deep in matplotlib
    panel_size = check_float(panel_size, "panel_size", above=0.0)
    exp = explanation
    p2p = getattr(exp, "point_to_point", None)
    pts = _resolve_points(exp, points) if p2p is not None else np.zeros((0, 2))
    n_points = len(pts)

    top_width = 4
    bottom_width = 1 + n_points if n_points else 0
    ncols = max(top_width, bottom_width)
    fig = DisplayFigure(
        figsize=(panel_size * ncols * 1.1, panel_size * (2 if n_points else 1) * 1.05),
        layout="constrained",
    )
    if n_points:
        top, bottom = fig.subfigures(2, 1)
    else:
        top, bottom = fig, None

    title = f"{exp.method}: {exp.metric} similarity {exp.score:.4f}"
    if exp.metric == "euclidean" and exp.score <= 0:  # similarity = -distance²: say the distance too
        title += f" (distance {(-exp.score) ** 0.5:.3f})"
    error = getattr(exp, "completeness_error", None)
    if error is not None:
        title += f"  (completeness error {error:.1e})"
    fig.suptitle(title, fontsize=11)

    # Row 1: photos and overall maps.
    axes = top.subplots(1, top_width)
    map_cmap = cmap or default_cmap(bool(exp.signed))
    _show(axes[0], exp.query, "query", "query")
    _show(axes[1], exp.reference, "reference", "reference")
    for ax, name, photo, values in (
        (axes[2], "query", exp.query, exp.query_map),
        (axes[3], "reference", exp.reference, exp.reference_map),
    ):
        lo, hi, mode = _limits(values, bool(exp.signed))
        blended = overlay(photo, values, alpha=alpha, cmap=map_cmap, mode=mode, vmin=lo, vmax=hi,
                          signed=bool(exp.signed))
        h, w = values.shape
        _show(ax, blended, f"{name} map ({h}x{w} cells)", f"{name}_map")
        _colorbar(top, ax, map_cmap, lo, hi, "map value" + (" (signed)" if exp.signed else ""))

    if not n_points:
        return fig

    # Row 2: point-specific maps, all on one symmetric scale so they compare.
    point_maps = [exp.from_query(r, c, reading=reading) for r, c in pts]
    limit = max(float(np.max(np.abs(m))) for m in point_maps)
    limit = limit if limit > 0 else 1e-6
    point_cmap = cmap or default_cmap(True)
    axes = bottom.subplots(1, bottom_width)
    _show(axes[0], exp.query, "query points", "points")
    for k, ((r, c), values) in enumerate(zip(pts, point_maps)):
        colour = POINT_COLOURS[k % len(POINT_COLOURS)]
        axes[0].plot(c, r, "o", ms=9, mfc=colour, mec="black", mew=1.2)
        axes[0].annotate(str(k + 1), (c, r), xytext=(6, 6), textcoords="offset points",
                         color=colour, fontsize=9, fontweight="bold")
        ax = axes[k + 1]
        blended = overlay(exp.reference, values, alpha=alpha, cmap=point_cmap, mode="symmetric",
                          vmin=-limit, vmax=limit, signed=True)
        _show(ax, blended, f"point {k + 1} ({r:.0f}, {c:.0f}) -> reference", f"point_{k}")
        peak_row, peak_col = np.unravel_index(int(np.argmax(values)), values.shape)
        pr, pc = cell_centre_pixels(peak_row, peak_col, values.shape, exp.reference.shape[:2])
        ax.plot(pc, pr, "X", ms=10, mfc=colour, mec="black", mew=1.2)
    label = "D(point, cell)" if reading == "contribution" else "cosine (correspondence)"
    _colorbar(bottom, list(axes[1:]), point_cmap, -limit, limit, label)
    return fig

"""Static pictures of retrieval (matplotlib, no pyplot state): a query with its region and the top
hits, each overlaid with the cells that answered the region; and a gallery's similarity matrix."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from ..checks import InputError, check_array, check_bool, check_choice, check_colormap
from ..render.colormap import default_cmap
from ..render.figure import DisplayFigure
from ..render.overlay import overlay
from ..render.shade import cells_to_pixels, dim_outside
from .labels import score_text
from .maps import region_reference_map
from .matrix import cluster_order

__all__ = ["results_figure", "matrix_figure"]


def _dim_outside(image: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The query with cells outside the region darkened as the explorer darkens them (render/shade.py)."""
    if weights is None:
        return image
    return dim_outside(image, cells_to_pixels(weights, image.shape[:2]))


def _move(change: int) -> str:
    return "" if change == 0 else (f" ▲{change}" if change > 0 else f" ▼{-change}")


def results_figure(results, *, overlays: bool = True, cmap: str | None = None, alpha: float = 0.85,
                   box=None, title: str | None = None, thumb: float = 1.9) -> DisplayFigure:
    """The query (region bright, the rest dimmed, ``box`` outlined) and the hits of ``results`` (a
    :class:`~simviz_widgets.retrieval.SearchResults`): rank, name, score, places moved against the
    whole-image query, and with ``overlays`` the hit's cells that answered the region
    (``region_reference_map``, one shared symmetric scale, diverging colours)."""
    overlays = check_bool(overlays, "overlays")
    cmap = check_colormap(cmap, optional=True) or default_cmap(True)
    thumb_n = len(results)
    q = results.query
    gallery = q.gallery
    fig = DisplayFigure(figsize=(thumb * (thumb_n + 1) + (0.6 if overlays else 0), thumb + 1.1))
    axes = fig.subplots(1, thumb_n + 1)
    axes[0].imshow(_dim_outside(q.prepared.display, results.region_weights))
    axes[0].set_title("query" + (" region" if results.region_weights is not None else ""), fontsize=9)
    if box is not None:
        top, left, bottom, right = box
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                    edgecolor="#ffd400", linewidth=2))
    maps = []
    if overlays:
        maps = [region_reference_map(gallery.explain(q, i), results.region_weights) for i in results.indices]
        top_abs = max(float(np.abs(np.concatenate([m.ravel() for m in maps])).max()), 1e-12)
    changes = results.rank_changes()
    region = results.region_weights is not None
    for (rank, index, score), ax, change in zip(results, axes[1:], changes):
        picture = gallery.prepared(index).display
        if overlays:
            # opacity grows with |value|: cells that add nothing stay the photo, not a wash of colour
            picture = overlay(picture, maps[rank], alpha=alpha, cmap=cmap, mode="symmetric",
                              vmin=-top_abs, vmax=top_abs, signed=True, alpha_from_value=True)
        ax.imshow(picture)
        name = gallery.names[index].replace(": ", "\n", 1)  # demo scenes: "scene 5: red square + ..."
        name = "\n".join(part if len(part) <= 19 else part[:18] + "…" for part in name.split("\n")[:2])
        score_line = score_text(score, gallery.model.metric, region=region)
        ax.set_title(f"#{rank + 1}{_move(int(change))}\n{name}\n{score_line}", fontsize=8)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    if overlays:
        bar = fig.colorbar(ScalarMappable(Normalize(-top_abs, top_abs), cmap=cmap), ax=list(axes), fraction=0.012,
                           pad=0.01)
        bar.set_label("share of the region's score" if results.region_weights is not None else "share of the score",
                      fontsize=7)
        bar.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def matrix_figure(gallery, *, order: str | np.ndarray = "cluster", thumbs: bool = True, size: float = 7.0,
                  cmap: str = "viridis") -> DisplayFigure:
    """The (N, N) similarity matrix with thumbnails along both axes, in ``order`` ('cluster',
    'gallery' or an index array). Euclidean: shown as distances (lower = more alike)."""
    matrix = gallery.similarity_matrix()
    n = matrix.shape[0]
    cmap = check_colormap(cmap)
    if isinstance(order, str):
        names = {"cluster": "clustered", "gallery": "gallery order"}
        name = names[check_choice(order, "order", tuple(names))]
        order = cluster_order(matrix) if order == "cluster" else np.arange(n)
    else:
        name = "custom"
        order = check_array(order, "order", ndim=1, kinds="iu")
        if sorted(order.tolist()) != list(range(n)):
            raise InputError(f"order must be a permutation of the {n} gallery indices 0..{n - 1}")
    shown = matrix[np.ix_(order, order)]
    euclid = gallery.model.metric == "euclidean"
    if euclid:
        shown = np.sqrt(-shown)
    fig = DisplayFigure(figsize=(size + 1.2, size))
    ax = fig.add_axes([0.12, 0.02, 0.76 * size / (size + 1.2), 0.86])
    image = ax.imshow(shown, cmap=cmap + ("_r" if euclid else ""), interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    label = {"cosine": "cosine similarity", "dot": "dot product", "euclidean": "distance (lower = alike)"}
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(label[gallery.model.metric], fontsize=8)
    if thumbs:
        step = 1.0
        for pos, index in enumerate(order):
            t = gallery.thumbnail(int(index), size=48)
            ax.imshow(t, extent=(-1.5, -0.5, pos + 0.5, pos - 0.5), zorder=3, clip_on=False)
            ax.imshow(t, extent=(pos - 0.5, pos + 0.5, -0.5, -1.5), zorder=3, clip_on=False)
        ax.set_xlim(-1.5 - 0.05 * step, n - 0.5)
        ax.set_ylim(n - 0.5, -1.5 - 0.05 * step)
    ax.set_title(f"which images does {gallery.model.name} find alike? (order: {name})", fontsize=9, pad=4)
    return fig

"""A region of the query (a box or a mask, in pixels) as weights over the model's grid of cells.

Cell ``r`` of an ``h``-row grid over ``H`` display pixels covers rows ``[r H / h, (r + 1) H / h)``;
a region's weight on a cell is the fraction of the cell's area inside the region, so a region
aligned with the cells gives 0/1 weights and the weights of the whole image are all 1
(docs/retrieval.md, "Regions").
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..checks import InputError, InputTypeError, check_choice, check_floats, check_mask
from ..images import PreparedImage

__all__ = ["region_weights", "check_box", "box_mask", "display_box"]

COORDS = ("display", "source")


def _overlap(lo: float, hi: float, n_pixels: int, n_cells: int) -> np.ndarray:
    """(n_cells,) fraction of each cell's extent inside [lo, hi) (cells of n_pixels / n_cells)."""
    edges = np.arange(n_cells + 1, dtype=np.float64) * (n_pixels / n_cells)
    inside = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return inside / (n_pixels / n_cells)


def _pixel_to_cell(n_pixels: int, n_cells: int) -> np.ndarray:
    """(n_cells, n_pixels): each pixel's share of each cell (rows sum to 1)."""
    return np.stack([_overlap(p, p + 1.0, n_pixels, n_cells) for p in range(n_pixels)], axis=1)


def check_box(box, size: tuple[int, int], *, name: str = "region") -> tuple[float, float, float, float]:
    """``box`` as (top, left, bottom, right) floats inside an image of ``size`` (rows, cols);
    bottom / right are exclusive edges, so (0, 0, H, W) is the whole image."""
    top, left, bottom, right = check_floats(box, f"{name} box (top, left, bottom, right)", length=4)
    rows, cols = size
    if not (0 <= top < bottom <= rows and 0 <= left < right <= cols):
        raise InputError(
            f"{name} box (top, left, bottom, right) = {tuple(box)} is not a non-empty box inside the "
            f"{rows}x{cols} image; expected 0 <= top < bottom <= {rows} and 0 <= left < right <= {cols}"
        )
    return top, left, bottom, right


def box_mask(box, size: tuple[int, int]) -> np.ndarray:
    """Bool (rows, cols) mask of the pixels whose centres lie inside ``box``."""
    top, left, bottom, right = check_box(box, size)
    rows = (np.arange(size[0]) + 0.5)[:, None]
    cols = (np.arange(size[1]) + 0.5)[None, :]
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def _source_mask_to_display(mask: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """A source-pixel mask seen through the preprocessing (resize by area, then the crop): the
    fraction of each display pixel inside the mask."""
    src_rows, src_cols = prepared.source_size
    rows, cols = prepared.size
    new_rows, new_cols = (int(round(src_rows * prepared.scale[0])), int(round(src_cols * prepared.scale[1])))
    resized = np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize(
        (new_cols, new_rows), resample=Image.Resampling.BOX), dtype=np.float64)
    top = int(round(prepared.offset[0] * prepared.scale[0]))
    left = int(round(prepared.offset[1] * prepared.scale[1]))
    return np.clip(resized[top:top + rows, left:left + cols], 0.0, 1.0)


def display_box(box, prepared: PreparedImage) -> tuple[float, float, float, float]:
    """A (top, left, bottom, right) box in source pixels (the image as given) in ``prepared``'s display
    pixels: edges scaled and shifted by the crop, the part outside the crop cut."""
    top, left, bottom, right = check_box(box, prepared.source_size)
    # Edges (not pixel centres) map by the scale and the crop offset; the part outside the crop is cut.
    (sr, sc), (orow, ocol) = prepared.scale, prepared.offset
    rows, cols = prepared.size
    t, b = np.clip([(top - orow) * sr, (bottom - orow) * sr], 0, rows)
    lft, rgt = np.clip([(left - ocol) * sc, (right - ocol) * sc], 0, cols)
    if not (b > t and rgt > lft):
        raise InputError(f"region box {tuple(box)} (source pixels) lies outside the part of the image the "
                         "model sees (the preprocessing's centre crop)")
    return float(t), float(lft), float(b), float(rgt)


def region_weights(region, prepared: PreparedImage, grid: tuple[int, int], *,
                   coords: str = "display") -> np.ndarray | None:
    """(h, w) float64 weights in [0, 1] of ``region`` over the cells, or None for the whole image.

    ``region``: None, a (top, left, bottom, right) box (bottom / right exclusive) or a bool mask.
    ``coords``: 'display' (default) — pixels of ``prepared.display``, what the model sees and a viewer
    shows — or 'source' — pixels of the image as given, before resize and crop.
    """
    coords = check_choice(coords, "coords", COORDS)
    if region is None:
        return None
    size = prepared.source_size if coords == "source" else prepared.size
    h, w = grid
    rows, cols = prepared.size
    if isinstance(region, np.ndarray) and region.ndim == 2:
        mask = check_mask(region, "region mask", shape=size, note=f" (the query's {coords} size, rows x cols)")
        fraction = _source_mask_to_display(mask, prepared) if coords == "source" else mask.astype(np.float64)
        weights = _pixel_to_cell(rows, h) @ fraction @ _pixel_to_cell(cols, w).T
    elif isinstance(region, (tuple, list)) or (isinstance(region, np.ndarray) and region.ndim == 1):
        top, left, bottom, right = (display_box(region, prepared) if coords == "source"
                                    else check_box(region, size))
        weights = np.outer(_overlap(top, bottom, rows, h), _overlap(left, right, cols, w))
    else:
        shape = f" of shape {region.shape}" if hasattr(region, "shape") else ""
        raise InputTypeError(f"region is a {type(region).__name__}{shape}; expected None, a (top, left, "
                             "bottom, right) box or a 2-D bool mask")
    weights = np.clip(weights, 0.0, 1.0)
    if not weights.any():
        raise InputError(f"region selects no pixel of the query's {rows}x{cols} display")
    return weights

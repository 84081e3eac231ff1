"""Shared pixel rules for pictures of a region and greyed photos: how much the outside of a
region is darkened (the same in the explorer's canvas and the static retrieval figure), cell
weights at pixel size, and the luminance of an RGB image (ITU-R BT.601 weights).

>>> import numpy as np
>>> cells_to_pixels(np.array([[0.0, 1.0]]), (1, 4)).tolist()
[[0.0, 0.0, 1.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

from ..checks import check_array, check_float

__all__ = ["OUTSIDE_DIM", "LUMA_WEIGHTS", "luminance", "cells_to_pixels", "outside_shade", "dim_outside"]

#: Darkness laid over a photo outside a region: 0.55 dims it yet keeps it recognisable (screenshots).
OUTSIDE_DIM = 0.55
#: Luminance weights of R, G, B (ITU-R BT.601, as PIL's "L" conversion).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def luminance(rgb) -> np.ndarray:
    """(..., 3) RGB -> (...) float64 luminance on the same scale (0-255 or 0-1)."""
    return np.asarray(rgb, dtype=np.float64) @ LUMA_WEIGHTS


def cells_to_pixels(weights, size: tuple[int, int]) -> np.ndarray:
    """(h, w) cell values at (rows, cols) pixels: each pixel takes the cell holding its centre (exact
    whether or not the grid divides the image)."""
    weights = check_array(weights, "weights", ndim=2, kinds="biuf")
    rows, cols = size
    h, w = weights.shape
    r = np.minimum(((np.arange(rows) + 0.5) * h / rows).astype(np.int64), h - 1)
    c = np.minimum(((np.arange(cols) + 0.5) * w / cols).astype(np.int64), w - 1)
    return np.asarray(weights, dtype=np.float64)[np.ix_(r, c)]


def _darkness(inside, dim) -> np.ndarray:
    inside = np.clip(np.asarray(inside, dtype=np.float64), 0.0, 1.0)
    return check_float(dim, "dim", minimum=0.0, maximum=1.0) * (1.0 - inside)


def outside_shade(inside, *, dim: float = OUTSIDE_DIM) -> np.ndarray:
    """An RGBA (rows, cols, 4) uint8 layer to draw over a photo: black at opacity ``dim`` where
    ``inside`` (bool, or 0-1 shares of the region) is 0, clear where it is 1."""
    darkness = _darkness(inside, dim)
    shade = np.zeros((*darkness.shape, 4), np.uint8)
    shade[..., 3] = np.rint(255 * darkness).astype(np.uint8)
    return shade


def dim_outside(image, inside, *, dim: float = OUTSIDE_DIM) -> np.ndarray:
    """``image`` (rows, cols, 3) uint8 with :func:`outside_shade` drawn over it: a new uint8 image."""
    image = check_array(image, "image", shape=(None, None, 3), dtype=np.uint8, expected="an (H, W, 3) RGB image")
    factor = 1.0 - _darkness(inside, dim)
    return np.rint(image * factor[..., None]).astype(np.uint8)

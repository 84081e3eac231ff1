"""Bilinear resampling of feature-resolution maps to image resolution (numpy only).

Convention: half-pixel centres (``align_corners=False``), edges clamped — the same as
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` and as the cell
geometry of :meth:`PairExplanation.pixel_to_cell`. Output pixel ``p`` of ``N`` reads the map at
cell coordinate ``u = (p + 0.5) * n / N - 0.5``, clamped to ``[0, n - 1]``.

>>> import numpy as np
>>> upsample_bilinear(np.array([[0.0, 3.0]], np.float32), (1, 6)).tolist()
[[0.0, 0.0, 1.0, 2.0, 3.0, 3.0]]
"""

from __future__ import annotations

import numpy as np

from ..checks import check_array, check_shape2

__all__ = ["upsample_bilinear", "source_positions"]


def source_positions(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n_out`` output pixels: (lower cell, upper cell, weight of the upper cell).

    Computed as ``((p + 0.5) * n_in) / n_out - 0.5`` so that an output pixel sitting on a cell
    centre gets weight exactly 0 (products of half-integers and integers are exact in float64).
    """
    pos = ((np.arange(n_out, dtype=np.float64) + 0.5) * n_in) / n_out - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    lower = np.floor(pos).astype(np.intp)
    upper = np.minimum(lower + 1, n_in - 1)
    return lower, upper, pos - lower


def upsample_bilinear(values, size) -> np.ndarray:
    """Resample a 2-D map to ``size = (rows, cols)``: float32 (rows, cols), input untouched.

    Separable: columns first, then rows, each a gather of two neighbours and one blend, so the
    cost is O(rows * cols). Works for shrinking too (plain bilinear, no anti-aliasing, like torch).
    """
    arr = check_array(values, "map", ndim=2, kinds="iuf", expected="a non-empty 2-D (h, w) array")
    rows, cols = check_shape2(size, "size")
    arr = arr.astype(np.float64, copy=False)
    h, w = arr.shape

    c0, c1, fc = source_positions(cols, w)
    along_cols = arr[:, c0] * (1.0 - fc) + arr[:, c1] * fc  # (h, cols)
    r0, r1, fr = source_positions(rows, h)
    fr = fr[:, None]
    out = along_cols[r0] * (1.0 - fr) + along_cols[r1] * fr  # (rows, cols)
    return out.astype(np.float32)

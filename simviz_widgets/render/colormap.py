"""Maps (float32, any range) -> colours, through matplotlib colormaps turned into 256-entry LUTs.

Normalisation for display happens here and only here, and is always named (``mode``): raw map
values are never rescaled anywhere else.

>>> import numpy as np
>>> colormap_lut("gray")[[0, 255], :3].tolist()
[[0, 0, 0], [255, 255, 255]]
>>> unit, lo, hi = normalize_map(np.array([[-2.0, 0.0, 1.0]], np.float32), mode="symmetric")
>>> unit.tolist(), lo, hi
([[0.0, 0.5, 0.75]], -2.0, 2.0)
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib
import numpy as np

from ..checks import InputError, check_array, check_bool, check_choice, check_colormap, check_float

__all__ = [
    "colormap_lut",
    "normalize_map",
    "map_to_rgba",
    "default_cmap",
    "NORMALIZE_MODES",
    "SIGNED_CMAP",
    "UNSIGNED_CMAP",
]

NORMALIZE_MODES = ("minmax", "symmetric", "none")

# Signed maps (decomposition contributions, point-to-point scores) carry meaning in their sign:
# a diverging map with white at 0 shows "adds to the score" vs "takes away" at a glance.
SIGNED_CMAP = "RdBu_r"
# Unsigned maps: inferno rather than jet. Its lightness rises monotonically, so brighter always
# means larger (also in grayscale print and for colour-blind readers); jet's lightness bands
# draw false edges (cyan/yellow) in smooth maps, which is exactly the wrong thing for saliency.
UNSIGNED_CMAP = "inferno"


def default_cmap(signed: bool) -> str:
    """Colormap name for a map: diverging ``"RdBu_r"`` if ``signed``, else sequential ``"inferno"``.

    >>> default_cmap(True), default_cmap(False)
    ('RdBu_r', 'inferno')
    """
    return SIGNED_CMAP if check_bool(signed, "signed") else UNSIGNED_CMAP


@lru_cache(maxsize=64)
def _lut(name: str) -> np.ndarray:
    cmap = matplotlib.colormaps[name]
    lut = np.round(cmap(np.linspace(0.0, 1.0, 256)) * 255.0).astype(np.uint8)
    lut.setflags(write=False)  # shared by every caller: must not be edited in place
    return lut


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 4) uint8 RGBA lookup table of matplotlib colormap ``name`` (built once, cached).

    The returned array is read-only because it is shared; copy it to modify.
    """
    return _lut(check_colormap(name, "cmap"))


def _as_map(values) -> np.ndarray:
    """A finite, non-empty (h, w) numeric map as float32 (a new array where it converts)."""
    arr = check_array(values, "map", ndim=2, kinds="iuf", finite=True, expected="a 2-D (h, w) array")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):  # finite as float64, beyond float32's range
        raise InputError("map has values beyond float32's range; expected finite numbers")
    return arr


def normalize_map(
    values,
    *,
    mode: str = "minmax",
    vmin: float | None = None,
    vmax: float | None = None,
) -> tuple[np.ndarray, float, float]:
    """Scale a map to [0, 1] for display; returns ``(unit, vmin, vmax)`` with the limits used.

    ``mode``:
      - ``"minmax"``: ``vmin`` -> 0, ``vmax`` -> 1 (defaults: the map's min and max). A constant
        map (vmin == vmax) gives all zeros.
      - ``"symmetric"``: for signed maps; limits ``-L .. L`` with ``L = max(|vmin|, |vmax|)``
        (default: the largest absolute value), so 0 -> 0.5 always.
      - ``"none"``: values are taken as already in [0, 1] (limits 0 and 1 unless given).
    Values outside the limits are clipped. The input is not modified.

    >>> import numpy as np
    >>> normalize_map(np.array([[1.0, 3.0]]), mode="minmax")[0].tolist()
    [[0.0, 1.0]]
    >>> normalize_map(np.array([[0.25, 2.0]]), mode="none")[0].tolist()
    [[0.25, 1.0]]
    """
    arr = _as_map(values)
    check_choice(mode, "mode", NORMALIZE_MODES)
    vmin = None if vmin is None else check_float(vmin, "vmin")
    vmax = None if vmax is None else check_float(vmax, "vmax")

    if mode == "symmetric":
        if vmin is None and vmax is None:
            limit = float(np.max(np.abs(arr)))
        else:
            limit = max(abs(float(v)) for v in (vmin, vmax) if v is not None)
        lo, hi = -limit, limit
    elif mode == "minmax":
        lo = float(arr.min()) if vmin is None else float(vmin)
        hi = float(arr.max()) if vmax is None else float(vmax)
    else:
        lo = 0.0 if vmin is None else float(vmin)
        hi = 1.0 if vmax is None else float(vmax)
    if hi < lo:
        raise InputError(f"vmax ({hi}) is smaller than vmin ({lo}); expected vmin <= vmax")

    span = hi - lo
    if span <= 0:
        # A flat map has no contrast to show; symmetric keeps 0 -> 0.5 (it is all zeros then).
        fill = 0.5 if mode == "symmetric" else 0.0
        return np.full(arr.shape, fill, np.float32), lo, hi
    unit = np.clip((arr.astype(np.float64) - lo) / span, 0.0, 1.0).astype(np.float32)
    return unit, lo, hi


def map_to_rgba(
    values,
    *,
    cmap: str | None = None,
    mode: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 1.0,
    alpha_from_value: bool = False,
    signed: bool | None = None,
) -> np.ndarray:
    """Colour a map: (h, w) -> (h, w, 4) uint8 RGBA at the map's own resolution.

    ``signed`` (default: the map has negative values) picks the defaults ``cmap`` =
    :func:`default_cmap` and ``mode`` = ``"symmetric"`` (signed) or ``"minmax"``.
    ``alpha`` scales the colormap's own alpha. ``alpha_from_value``: opacity follows the value —
    the normalised value itself for one-sided modes, the distance from 0.5 (twice it) for
    ``"symmetric"`` — so low or near-zero cells let the photo through.

    >>> import numpy as np
    >>> map_to_rgba(np.array([[0.0, 1.0]]), cmap="gray", alpha=0.5)[..., [0, 3]].tolist()
    [[[0, 128], [255, 128]]]
    """
    arr = _as_map(values)
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=1.0)
    alpha_from_value = check_bool(alpha_from_value, "alpha_from_value")
    signed = bool(arr.min() < 0) if signed is None else check_bool(signed, "signed")
    if mode is None:
        mode = "symmetric" if signed else "minmax"
    lut = colormap_lut(default_cmap(signed) if cmap is None else cmap)
    unit, _, _ = normalize_map(arr, mode=mode, vmin=vmin, vmax=vmax)
    rgba = lut[np.round(unit * 255.0).astype(np.intp)]  # fancy indexing: a new array
    opacity = np.full(arr.shape, float(alpha), np.float32)
    if alpha_from_value:
        strength = np.abs(unit - 0.5) * 2.0 if mode == "symmetric" else unit
        opacity = opacity * strength
    rgba[..., 3] = np.round(rgba[..., 3].astype(np.float32) * opacity).astype(np.uint8)
    return rgba

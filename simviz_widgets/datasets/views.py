"""Views of one photo with known geometry: pairs whose true correspondence is known exactly.

``views(image, kind, **params) -> View``. Every kind's geometry is one 3x3 projective matrix on
homogeneous ``(row, col, 1)`` pixel coordinates, pixel centres at integers (half-pixel centres:
pixel ``r`` covers ``[r - 0.5, r + 0.5]``). The same matrix drives the warp (its inverse is handed
to ``skimage.transform.warp``) and :meth:`View.map_points`, so the two cannot disagree.

Kinds and parameters (all keyword-only; the resolved values are kept in ``View.params``):

- ``"mirror"``: horizontal flip, ``col -> W - 1 - col``.
- ``"crop_scale"``: ``box=(top, left, height, width)`` in pixel *edges* (default: the central
  ``fraction=0.7`` of each side), resized to ``size=(rows, cols)`` (default: the original size).
- ``"rotation"``: ``angle`` degrees counter-clockwise on screen (default 20) around ``centre``
  (default the image centre ``((H - 1) / 2, (W - 1) / 2)``), same canvas, bilinear, black fill.
- ``"perspective"``: ``corner_offsets`` (4, 2) (row, col) moves of the corner pixel centres
  top-left, top-right, bottom-right, bottom-left (default: uniform in ``+-strength * size``
  with ``strength=0.1``, ``seed=0``); bilinear, black fill.
- ``"color"``: colour jitter, identity geometry: ``brightness``, ``contrast``, ``saturation``
  (factors, 1 = unchanged) and ``hue`` (shift as a fraction of the hue circle); defaults drawn
  with ``seed=0``.

>>> import numpy as np
>>> image = np.zeros((4, 6, 3), np.uint8)
>>> view = views(image, "mirror")
>>> rows, cols, valid = view.map_points([0, 3], [0, 2])
>>> cols.tolist(), valid.tolist()
([5.0, 3.0], [True, True])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import (
    InputError,
    check_array,
    check_choice,
    check_float,
    check_floats,
    check_int,
    check_keys,
    check_shape2,
)
from ..render.shade import luminance

__all__ = ["View", "views", "VIEW_KINDS"]

VIEW_KINDS = ("mirror", "crop_scale", "rotation", "perspective", "color")

_ACCEPTED = {
    "mirror": (),
    "crop_scale": ("box", "fraction", "size"),
    "rotation": ("angle", "centre"),
    "perspective": ("corner_offsets", "strength", "seed"),
    "color": ("brightness", "contrast", "saturation", "hue", "seed"),
}


def _apply(matrix: np.ndarray, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    rows, cols = np.broadcast_arrays(rows, cols)
    w = matrix[2, 0] * rows + matrix[2, 1] * cols + matrix[2, 2]
    ahead = w > 1e-12  # a homography can send points behind the camera (w <= 0): no image there
    safe_w = np.where(ahead, w, 1.0)
    out_rows = (matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2]) / safe_w
    out_cols = (matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2]) / safe_w
    return out_rows, out_cols, ahead


def _inside(rows: np.ndarray, cols: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return (
        np.isfinite(rows) & np.isfinite(cols)
        & (rows >= -0.5) & (rows <= size[0] - 0.5)
        & (cols >= -0.5) & (cols <= size[1] - 0.5)
    )


@dataclass(frozen=True, eq=False)
class View:
    """A view of an original image with its exact geometry.

    ``image``: the view, (rows, cols, 3) uint8 RGB. ``matrix``: 3x3, original homogeneous
    ``(row, col, 1)`` -> view ``(row, col, 1)``. ``source_size``: (rows, cols) of the original.
    """

    image: np.ndarray
    kind: str
    params: dict[str, Any]
    matrix: np.ndarray = field(repr=False)
    source_size: tuple[int, int] = (0, 0)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def map_points(self, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Original-image pixel (row, col) -> view (row', col', valid); arrays broadcast.

        ``valid`` is False where the point is outside the original or lands outside the view
        (e.g. rotated off the canvas or outside the crop box); coordinates are still returned.
        """
        out_rows, out_cols, ahead = _apply(self.matrix, rows, cols)
        src_rows, src_cols = np.broadcast_arrays(np.asarray(rows, float), np.asarray(cols, float))
        valid = ahead & _inside(src_rows, src_cols, self.source_size) & _inside(out_rows, out_cols, self.size)
        return out_rows, out_cols, valid

    def inverse(self, rows, cols) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """View pixel (row', col') -> original (row, col, valid); the inverse of :meth:`map_points`."""
        out_rows, out_cols, ahead = _apply(np.linalg.inv(self.matrix), rows, cols)
        view_rows, view_cols = np.broadcast_arrays(np.asarray(rows, float), np.asarray(cols, float))
        valid = ahead & _inside(view_rows, view_cols, self.size) & _inside(out_rows, out_cols, self.source_size)
        return out_rows, out_cols, valid


def _warp(image: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], mode: str) -> np.ndarray:
    """Resample ``image`` so that view pixel p shows original position ``inv(matrix) p``."""
    from skimage.transform import warp

    inverse = np.linalg.inv(matrix)

    def inverse_map(xy: np.ndarray) -> np.ndarray:  # skimage passes (col, row) pairs
        rows, cols, _ = _apply(inverse, xy[:, 1], xy[:, 0])
        return np.stack([cols, rows], axis=1)

    out = warp(image.astype(np.float64), inverse_map, output_shape=out_size, order=1, mode=mode,
               cval=0.0, preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _mirror(image, size):
    h, w = size
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, w - 1.0], [0.0, 0.0, 1.0]])
    return image[:, ::-1].copy(), matrix, {}


def _crop_scale(image, size, box=None, fraction=0.7, size_out=None):
    h, w = size
    if box is None:
        fraction = check_float(fraction, "fraction", above=0.0, maximum=1.0)
        box = ((h - fraction * h) / 2.0, (w - fraction * w) / 2.0, fraction * h, fraction * w)
    top, left, height, width = check_floats(box, "box", length=4)
    if height <= 0 or width <= 0 or top < 0 or left < 0 or top + height > h + 1e-9 or left + width > w + 1e-9:
        raise InputError(
            f"box (top={top}, left={left}, height={height}, width={width}) must have positive size "
            f"and lie inside the {h}x{w} image"
        )
    rows, cols = (h, w) if size_out is None else check_shape2(size_out, "size")
    sr, sc = rows / height, cols / width
    # Pixel edge e maps to (e - top) * sr; a centre r (edge r + 0.5) to (r + 0.5 - top) * sr - 0.5.
    matrix = np.array([
        [sr, 0.0, (0.5 - top) * sr - 0.5],
        [0.0, sc, (0.5 - left) * sc - 0.5],
        [0.0, 0.0, 1.0],
    ])
    source = image
    sigma = (max(0.0, (1.0 / sr - 1.0) / 2.0), max(0.0, (1.0 / sc - 1.0) / 2.0))
    if max(sigma) > 0:
        # Shrinking: blur first (symmetric, so it moves no centroid) to avoid aliasing.
        from skimage.filters import gaussian

        source = gaussian(image.astype(np.float64), sigma=(*sigma, 0.0), preserve_range=True)
    out = _warp(source, matrix, (rows, cols), mode="edge")
    return out, matrix, {"box": (top, left, height, width), "size": (rows, cols)}


def _rotation(image, size, angle=20.0, centre=None):
    h, w = size
    angle = check_float(angle, "angle")
    cr, cc = ((h - 1) / 2.0, (w - 1) / 2.0) if centre is None else check_floats(centre, "centre", length=2)
    t = np.deg2rad(angle)
    cos, sin = np.cos(t), np.sin(t)
    # Counter-clockwise on screen with rows pointing down: a point right of the centre moves up.
    rot = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -cr], [0.0, 1.0, -cc], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cr], [0.0, 1.0, cc], [0.0, 0.0, 1.0]])
    matrix = back @ rot @ to_centre
    out = _warp(image, matrix, (h, w), mode="constant")
    return out, matrix, {"angle": angle, "centre": (cr, cc)}


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H src for four (row, col) pairs (last entry fixed to 1)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for k, ((r, c), (r2, c2)) in enumerate(zip(src, dst)):
        a[2 * k] = [r, c, 1, 0, 0, 0, -r * r2, -c * r2]
        a[2 * k + 1] = [0, 0, 0, r, c, 1, -r * c2, -c * c2]
        b[2 * k], b[2 * k + 1] = r2, c2
    solution = np.linalg.solve(a, b)
    return np.append(solution, 1.0).reshape(3, 3)


def _perspective(image, size, corner_offsets=None, strength=0.1, seed=0):
    h, w = size
    corners = np.array([[0.0, 0.0], [0.0, w - 1.0], [h - 1.0, w - 1.0], [h - 1.0, 0.0]])
    if corner_offsets is None:
        strength = check_float(strength, "strength", minimum=0.0)
        if strength >= 0.5:
            raise InputError(f"strength={strength} must be a fraction in [0, 0.5)")
        rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
        offsets = rng.uniform(-1.0, 1.0, size=(4, 2)) * strength * np.array([h, w], dtype=float)
    else:
        offsets = check_array(corner_offsets, "corner_offsets", shape=(4, 2), kinds="iuf", finite=True,
                              expected="finite (4, 2) (row, col) moves of the corners top-left, top-right, "
                                       "bottom-right, bottom-left").astype(np.float64)
    try:
        matrix = _homography(corners, corners + offsets)
        np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        raise InputError(
            f"corner_offsets {offsets.tolist()} put three corners on a line; no homography fits"
        ) from None
    out = _warp(image, matrix, (h, w), mode="constant")
    params = {"corner_offsets": offsets.tolist()}
    if corner_offsets is None:
        params.update(strength=strength, seed=seed)
    return out, matrix, params


def _color(image, size, brightness=None, contrast=None, saturation=None, hue=None, seed=0):
    from skimage.color import hsv2rgb, rgb2hsv

    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    drawn = {
        "brightness": rng.uniform(0.75, 1.25),
        "contrast": rng.uniform(0.75, 1.25),
        "saturation": rng.uniform(0.6, 1.4),
        "hue": rng.uniform(-0.05, 0.05),
    }
    given = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
    factors = {k: float(drawn[k]) if v is None else check_float(v, k, minimum=None if k == "hue" else 0.0)
               for k, v in given.items()}  # factors >= 0 (1 = unchanged); hue: a shift in hue-circle turns

    rgb = image.astype(np.float64) / 255.0
    rgb = rgb * factors["brightness"]
    gray = luminance(rgb)
    rgb = gray.mean() + (rgb - gray.mean()) * factors["contrast"]
    gray = luminance(rgb)
    rgb = np.clip(gray[..., None] + (rgb - gray[..., None]) * factors["saturation"], 0.0, 1.0)
    if factors["hue"] != 0.0:
        hsv = rgb2hsv(rgb)
        hsv[..., 0] = (hsv[..., 0] + factors["hue"]) % 1.0
        rgb = hsv2rgb(hsv)
    out = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    params = dict(factors)
    if any(v is None for v in given.values()):
        params["seed"] = seed
    return out, np.eye(3), params


_BUILDERS = {
    "mirror": _mirror,
    "crop_scale": _crop_scale,
    "rotation": _rotation,
    "perspective": _perspective,
    "color": _color,
}


def views(image, kind: str, **params) -> View:
    """A view of ``image`` ((H, W, 3) uint8 RGB or (H, W) grayscale; not modified) of ``kind``.

    See the module docstring for each kind's parameters. Unknown kinds or parameters raise
    an InputError (a ``ValueError``) naming what is accepted.
    """
    check_choice(kind, "view kind", VIEW_KINDS)
    params = check_keys(params, f"view kind {kind!r}: parameters", _ACCEPTED[kind])
    arr = check_array(image, "image", ndim=(2, 3), dtype=np.uint8, expected="(H, W, 3) RGB or (H, W) grayscale")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InputError(f"image has shape {arr.shape}; expected (H, W, 3) RGB or (H, W) grayscale, at least 2x2")
    size = (arr.shape[0], arr.shape[1])
    if kind == "crop_scale" and "size" in params:
        params["size_out"] = params.pop("size")  # params is check_keys' own copy
    out, matrix, resolved = _BUILDERS[kind](arr, size, **params)
    return View(image=out, kind=kind, params=resolved, matrix=matrix, source_size=size)

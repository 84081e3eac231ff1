"""Image pairs whose true geometry is known, for cross-view benchmarks and tests (docs/crossview.md).

- :func:`view_pairs`: bundled photos and views of them (rotation, crop + scale, perspective) with
  parameters drawn from a seeded generator.
- :func:`stereo_pair`: the Middlebury "Motorcycle" pair bundled with scikit-image, with its dense
  ground-truth disparity.
- :func:`brain_slices`: the brain MRI slices shipped with the Insight Toolkit's examples (Debian
  package ``insighttoolkit5-examples``), moved by the shift, rotation and scale their file names give.

Every pair carries ``mapping(rows, cols) -> (rows, cols, valid)`` from query source pixels to
reference source pixels, (row, col), as :func:`simviz_widgets.evaluate.display_mapping` expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..checks import InputError, check_choice, check_float, check_floats, check_int, check_sequence
from .photos import load_photo, stereo_motorcycle
from .views import views

__all__ = ["KnownPair", "view_pairs", "stereo_pair", "brain_slices", "BRAIN_DATA", "BRAIN_MOVES"]

#: Where Debian's insighttoolkit5-examples puts the example images.
BRAIN_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")

#: Moving image -> (rotation in degrees counter-clockwise on screen, scale, shift (row, col) in
#: pixels) of the content relative to BrainProtonDensitySliceBorder20.png, about the image centre.
#: The file names give the magnitudes; the directions (and that the scaled one was made with the
#: inverse transform) were checked against the pixels: tests/test_known_pairs.py warps the fixed
#: slice with each and requires a near-perfect correlation.
BRAIN_MOVES = {
    "Shifted13x17y": (0.0, 1.0, (17.0, 13.0)),
    "Rotated10": (-10.0, 1.0, (0.0, 0.0)),
    # The pixels say a row shift of 16, not 17, about the centre (correlation 0.9993 against 0.981).
    "R10X13Y17": (-10.0, 1.0, (16.0, 13.0)),
    "R10X13Y17S12": "inverse",
}


VIEW_PAIR_KINDS = ("rotation", "crop_scale", "perspective")


@dataclass
class KnownPair:
    """A query and a reference image with the true mapping between them (source pixels, (row, col)).

    ``rotation_deg`` (counter-clockwise on screen) and ``scale`` of the reference relative to the
    query where the geometry is a similarity (NaN otherwise); ``kind`` names the family."""

    name: str
    kind: str
    query: np.ndarray
    reference: np.ndarray
    mapping: Callable
    rotation_deg: float = float("nan")
    scale: float = float("nan")
    params: dict = field(default_factory=dict)


def _similarity_matrix(angle_deg: float, scale: float, shift_rc, centre_rc) -> np.ndarray:
    """3x3 matrix on homogeneous (row, col, 1): rotate ``angle_deg`` counter-clockwise on screen and
    scale about ``centre_rc``, then shift by ``shift_rc``."""
    a = math.radians(angle_deg)
    # Counter-clockwise on screen with rows pointing down: row' = -col sin + row cos, col' = col cos + row sin.
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.asarray(centre_rc, float)
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = centre - rot @ centre + np.asarray(shift_rc, float)
    return m


def _matrix_mapping(matrix: np.ndarray, size: tuple[int, int]) -> Callable:
    def mapping(rows, cols):
        rows, cols = np.asarray(rows, float), np.asarray(cols, float)
        out = matrix @ np.stack([rows.ravel(), cols.ravel(), np.ones(rows.size)])
        r, c = out[0].reshape(rows.shape), out[1].reshape(cols.shape)
        valid = (r >= -0.5) & (r <= size[0] - 0.5) & (c >= -0.5) & (c <= size[1] - 0.5)
        return r, c, valid

    return mapping


def view_pairs(photos=("chelsea", "coffee", "astronaut", "rocket", "horse", "china", "motorcycle_left"), *,
               kinds=("rotation", "crop_scale", "perspective"), seed: int = 0,
               angle=(10.0, 45.0), fraction=(0.6, 0.9), strength: float = 0.1) -> list[KnownPair]:
    """One pair per photo and kind: the photo and a view of it, with a rotation angle uniform in
    ``angle`` degrees (sign random), a crop of ``fraction`` of each side resized back (scale
    1 / fraction), or a perspective warp of corner moves up to ``strength`` of the size."""
    photos = check_sequence(photos, "photos")
    kinds = check_sequence(kinds, "kinds", lambda k, label: check_choice(k, label, VIEW_PAIR_KINDS))
    seed = check_int(seed, "seed", minimum=0)
    angle = check_floats(angle, "angle", length=2, minimum=0.0, maximum=180.0)
    fraction = check_floats(fraction, "fraction", length=2, above=0.0, maximum=1.0)
    strength = check_float(strength, "strength", above=0.0, maximum=0.4)
    for name, (lo, hi) in (("angle", angle), ("fraction", fraction)):
        if lo > hi:
            raise InputError(f"{name} is ({lo}, {hi}); expected (low, high) with low <= high")
    rng = np.random.default_rng(seed)
    pairs = []
    for kind in kinds:
        for name in photos:
            image = load_photo(name)
            params: dict = {}
            rotation, scale = float("nan"), float("nan")
            if kind == "rotation":
                a = float(rng.uniform(*angle)) * float(rng.choice([-1.0, 1.0]))
                params, rotation, scale = {"angle": a}, a, 1.0
            elif kind == "crop_scale":
                f = float(rng.uniform(*fraction))
                params, rotation, scale = {"fraction": f}, 0.0, 1.0 / f
            else:
                params = {"strength": strength, "seed": int(rng.integers(1 << 16))}
            view = views(image, kind, **params)
            pairs.append(KnownPair(f"{name}/{kind}", kind, image, view.image, view.map_points, rotation, scale,
                                   dict(view.params)))
    return pairs


def stereo_pair() -> KnownPair:
    """The "Motorcycle" stereo pair: left -> right pixel ``(r, c) -> (r, c - disparity[r, c])``
    (nearest ground-truth pixel; invalid where the disparity is unknown)."""
    left, right, disparity = stereo_motorcycle()
    h, w = disparity.shape

    def mapping(rows, cols):
        rows, cols = np.asarray(rows, float), np.asarray(cols, float)
        ri = np.clip(np.rint(rows), 0, h - 1).astype(int)
        ci = np.clip(np.rint(cols), 0, w - 1).astype(int)
        d = disparity[ri, ci]
        valid = np.isfinite(d) & (rows >= -0.5) & (rows <= h - 0.5) & (cols >= -0.5) & (cols <= w - 0.5)
        out_c = cols - np.where(np.isfinite(d), d, 0.0)
        return rows.copy(), out_c, valid & (out_c >= -0.5)

    return KnownPair("motorcycle/stereo", "stereo", left, right, mapping, 0.0, 1.0, {"disparity": disparity})


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        gray = np.asarray(im.convert("L"))
    return np.repeat(gray[..., None], 3, axis=2)


def brain_slices(folder=None) -> list[KnownPair]:
    """The Insight Toolkit's proton-density brain slice (with a 20 px border) against its shifted,
    rotated, rotated + shifted and rotated + shifted + scaled copies. Needs Debian's
    ``insighttoolkit5-examples`` (``apt-get install insighttoolkit5-examples``; the test set-up
    installs it); ``folder`` overrides where the PNGs are looked for."""
    folder = BRAIN_DATA if folder is None else Path(folder)
    fixed_path = folder / "BrainProtonDensitySliceBorder20.png"
    if not fixed_path.exists():
        raise InputError(f"brain slices not found in {folder}: install Debian's insighttoolkit5-examples "
                         "(apt-get install insighttoolkit5-examples)")
    fixed = _read_gray(fixed_path)
    size = fixed.shape[:2]
    centre = ((size[0] - 1) / 2, (size[1] - 1) / 2)
    pairs = []
    for name, move in BRAIN_MOVES.items():
        moving = _read_gray(folder / f"BrainProtonDensitySlice{name}.png")
        if move == "inverse":
            # Made with the inverse of "rotate 10 deg, scale 1.2, shift (17, 13)": see BRAIN_MOVES.
            matrix = np.linalg.inv(_similarity_matrix(-10.0, 1.2, (17.0, 13.0), centre))
        else:
            matrix = _similarity_matrix(move[0], move[1], move[2], centre)
        linear = matrix[:2, :2]
        rotation = math.degrees(math.atan2(linear[1, 0], linear[0, 0]))
        scale = math.sqrt(abs(np.linalg.det(linear)))
        pairs.append(KnownPair(f"brain/{name}", "brain", fixed, moving, _matrix_mapping(matrix, size),
                               rotation, scale, {"file": f"BrainProtonDensitySlice{name}.png"}))
    return pairs

"""Real-photo pairs with a known explanation: one object pasted into two different backgrounds.

``shared_object_pairs(n, seed=, size=)`` crops an object from a bundled photo (the cat's face from
``chelsea``, the cup from ``coffee``, ...), pastes it at a random position and size into a crop of
one bundled background photo (brick, grass, gravel, ...), and again, elsewhere and at another size,
into a *different* background. The only thing the two images share is the object, so the region
that should explain their similarity is known: ``query_mask`` / ``reference_mask`` (bool, True on
the pasted rectangle). The pixel correspondence between the two pastes is known too
(:meth:`SharedObjectPair.mapping`).

Geometry: both images are ``size x size`` (default 224, the default model's input). Masks and the
mapping are in these images' pixels. A model whose preprocessing resizes and centre-crops (the
default model: short side 256, crop 224) sees a slightly zoomed centre: carry masks to the model's
display pixels with :func:`simviz_widgets.evaluate.mask_to_display` (``compare()`` does this). Objects
keep ``margin`` pixels (default ``ceil(size / 16)``, 14 at 224) from the border, so that crop never
cuts them.

Every paste keeps the object's aspect ratio; its longer side is ``scale`` (uniform in
``(0.3, 0.5)``) times the free width ``size - 2 * margin``. Resampling is PIL bicubic (with
antialiasing when shrinking). Everything is drawn from ``numpy.random.default_rng(seed)``.

>>> pairs = shared_object_pairs(n=2, size=64)
>>> pair = pairs[0]
>>> pair.query.shape, pair.query_mask.dtype, pair.query_background != pair.reference_background
((64, 64, 3), dtype('bool'), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..checks import InputError, check_choice, check_floats, check_int, check_sequence
from .photos import list_photos, load_photo

__all__ = ["SharedObjectPair", "shared_object_pairs", "SHARED_OBJECTS", "COMPOSITE_BACKGROUNDS", "paste_object",
           "background_crop"]

# name -> (photo, (top, left, height, width)) in source pixels, chosen by looking at the photos.
SHARED_OBJECTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "cat_face": ("chelsea", (10, 60, 280, 330)),
    "coffee_cup": ("coffee", (15, 75, 375, 410)),
    "astronaut_face": ("astronaut", (15, 145, 165, 165)),
    "rocket": ("rocket", (115, 265, 300, 110)),
    "motorcycle": ("motorcycle_left", (85, 85, 375, 610)),
    "dahlia": ("flower", (80, 165, 285, 285)),
    "hopper_face": ("grace_hopper", (20, 145, 330, 235)),
    "horse": ("horse", (5, 10, 300, 385)),
}

# Textures and scenes that share no object with the photos above.
COMPOSITE_BACKGROUNDS: tuple[str, ...] = (
    "brick", "grass", "gravel", "moon", "page", "text", "hubble_deep_field", "china", "immunohistochemistry",
)


@dataclass(frozen=True, eq=False)
class SharedObjectPair:
    """Two composites sharing one object. Boxes are ``(top, left, height, width)`` in pixels.
    ``params`` records the seed, size, margin, scale range and each background's crop box
    ``(top, left, side)`` in its photo's pixels (see :func:`background_crop`)."""

    query: np.ndarray
    reference: np.ndarray
    query_mask: np.ndarray
    reference_mask: np.ndarray
    object_name: str
    query_background: str
    reference_background: str
    query_box: tuple[int, int, int, int]
    reference_box: tuple[int, int, int, int]
    object_photo: str = ""
    object_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    index: int = 0
    params: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{self.index}:{self.object_name}@{self.query_background}/{self.reference_background}"

    def mapping(self, rows, cols):
        """Query pixel (row, col) -> reference pixel (row, col, valid): the same point of the object.

        Valid inside the query's pasted rectangle (pixel centres within its edges). Half-pixel
        centres: query row r sits at fraction ``(r + 0.5 - top) / height`` of the object.
        """
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        rows, cols = np.broadcast_arrays(rows, cols)
        qt, ql, qh, qw = self.query_box
        rt, rl, rh, rw = self.reference_box
        fr = (rows + 0.5 - qt) / qh
        fc = (cols + 0.5 - ql) / qw
        valid = (fr >= 0) & (fr <= 1) & (fc >= 0) & (fc <= 1)
        return rt + fr * rh - 0.5, rl + fc * rw - 0.5, valid


def paste_object(object_name: str, height: int, width: int) -> np.ndarray:
    """The object's crop resized to (height, width): (height, width, 3) uint8 (PIL bicubic)."""
    photo, (top, left, h, w) = SHARED_OBJECTS[check_choice(object_name, "object_name", tuple(SHARED_OBJECTS))]
    height, width = check_int(height, "height", minimum=1), check_int(width, "width", minimum=1)
    img = Image.fromarray(load_photo(photo))
    patch = img.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + w, top + h))
    return np.asarray(patch, dtype=np.uint8)


def background_crop(name: str, box, size: int) -> np.ndarray:
    """The background photo ``name`` cropped to ``box = (top, left, side)`` (source pixels, float)
    and resized to ``size x size`` (PIL bicubic)."""
    top, left, side = check_floats(box, "box", length=3, minimum=0.0)
    size = check_int(size, "size", minimum=1)
    img = Image.fromarray(load_photo(name)).resize(
        (size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
    )
    return np.array(img, dtype=np.uint8)


def _background_box(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    photo = load_photo(name)
    H, W = photo.shape[:2]
    side = rng.uniform(0.6, 1.0) * min(H, W)
    top = rng.uniform(0.0, H - side)
    left = rng.uniform(0.0, W - side)
    return float(top), float(left), float(side)


def _placement(object_name: str, size: int, margin: int, scale, rng) -> tuple[int, int, int, int]:
    _, (_, _, h, w) = SHARED_OBJECTS[object_name]
    free = size - 2 * margin
    longer = rng.uniform(*scale) * free
    ph = max(4, int(round(longer * h / max(h, w))))
    pw = max(4, int(round(longer * w / max(h, w))))
    top = int(rng.integers(margin, size - margin - ph + 1))
    left = int(rng.integers(margin, size - margin - pw + 1))
    return top, left, ph, pw


def shared_object_pairs(n: int = 30, *, seed: int = 0, size: int = 224, objects=None, backgrounds=None,
                        scale=(0.3, 0.5), margin: int | None = None) -> list[SharedObjectPair]:
    """``n`` composites pairs (cycling through ``objects``, default all of :data:`SHARED_OBJECTS`)
    on two different backgrounds each (from ``backgrounds``, default :data:`COMPOSITE_BACKGROUNDS`).
    Deterministic for a given ``seed``. Positions are uniform, so an object often covers the image
    centre: compare methods with a centre-bias baseline (benchmarks/bench_quality.py does)."""
    n, size = check_int(n, "n", minimum=1), check_int(size, "size", minimum=16)
    seed = check_int(seed, "seed", minimum=0)
    objects = check_sequence(list(SHARED_OBJECTS) if objects is None else objects, "objects",
                             lambda name, label: check_choice(name, label, tuple(SHARED_OBJECTS)))
    backgrounds = check_sequence(COMPOSITE_BACKGROUNDS if backgrounds is None else backgrounds, "backgrounds",
                                 lambda name, label: check_choice(name, label, list_photos()))
    if len(set(backgrounds)) < 2:
        raise InputError(f"backgrounds {backgrounds} must name at least two different photos")
    lo, hi = check_floats(scale, "scale", length=2, above=0.0, maximum=1.0)
    if lo > hi:
        raise InputError(f"scale is {tuple(scale)!r}; expected (low, high) with 0 < low <= high <= 1")
    margin = math.ceil(size / 16) if margin is None else check_int(margin, "margin", minimum=0)
    if size - 2 * margin < 8:
        raise InputError(f"margin {margin} leaves no room for an object in a {size}x{size} image")

    rng = np.random.default_rng(seed)
    distinct = sorted(set(backgrounds), key=backgrounds.index)
    pairs = []
    for k in range(n):
        object_name = objects[k % len(objects)]
        bq, br = rng.choice(len(distinct), size=2, replace=False)
        images, masks, boxes, crops = [], [], [], []
        for bg in (distinct[bq], distinct[br]):
            crops.append(_background_box(bg, rng))
            canvas = background_crop(bg, crops[-1], size)
            top, left, ph, pw = _placement(object_name, size, margin, (lo, hi), rng)
            canvas[top:top + ph, left:left + pw] = paste_object(object_name, ph, pw)
            mask = np.zeros((size, size), dtype=bool)
            mask[top:top + ph, left:left + pw] = True
            images.append(canvas)
            masks.append(mask)
            boxes.append((top, left, ph, pw))
        photo, box = SHARED_OBJECTS[object_name]
        pairs.append(SharedObjectPair(
            query=images[0], reference=images[1], query_mask=masks[0], reference_mask=masks[1],
            object_name=object_name, query_background=distinct[bq], reference_background=distinct[br],
            query_box=boxes[0], reference_box=boxes[1], object_photo=photo, object_box=box, index=k,
            params={"seed": seed, "size": size, "margin": margin, "scale": (lo, hi),
                    "query_background_box": crops[0], "reference_background_box": crops[1]},
        ))
    return pairs

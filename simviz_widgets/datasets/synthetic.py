"""Synthetic scenes with controlled attributes, and pairs that share one known attribute at known places.

Every scene is a ``size x size`` RGB image (default 64) on a noisy grey background with ``objects``
objects (default 2). Each object has one value in each attribute group:

* colour: red, green, blue, yellow
* shape: circle, square, triangle
* texture: plain, brick, grass, gravel (patches cut from scikit-image's bundled photos, used to
  modulate the object's colour, so texture and colour vary independently)
* size: small, large

``scene_pairs(n, seed=)`` draws pairs (query X, reference Y) where **exactly one attribute value is
shared** between the two images: value ``v`` of group ``G`` is carried by one object of X and one
object of Y (two objects when the group has too few values to keep the other objects apart, as
for ``size``); every other value present in X is absent from Y. ``query_mask`` / ``reference_mask``
(bool, (H, W)) are the pixels of the objects carrying ``v``. Each image also comes with its
multi-hot attribute labels and a mask per attribute (:attr:`SceneImage.attribute_masks`).

``negative_pairs`` gives pairs that share no attribute value (for the metric loss).
Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same pixels.

>>> pair = scene_pairs(1, seed=0)[0]
>>> pair.query.image.shape, pair.query_mask.dtype, pair.shared in SYNTHETIC_ATTRIBUTES
((64, 64, 3), dtype('bool'), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..checks import check_choice, check_instance, check_int, check_sequence

__all__ = [
    "ATTRIBUTE_GROUPS",
    "SYNTHETIC_ATTRIBUTES",
    "SceneObject",
    "SceneImage",
    "ScenePair",
    "render_scene",
    "scene_pairs",
    "negative_pairs",
    "random_scenes",
    "attribute_group",
]

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow"),
    "shape": ("circle", "square", "triangle"),
    "texture": ("plain", "brick", "grass", "gravel"),
    "size": ("small", "large"),
}
SYNTHETIC_ATTRIBUTES: tuple[str, ...] = tuple(v for values in ATTRIBUTE_GROUPS.values() for v in values)
_GROUP_OF = {v: g for g, values in ATTRIBUTE_GROUPS.items() for v in values}

_RGB = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 80, 220),
    "yellow": (230, 205, 40),
}
# Object radius (half the bounding box side) as a fraction of the image side.
_RADIUS = {"small": 0.11, "large": 0.19}


def attribute_group(attribute: str) -> str:
    """The group ('colour', 'shape', 'texture', 'size') of a synthetic attribute value."""
    return _GROUP_OF[check_choice(attribute, "attribute", SYNTHETIC_ATTRIBUTES)]


@dataclass(frozen=True)
class SceneObject:
    """One object: its attribute values and its centre (row, col) and radius in pixels."""

    colour: str
    shape: str
    texture: str
    size: str
    center: tuple[float, float]
    radius: float

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        return (self.colour, self.shape, self.texture, self.size)


@dataclass(frozen=True, eq=False)
class SceneImage:
    """A rendered scene: ``image`` uint8 (H, W, 3), ``objects`` and ``object_masks`` (n, H, W) bool."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]
    object_masks: np.ndarray

    @property
    def attributes(self) -> frozenset[str]:
        return frozenset(a for o in self.objects for a in o.attributes)

    @property
    def labels(self) -> np.ndarray:
        """Multi-hot (len(SYNTHETIC_ATTRIBUTES),) bool, in SYNTHETIC_ATTRIBUTES order."""
        present = self.attributes
        return np.array([a in present for a in SYNTHETIC_ATTRIBUTES], dtype=bool)

    def attribute_mask(self, attribute: str) -> np.ndarray:
        """Pixels of the objects carrying ``attribute`` (all False if none does)."""
        attribute_group(attribute)
        mask = np.zeros(self.image.shape[:2], dtype=bool)
        for obj, m in zip(self.objects, self.object_masks):
            if attribute in obj.attributes:
                mask |= m
        return mask

    @property
    def attribute_masks(self) -> np.ndarray:
        """(len(SYNTHETIC_ATTRIBUTES), H, W) bool."""
        return np.stack([self.attribute_mask(a) for a in SYNTHETIC_ATTRIBUTES])


@dataclass(frozen=True, eq=False)
class ScenePair:
    """Two scenes sharing exactly one attribute value ``shared`` (None for a negative pair)."""

    query: SceneImage
    reference: SceneImage
    shared: str | None
    index: int = 0

    @property
    def shared_group(self) -> str | None:
        return None if self.shared is None else attribute_group(self.shared)

    @property
    def query_mask(self) -> np.ndarray:
        return self._mask(self.query)

    @property
    def reference_mask(self) -> np.ndarray:
        return self._mask(self.reference)

    def _mask(self, scene: SceneImage) -> np.ndarray:
        if self.shared is None:
            return np.zeros(scene.image.shape[:2], dtype=bool)
        return scene.attribute_mask(self.shared)


# ----------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    """Grey texture photo from scikit-image (bundled, no download), float32 in [0, 1]."""
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    return arr / 255.0


def _texture_patch(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) modulation in [0.35, 1]: 1 for plain, a contrast-stretched texture crop else."""
    if name == "plain":
        return np.ones((size, size), np.float32)
    tex, lo, hi = _stretched(name)
    # Texture photos are 512 px; a crop of 3 * size subsampled keeps several periods of the pattern.
    side = min(3 * size, tex.shape[0], tex.shape[1])
    top = int(rng.integers(0, tex.shape[0] - side + 1))
    left = int(rng.integers(0, tex.shape[1] - side + 1))
    idx = (np.arange(size) * side // size).astype(int)
    crop = tex[top + idx[:, None], left + idx[None, :]]
    crop = np.clip((crop - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (0.35 + 0.65 * crop).astype(np.float32)


@lru_cache(maxsize=None)
def _stretched(name: str) -> tuple[np.ndarray, float, float]:
    """Texture and its 5th/95th percentiles (computed once per texture)."""
    tex = _texture(name)
    lo, hi = np.percentile(tex, (5, 95))
    return tex, float(lo), float(hi)


def _shape_mask(shape: str, center: tuple[float, float], radius: float, size: int) -> np.ndarray:
    rows, cols = _grid(size)
    dr, dc = rows - center[0], cols - center[1]
    if shape == "circle":
        return dr**2 + dc**2 <= radius**2
    if shape == "square":
        r = radius * 0.88  # same area scale as the circle, roughly
        return (np.abs(dr) <= r) & (np.abs(dc) <= r)
    if shape == "triangle":
        # Apex up, base at +radius: inside when below the two slanted edges and above the base.
        top = -radius
        within_height = (dr >= top) & (dr <= radius)
        half_width = (dr - top) / (2 * radius) * radius * 1.15
        return within_height & (np.abs(dc) <= half_width)
    raise ValueError(f"shape {shape!r} is not known; expected one of {ATTRIBUTE_GROUPS['shape']}")


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def render_scene(objects, *, size: int = 64, rng: np.random.Generator | int | None = 0) -> SceneImage:
    """Draw ``objects`` (SceneObject, later ones on top) on a noisy grey background.

    Masks are the visible pixels of each object (occluded parts removed).
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(None if rng is None else check_int(rng, "rng", minimum=0))
    size = check_int(size, "size", minimum=8)
    objects = tuple(check_sequence(objects, "objects", lambda obj, label: check_instance(obj, label, SceneObject),
                                   empty=True))
    for k, obj in enumerate(objects):
        for group, value in zip(ATTRIBUTE_GROUPS, obj.attributes):
            check_choice(value, f"objects[{k}].{group}", ATTRIBUTE_GROUPS[group])
    base = 128.0 + rng.normal(0.0, 10.0, size=(size, size, 1)).astype(np.float32)
    image = np.repeat(base, 3, axis=2)
    masks = np.zeros((len(objects), size, size), dtype=bool)
    for k, obj in enumerate(objects):
        mask = _shape_mask(obj.shape, obj.center, obj.radius, size)
        modulation = _texture_patch(obj.texture, size, rng)
        colour = np.asarray(_RGB[obj.colour], np.float32)
        image[mask] = modulation[mask][:, None] * colour[None, :]
        masks[:k] &= ~mask
        masks[k] = mask
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return SceneImage(image=image, objects=objects, object_masks=masks)


def _place(radii: list[float], size: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Centres for objects of the given radii, not overlapping, inside the image (rejection sampling)."""
    for _ in range(200):
        centres = []
        for r in radii:
            margin = r + 1.0
            centres.append((float(rng.uniform(margin, size - margin)), float(rng.uniform(margin, size - margin))))
        ok = all(
            np.hypot(a[0] - b[0], a[1] - b[1]) > radii[i] + radii[j] + 2.0
            for i, a in enumerate(centres)
            for j, b in enumerate(centres)
            if i < j
        )
        if ok:
            return centres
    raise RuntimeError("could not place the objects without overlap; use fewer objects or a larger size")


def _build(values: list[dict[str, str]], size: int, rng: np.random.Generator) -> SceneImage:
    radii = [_RADIUS[v["size"]] * size for v in values]
    centres = _place(radii, size, rng)
    objects = [
        SceneObject(v["colour"], v["shape"], v["texture"], v["size"], c, r)
        for v, c, r in zip(values, centres, radii)
    ]
    return render_scene(objects, size=size, rng=rng)


def _split_values(group: str, shared: str | None, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Disjoint value pools for X and Y in ``group`` (the shared value, if any, goes to neither)."""
    rest = [v for v in ATTRIBUTE_GROUPS[group] if v != shared]
    rng.shuffle(rest)
    cut = int(rng.integers(1, len(rest))) if len(rest) > 1 else len(rest)
    return rest[:cut], rest[cut:]


def _pair_values(shared: str | None, objects: int, rng: np.random.Generator):
    """Attribute values for the objects of X and Y: only ``shared`` appears in both images."""
    x_vals = [dict() for _ in range(objects)]
    y_vals = [dict() for _ in range(objects)]
    for group in ATTRIBUTE_GROUPS:
        s = shared if shared is not None and attribute_group(shared) == group else None
        pool_x, pool_y = _split_values(group, s, rng)
        for vals, pool in ((x_vals, pool_x), (y_vals, pool_y)):
            for k, v in enumerate(vals):
                if s is not None and k == 0:
                    v[group] = s  # the first object of each image carries the shared value
                elif pool:
                    v[group] = str(rng.choice(pool))
                else:
                    # No value left for this image (size has two values): the object carries the
                    # shared value too, and the shared mask covers it.
                    v[group] = s
    order_x, order_y = rng.permutation(objects), rng.permutation(objects)
    return [x_vals[i] for i in order_x], [y_vals[i] for i in order_y]


def _check_common(n: int, seed: int, size: int, objects: int) -> tuple[int, int, int, int]:
    """The arguments every scene generator takes: counts of pairs, pixels and objects, and the seed."""
    return (check_int(n, "n", minimum=1), check_int(seed, "seed", minimum=0), check_int(size, "size", minimum=32),
            check_int(objects, "objects", minimum=1, maximum=3))


def scene_pairs(n: int, *, seed: int = 0, size: int = 64, objects: int = 2,
                attributes: tuple[str, ...] | None = None) -> list[ScenePair]:
    """``n`` pairs sharing exactly one attribute value each (drawn uniformly from ``attributes``,
    default all of :data:`SYNTHETIC_ATTRIBUTES`), deterministic under ``seed``."""
    n, seed, size, objects = _check_common(n, seed, size, objects)
    pool = SYNTHETIC_ATTRIBUTES if attributes is None else tuple(check_sequence(
        attributes, "attributes", lambda a, label: check_choice(a, label, SYNTHETIC_ATTRIBUTES)))
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        shared = str(pool[int(rng.integers(len(pool)))])
        xv, yv = _pair_values(shared, objects, rng)
        pairs.append(ScenePair(_build(xv, size, rng), _build(yv, size, rng), shared, index=k))
    return pairs


def negative_pairs(n: int, *, seed: int = 0, size: int = 64, objects: int = 2) -> list[ScenePair]:
    """``n`` pairs that share no attribute value, deterministic under ``seed``."""
    n, seed, size, objects = _check_common(n, seed, size, objects)
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(n):
        xv, yv = _pair_values(None, objects, rng)
        pairs.append(ScenePair(_build(xv, size, rng), _build(yv, size, rng), None, index=k))
    return pairs


def random_scenes(n: int, *, seed: int = 0, size: int = 64, objects: int = 2) -> list[SceneImage]:
    """``n`` independent scenes with every value drawn uniformly (for probes and attribute training)."""
    n, seed, size, objects = _check_common(n, seed, size, objects)
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        vals = [{g: str(rng.choice(v)) for g, v in ATTRIBUTE_GROUPS.items()} for _ in range(objects)]
        scenes.append(_build(vals, size, rng))
    return scenes

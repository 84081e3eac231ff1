"""Sample photos that ship inside installed packages (no download, no network).

Sources: scikit-image's bundled images (``skimage.data``; CC0 / public domain), scikit-learn's
``load_sample_images()`` (china, flower; CC-BY 2.0) and matplotlib's ``grace_hopper.jpg``.
Every photo comes back as a fresh (H, W, 3) uint8 RGB array; grayscale ones are repeated to RGB.

>>> "chelsea" in list_photos()
True
>>> load_photo("chelsea").shape
(300, 451, 3)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np

from ..checks import InputError, check_choice, check_str

__all__ = ["list_photos", "load_photo", "stereo_motorcycle", "default_pair", "UnknownPhotoError"]

# scikit-image photos that are bundled in the wheel; others (brain, cells3d, eagle, kidney, lily,
# skin, ...) go through pooch and would need a download.
_SKIMAGE_NAMES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)


class UnknownPhotoError(InputError):
    """A photo name that is not one of :func:`list_photos` (an InputError, so a ValueError)."""


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == bool:  # skimage's horse is a binary silhouette
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise TypeError(f"bundled photo has dtype {arr.dtype}; expected uint8")  # pragma: no cover
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _motorcycle(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        return _stereo_raw()[index]

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as handle, Image.open(handle) as img:
        return np.asarray(img.convert("RGB"))


_LOADERS: dict[str, Callable[[], np.ndarray]] = {name: _skimage_loader(name) for name in _SKIMAGE_NAMES}
_LOADERS.update(
    {
        "motorcycle_left": _motorcycle(0),
        "motorcycle_right": _motorcycle(1),
        "china": _sklearn("china.jpg"),
        "flower": _sklearn("flower.jpg"),
        "grace_hopper": _grace_hopper,
    }
)


def list_photos() -> list[str]:
    """Names accepted by :func:`load_photo`, sorted."""
    return sorted(_LOADERS)


@lru_cache(maxsize=None)
def _cached(name: str) -> np.ndarray:
    arr = _as_rgb(_LOADERS[name]())
    arr.setflags(write=False)
    return arr


def load_photo(name: str) -> np.ndarray:
    """Bundled photo ``name`` as a new (H, W, 3) uint8 RGB array (safe to modify)."""
    try:
        check_choice(check_str(name, "photo"), "photo", list_photos())
    except InputError as err:  # a str that names no bundled photo (a non-str is an InputTypeError)
        raise UnknownPhotoError(f"{err} (bundled photos only: nothing is downloaded)") from None
    return _cached(name).copy()


@lru_cache(maxsize=1)
def _stereo_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    disparity = np.asarray(disparity, dtype=np.float32).copy()
    # skimage's docstring says unknown pixels are NaN; the array actually holds +inf there.
    disparity[~np.isfinite(disparity)] = np.nan
    for arr in (left, right, disparity):
        arr.setflags(write=False)
    return left, right, disparity


def stereo_motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middlebury 2014 "Motorcycle" stereo pair (down-sampled by 4) with ground-truth disparity.

    Returns ``(left, right, disparity)``: two (500, 741, 3) uint8 RGB images and a (500, 741)
    float32 disparity map **for the left image**: left pixel ``(r, c)`` shows the same scene point
    as right pixel ``(r, c - disparity[r, c])`` (disparities are positive, 7..~60 px, so things
    sit further left in the right view). Pixels without ground truth (occlusions) are NaN.

    This convention was checked by patch matching (tests/test_datasets.py): skimage's docstring
    example reads it the other way round and says NaN where the data holds +inf.
    """
    left, right, disparity = _stereo_raw()
    return left.copy(), right.copy(), disparity.copy()


def default_pair() -> tuple[np.ndarray, np.ndarray]:
    """``(query, reference)`` used when none is given: ``chelsea`` and its mirror image.

    The mirror has known geometry (column ``c`` -> ``W - 1 - c``), see
    ``views(load_photo("chelsea"), "mirror")``.
    """
    from .views import views

    query = load_photo("chelsea")
    return query, views(query, "mirror").image

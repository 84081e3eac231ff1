"""Alpha-blend a map over a photo: ``overlay(photo, map) -> uint8 RGB`` at the photo's size.

A float map is upsampled *before* colouring (interpolating colours of a diverging map would pass
through colours that no value has); an RGBA map is upsampled per channel.

>>> import numpy as np
>>> photo = np.zeros((2, 4, 3), np.uint8)
>>> out = overlay(photo, np.array([[0.0, 1.0]], np.float32), alpha=1.0, cmap="gray")
>>> out[0, :, 0].tolist()
[0, 64, 191, 255]
"""

from __future__ import annotations

import numpy as np

from ..checks import InputError, check_array, check_bool, check_float
from .colormap import map_to_rgba, normalize_map
from .resize import upsample_bilinear

__all__ = ["overlay"]


def overlay(
    image,
    values,
    *,
    alpha: float = 0.5,
    cmap: str | None = None,
    mode: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    signed: bool | None = None,
    alpha_from_value: bool = False,
) -> np.ndarray:
    """Blend ``values`` over ``image`` (H, W, 3) uint8; returns a new (H, W, 3) uint8 array.

    ``values``: a float map (h, w) at any resolution — coloured with ``cmap``/``mode``/``vmin``/
    ``vmax``/``signed`` exactly as :func:`~simviz_widgets.render.colormap.map_to_rgba` does — or an
    already coloured (h, w, 4) uint8 RGBA map. ``alpha`` scales the map's opacity; per pixel,
    ``out = (1 - a) * photo + a * colour`` with ``a = alpha * map_alpha / 255``.
    """
    photo = check_array(image, "image", shape=(None, None, 3), dtype=np.uint8, expected="an (H, W, 3) RGB image")
    alpha = check_float(alpha, "alpha", minimum=0.0, maximum=1.0)
    signed = None if signed is None else check_bool(signed, "signed")
    size = photo.shape[:2]
    arr = check_array(values, "map", kinds="uif", finite=True)

    if arr.ndim == 3 and arr.shape[2] == 4 and arr.dtype == np.uint8:
        channels = [upsample_bilinear(arr[..., k], size) for k in range(4)]
        colour = np.stack(channels[:3], axis=-1)
        opacity = channels[3] / 255.0
    elif arr.ndim == 2:
        if signed is None:
            signed = bool(np.min(arr) < 0)
        if mode is None:
            mode = "symmetric" if signed else "minmax"
        # Limits from the raw map; bilinear values stay inside [min, max], so they agree.
        _, lo, hi = normalize_map(arr, mode=mode, vmin=vmin, vmax=vmax)
        big = upsample_bilinear(arr, size)
        rgba = map_to_rgba(
            big, cmap=cmap, mode=mode, vmin=lo, vmax=hi, signed=signed,
            alpha_from_value=alpha_from_value,
        )
        colour = rgba[..., :3].astype(np.float32)
        opacity = rgba[..., 3] / 255.0
    else:
        raise InputError(
            f"map has shape {arr.shape} and dtype {arr.dtype}; expected a float (h, w) map or an "
            "(h, w, 4) uint8 RGBA map"
        )
    a = (alpha * opacity)[..., None]
    blended = (1.0 - a) * photo.astype(np.float32) + a * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)

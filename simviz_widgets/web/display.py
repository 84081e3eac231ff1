"""Display geometry shared by every view of a pair (the kernel's canvases, the browser's hover
layer and the standalone page): how big an image is on screen, and the photo resampled to it.

>>> display_size((224, 448), 320)
(160, 320)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..render.overlay import overlay
from .png import png_bytes

__all__ = ["display_size", "photo_rgba", "composite_png"]


def display_size(image_size: tuple[int, int], size: int) -> tuple[int, int]:
    """(rows, cols) on screen for an image of ``image_size`` whose longer side gets ``size`` pixels."""
    rows, cols = image_size
    scale = size / max(rows, cols)
    return max(1, int(round(rows * scale))), max(1, int(round(cols * scale)))


def photo_rgba(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo at display ``size`` as opaque RGBA uint8, resampled once here, never by a canvas.

    Shrinking uses Lanczos (anti-aliased, sharp); enlarging uses nearest neighbour, which shows the
    very pixels the model saw instead of a blur. RGBA because ipycanvas sends RGB as lossy JPEG.
    """
    rows, cols = size
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if (rows, cols) != image.shape[:2]:
        shrinking = rows < image.shape[0] or cols < image.shape[1]
        resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.NEAREST
        picture = picture.resize((cols, rows), resample=resample)
    return np.asarray(picture.convert("RGBA"), dtype=np.uint8)


def composite_png(panels, *, title: str, pins=(), gap: int = 8) -> bytes:
    """A PNG of photos with their overlays side by side, pins drawn, and a title line.

    ``panels``: list of (name, photo (H, W, 3) uint8, map or None, overlay kwargs) at display size.
    ``pins``: list of (panel index, row, col, colour) in that panel's pixels.
    """
    tiles = []
    for _, photo, values, kwargs in panels:
        tiles.append(photo if values is None else overlay(photo, values, **kwargs))
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    header = 18
    canvas = Image.new("RGB", (width, height + header), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black")
    offsets = []
    left = 0
    for tile in tiles:
        canvas.paste(Image.fromarray(tile), (left, header))
        offsets.append(left)
        left += tile.shape[1] + gap
    for index, row, col, colour in pins:
        cx, cy = offsets[index] + col, header + row
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour, outline="black", width=2)
    return png_bytes(np.asarray(canvas))

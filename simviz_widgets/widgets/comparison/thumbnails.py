"""PNG thumbnails of the comparison grid and its static form (PIL only, no widgets).

Both maps of a method share one colour scale. A side the method has no map for
(``not explanation.has_map(side)``, e.g. RISE's reference by default) shows the plain photo with
an "n/a" label on it, as do rows not computed yet (labelled with their status): a photo is never
darkened or washed out, so it cannot be mistaken for a map.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw

from ...explain.base import SIDES, PairExplanation
from ...render import default_cmap, normalize_map, overlay
from ...web.png import png_bytes
from .._canvas import display_size, photo_rgba

__all__ = ["map_pngs", "photo_png", "label_box", "fitted_label", "grid_image", "label_font", "NO_MAP_LABEL"]

NO_MAP_LABEL = "n/a: no map"
LABEL_FONT_PX = 11
LABEL_PAD_PX = 3


@functools.lru_cache(maxsize=4)
def label_font(size: int = LABEL_FONT_PX):
    """DejaVu Sans from matplotlib's data (it has the arrows and dots PIL's bitmap font lacks)."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf", size)
    except Exception:  # noqa: BLE001 - no FreeType: the bitmap font
        return ImageFont.load_default()


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=label_font())
    return right - left + 2 * LABEL_PAD_PX, bottom - top + 2 * LABEL_PAD_PX


def fitted_label(text: str, cols: int) -> str:
    """``text``, or its part before a colon when it is too wide for ``cols`` pixels ("n/a")."""
    if _text_size(text)[0] > cols and ":" in text:
        return text.split(":", 1)[0]
    return text


def label_box(picture_size: tuple[int, int], text: str) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the label drawn on a picture of (rows, cols): its bottom-left
    corner, as wide as the (fitted) text, clipped to the picture."""
    rows, cols = picture_size
    width, height = _text_size(fitted_label(text, cols))
    return 0, max(0, rows - height), min(cols, width), rows


def _draw_label(canvas: Image.Image, text: str) -> None:
    text = fitted_label(text, canvas.width)
    left, top, right, bottom = label_box((canvas.height, canvas.width), text)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((left, top, right - 1, bottom - 1), fill=(40, 40, 40))
    x0, y0, _, _ = draw.textbbox((0, 0), text, font=label_font())
    draw.text((left + LABEL_PAD_PX - x0, top + LABEL_PAD_PX - y0), text, fill="white", font=label_font())


def _png(picture: np.ndarray, side: str, image_size, pins, label: str | None = None) -> bytes:
    canvas = Image.fromarray(picture)
    if label:
        _draw_label(canvas, label)
    marks = [p for p in pins if p.source == side]
    if marks:
        draw = ImageDraw.Draw(canvas)
        rows, cols = picture.shape[:2]
        for pin in marks:
            y = (pin.row + 0.5) * rows / image_size[0]
            x = (pin.col + 0.5) * cols / image_size[1]
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=pin.colour, outline="black", width=1)
    return png_bytes(np.asarray(canvas))


def photo_png(image: np.ndarray, side: str, *, size: int, pins=(), label: str | None = None) -> bytes:
    """The plain photo of ``side`` at thumbnail ``size``, with ``label`` on it if given."""
    photo = photo_rgba(image, display_size(image.shape[:2], size))[..., :3]
    return _png(np.ascontiguousarray(photo), side, image.shape[:2], pins, label)


def map_pngs(exp: PairExplanation, *, size: int, cmap: str | None, alpha: float, pins=()) -> dict[str, bytes]:
    """PNG overlays of both maps on one colour scale; a side without a map is the photo with an
    n/a label (and a flat map does not squash the other's scale)."""
    signed = bool(exp.signed)
    mode = "symmetric" if signed else "minmax"
    with_map = [s for s in SIDES if exp.has_map(s)]
    spread = [exp.map(s) for s in with_map if float(np.ptp(exp.map(s))) > 0.0]
    lo = hi = None
    if spread:
        _, lo, hi = normalize_map(np.concatenate([v.ravel() for v in spread])[None], mode=mode)
    cmap = cmap or default_cmap(signed)
    out = {}
    for side in SIDES:
        image = exp.image(side)
        if side not in with_map:
            out[side] = photo_png(image, side, size=size, pins=pins, label=NO_MAP_LABEL)
            continue
        photo = photo_rgba(image, display_size(image.shape[:2], size))[..., :3]
        picture = overlay(photo, exp.map(side), alpha=alpha, cmap=cmap, mode=mode, vmin=lo, vmax=hi, signed=signed,
                          alpha_from_value=True)  # as the viewer: weak cells let the photo through
        out[side] = _png(picture, side, image.shape[:2], pins)
    return out


def grid_image(rows: list[tuple[str, str, list[bytes]]], text_width: int = 230) -> np.ndarray:
    """One RGB image of the grid: per row, ``(title, text, [png, ...])`` — the text beside the
    thumbnails."""
    tiles = []
    for title, text, pngs in rows:
        thumbs = [np.asarray(Image.open(io.BytesIO(bytes(p))).convert("RGB")) for p in pngs]
        height = max([t.shape[0] for t in thumbs] + [40])
        width = text_width + sum(t.shape[1] + 6 for t in thumbs)
        tile = Image.new("RGB", (width, height + 6), "white")
        ImageDraw.Draw(tile).text((4, 3), title + "\n" + text, fill="black", font=label_font())
        left = text_width
        for t in thumbs:
            tile.paste(Image.fromarray(t), (left, 3))
            left += t.shape[1] + 6
        tiles.append(np.asarray(tile))
    if not tiles:
        return np.full((1, 1, 3), 255, np.uint8)
    width = max(t.shape[1] for t in tiles)
    stacked = np.full((sum(t.shape[0] for t in tiles), width, 3), 255, np.uint8)
    top = 0
    for t in tiles:
        stacked[top:top + t.shape[0], : t.shape[1]] = t
        top += t.shape[0]
    return stacked

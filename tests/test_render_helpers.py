"""Shared pixel helpers: the one PNG encoder, web/png.py (lossless round trip, RGBA kept, every
compression level decodes to the same pixels; in web/ because render/ imports numpy and matplotlib
only), and render/shade.py's region shading (the explorer's shade layer drawn over a photo is the
static figure's dimmed photo; cells at pixel size by pixel centre; luminance as PIL's grey conversion)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.render.shade import OUTSIDE_DIM, cells_to_pixels, dim_outside, luminance, outside_shade
from simviz_widgets.retrieval.figure import _dim_outside
from simviz_widgets.web.png import png_bytes


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (4, "RGBA")])
def test_png_round_trip_is_lossless(rng, channels, mode):
    pixels = rng.integers(0, 256, (13, 17, channels), dtype=np.uint8)
    pixels[0, 0, -1] = 0  # a clear pixel in RGBA: kept, not flattened
    decoded = _decode(png_bytes(pixels))
    assert decoded.mode == mode
    np.testing.assert_array_equal(np.asarray(decoded), pixels)


def test_png_compression_levels_change_size_not_pixels():
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, 32:] = (200, 10, 40)
    small, fast, raw = (png_bytes(pixels, compress_level=level) for level in (9, 1, 0))
    assert len(small) <= len(fast) < len(raw)
    for data in (small, fast, raw):
        np.testing.assert_array_equal(np.asarray(_decode(data)), pixels)
    view = np.zeros((8, 8, 4), np.uint8)[:, ::2]  # not contiguous: encoded as its values
    view[...] = 7
    np.testing.assert_array_equal(np.asarray(_decode(png_bytes(view))), view)


def test_png_refuses_what_is_not_an_rgb_or_rgba_image():
    for bad, error, word in [(np.zeros((4, 4, 3)), InputError, "uint8"),
                             (np.zeros((4, 4), np.uint8), InputError, "RGBA"),
                             (np.zeros((4, 4, 2), np.uint8), InputError, "RGBA"),
                             (np.zeros((0, 4, 3), np.uint8), InputError, "empty"),
                             ("image.png", InputTypeError, "pixels")]:
        with pytest.raises(error, match=word):
            png_bytes(bad)
    with pytest.raises(InputError, match="compress_level"):
        png_bytes(np.zeros((2, 2, 3), np.uint8), compress_level=10)


def test_luminance_is_pils_grey_conversion(rng):
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey = np.asarray(Image.fromarray(pixels).convert("L"), dtype=np.float64)
    assert np.abs(luminance(pixels) - grey).max() <= 0.5 + 1e-9  # PIL rounds its fixed-point sum
    assert luminance(np.array([1.0, 1.0, 1.0])) == pytest.approx(1.0)  # weights sum to 1: any scale


def test_cells_at_pixel_size_take_the_cell_holding_each_pixel_centre():
    # 3 cells over 8 pixels: centres 0.5..7.5 px -> cell floor(centre * 3 / 8)
    assert cells_to_pixels(np.array([[10.0, 20.0, 30.0]]), (1, 8)).tolist() == [[10, 10, 10, 20, 20, 30, 30, 30]]
    weights = np.arange(4.0).reshape(2, 2)
    np.testing.assert_array_equal(cells_to_pixels(weights, (4, 6)), np.kron(weights, np.ones((2, 3))))


def test_the_explorers_shade_over_a_photo_is_the_figures_dimmed_photo(rng):
    photo = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    inside = np.array([[1.0, 0.0], [0.0, 0.5]])  # cell weights: in, out, out, half in
    pixels = cells_to_pixels(inside, (5, 6))  # rows 0-1 cell row 0, rows 2-4 cell row 1 (centres)
    shade = outside_shade(pixels)
    # a canvas composites black at alpha a/255 over the photo: photo * (1 - a/255)
    composited = photo * (1.0 - shade[..., 3:] / 255.0)
    dimmed = dim_outside(photo, pixels)
    assert np.abs(composited - dimmed).max() <= 1.0
    np.testing.assert_array_equal(dimmed[:2, :3], photo[:2, :3])  # inside: untouched
    np.testing.assert_array_equal(dimmed[:2, 3:], np.rint(photo[:2, 3:] * (1 - OUTSIDE_DIM)))
    np.testing.assert_array_equal(dimmed[2:, 3:], np.rint(photo[2:, 3:] * (1 - OUTSIDE_DIM / 2)))
    np.testing.assert_array_equal(_dim_outside(photo, inside), dimmed)  # the static figure's query
    assert _dim_outside(photo, None) is photo
    assert shade[0, 0, 3] == 0 and shade[0, 5, 3] == round(255 * OUTSIDE_DIM) and shade[..., :3].max() == 0

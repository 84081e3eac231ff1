"""Read a picture — file, encoded bytes, PIL image, numpy array, torch tensor — as (H, W, 3) uint8 RGB.

One set of rules, whichever way the picture arrives (no per-image contrast stretch anywhere: a
constant picture keeps its level, and the same data gives the same pixels as grey or as RGB):

* ``uint8``: as is.
* 16-bit — numpy / torch ``uint16``, PIL modes ``I;16*`` and ``I``, 16-bit PNG / TIFF files, grey or
  RGB(A): the fixed scale ``round(value / 257)``, the full range 0..65535 onto 0..255. PIL mode
  ``I`` (32-bit) must hold values in 0..65535. (16-bit RGB files are read at full depth; where PIL
  cannot be made to, it keeps the high byte, ``value // 256``, at most one level away.)
* float — numpy / torch float16/32/64, PIL mode ``F``: values in [0, 1] (1e-6 of slack), ``round(value
  * 255)``. NaN, infinities and values outside [0, 1] are refused: a normalised model tensor or
  0..255 floats are not a picture in this convention.
* anything else (bool, other integer widths, complex, object) is refused, naming what is accepted.

Grey (one channel) is replicated to RGB; alpha (RGBA, LA, palette transparency) is composited on
white. A file with several frames (animated GIF / PNG, multi-page TIFF) gives its first frame, with a
``UserWarning`` saying so. Every refusal is an :class:`ImageInputError` naming the input.

>>> array_to_rgb(np.full((2, 2), 30000, np.uint16), "grey16")[0, 0]
array([117, 117, 117], dtype=uint8)
"""

from __future__ import annotations

import io
import re
import struct
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import InputError

__all__ = ["ImageInputError", "array_to_rgb", "pil_to_rgb", "tensor_to_rgb", "read_image_file",
           "read_image_bytes", "describe"]

_FORMATS = "PNG, JPEG, BMP, TIFF, WebP, GIF, ..."


class ImageInputError(InputError):
    """An image given by the user is not something we can show to a model."""


def describe(x: Any) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


# ---------------------------------------------------------------------------------------------
# Arrays


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """The dtype rule of the module docstring, channel layout untouched."""
    if arr.dtype == np.uint8:
        return arr.astype(np.uint8, copy=True)
    if arr.dtype == np.uint16:
        return np.rint(arr / 257.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        values = arr.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ImageInputError(f"{name} contains NaN or infinite values; expected finite pixels")
        lo, hi = float(values.min()), float(values.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageInputError(
                f"{name} is float with values in [{lo:.3g}, {hi:.3g}]; expected floats in [0, 1]. "
                "Divide by 255 for 0..255 data; pass the unnormalised picture, not the model tensor."
            )
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageInputError(
        f"{name} has dtype {arr.dtype}; expected uint8 (0..255), uint16 (0..65535) or float (0..1). "
        "Convert with arr.astype(np.uint8) if the values are 0..255."
    )


def array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """numpy (H, W) or (H, W, 1|3|4) -> (H, W, 3) uint8, a new array (dtype rule: module docstring)."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        raise ImageInputError(
            f"{name} has shape {arr.shape}, which looks channels-first; numpy images are "
            "expected as (H, W) or (H, W, C). Use arr.transpose(1, 2, 0)."
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ImageInputError(
            f"{name} has shape {arr.shape}; expected (H, W) grayscale or (H, W, C) with C in 1, 3, 4"
        )
    channels = arr.shape[2]
    if channels not in (1, 3, 4):
        raise ImageInputError(f"{name} has {channels} channels; expected RGB (3), RGBA (4) or grayscale (1)")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageInputError(
            f"{name} is {arr.shape[0]}x{arr.shape[1]} pixels; expected at least 2x2 "
            "(an empty or single-pixel image has nothing to explain)"
        )
    out = _to_uint8(arr, name)
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 4:
        # Composite on white: transparent regions would otherwise show arbitrary RGB.
        rgb = out[:, :, :3].astype(np.float32)
        a = out[:, :, 3:4].astype(np.float32) / 255.0
        out = np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)
    return np.ascontiguousarray(out)


def tensor_to_rgb(t, name: str) -> np.ndarray:
    """torch (C, H, W), (1, C, H, W) or (H, W, C) / (H, W) -> (H, W, 3) uint8 (same dtype rule)."""
    import torch

    source = t
    t = t.detach().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ImageInputError(f"{name} is a batch of {t.shape[0]} images ({describe(source)}); expected one image")
        t = t[0]
    if t.ndim == 3 and t.shape[0] in (1, 3, 4):
        t = t.permute(1, 2, 0)  # torch convention is channels-first, also in the ambiguous tiny case
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    try:
        arr = t.numpy()
    except TypeError:  # dtypes numpy has no counterpart for
        raise ImageInputError(f"{name} has dtype {t.dtype}; expected uint8, uint16 or float (0..1)") from None
    return array_to_rgb(arr, name)


# ---------------------------------------------------------------------------------------------
# PIL images


def pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    """A PIL image (EXIF orientation applied) -> (H, W, 3) uint8; the caller's image is not changed."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "I" or mode.startswith("I;16"):
        arr = np.asarray(img)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise ImageInputError(
                f"{name} is a PIL image of mode {mode} with values in [{int(arr.min())}, {int(arr.max())}]; "
                "expected 16-bit data (0..65535)"
            )
        return array_to_rgb(arr.astype(np.uint16), name)
    if mode == "F":
        return array_to_rgb(np.asarray(img, dtype=np.float32), name)
    target = "RGBA" if mode in ("RGBA", "LA", "P", "PA", "La", "RGBa") else "RGB"
    try:
        converted = img if mode == target else img.convert(target)
    except ValueError as err:  # e.g. LAB: PIL has no conversion to RGB
        raise ImageInputError(
            f"{name} is a PIL image of mode {mode}, which PIL cannot convert to RGB ({err})"
        ) from None
    return array_to_rgb(np.array(converted), name)


# ---------------------------------------------------------------------------------------------
# Files and encoded bytes

_LOW_BYTE_RAWMODE = {f"{mode};16{end}": f"{mode};16{'L' if end == 'B' else 'B'}"
                     for mode in ("RGB", "RGBA") for end in "BL"}
for _mode in ("RGB", "RGBA"):  # native order
    _LOW_BYTE_RAWMODE[f"{_mode};16N"] = _LOW_BYTE_RAWMODE[f"{_mode};16{'L' if sys.byteorder == 'little' else 'B'}"]


def _rawmode(tile) -> str | None:
    args = tile[3]
    if isinstance(args, str):
        return args
    return args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else None


def _with_rawmode(tile, rawmode: str):
    args = rawmode if isinstance(tile[3], str) else (rawmode, *tile[3][1:])
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _full_depth_rgb(img: Image.Image, fp, rawmodes: set) -> np.ndarray | None:
    """(H, W, 3|4) uint16 of a 16-bit RGB(A) file, which PIL decodes to 8 bits (the high byte):
    decoded once more reading each sample in the opposite byte order, which gives the low byte.
    None for any other file, or where that does not work. ``img`` is loaded already; ``rawmodes``
    are its tiles' raw modes (read before loading)."""
    if img.mode not in ("RGB", "RGBA") or len(rawmodes) != 1 or getattr(img, "n_frames", 1) != 1:
        return None
    low_rawmode = _LOW_BYTE_RAWMODE.get(next(iter(rawmodes)))
    if low_rawmode is None:
        return None
    try:
        fp.seek(0)
        with Image.open(fp) as low:
            low.tile = [_with_rawmode(t, low_rawmode) for t in low.tile]
            low.load()
            low_bytes = np.asarray(ImageOps.exif_transpose(low))
        high_bytes = np.asarray(ImageOps.exif_transpose(img))
    except (OSError, ValueError, TypeError, SyntaxError, EOFError, struct.error):
        return None
    if low_bytes.shape != high_bytes.shape or low_bytes.dtype != np.uint8:
        return None
    return (high_bytes.astype(np.uint16) << 8) | low_bytes


def _bomb_error(err: Exception, name: str, where: str, size: tuple[int, int] | None = None) -> ImageInputError:
    limit = Image.MAX_IMAGE_PIXELS
    if size is not None:
        pixels = f"{size[0]}x{size[1]} pixels ({size[0] * size[1]:,} pixels)"
    else:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = f"{int(found.group(1)):,} pixels" if found else f"too large ({err})"
    return ImageInputError(
        f"{name}: {where} is {pixels}, more than PIL.Image.MAX_IMAGE_PIXELS = {limit:,} allows "
        "(a possible decompression bomb); raise that limit if you trust the file"
    )


def _decode(fp, name: str, where: str, what: str) -> np.ndarray:
    """Decode an open binary file; ``where`` names it in messages, ``what`` says what it should be.
    The file system's errors (with an errno: permission denied, I/O error) propagate as OSError."""

    def undecodable(err: Exception) -> Exception:
        if isinstance(err, OSError) and (isinstance(err, PermissionError) or err.errno is not None):
            return err
        return ImageInputError(f"{name}: {where} could not be decoded ({err}); it is damaged or not {what} "
                               "PIL can read")

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as err:
        raise _bomb_error(err, name, where) from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: {where} is not {what} PIL can read (expected {_FORMATS})") from None
    except (OSError, SyntaxError, EOFError, struct.error) as err:
        raise undecodable(err) from err
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            size = img.size
            img.close()
            raise _bomb_error(warning.message, name, where, size)
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    try:
        try:
            frames = getattr(img, "n_frames", 1)
            rawmodes = {_rawmode(t) for t in img.tile}  # load() empties the tiles
            img.load()
        except Image.DecompressionBombError as err:
            raise _bomb_error(err, name, where) from None
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
            raise undecodable(err) from err
        if frames > 1:
            warnings.warn(f"{name}: {where} has {frames} frames (an animation or a multi-page file); "
                          "only the first frame is used", UserWarning, stacklevel=2)
        wide = _full_depth_rgb(img, fp, rawmodes)
        return array_to_rgb(wide, name) if wide is not None else pil_to_rgb(img, name)
    finally:
        img.close()


def _cannot_read(name: str, where: str, err: OSError) -> ImageInputError:
    reason = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
    return ImageInputError(f"{name}: {where} cannot be read: {reason}")


def read_image_file(path, name: str) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB; a missing, unreadable or undecodable file is refused."""
    path = Path(path)
    where = repr(str(path))
    if not path.exists():
        raise ImageInputError(f"{name}: file {where} does not exist")
    if path.is_dir():
        raise ImageInputError(f"{name}: {where} is a folder; expected an image file")
    try:
        with open(path, "rb") as fp:
            return _decode(fp, name, where, "an image file")
    except OSError as err:  # opening or reading the file, not decoding it
        raise _cannot_read(name, where, err) from None


def read_image_bytes(data: bytes, name: str) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> (H, W, 3) uint8 RGB."""
    try:
        return _decode(io.BytesIO(data), name, "the data given", "an encoded image")
    except OSError as err:
        raise _cannot_read(name, "the data given", err) from None

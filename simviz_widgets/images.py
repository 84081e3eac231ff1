"""Turn whatever the user holds (path, PIL image, numpy array, torch tensor) into two aligned things:
the tensor the model sees and the uint8 RGB picture a person sees.

The display image is *exactly* the crop the model saw (same resize, same crop), so a map at feature
resolution lines up with the picture without any further bookkeeping. ``PreparedImage`` also keeps the
affine map between source-image pixels and display pixels, so geometry known in the source image
(a mirror, a crop, a disparity map) can be carried into display coordinates.

Coordinates are (row, col) in pixels, pixel centres at integer positions.

>>> import numpy as np
>>> cfg = PreprocessConfig(input_size=(4, 4), resize_short=None, mean=(0.5,) * 3, std=(0.5,) * 3)
>>> prepared = prepare_image(np.zeros((8, 8, 3), np.uint8), cfg, name="query")
>>> prepared.tensor.shape, prepared.display.shape
(torch.Size([1, 3, 4, 4]), (4, 4, 3))
>>> float(prepared.tensor.min())
-1.0
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "PreprocessConfig",
    "PreparedImage",
    "ImageInputError",
    "to_rgb_uint8",
    "prepare_image",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor, "PreparedImage"]

_PIL_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageInputError(ValueError):
    """An image given by the user is not something we can show to a model."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB picture becomes the model's input tensor.

    ``resize_short``: resize so the short side has this many pixels (aspect kept), then centre-crop
    ``input_size`` (rows, cols). ``resize_short=None``: resize straight to ``input_size`` (aspect
    not kept). ``input_size=None``: keep the picture's own size (after ``resize_short`` if given) —
    fully convolutional models accept any size.
    """

    input_size: tuple[int, int] | None = (224, 224)
    resize_short: int | None = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0 / 255.0  # RGB uint8 -> model range before mean/std

    def __post_init__(self):
        if self.input_size is not None:
            size = self.input_size
            if isinstance(size, int):
                object.__setattr__(self, "input_size", (int(size), int(size)))
            elif len(size) != 2 or min(size) < 1:
                raise ValueError(f"input_size must be (rows, cols) of positive ints, got {size!r}")
            else:
                object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        if self.interpolation not in _PIL_INTERPOLATION:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not known; expected one of "
                f"{sorted(_PIL_INTERPOLATION)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std must have three entries (R, G, B)")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std entries must be positive, got {self.std}")

    @classmethod
    def from_timm(cls, module: torch.nn.Module) -> "PreprocessConfig | None":
        """Read timm's ``pretrained_cfg`` (mean, std, input size, crop fraction, interpolation)."""
        cfg = getattr(module, "pretrained_cfg", None)
        if not cfg:
            return None
        size = tuple(cfg.get("input_size", (3, 224, 224))[1:])
        crop_pct = cfg.get("crop_pct", 0.875) or 1.0
        interp = cfg.get("interpolation", "bicubic")
        return cls(
            input_size=size,
            resize_short=int(round(min(size) / crop_pct)),
            interpolation=interp if interp in _PIL_INTERPOLATION else "bicubic",
            mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
            std=tuple(cfg.get("std", IMAGENET_STD)),
        )


@dataclass(frozen=True)
class PreparedImage:
    """A picture ready for the model, with its display form and its geometry.

    ``tensor``: (1, 3, H, W) float32, normalised. ``display``: (H, W, 3) uint8, the same pixels.
    ``source_size``: (rows, cols) of the picture before resize/crop. Display pixel (r, c) shows
    source position ``(r + 0.5) / scale + offset - 0.5`` per axis (half-pixel centres).
    """

    tensor: torch.Tensor
    display: np.ndarray
    source_size: tuple[int, int]
    scale: tuple[float, float] = (1.0, 1.0)  # display pixels per source pixel (rows, cols)
    offset: tuple[float, float] = (0.0, 0.0)  # source position of the crop's top-left edge
    name: str = "image"
    source: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.display.shape[0], self.display.shape[1]

    def to_source(self, rows, cols):
        """Display (row, col) -> source-image (row, col). Works on scalars and arrays."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        return (
            (rows + 0.5) / self.scale[0] + self.offset[0] - 0.5,
            (cols + 0.5) / self.scale[1] + self.offset[1] - 0.5,
        )

    def from_source(self, rows, cols):
        """Source-image (row, col) -> display (row, col). Inverse of :meth:`to_source`."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        return (
            (rows + 0.5 - self.offset[0]) * self.scale[0] - 0.5,
            (cols + 0.5 - self.offset[1]) * self.scale[1] - 0.5,
        )


def _describe(x: Any) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """numpy (H, W), (H, W, 1|3|4) uint8 or float in [0, 1] -> (H, W, 3) uint8 (a new array)."""
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
        raise ImageInputError(
            f"{name} has {channels} channels; expected RGB (3), RGBA (4) or grayscale (1)"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageInputError(
            f"{name} is {arr.shape[0]}x{arr.shape[1]} pixels; expected at least 2x2 "
            "(an empty or single-pixel image has nothing to explain)"
        )
    if arr.dtype == np.uint8:
        out = arr.astype(np.uint8, copy=True)
    elif arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        raise ImageInputError(
            f"{name} has dtype {arr.dtype}; expected uint8 (0..255) or float (0..1). "
            "Convert with arr.astype(np.uint8) if the values are 0..255."
        )
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageInputError(f"{name} contains NaN or infinite values; expected finite pixels")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageInputError(
                f"{name} is float with values in [{lo:.3g}, {hi:.3g}]; expected floats in [0, 1]. "
                "Divide by 255 for 0..255 data; pass the unnormalised picture, not the model tensor."
            )
        out = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ImageInputError(f"{name} has dtype {arr.dtype}; expected uint8 or float")
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 4:
        # Composite on white: transparent regions would otherwise show arbitrary RGB.
        rgb = out[:, :, :3].astype(np.float32)
        a = out[:, :, 3:4].astype(np.float32) / 255.0
        out = np.round(rgb * a + 255.0 * (1 - a)).astype(np.uint8)
    return np.ascontiguousarray(out)


def to_rgb_uint8(source: ImageLike, *, name: str = "image") -> np.ndarray:
    """Load ``source`` as an (H, W, 3) uint8 RGB array. Never modifies ``source``.

    Accepts a file path, a PIL image (EXIF orientation applied), a numpy array (H, W) or (H, W, C),
    uint8 or float in [0, 1], or a torch tensor (C, H, W), (1, C, H, W) or (H, W, C) likewise.
    """
    if isinstance(source, PreparedImage):
        return source.display.copy()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageInputError(f"{name}: file {str(path)!r} does not exist")
        if path.is_dir():
            raise ImageInputError(f"{name}: {str(path)!r} is a folder; expected an image file")
        try:
            with Image.open(path) as img:
                img.load()
                return to_rgb_uint8(img, name=name)
        except (UnidentifiedImageError, OSError) as err:
            raise ImageInputError(
                f"{name}: {str(path)!r} is not an image file PIL can read "
                "(expected PNG, JPEG, BMP, TIFF, WebP, ...)"
            ) from err
    if isinstance(source, bytes):
        try:
            with Image.open(io.BytesIO(source)) as img:
                img.load()
                return to_rgb_uint8(img, name=name)
        except (UnidentifiedImageError, OSError) as err:
            raise ImageInputError(f"{name}: bytes are not an encoded image") from err
    if isinstance(source, Image.Image):
        img = ImageOps.exif_transpose(source)
        if img.mode in ("I;16", "I", "F"):
            arr = np.asarray(img, dtype=np.float64)
            span = arr.max() - arr.min()
            arr = (arr - arr.min()) / span if span > 0 else np.zeros_like(arr)
            return _array_to_rgb(arr, name)
        if img.mode in ("RGBA", "LA", "P", "PA"):
            img = img.convert("RGBA")
        elif img.mode != "RGB":
            img = img.convert("RGB")
        return _array_to_rgb(np.array(img), name)
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise ImageInputError(
                    f"{name} is a batch of {t.shape[0]} images ({_describe(source)}); expected one image"
                )
            t = t[0]
        if t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            t = t.permute(1, 2, 0)
        elif t.ndim == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
            t = t.permute(1, 2, 0)  # ambiguous tiny case: torch convention is channels-first
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return _array_to_rgb(t.numpy(), name)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name)
    raise ImageInputError(
        f"{name} is a {_describe(source)}; expected a file path, PIL image, numpy array or torch tensor"
    )


def prepare_image(source: ImageLike, config: PreprocessConfig, *, name: str = "image") -> PreparedImage:
    """Resize/crop ``source`` per ``config``; return the model tensor and the identical display crop."""
    if isinstance(source, PreparedImage):
        return source
    rgb = to_rgb_uint8(source, name=name)
    src_rows, src_cols = rgb.shape[:2]
    img = Image.fromarray(rgb)
    resample = _PIL_INTERPOLATION[config.interpolation]

    if config.resize_short is not None:
        s = config.resize_short / min(src_rows, src_cols)
        new_rows = max(1, int(round(src_rows * s)))
        new_cols = max(1, int(round(src_cols * s)))
    elif config.input_size is not None:
        new_rows, new_cols = config.input_size
    else:
        new_rows, new_cols = src_rows, src_cols
    if (new_rows, new_cols) != (src_rows, src_cols):
        img = img.resize((new_cols, new_rows), resample=resample)
    scale = (new_rows / src_rows, new_cols / src_cols)

    top = left = 0
    if config.input_size is not None and config.resize_short is not None:
        crop_rows, crop_cols = config.input_size
        if crop_rows > new_rows or crop_cols > new_cols:
            # Short side smaller than the crop: resize up so the crop fits (keeps alignment exact).
            s2 = max(crop_rows / new_rows, crop_cols / new_cols)
            new_rows = int(np.ceil(new_rows * s2))
            new_cols = int(np.ceil(new_cols * s2))
            img = Image.fromarray(rgb).resize((new_cols, new_rows), resample=resample)
            scale = (new_rows / src_rows, new_cols / src_cols)
        top = int(round((new_rows - crop_rows) / 2.0))
        left = int(round((new_cols - crop_cols) / 2.0))
        img = img.crop((left, top, left + crop_cols, top + crop_rows))
    display = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))

    x = torch.from_numpy(display.astype(np.float32)).permute(2, 0, 1) * config.scale
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    tensor = ((x - mean) / std).unsqueeze(0).contiguous()
    offset = (top / scale[0], left / scale[1])
    return PreparedImage(
        tensor=tensor,
        display=display,
        source_size=(src_rows, src_cols),
        scale=scale,
        offset=offset,
        name=name,
        source=rgb,
    )

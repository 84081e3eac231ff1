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

import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .checks import InputError, check_choice, check_float, check_floats, check_instance, check_int, check_shape2
from .image_io import (
    ImageInputError,
    array_to_rgb,
    describe,
    pil_to_rgb,
    read_image_bytes,
    read_image_file,
    tensor_to_rgb,
)

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


#: Largest side accepted for ``resize_short`` and ``input_size``: beyond it a typo, not a model input.
MAX_SIDE = 16384


def _per_channel(value: Any, name: str, **bounds) -> tuple[float, float, float]:
    """One or three numbers (R, G, B), each checked with ``check_float(**bounds)`` -> 3 floats."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return (check_float(value, name, **bounds),) * 3
    floats = check_floats(value, name, **bounds)
    if len(floats) not in (1, 3):
        raise InputError(f"{name}={floats!r} has {len(floats)} values; expected 1 or 3 (R, G, B)")
    return floats * 3 if len(floats) == 1 else floats


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB picture becomes the model's input tensor.

    ``resize_short``: resize so the short side has this many pixels (aspect kept), then centre-crop
    ``input_size`` (rows, cols). ``resize_short=None``: resize straight to ``input_size`` (aspect
    not kept). ``input_size=None``: keep the picture's own size (after ``resize_short`` if given) —
    fully convolutional models accept any size.

    Every field is checked when the config is made (an :class:`~simviz_widgets.checks.InputError`
    or ``InputTypeError`` naming it) and stored in canonical form, never the caller's object:
    ``input_size`` None, an int n (-> (n, n)) or (rows, cols) ints in [1, MAX_SIDE];
    ``resize_short`` None or an int in [1, MAX_SIDE]; ``interpolation`` one of 'bicubic',
    'bilinear', 'nearest', 'lanczos'; ``mean`` one or three finite numbers (-> 3 floats);
    ``std`` likewise, each > 0; ``scale`` a finite number > 0.
    """

    input_size: tuple[int, int] | None = (224, 224)
    resize_short: int | None = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0 / 255.0  # RGB uint8 -> model range before mean/std

    def __post_init__(self):
        label = "PreprocessConfig"
        size = self.input_size
        if isinstance(size, numbers.Integral):
            side = check_int(size, f"{label} input_size", minimum=1, maximum=MAX_SIDE)
            size = (side, side)
        elif size is not None:
            size = check_shape2(size, f"{label} input_size")
            for k, side in enumerate(size):
                check_int(side, f"{label} input_size[{k}]", maximum=MAX_SIDE)
        short = self.resize_short
        if short is not None:
            short = check_int(short, f"{label} resize_short", minimum=1, maximum=MAX_SIDE)
        canonical = {
            "input_size": size,
            "resize_short": short,
            "interpolation": check_choice(self.interpolation, f"{label} interpolation", tuple(_PIL_INTERPOLATION)),
            "mean": _per_channel(self.mean, f"{label} mean"),
            "std": _per_channel(self.std, f"{label} std", above=0.0),
            "scale": check_float(self.scale, f"{label} scale", above=0.0),
        }
        for key, value in canonical.items():
            object.__setattr__(self, key, value)

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


def to_rgb_uint8(source: ImageLike, *, name: str = "image") -> np.ndarray:
    """Load ``source`` as an (H, W, 3) uint8 RGB array. Never modifies ``source``.

    Accepts a file path, encoded bytes, a PIL image (EXIF orientation applied), a numpy array (H, W)
    or (H, W, C), or a torch tensor (C, H, W), (1, C, H, W) or (H, W, C). Values: uint8 as is;
    16-bit (uint16, PIL I;16 / I, 16-bit files, grey or RGB) by the fixed scale value / 257; float
    in [0, 1] times 255 — never a per-image stretch (:mod:`simviz_widgets.image_io` has the rules).
    A file with several frames gives its first, with a warning.
    """
    if isinstance(source, PreparedImage):
        return source.display.copy()
    if isinstance(source, (str, os.PathLike)):
        return read_image_file(source, name)
    if isinstance(source, (bytes, bytearray)):
        return read_image_bytes(bytes(source), name)
    if isinstance(source, Image.Image):
        return pil_to_rgb(source, name)
    if isinstance(source, torch.Tensor):
        return tensor_to_rgb(source, name)
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, name)
    raise ImageInputError(
        f"{name} is a {describe(source)}; expected a file path, PIL image, numpy array or torch tensor"
    )


def prepare_image(source: ImageLike, config: PreprocessConfig, *, name: str = "image") -> PreparedImage:
    """Resize/crop ``source`` per ``config``; return the model tensor and the identical display crop."""
    check_instance(config, "config", PreprocessConfig)
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
    # On x's device (the CPU: it comes from numpy), not torch's default device; models move it.
    mean = torch.tensor(config.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
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

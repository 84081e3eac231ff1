"""Read TensorFlow.js weights: a ``*-weights_manifest.json`` and its binary shard(s).

The manifest is a list of groups, each with ``paths`` (shard files, read back to back as one byte
stream) and ``weights`` (``name``, ``shape``, ``dtype`` and optionally ``quantization``). Tensors
follow each other in the stream in manifest order. A quantised tensor is stored as unsigned integers
``q`` (uint8 or uint16) with a per-tensor ``scale`` and ``min``: its value is ``q * scale + min``
(the affine quantisation of TensorFlow.js's converter).

>>> import numpy as np
>>> dequantize(np.array([0, 1, 255], np.uint8), scale=0.5, minimum=-1.0).tolist()
[-1.0, -0.5, 126.5]
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from ..checks import InputError, check_path

__all__ = ["read_tfjs_weights", "dequantize", "TfjsWeightsError"]

_STORED = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16}
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16}


class TfjsWeightsError(InputError):
    """A manifest or shard that does not describe the tensors it should."""


def dequantize(q: np.ndarray, *, scale: float, minimum: float) -> np.ndarray:
    """``q * scale + min`` in float32 (computed in float64, as exact as the stored parameters)."""
    return (np.asarray(q, dtype=np.float64) * float(scale) + float(minimum)).astype(np.float32)


def read_tfjs_weights(manifest_path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """name -> float32 array (int32 tensors stay int32), in manifest order. The shards are looked up
    next to the manifest. Raises :class:`TfjsWeightsError` when a shard is short or has extra bytes."""
    manifest_path = check_path(manifest_path, "manifest_path")
    if not manifest_path.is_file():
        raise FileNotFoundError(f"manifest_path={os.fspath(manifest_path)!r}: no such file")
    folder = os.fspath(manifest_path.parent)
    try:
        with open(manifest_path, encoding="utf-8") as f:
            groups = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TfjsWeightsError(f"{manifest_path}: not a JSON weights manifest ({err})") from None
    if not isinstance(groups, list):
        raise TfjsWeightsError(f"{manifest_path}: expected a list of weight groups, got {type(groups).__name__}")
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for group in groups:
        try:
            data = b"".join(_read(os.path.join(folder, p)) for p in group["paths"])
            offset = 0
            for spec in group["weights"]:
                array, offset = _take(data, offset, spec, manifest_path)
                out[spec["name"]] = array
        except TfjsWeightsError:
            raise
        except (KeyError, TypeError, ValueError) as err:  # a manifest entry without paths, name, shape...
            raise TfjsWeightsError(f"{manifest_path}: malformed weight group ({type(err).__name__}: {err}); "
                                   "expected 'paths' and 'weights' with 'name', 'shape' and 'dtype'") from None
        if offset != len(data):
            raise TfjsWeightsError(
                f"{manifest_path}: the shard(s) {group['paths']} hold {len(data)} bytes but the manifest "
                f"describes {offset}; wrong or corrupted weight file"
            )
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _take(data: bytes, offset: int, spec: dict, where) -> tuple[np.ndarray, int]:
    name, shape = spec["name"], tuple(int(s) for s in spec["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    quant = spec.get("quantization")
    if quant is not None:
        if quant.get("dtype") not in _QUANTISED or "scale" not in quant or "min" not in quant:
            raise TfjsWeightsError(
                f"{where}: tensor {name!r} uses quantisation {quant!r}; only uint8/uint16 with scale and min are read"
            )
        stored = np.dtype(_QUANTISED[quant["dtype"]]).newbyteorder("<")
    else:
        if spec["dtype"] not in _STORED:
            raise TfjsWeightsError(
                f"{where}: tensor {name!r} has dtype {spec['dtype']!r}; expected one of {list(_STORED)}")
        stored = np.dtype(_STORED[spec["dtype"]]).newbyteorder("<")
    end = offset + count * stored.itemsize
    if end > len(data):
        raise TfjsWeightsError(
            f"{where}: the shard ends at byte {len(data)} but tensor {name!r} {shape} needs bytes "
            f"{offset}..{end}; wrong or truncated weight file"
        )
    raw = np.frombuffer(data, dtype=stored, count=count, offset=offset).reshape(shape)
    if quant is not None:
        array = dequantize(raw, scale=quant["scale"], minimum=quant["min"])
    else:
        array = raw.astype(raw.dtype.newbyteorder("="))
    return array, end

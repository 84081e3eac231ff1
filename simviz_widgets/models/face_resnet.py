"""dlib's ResNet face descriptor (128-d, metric-learned) as a torch network and a similarity model.

The network is dlib's ``dlib_face_recognition_resnet_model_v1`` (Davis King, released to the
public domain; 99.38 % on the LFW benchmark), trained so that the Euclidean distance between two
descriptors is small for one person and large for two: dlib's threshold is 0.6. The weights are
face-api.js's TensorFlow.js port as shipped by the npm package ``@vladmandic/face-api`` 1.7.15
(MIT), installed by ``bash scripts/install_face_data.sh`` (no download at run time).

Network (150 x 150 RGB in 0..255, minus the mean (122.782, 117.001, 104.298), divided by 255):

* ``conv32_down``: conv 7x7 stride 2 without padding, per-channel affine ("scale"), ReLU -> 72 x 72;
  ``pool``: max 3x3 stride 2 -> 35 x 35;
* residual stages ``conv32_1..3`` (35 x 35), ``conv64_down``, ``conv64_1..3`` (17 x 17),
  ``conv128_down``, ``conv128_1..2`` (8 x 8), ``conv256_down``, ``conv256_1..2`` (4 x 4) and
  ``conv256_down_out`` (2 x 2); a block is conv3x3 + affine + ReLU, conv3x3 + affine, plus the
  shortcut, ReLU. A down block's first conv has stride 2 and no padding, its shortcut is a 2x2
  average pool (stride 2) with zero channels appended; when the pool's grid is one larger, the conv
  branch gets a zero row and column at the bottom and right;
* ``avgpool`` (global mean) and ``fc`` (256 -> 128, no bias).

As a :class:`~simviz_widgets.adapters.SimilarityModel` (``load("face_resnet")``): metric
'euclidean' (similarity = -squared distance; the distance is ``sqrt(-score)``). The last feature
map is only 2 x 2, too coarse to say which part of a face matched, so the default decomposes the
8 x 8, 128-channel stage (``layer="conv128_2"``, gradient x input, explain/any_layer.py; the
completeness error is reported per explanation). ``layer=None`` gives the exact 2 x 2
decomposition. :meth:`FaceSimilarityModel.prepare` crops like face-api (datasets/faces.py: the
whole picture padded to a centred square, resized to 150 x 150); pass a face crop
(``load_face(name, crop=True)`` or ``crop_face(photo, box)``), not a whole photo.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..adapters import SimilarityModel
from ..checks import check_instance
from ..datasets.faces import (
    FACE_API_FOLDER,
    FACE_SIZE,
    crop_face,
    face_crop_geometry,
    face_file,
)
from ..images import ImageLike, PreparedImage, PreprocessConfig, to_rgb_uint8
from .registry import register_model
from .tfjs_weights import read_tfjs_weights

__all__ = ["FaceResNet", "FaceSimilarityModel", "face_resnet", "FACE_PREPROCESS", "FACE_MEAN_RGB",
           "DEFAULT_FACE_LAYER", "WEIGHTS_FILE", "MANIFEST_FILE", "load_face_weights", "descriptor_distance"]

FACE_MEAN_RGB = (122.782, 117.001, 104.298)
# (x / 255 - mean / 255) / 1 == (x - mean) / 255: the network's own normalisation.
FACE_PREPROCESS = PreprocessConfig(
    input_size=(FACE_SIZE, FACE_SIZE), resize_short=None, interpolation="bilinear",
    mean=tuple(m / 255.0 for m in FACE_MEAN_RGB), std=(1.0, 1.0, 1.0),
)
DEFAULT_FACE_LAYER = "conv128_2"
WEIGHTS_FILE = "face_recognition_model.bin"
MANIFEST_FILE = "face_recognition_model-weights_manifest.json"

# (name, in channels, out channels, down) for the residual blocks, in order.
_BLOCKS = (
    [("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
     ("conv64_down", 32, 64, True)]
    + [(f"conv64_{k}", 64, 64, False) for k in (1, 2, 3)]
    + [("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
       ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
       ("conv256_down_out", 256, 256, True)]
)


class Scale(nn.Module):
    """Per-channel affine ``x * weight + bias`` (dlib's "affine" layer: batch norm folded)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvScale(nn.Module):
    """conv (with bias) + :class:`Scale` (+ ReLU). ``stride=2`` means no padding (TF 'valid');
    stride 1 pads one pixel (TF 'same' for 3x3)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=0 if stride == 2 else kernel // 2)
        self.scale = Scale(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale(self.conv(x))
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    """conv1 (+ReLU), conv2, plus the shortcut, ReLU; a down block halves the grid and may widen."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, stride=2 if down else 1)
        self.conv2 = ConvScale(cout, cout, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        if not self.down:
            return F.relu(out + x)
        short = F.avg_pool2d(x, 2, 2)
        if short.shape[1] != out.shape[1]:  # zero channels appended (the widening)
            short = F.pad(short, (0, 0, 0, 0, 0, out.shape[1] - short.shape[1]))
        # 'valid' conv of an odd grid gives one row/col fewer than the pool: zeros at bottom/right.
        dr, dc = short.shape[2] - out.shape[2], short.shape[3] - out.shape[3]
        if dr or dc:
            out = F.pad(out, (0, dc, 0, dr))
        return F.relu(out + short)


class FaceResNet(nn.Module):
    """dlib's face descriptor network (module docstring); input (B, 3, 150, 150) normalised,
    output (B, 128) descriptors. Random weights until :meth:`load_tfjs` / :func:`load_face_weights`."""

    def __init__(self):
        super().__init__()
        self.conv32_down = ConvScale(3, 32, kernel=7, stride=2)
        self.pool = nn.MaxPool2d(3, 2)
        for name, cin, cout, down in _BLOCKS:
            self.add_module(name, Residual(cin, cout, down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv32_down(x))
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def load_tfjs(self, tensors: dict) -> "FaceResNet":
        """Copy face-api's tensors (name -> array, :func:`read_tfjs_weights`) into this network.
        Conv filters [kh, kw, in, out] -> [out, in, kh, kw]; ``fc`` [256, 128] -> its transpose.
        Every tensor must be used and every parameter set."""
        state = {}
        for name, value in tensors.items():
            array = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            key = name.replace("/conv/filters", ".conv.weight").replace("/conv/bias", ".conv.bias")
            key = key.replace("/scale/weights", ".scale.weight").replace("/scale/biases", ".scale.bias")
            key = key.replace("/", ".")
            if key.endswith("conv.weight"):
                array = array.permute(3, 2, 0, 1)
            elif key == "fc":
                key, array = "fc.weight", array.T
            state[key] = array.contiguous()
        # conv32_down has conv/scale at the top level, the blocks have conv1/conv2 inside.
        own = self.state_dict()
        unknown = sorted(set(state) - set(own))
        missing = sorted(set(own) - set(state))
        if unknown or missing:
            raise ValueError(f"face-api tensors do not match FaceResNet: unused {unknown}, unset {missing}")
        wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
        if wrong:
            raise ValueError("shape mismatch for " + ", ".join(
                f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong))
        self.load_state_dict(state, strict=True)
        return self


def load_face_weights() -> dict:
    """face-api's 117 tensors (name -> float32 array, manifest order) from the data folder, or
    :class:`~simviz_widgets.datasets.FaceDataMissingError` naming the set-up command."""
    manifest = face_file(FACE_API_FOLDER, MANIFEST_FILE)
    face_file(FACE_API_FOLDER, WEIGHTS_FILE)
    return read_tfjs_weights(manifest)


@functools.lru_cache(maxsize=2)
def _face_weights(data_dir: str) -> dict:
    del data_dir  # the cache key: another $SIMVIZ_DATA reads again
    return load_face_weights()


def _face_module(data_dir: str) -> FaceResNet:
    # A new network per load (the weights are read once): one model's .half(), .cuda() or hooks
    # never reach another's.
    return FaceResNet().load_tfjs(_face_weights(data_dir)).eval()


class FaceSimilarityModel(SimilarityModel):
    """A :class:`SimilarityModel` whose :meth:`prepare` crops like face-api: the picture padded
    with black to a centred square and resized to 150 x 150 without half-pixel centres
    (:func:`~simviz_widgets.datasets.crop_face`). Copies (background jobs) keep this class."""

    bias_split = "spatial"  # any-layer mode: the later biases split over the cells (exact here, docs/faces.md)

    def prepare(self, image: ImageLike, *, name: str = "image") -> PreparedImage:
        if isinstance(image, PreparedImage):
            return image
        rgb = to_rgb_uint8(image, name=name)
        size = self.preprocess.input_size[0]
        geo = face_crop_geometry(rgb.shape, None, size=size)
        display = crop_face(rgb, None, size=size)
        cfg = self.preprocess
        x = torch.from_numpy(display.astype(np.float32)).permute(2, 0, 1) * cfg.scale
        mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
        # PreparedImage maps display (r, c) to source (r + 0.5) / scale + offset - 0.5; the crop
        # samples origin + r * step: scale = 1 / step and offset = origin + (1 - step) / 2.
        offset = tuple(o + 0.5 * (1.0 - geo.step) for o in geo.origin)
        return PreparedImage(
            tensor=((x - mean) / std).unsqueeze(0).contiguous(), display=display,
            source_size=(rgb.shape[0], rgb.shape[1]), scale=(1.0 / geo.step, 1.0 / geo.step),
            offset=offset, name=name, source=rgb,
        )

    def rewrap(self, module: nn.Module, head: nn.Module | None) -> "FaceSimilarityModel":
        new = super().rewrap(module, head)
        new.__class__ = type(self)  # the base rewraps as SimilarityModel; keep the face crop
        return new


@register_model(
    "face_resnet",
    "dlib's ResNet face descriptor (128-d, face-api weights, offline after scripts/install_face_data.sh), "
    "Euclidean metric; default any-layer mode at the 8x8 stage conv128_2 (layer=None: exact 2x2)",
)
def face_resnet(*, layer: str | nn.Module | None = DEFAULT_FACE_LAYER,
                metric: str = "euclidean") -> FaceSimilarityModel:
    """The face model (module docstring). ``layer``: where to decompose (default ``"conv128_2"``,
    8 x 8; None: the 2 x 2 pooling input, exact). ``metric``: 'euclidean' (the trained one),
    'cosine' or 'dot'."""
    if layer is not None:
        check_instance(layer, "layer", (str, nn.Module), "str, nn.Module or None")
    module = _face_module(os.fspath(face_file(FACE_API_FOLDER, WEIGHTS_FILE).parent))
    return FaceSimilarityModel.wrap(module, layer=layer, metric=metric, preprocess=FACE_PREPROCESS,
                                    name="face_resnet")


def descriptor_distance(model: SimilarityModel, a: ImageLike, b: ImageLike) -> float:
    """Euclidean distance between the descriptors of two face crops (dlib's threshold: 0.6)."""
    ga, gb = model.embed(a), model.embed(b)
    return float((ga - gb).norm())

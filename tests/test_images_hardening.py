"""Image loading at the boundary: 16-bit data, animations, unreadable files, decompression bombs,
and PreprocessConfig validation. Every refusal is one of the project's errors (InputError /
InputTypeError, both SimvizError) naming the input and what was expected."""

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from privileges import rerun_unprivileged

from simviz_widgets.checks import InputError, InputTypeError, SimvizError
from simviz_widgets.images import ImageInputError, PreprocessConfig, prepare_image, to_rgb_uint8


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG written straight from numpy (PIL cannot write 16-bit RGB): (H, W) grey,
    (H, W, 3) RGB or (H, W, 4) RGBA, big-endian samples, filter 0 on every row."""
    arr = np.asarray(arr, dtype=np.uint16)
    h, w = arr.shape[:2]
    colour = {1: 0, 3: 2, 4: 6}[1 if arr.ndim == 2 else arr.shape[2]]
    rows = arr.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    path.write_bytes(data)


def write_png_header(path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` 8-bit RGB pixels, with almost no data."""
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b""))
    path.write_bytes(data)


DARK = np.linspace(0, 4000, 48 * 40).reshape(48, 40).astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# 1. 16-bit data: the fixed scale value / 257, never a per-image stretch


def test_error_type_is_the_projects_input_error():
    assert issubclass(ImageInputError, InputError)
    assert issubclass(ImageInputError, SimvizError) and issubclass(ImageInputError, ValueError)


def test_16bit_grey_png_constant_keeps_its_level(tmp_path):
    path = tmp_path / "const16.png"
    Image.fromarray(np.full((20, 30), 30000, np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    rgb = to_rgb_uint8(path)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == 117)  # round(30000 / 257); a per-image stretch gave 0


def test_16bit_grey_and_rgb_pngs_of_the_same_data_agree(tmp_path):
    grey, colour = tmp_path / "dark_grey.png", tmp_path / "dark_rgb.png"
    Image.fromarray(DARK).save(grey)
    write_png16(colour, np.stack([DARK] * 3, axis=-1))
    with Image.open(colour) as img:
        assert img.mode == "RGB"  # PIL itself would keep only the high byte
    g, c = to_rgb_uint8(grey), to_rgb_uint8(colour)
    expected = np.rint(DARK / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(g[..., 0], expected)
    np.testing.assert_array_equal(c, g)
    assert g.mean() == pytest.approx(DARK.mean() / 257, abs=0.05)  # ~7.8, not the stretched 127


def test_16bit_rgb_png_keeps_the_low_byte_and_alpha(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (9, 11, 4)).astype(np.uint16)
    values[..., 3] = 65535  # opaque
    path = tmp_path / "rgba16.png"
    write_png16(path, values)
    np.testing.assert_array_equal(to_rgb_uint8(path), np.rint(values[..., :3] / 257.0).astype(np.uint8))


def test_16bit_numpy_torch_and_pil_inputs_use_the_same_scale():
    expected = np.rint(DARK / 257.0).astype(np.uint8)
    for source in (DARK, np.stack([DARK] * 3, -1), Image.fromarray(DARK), Image.fromarray(DARK.astype(np.int32)),
                   torch.from_numpy(np.stack([DARK] * 3)).to(torch.uint16)):
        rgb = to_rgb_uint8(source)
        np.testing.assert_array_equal(rgb, np.stack([expected] * 3, -1), err_msg=type(source).__name__)


def test_32bit_pil_image_beyond_16_bits_is_refused():
    img = Image.fromarray(np.full((8, 8), 70000, np.int32))
    with pytest.raises(ImageInputError, match=r"picture is .*mode I.*70000.*0\.\.65535"):
        to_rgb_uint8(img, name="picture")


def test_floats_are_0_to_1_for_numpy_and_pil_alike():
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    expected = np.rint(values * 255).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(values)[..., 0], expected)
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(values, mode="F"))[..., 0], expected)
    constant = np.full((8, 8), 0.25, np.float32)  # a constant stays a constant level, not black
    assert np.all(to_rgb_uint8(Image.fromarray(constant, mode="F")) == 64)
    with pytest.raises(ImageInputError, match=r"float with values in \[0, 300\]; expected floats in \[0, 1\]"):
        to_rgb_uint8(Image.fromarray(values * 300, mode="F"))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.bool_, np.complex64])
def test_other_dtypes_are_refused_naming_what_is_accepted(dtype):
    with pytest.raises(ImageInputError, match=rf"img has dtype {np.dtype(dtype)}; expected uint8 .*uint16 .*float"):
        to_rgb_uint8(np.zeros((4, 4, 3), dtype), name="img")


# ---------------------------------------------------------------------------------------------
# 2. Animations: the first frame, said out loud


def _frames():
    return [Image.fromarray(np.full((10, 12, 3), level, np.uint8)) for level in (10, 120, 240)]


def test_animated_gif_warns_and_uses_the_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = _frames()
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with pytest.warns(UserWarning, match=r"anim\.gif.* 3 frames.*first frame"):
        rgb = to_rgb_uint8(path, name="query")
    assert np.all(rgb == 10)  # the first frame's level
    with pytest.warns(UserWarning, match="3 frames"):
        to_rgb_uint8(path.read_bytes())


def test_single_frame_gif_does_not_warn(tmp_path):
    path = tmp_path / "still.gif"
    _frames()[0].save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_rgb_uint8(path)


# ---------------------------------------------------------------------------------------------
# 3. Unreadable files are not "not an image"


def _png(tmp_path, name="locked.png"):
    path = tmp_path / name
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(path)
    return path


def test_unreadable_file_says_permission_denied(tmp_path, request):
    path = _png(tmp_path)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):  # root: run again with the permission bypass dropped
            return rerun_unprivileged(request)
        with pytest.raises(ImageInputError, match=r"query: .*locked\.png.* cannot be read.*permission denied"):
            to_rgb_uint8(path, name="query")
    finally:
        os.chmod(path, 0o644)


def test_permission_error_while_decoding_is_reported_as_such(tmp_path, monkeypatch):
    path = _png(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageInputError, match=r"query: .*locked\.png.* cannot be read.*permission denied") as info:
        to_rgb_uint8(path, name="query")
    assert "not an image" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# 4. Decompression bombs


def test_decompression_bomb_header_is_a_clear_input_error(tmp_path):
    path = tmp_path / "bomb.png"
    write_png_header(path, 100_000, 100_000)
    with pytest.raises(ImageInputError, match=r"query: .*bomb\.png.* 10,000,000,000 pixels.*MAX_IMAGE_PIXELS"):
        to_rgb_uint8(path, name="query")
    with pytest.raises(ImageInputError, match="10,000,000,000 pixels"):
        to_rgb_uint8(path.read_bytes(), name="query")


def test_image_above_the_pixel_limit_is_refused_with_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warned = tmp_path / "big.png"  # 1600 pixels: PIL only warns (limit < n <= 2 * limit)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(warned)
    with pytest.raises(ImageInputError, match=r"reference: .*big\.png.* 40x40 .*1,600 pixels.*1,000"):
        to_rgb_uint8(warned, name="reference")
    refused = tmp_path / "bigger.png"  # 2500 pixels: PIL raises
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(refused)
    with pytest.raises(ImageInputError, match=r"reference: .*bigger\.png.* 2,500 pixels"):
        to_rgb_uint8(refused, name="reference")


# ---------------------------------------------------------------------------------------------
# 5. PreprocessConfig validates every field


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"mean": float("nan")}, "mean"),
        ({"mean": (0.5, float("nan"), 0.5)}, r"mean\[1\]"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"mean": "abc"}, "mean"),
        ({"mean": (0.5, 0.5, float("inf"))}, r"mean\[2\]"),
        ({"std": float("inf")}, "std"),
        ({"std": 0}, "std"),
        ({"std": (0.5, -1.0, 0.5)}, r"std\[1\]"),
        ({"std": ()}, "std"),
        ({"scale": 0}, "scale"),
        ({"scale": -1.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": "1/255"}, "scale"),
        ({"resize_short": 0}, "resize_short"),
        ({"resize_short": -5}, "resize_short"),
        ({"resize_short": 2.5}, "resize_short"),
        ({"resize_short": True}, "resize_short"),
        ({"resize_short": "256"}, "resize_short"),
        ({"input_size": (0, 4)}, r"input_size\[0\]"),
        ({"input_size": (4,)}, "input_size"),
        ({"input_size": (4.0, 4)}, r"input_size\[0\]"),
        ({"input_size": "ab"}, "input_size"),
        ({"input_size": -3}, "input_size"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"interpolation": None}, "interpolation"),
    ],
)
def test_preprocess_config_refuses_bad_fields(kwargs, field):
    with pytest.raises((InputError, InputTypeError), match=field) as info:
        PreprocessConfig(**kwargs)
    assert isinstance(info.value, SimvizError)
    assert "PreprocessConfig" in str(info.value)


def test_preprocess_config_stores_canonical_values_without_touching_the_callers():
    mean, std, size = [0.5], np.array([0.25, 0.5, 1.0]), np.array([6, 8])
    cfg = PreprocessConfig(input_size=size, resize_short=np.int64(9), mean=mean, std=std, scale=np.float32(0.5))
    assert cfg.mean == (0.5, 0.5, 0.5) and all(type(v) is float for v in cfg.mean)
    assert cfg.std == (0.25, 0.5, 1.0) and all(type(v) is float for v in cfg.std)
    assert cfg.input_size == (6, 8) and all(type(v) is int for v in cfg.input_size)
    assert type(cfg.resize_short) is int and type(cfg.scale) is float
    assert mean == [0.5] and std.tolist() == [0.25, 0.5, 1.0] and size.tolist() == [6, 8]
    assert PreprocessConfig(input_size=7).input_size == (7, 7)
    assert hash(cfg) == hash(PreprocessConfig(input_size=(6, 8), resize_short=9, mean=(0.5,) * 3,
                                              std=(0.25, 0.5, 1.0), scale=0.5))


def test_prepare_image_refuses_a_config_of_the_wrong_type():
    with pytest.raises(InputTypeError, match="config"):
        prepare_image(np.zeros((4, 4, 3), np.uint8), {"input_size": (4, 4)})

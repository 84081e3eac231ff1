"""Property tests of the image boundary: whatever array, PIL image or tensor comes in, and whatever
small PreprocessConfig, ``prepare_image`` either refuses with one of the project's errors or returns
a display image and a model tensor that agree.

Pixel data is drawn from a seed (numpy), not element by element, so the examples stay fast."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from simviz_widgets.checks import SimvizError
from simviz_widgets.images import PreprocessConfig, prepare_image, to_rgb_uint8

DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "bool")
FLOAT_RANGES = ("unit", "constant", "wide", "nan", "inf")


def _pixels(seed: int, shape: tuple, dtype: str, value_range: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("uint8", "uint16", "int32"):
        info = np.iinfo(dtype)
        low, high = (info.min, info.max) if value_range != "constant" else (info.max // 3,) * 2
        return rng.integers(low, int(high) + 1, size=shape, dtype=dtype)
    values = rng.random(shape)
    if value_range == "constant":
        values[...] = 0.37
    elif value_range == "wide":
        values = values * 400 - 100
    elif value_range in ("nan", "inf") and values.size:
        values.flat[rng.integers(values.size)] = np.nan if value_range == "nan" else -np.inf
    return values.astype(dtype)


def _valid_values(arr: np.ndarray) -> bool:
    if arr.dtype in (np.uint8, np.uint16):
        return True
    if arr.dtype.kind == "f":
        return bool(np.all(np.isfinite(arr)) and (arr.size == 0 or (arr.min() >= 0 and arr.max() <= 1)))
    return False  # int32, bool


@st.composite
def arrays(draw):
    rows, cols = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    channels = draw(st.sampled_from((None, 1, 2, 3, 4, 5)))
    dtype = draw(st.sampled_from(DTYPES))
    value_range = draw(st.sampled_from(FLOAT_RANGES)) if dtype.startswith("float") else "full"
    shape = (rows, cols) if channels is None else (rows, cols, channels)
    return _pixels(draw(st.integers(0, 2**32 - 1)), shape, dtype, value_range), channels


@st.composite
def configs(draw):
    input_size = draw(st.one_of(st.none(), st.tuples(st.integers(1, 16), st.integers(1, 16))))
    return PreprocessConfig(
        input_size=input_size,
        resize_short=draw(st.one_of(st.none(), st.integers(1, 20))),
        interpolation=draw(st.sampled_from(("bicubic", "bilinear", "nearest", "lanczos"))),
        mean=draw(st.tuples(*[st.floats(-1, 1)] * 3)),
        std=draw(st.tuples(*[st.floats(0.05, 2)] * 3)),
        scale=draw(st.sampled_from((1 / 255, 0.01, 1.0))),
    )


def _check_prepared(prepared, cfg: PreprocessConfig, source_size: tuple[int, int]):
    """The invariants of a successful prepare_image."""
    display, tensor = prepared.display, prepared.tensor
    assert display.dtype == np.uint8 and display.ndim == 3 and display.shape[2] == 3
    assert display.flags.c_contiguous
    rows, cols = display.shape[:2]
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (1, 3, rows, cols)
    assert torch.isfinite(tensor).all()
    if cfg.input_size is not None:
        assert (rows, cols) == cfg.input_size
    elif cfg.resize_short is not None:
        assert min(rows, cols) == cfg.resize_short
    else:
        assert (rows, cols) == source_size
    assert prepared.source_size == source_size and prepared.source.shape == (*source_size, 3)
    # The model sees exactly the display pixels: undo mean / std / scale and get them back.
    mean = torch.tensor(cfg.mean).view(3, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    seen = ((tensor[0].double() * std + mean) / cfg.scale).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(seen, display.astype(np.float64), atol=2e-3)
    # The display is a crop of the (resized) source: its edges map inside the source.
    top, left = prepared.to_source(-0.5, -0.5)
    bottom, right = prepared.to_source(rows - 0.5, cols - 0.5)
    eps = 1e-6 * max(source_size)
    assert -0.5 - eps <= top < bottom <= source_size[0] - 0.5 + eps
    assert -0.5 - eps <= left < right <= source_size[1] - 0.5 + eps
    r, c = prepared.from_source(*prepared.to_source(rows / 3, cols / 2))
    assert r == pytest.approx(rows / 3) and c == pytest.approx(cols / 2)


def _prepare_or_refuse(source, cfg):
    """prepare_image's result, or None if it refused with one of the project's errors (anything
    else — a bare ValueError, an IndexError from deep inside — propagates and fails the test)."""
    try:
        return prepare_image(source, cfg, name="probe")
    except SimvizError as err:
        assert "probe" in str(err), err  # every refusal names the input
        return None


@given(arrays(), configs())
def test_numpy_arrays(array_and_channels, cfg):
    arr, channels = array_and_channels
    before = arr.copy()
    prepared = _prepare_or_refuse(arr, cfg)
    np.testing.assert_array_equal(arr, before)  # the caller's array is never modified
    valid = channels in (None, 1, 3, 4) and min(arr.shape[:2]) >= 2 and _valid_values(arr)
    assert (prepared is not None) == valid
    if prepared is not None:
        _check_prepared(prepared, cfg, arr.shape[:2])
        if cfg.input_size is None and cfg.resize_short is None:
            np.testing.assert_array_equal(prepared.display, to_rgb_uint8(arr))


@given(arrays(), configs())
def test_torch_tensors(array_and_channels, cfg):
    arr, channels = array_and_channels
    chw = arr if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    tensor = torch.from_numpy(chw.copy())
    prepared = _prepare_or_refuse(tensor, cfg)
    valid = channels in (None, 1, 3, 4) and min(arr.shape[:2]) >= 2 and _valid_values(arr)
    if channels in (None, 1, 3, 4):  # other channel counts may read as a different layout
        assert (prepared is not None) == valid
    if prepared is not None:
        _check_prepared(prepared, cfg, prepared.source_size)
        if valid:
            assert prepared.source_size == arr.shape[:2]
            np.testing.assert_array_equal(prepared.source, to_rgb_uint8(arr))  # same as from numpy


PIL_MODES = ("L", "RGB", "RGBA", "LA", "P", "1", "I;16", "I", "F")


@st.composite
def pil_images(draw):
    rows, cols = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    mode = draw(st.sampled_from(PIL_MODES))
    seed = draw(st.integers(0, 2**32 - 1))
    if mode in ("I;16",):
        return Image.fromarray(_pixels(seed, (rows, cols), "uint16", "full")), True
    if mode == "I":
        values = _pixels(seed, (rows, cols), "int32", "full") // draw(st.sampled_from((1, 2**15)))
        return Image.fromarray(values.astype(np.int32)), bool(values.min() >= 0 and values.max() <= 65535)
    if mode == "F":
        value_range = draw(st.sampled_from(FLOAT_RANGES))
        values = _pixels(seed, (rows, cols), "float32", value_range)
        return Image.fromarray(values, mode="F"), _valid_values(values)
    channels = {"L": None, "1": None, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    base = _pixels(seed, (rows, cols) if channels is None else (rows, cols, channels), "uint8", "full")
    img = Image.fromarray(base)
    if mode in ("1", "P"):
        img = img.convert(mode)
    assert img.mode == mode
    return img, True


@given(pil_images(), configs())
def test_pil_images(image_and_validity, cfg):
    img, valid_values = image_and_validity
    before = img.copy()
    prepared = _prepare_or_refuse(img, cfg)
    assert img.mode == before.mode and img.tobytes() == before.tobytes()
    assert (prepared is not None) == (valid_values and min(img.size) >= 2)
    if prepared is not None:
        _check_prepared(prepared, cfg, (img.height, img.width))


@given(st.integers(2, 40), st.integers(2, 40), st.integers(0, 65535))
def test_16bit_grey_and_rgb_agree(rows, cols, level):
    grey = np.full((rows, cols), level, np.uint16)
    expected = round(level / 257)
    for source in (grey, np.stack([grey] * 3, -1), Image.fromarray(grey), torch.from_numpy(grey.astype(np.int32))
                   .to(torch.uint16)):
        assert np.all(to_rgb_uint8(source) == expected)


_ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3), st.lists(st.floats(-2, 2), max_size=4), st.tuples(st.integers(-1, 9), st.integers(-1, 9)),
)


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(("input_size", "resize_short", "interpolation", "mean", "std", "scale")),
                       _ANYTHING))
def test_preprocess_config_refuses_or_is_canonical(kwargs):
    try:
        cfg = PreprocessConfig(**kwargs)
    except SimvizError as err:
        assert "PreprocessConfig" in str(err)
        return
    assert cfg.input_size is None or (
        len(cfg.input_size) == 2 and all(type(v) is int and v >= 1 for v in cfg.input_size))
    assert cfg.resize_short is None or (type(cfg.resize_short) is int and cfg.resize_short >= 1)
    for values, positive in ((cfg.mean, False), (cfg.std, True)):
        assert len(values) == 3 and all(type(v) is float and np.isfinite(v) for v in values)
        assert not positive or min(values) > 0
    assert type(cfg.scale) is float and np.isfinite(cfg.scale) and cfg.scale > 0
    hash(cfg)


@pytest.fixture(scope="module")
def tiny():
    import simviz_widgets as sv

    return sv.load_model("tiny_test")


@settings(max_examples=25)
@given(arrays())
def test_model_prepare_entry_point(tiny, array_and_channels):
    """SimilarityModel.prepare (what explain() calls) keeps the same contract with the model's config."""
    arr, channels = array_and_channels
    try:
        prepared = tiny.prepare(arr, name="probe")
    except SimvizError as err:
        assert "probe" in str(err)
        assert not (channels in (None, 1, 3, 4) and min(arr.shape[:2]) >= 2 and _valid_values(arr))
        return
    _check_prepared(prepared, tiny.preprocess, arr.shape[:2])

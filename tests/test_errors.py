"""Bad input gets a clear error at the boundary, naming the input and what was expected."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import simviz_widgets as sv
from simviz_widgets.adapters import ModelAdapterError
from simviz_widgets.images import ImageInputError, PreprocessConfig

SMALL = PreprocessConfig(input_size=(64, 64), resize_short=64)


@pytest.fixture(scope="module")
def tiny():
    return sv.load_model("tiny_test")


@pytest.fixture(scope="module")
def good():
    return np.random.default_rng(0).random((64, 64, 3))


def test_missing_file(tiny, good, tmp_path):
    with pytest.raises(ImageInputError, match=r"query: file .*nope\.png.* does not exist"):
        sv.explain(tiny, tmp_path / "nope.png", good)


def test_non_image_file(tiny, good, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a picture")
    with pytest.raises(ImageInputError, match="reference: .*notes.png.* is not an image file"):
        sv.explain(tiny, good, path)


def test_folder_instead_of_file(tiny, good, tmp_path):
    with pytest.raises(ImageInputError, match="is a folder"):
        sv.explain(tiny, tmp_path, good)


@pytest.mark.parametrize("channels", [2, 5])
def test_wrong_channel_count(tiny, good, channels):
    with pytest.raises(ImageInputError, match=f"reference has {channels} channels; expected RGB"):
        sv.explain(tiny, good, np.zeros((32, 32, channels), np.uint8))


def test_channels_first_numpy_is_explained(tiny, good):
    with pytest.raises(ImageInputError, match="channels-first"):
        sv.explain(tiny, np.zeros((3, 32, 40), np.uint8), good)


@pytest.mark.parametrize("shape", [(0, 0, 3), (1, 1, 3), (1, 30, 3), (0, 10)])
def test_empty_or_single_pixel(tiny, good, shape):
    with pytest.raises(ImageInputError, match="query is .*expected at least 2x2"):
        sv.explain(tiny, np.zeros(shape, np.uint8), good)


def test_nan_in_tensor(tiny, good):
    t = torch.rand(3, 32, 32)
    t[0, 3, 4] = float("nan")
    with pytest.raises(ImageInputError, match="query contains NaN"):
        sv.explain(tiny, t, good)
    with pytest.raises(ModelAdapterError, match="NaN"):
        tiny.embed_tensor(torch.full((1, 3, 64, 64), float("nan")))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])  # uint16 is a 16-bit image (images.py)
def test_wrong_dtype(tiny, good, dtype):
    with pytest.raises(ImageInputError, match=f"has dtype {np.dtype(dtype)}; expected uint8"):
        sv.explain(tiny, np.zeros((32, 32, 3), dtype), good)


def test_float_out_of_range_hints_at_normalised_tensor(tiny, good):
    normalised = (np.random.default_rng(1).random((32, 32, 3)) - 0.5) * 4
    with pytest.raises(ImageInputError, match=r"expected floats in \[0, 1\]"):
        sv.explain(tiny, good, normalised)


def test_batch_of_images_rejected(tiny, good):
    with pytest.raises(ImageInputError, match="batch of 2 images"):
        sv.explain(tiny, torch.rand(2, 3, 32, 32), good)


def test_embed_tensor_shape_and_dtype(tiny):
    with pytest.raises(ModelAdapterError, match=r"shape \(3, 64, 64\); expected \(B, 3, H, W\)"):
        tiny.embed_tensor(torch.rand(3, 64, 64))
    with pytest.raises(ModelAdapterError, match="dtype torch.uint8; expected a float tensor"):
        tiny.embed_tensor(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_empty_list(tiny):
    with pytest.raises(ModelAdapterError, match="empty list"):
        tiny.embed([])


def test_unknown_layer_name_suggests():
    net = sv.models.TinyEmbeddingNet()
    with pytest.raises(ModelAdapterError, match=r"layer 'backbone.33' is not a module.*Did you mean"):
        sv.SimilarityModel.wrap(net, layer="backbone.33", preprocess=SMALL)


def test_layer_with_non_feature_output():
    net = sv.models.TinyEmbeddingNet(head="linear")
    with pytest.raises(ModelAdapterError, match=r"layer 'head' outputs \(1, 12\); expected a feature map"):
        sv.SimilarityModel.wrap(net, layer="head", preprocess=SMALL)


def test_model_without_conv():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 8))
    with pytest.raises(ModelAdapterError, match="has no Conv2d layer"):
        sv.SimilarityModel.wrap(net, preprocess=SMALL)


def test_not_a_module():
    with pytest.raises(ModelAdapterError, match="must be a torch.nn.Module"):
        sv.SimilarityModel.wrap(lambda x: x)


def test_unknown_model_and_method(tiny, good):
    with pytest.raises(ValueError,
                       match=r"model 'efficientnet_lite' is not registered.*Did you mean 'efficientnet_lite0'"):
        sv.load_model("efficientnet_lite")
    with pytest.raises(ValueError, match=r"method 'decompositon' is not registered.*Did you mean 'decomposition'"):
        sv.explain(tiny, good, good, method="decompositon")


def test_unknown_option(tiny, good):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['biass'\]"):
        sv.explain(tiny, good, good, biass=False)


def test_unknown_metric_and_pooling():
    net = sv.models.TinyEmbeddingNet()
    with pytest.raises(ModelAdapterError, match=r"metric='cos' is not one of .*did you mean 'cosine'"):
        sv.SimilarityModel.wrap(net, metric="cos", preprocess=SMALL)
    with pytest.raises(ModelAdapterError, match=r"pooling='mean' is not one of \['avg', 'max', 'gem', 'flatten'\]"):
        sv.SimilarityModel.wrap(net, pooling="mean", preprocess=SMALL)


class _MapOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


def test_model_output_not_one_embedding_per_image():
    with pytest.raises(ModelAdapterError, match=r"returns a tensor of shape \(2, 4, 62, 62\); expected \(B, D\)"):
        sv.SimilarityModel.wrap(_MapOutput(), preprocess=SMALL)


def test_head_output_not_one_dimensional():
    net = sv.models.TinyEmbeddingNet(head="identity")

    class Outer(nn.Module):
        def forward(self, p):
            return p[:, :, None]  # (B, C, 1)

    with pytest.raises(ModelAdapterError, match=r"head's output has shape \(2, 16, 1\); expected \(B, D\)"):
        sv.SimilarityModel.wrap(net, head=Outer(), preprocess=SMALL)


def test_model_returning_tuple():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            f = self.conv(x).mean((2, 3))
            return f, f

    with pytest.raises(ModelAdapterError, match="returns tuple; expected one embedding tensor"):
        sv.SimilarityModel.wrap(Two(), preprocess=SMALL)


def test_point_outside_image_is_rejected(tiny, good):
    exp = sv.explain(tiny, good, good)
    with pytest.raises(ValueError, match=r"query row 70 is outside the image \(0 \.\. 63\) \(the query image is 64x64"):
        exp.from_query(70.0, 3.0)
    with pytest.raises(ValueError, match="finite"):
        exp.from_reference(float("nan"), 3.0)


def test_rgba_and_grayscale_and_pil_inputs_work(tiny):
    g = np.random.default_rng(2)
    rgba = (g.random((40, 50, 4)) * 255).astype(np.uint8)
    gray = (g.random((40, 50)) * 255).astype(np.uint8)
    exp = sv.explain(tiny, rgba, Image.fromarray(gray))
    assert exp.query.shape == (64, 64, 3) and exp.query.dtype == np.uint8
    assert np.all(exp.reference[..., 0] == exp.reference[..., 1])  # grayscale replicated

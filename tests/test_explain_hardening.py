"""Reported defects at the boundaries of explain/ and adapters/, one test per case.

1. all-zero embeddings under the cosine metric (score 0, every contribution 0, a warning naming the
   image); 2. pixel coordinates and side / reading names are checked, never coerced; 3. method
   options take numpy scalars and refuse strings for flags; 4. RISE warns when its masks keep
   (almost) nothing; 5. SimilarityModel.wrap checks its options and the adapters' import paths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.explain import RiseMasks, get_method
from simviz_widgets.explain.base import PointToPoint, check_side
from simviz_widgets.images import PreprocessConfig
from simviz_widgets.models.tiny import MeanColorNet, mean_color

#: identity preprocessing at 32 x 32: what the image holds is what the network sees
RAW32 = PreprocessConfig(input_size=(32, 32), resize_short=None, interpolation="bilinear",
                         mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
#: the methods whose maps explain the model's own score from its features (not the perturbation ones)
FEATURE_METHODS = ["decomposition", "similarity_map", "gradcam", "rgradcam", "similarity_attention", "sfam"]


def _photo(seed=0, size=32):
    return np.random.default_rng(seed).random((size, size, 3))


def _black(size=32):
    return np.zeros((size, size, 3))


def _red_cyan(size=32):
    """Left half red, right half cyan: every cell is coloured, the mean colour is exactly grey."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2, 0] = 255
    image[:, size // 2 :, 1:] = 255
    return image


class _ColourDifference(nn.Module):
    """Mean colour per 4x4 cell (bias-free conv), average pooling, then a bias-free head
    W = [[1, -1, 0], [0, 1, -1]]: the embedding (r - g, g - b) of the mean colour is exactly zero for
    a grey-on-average image whose cells (and per-position contributions) are not zero."""

    def __init__(self):
        super().__init__()
        self.body = MeanColorNet()
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]]))
        self.eval()

    def forward(self, x):
        return self.head(self.body(x))


class _NormalisedMeanColour(nn.Module):
    """MeanColorNet whose output is L2-normalised (F.normalize of a zero vector is zero)."""

    def __init__(self):
        super().__init__()
        self.body = MeanColorNet()
        self.eval()

    def forward(self, x):
        return nn.functional.normalize(self.body(x), dim=1)


def _colour_difference(metric="cosine"):
    return sv.SimilarityModel.wrap(_ColourDifference(), metric=metric, preprocess=RAW32, name="colour_difference")


def _explain_recording(model, q, r, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = sv.explain(model, q, r, **options)
    return exp, [w for w in caught if issubclass(w.category, UserWarning) and "zero embedding" in str(w.message)]


# ------------------------------------------------------------------------------------------
# 1. All-zero embeddings


@pytest.mark.parametrize("zero", ["query", "reference", "both"])
def test_decomposition_of_a_zero_embedding_under_cosine(zero):
    """A bias-free ReLU-free mean-colour net on a black image: the embedding is exactly 0."""
    model = mean_color(metric="cosine")
    q = _black() if zero in ("query", "both") else _photo()
    r = _black() if zero in ("reference", "both") else _photo(1)
    exp, caught = _explain_recording(model, q, r)
    assert exp.score == 0.0
    assert not exp.query_map.any() and not exp.reference_map.any()
    assert not exp.point_to_point.matrix().any()
    assert exp.completeness_error == 0.0
    assert len(caught) == 1
    named = "query and reference" if zero == "both" else zero
    assert f"the {named} image" in str(caught[0].message)
    assert exp.info["zero_embedding"] == (("query", "reference") if zero == "both" else (zero,))


def test_zero_embedding_with_nonzero_contributions_is_all_zero_under_cosine():
    """The embedding cancels to 0 while each position's contribution does not: D must still be 0
    (no huge 1/eps scale), so the maps sum to the score 0."""
    model = _colour_difference("cosine")
    exp, caught = _explain_recording(model, _red_cyan(), _photo())
    assert exp.score == 0.0
    assert not exp.point_to_point.matrix().any()
    assert not exp.query_map.any() and not exp.reference_map.any()
    assert len(caught) == 1 and "the query image" in str(caught[0].message)


@pytest.mark.parametrize("method", FEATURE_METHODS)
@pytest.mark.parametrize("zero", ["query", "reference"])
def test_every_method_agrees_on_a_zero_embedding(method, zero):
    model = _colour_difference("cosine")
    q, r = (_red_cyan(), _photo()) if zero == "query" else (_photo(), _red_cyan())
    exp, caught = _explain_recording(model, q, r, method=method)
    assert exp.score == 0.0
    assert np.isfinite(exp.query_map).all() and np.isfinite(exp.reference_map).all()
    assert not exp.query_map.any() and not exp.reference_map.any()
    assert len(caught) == 1 and f"the {zero} image" in str(caught[0].message)
    assert method in str(caught[0].message)


@pytest.mark.parametrize("method", ["rise", "sliding_window"])
@pytest.mark.parametrize("zero", ["query", "reference"])
def test_perturbation_methods_agree_on_a_zero_embedding(method, zero):
    """Was: RISE and sliding window returned score 0 without a warning, and RISE's query map was not
    zero when only the query's embedding was."""
    model = _colour_difference("cosine")
    q, r = (_red_cyan(), _photo()) if zero == "query" else (_photo(), _red_cyan())
    options = {"masks": 16, "grid": 4} if method == "rise" else {"window": 8, "stride": 8}
    exp, caught = _explain_recording(model, q, r, method=method, both=True, show_progress=False, **options)
    assert exp.score == 0.0 and exp.info["zero_embedding"] == (zero,)
    assert not exp.query_map.any() and not exp.reference_map.any()
    assert len(caught) == 1 and f"the {zero} image" in str(caught[0].message) and method in str(caught[0].message)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_zero_embedding_is_ordinary_for_dot_and_euclidean(metric):
    """Only the cosine is undefined at 0: the other metrics decompose exactly and do not warn."""
    model = _colour_difference(metric)
    exp, caught = _explain_recording(model, _red_cyan(), _photo())
    assert not caught
    assert exp.point_to_point.matrix().any()  # the contributions are there, and cancel
    assert abs(float(exp.point_to_point.matrix().sum()) - exp.score) < 1e-6
    assert exp.completeness_error < 1e-5  # a float32 network


@pytest.mark.parametrize("metric", ["dot", "euclidean", "cosine"])
def test_zero_embedding_of_a_normalising_model_is_finite(metric):
    model = sv.SimilarityModel.wrap(_NormalisedMeanColour(), metric=metric, preprocess=RAW32)
    assert model.output_normalized
    exp, caught = _explain_recording(model, _black(), _photo())
    D = exp.point_to_point.matrix()
    assert np.isfinite(D).all() and np.isfinite(exp.query_map).all()
    assert float(D.sum()) == pytest.approx(exp.score, abs=1e-6)
    assert len(caught) == (1 if metric == "cosine" else 0)


# ------------------------------------------------------------------------------------------
# 2. Coordinates, sides and readings


@pytest.fixture(scope="module")
def exp64():
    g = np.random.default_rng(0)
    return sv.explain(sv.load_model("tiny_test"), g.random((64, 64, 3)), g.random((64, 64, 3)))


@pytest.mark.parametrize("bad", ["3", None, True, np.bool_(False), [3.0], b"3"])
def test_coordinates_of_the_wrong_kind_are_refused(exp64, bad):
    for call in (lambda: exp64.from_query(bad, 3.0), lambda: exp64.from_reference(3.0, bad),
                 lambda: exp64.point_map("query", bad, 3.0), lambda: exp64.pixel_to_cell("reference", 3.0, bad)):
        with pytest.raises(InputTypeError, match=r"(row|col)"):
            call()


def test_array_coordinates_get_a_clear_message(exp64):
    with pytest.raises(InputTypeError, match=r"query row is an array of shape \(2,\); expected one number"):
        exp64.from_query(np.array([1.0, 2.0]), 3.0)
    with pytest.raises(InputTypeError, match=r"reference col is an array of shape \(\); expected one number"):
        exp64.from_reference(1.0, np.array(2.0))


def test_numpy_scalar_coordinates_are_accepted(exp64):
    expected = exp64.from_query(10, 20.5)
    np.testing.assert_array_equal(exp64.from_query(np.int64(10), np.float32(20.5)), expected)
    np.testing.assert_array_equal(exp64.point_map("query", np.int32(10), np.float64(20.5)), expected)
    assert exp64.pixel_to_cell("query", np.int64(10), np.float64(20.5)) == exp64.pixel_to_cell("query", 10, 20.5)


def test_out_of_range_names_the_image_size(exp64):
    with pytest.raises(InputError, match=r"query row 70 is outside the image \(0 \.\. 63\).*64x64"):
        exp64.from_query(70, 3)
    with pytest.raises(InputError, match=r"reference col -1 is outside the image.*64x64"):
        exp64.from_reference(3, -1)
    with pytest.raises(InputError, match="finite"):
        exp64.from_query(float("inf"), 3)


@pytest.mark.parametrize("side", ["ref", "Query", "q", None, 0, True])
def test_side_names_are_not_abbreviated(exp64, side):
    with pytest.raises(InputError, match=r"source=.* is not one of \['query', 'reference'\]"):
        exp64.pixel_to_cell(side, 3.0, 3.0)
    with pytest.raises(InputError, match=r"side=.* is not one of"):
        exp64.point_map(side, 3.0, 3.0)
    with pytest.raises(InputError, match=r"source=.* is not one of"):
        exp64.point_to_point.row(side, 1.0, 1.0)


def test_check_side_is_check_choice_and_keeps_its_name():
    assert check_side("query") == "query"
    with pytest.raises(InputError, match=r"source='refrence' is not one of \[.*\]; did you mean 'reference'"):
        check_side("refrence", "source")
    with pytest.raises(ValueError):  # InputError is a ValueError: callers catching ValueError still work
        check_side("left")


@pytest.mark.parametrize("reading", ["contrib", "Correspondence", None, 1])
def test_reading_is_checked(exp64, reading):
    with pytest.raises(InputError, match="reading"):
        exp64.from_query(3.0, 3.0, reading=reading)
    with pytest.raises(InputError, match="reading"):
        exp64.point_to_point.row("query", 1.0, 1.0, reading)


def test_point_to_point_row_checks_its_cell_position():
    p2p = PointToPoint(np.eye(4), np.eye(4), 1.0, (2, 2), (2, 2))
    np.testing.assert_array_equal(p2p.row("query", np.int64(1), 0.0), p2p.row("query", 1.0, 0.0))
    with pytest.raises(InputTypeError, match="query cell row"):
        p2p.row("query", "1", 0.0)
    with pytest.raises(InputError, match=r"reference cell col 5 is outside"):
        p2p.row("reference", 0.0, 5.0)
    with pytest.raises(InputError, match="finite"):
        p2p.row("query", float("nan"), 0.0)


# ------------------------------------------------------------------------------------------
# 3. Method options


@pytest.mark.parametrize(
    "method,options,key,value",
    [
        ("rise", {"masks": np.int64(4)}, "masks", 4),
        ("rise", {"grid": np.int32(4), "keep": np.float32(0.5)}, "keep", 0.5),
        ("rise", {"batch_size": np.uint8(2)}, "batch_size", 2),
        ("sliding_window", {"window": np.int64(8), "stride": np.int16(8)}, "window", 8),
        ("sliding_window", {"fill": np.float64(0.25)}, "fill", (0.25,)),
        ("decomposition", {"bias": np.bool_(False)}, "bias", False),
        ("gradcam", {"relu": np.bool_(True)}, "relu", True),
    ],
)
def test_numpy_scalars_are_accepted_for_options(method, options, key, value):
    explainer = get_method(method)(**options)
    assert explainer.config[key] == value
    assert type(explainer.config[key]) is type(value)


def test_numpy_integer_masks_run():
    model = sv.load_model("tiny_test")
    q, r = _photo(0, 64), _photo(1, 64)
    exp = sv.explain(model, q, r, method="rise", masks=np.int64(4), grid=np.int64(4), show_progress=False)
    assert exp.info["query"]["passes_done"] == 4


@pytest.mark.parametrize("options,name", [
    ({"bias": "false"}, "bias"), ({"bias": None}, "bias"), ({"bias": "yes"}, "bias"), ({"bias": 0}, "bias"),
    ({"clip": 1}, "clip"), ({"clip": "True"}, "clip"), ({"show_progress": "no"}, "show_progress"),
])
def test_decomposition_flags_are_not_coerced(options, name):
    model = sv.load_model("tiny_test")
    with pytest.raises(InputTypeError, match=rf"decomposition: option {name}=.* must be True or False"):
        sv.explain(model, _photo(0, 64), _photo(1, 64), **options)


def test_bias_option_on_the_default_model(default_model, photos):
    """The default model's head is the identity (no bias), so bias=False changes nothing there: both
    runs are exact. In any-layer mode bias=True spreads the gradient x input residual (exact) and
    bias=False drops it (far from complete)."""
    exact = sv.explain(default_model, photos["chelsea"], photos["coffee"])
    dropped = sv.explain(default_model, photos["chelsea"], photos["coffee"], bias=False)
    assert default_model.head_kind == "identity"
    assert exact.completeness_error < 1e-6 and dropped.completeness_error < 1e-6
    assert dropped.info["bias"] is False and exact.info["bias"] is True
    layered = sv.SimilarityModel.wrap(default_model.module, layer="blocks.6", preprocess=default_model.preprocess,
                                      name="lite0@blocks.6")
    spread = sv.explain(layered, photos["chelsea"], photos["coffee"], show_progress=False)
    bare = sv.explain(layered, photos["chelsea"], photos["coffee"], bias=False, show_progress=False)
    assert spread.completeness_error < 1e-9
    assert bare.completeness_error > 1e-2


# ------------------------------------------------------------------------------------------
# 4. RISE masks that keep nothing


def test_rise_masks_that_keep_no_cell_warn():
    with pytest.warns(UserWarning, match=r"keep=1e-09.*masks=8|masks=8.*keep=1e-09"):
        masks = RiseMasks(8, (32, 32), grid=4, keep=1e-9)
    assert not masks.cells.any()


def test_rise_masks_keeping_under_one_cell_on_average_warn():
    with pytest.warns(UserWarning, match=r"keep=0\.05"):
        RiseMasks(50, (32, 32), grid=4, keep=0.05)  # 0.8 cells per mask on average


def test_rise_masks_with_usual_settings_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RiseMasks(50, (32, 32), grid=8, keep=0.5)
        RiseMasks(3, (32, 32), grid=2, keep=0.3)  # 1.2 cells on average


def test_rise_with_a_tiny_keep_warns_instead_of_a_silent_zero_map():
    model = sv.load_model("tiny_test")
    with pytest.warns(UserWarning, match="keep=1e-09"):
        exp = sv.explain(model, _photo(0, 64), _photo(1, 64), method="rise", keep=1e-9, masks=8, grid=4,
                         show_progress=False)
    assert not exp.query_map.any()


# ------------------------------------------------------------------------------------------
# 5. SimilarityModel.wrap options and the adapters' import paths


def test_adapter_import_paths():
    from simviz_widgets import adapters
    from simviz_widgets.adapters import similarity_model

    for name in ("SimilarityModel", "Pooling", "ModelAdapterError", "METRICS", "POOLINGS"):
        assert getattr(adapters, name) is getattr(similarity_model, name)
    assert issubclass(adapters.ModelAdapterError, InputError)
    assert issubclass(adapters.ModelAdapterError, ValueError)


@pytest.mark.parametrize("options,error,match", [
    ({"metric": "cos"}, InputError, r"metric='cos' is not one of \['cosine', 'dot', 'euclidean'\]; did you mean"),
    ({"metric": None}, InputError, r"metric=None is not one of"),
    ({"pooling": "mean"}, InputError, r"pooling='mean' is not one of"),
    ({"pooling": 3}, InputTypeError, r"pooling=3 must be"),
    ({"head": "linear"}, InputError, r"head='linear' is not one of \['identity'\]"),
    ({"head": 3}, InputTypeError, r"head must be an nn.Module or 'identity'"),
    ({"layer": 3}, InputTypeError, r"layer must be a str or nn.Module"),
    ({"layer": ""}, InputError, r"layer is empty"),
    ({"preprocess": 3}, InputTypeError, r"preprocess must be a PreprocessConfig or dict"),
    ({"preprocess": {"size": 3}}, InputError, r"preprocess=.*size"),
    ({"gem_p": "3"}, InputTypeError, r"gem_p='3' must be a number"),
    ({"gem_p": 0}, InputError, r"gem_p=0.0 must be > 0"),
    ({"name": 3}, InputTypeError, r"name=3 must be a string"),
])
def test_wrap_options_are_checked(options, error, match):
    from simviz_widgets.adapters import ModelAdapterError

    net = sv.models.TinyEmbeddingNet()
    options.setdefault("preprocess", PreprocessConfig(input_size=(64, 64), resize_short=64))
    with pytest.raises(error, match=match) as info:
        sv.SimilarityModel.wrap(net, **options)
    assert isinstance(info.value, ModelAdapterError)


def test_wrap_accepts_numpy_gem_power_and_pooling_objects():
    from simviz_widgets.adapters import Pooling

    net = sv.models.TinyEmbeddingNet()
    small = PreprocessConfig(input_size=(64, 64), resize_short=64)
    model = sv.SimilarityModel.wrap(net, pooling="gem", gem_p=np.float32(4.0), preprocess=small)
    assert model.pooling == Pooling("gem", p=4.0)
    assert sv.SimilarityModel.wrap(net, pooling=Pooling("max"), preprocess=small).pooling.kind == "max"

"""Any-layer mode: forward mode (one Jacobian-vector product per position) gives the vectors of the
backward mode (one vector-Jacobian product per dimension); exactness where gradient x input is exact;
the first-order warning; the fallback for models without forward-mode AD; picking another grid."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import simviz_widgets as sv
from simviz_widgets.adapters import ModelAdapterError
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import load_photo
from simviz_widgets.explain.decomposition import _backward_contributions, _gradient_contributions
from simviz_widgets.images import PreprocessConfig
from simviz_widgets.models import TinyEmbeddingNet
from simviz_widgets.models.synthetic import SCENE_PREPROCESS, SceneEmbeddingNet
from simviz_widgets.models.tiny import TINY_PREPROCESS


def _image(seed, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _assert_same_vectors(new, old):
    """Equal to float32 round-off, relative to the largest contribution."""
    scale = float(old["E"].abs().max())
    assert float((new["E"] - old["E"]).abs().max()) <= 2e-6 * scale
    assert new["residual_ratio"] == pytest.approx(old["residual_ratio"], rel=1e-4, abs=1e-6)


def _scene_net():
    net = SceneEmbeddingNet(width=16, dim=8, seed=1)
    gen = torch.Generator().manual_seed(2)
    for m in net.modules():  # non-trivial batch-norm statistics (eval mode: an affine map)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


CASES = [
    ("avg", "linear", "backbone.2"),
    ("max", "mlp", "backbone.1"),
    ("gem", "linear_bn", "backbone.3"),
    ("flatten", "flat_linear", "backbone.2"),
    ("avg", "identity", "backbone.0"),
]


@pytest.mark.parametrize("pooling,head,layer", CASES)
def test_forward_equals_backward_on_tiny_models(pooling, head, layer):
    model = sv.load_model("tiny_test", pooling=pooling, head=head, layer=layer)
    x = model.prepare(_image(0)).tensor
    new = _gradient_contributions(model, x, bias=True, show_progress=False, mode="forward")
    old = _backward_contributions(model, x, bias=True)
    assert new["mode"] == "forward" and new["engine"] == "tangent batch" and old["mode"] == "backward"
    _assert_same_vectors(new, old)
    # Chunks of positions are independent: an odd chunk size that splits the grid unevenly agrees.
    odd = _gradient_contributions(model, x, bias=True, show_progress=False, mode="forward", chunk=37)
    torch.testing.assert_close(odd["E"], new["E"], rtol=1e-6, atol=1e-7 * float(new["E"].abs().max()))


def test_forward_equals_backward_with_batchnorm_and_float64():
    net = _scene_net()
    model = sv.SimilarityModel.wrap(net, preprocess=SCENE_PREPROCESS, layer="backbone.5")
    x = model.prepare(_image(1)).tensor
    new = _gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
    assert new["engine"] == "tangent batch" and new["grid"] == (16, 16)
    _assert_same_vectors(new, _backward_contributions(model, x, bias=False))
    # In float64 the two modes agree to float64 round-off.
    model64 = sv.SimilarityModel.wrap(_scene_net().double(), preprocess=SCENE_PREPROCESS, layer="backbone.5")
    new64 = _gradient_contributions(model64, x, bias=False, show_progress=False, mode="forward")
    old64 = _backward_contributions(model64, x, bias=False)
    torch.testing.assert_close(new64["E"], old64["E"], rtol=1e-10, atol=1e-12)


def test_forward_matches_backward_on_the_default_model(default_model, photos):
    """blocks.4 (14 x 14): forward E against backward products for dimensions from every chunk of
    the backward path (the full backward pass takes several seconds)."""
    model = default_model.at_layer("blocks.4")
    x = model.prepare(photos["chelsea"]).tensor
    new = _gradient_contributions(model, x, bias=False, show_progress=False)
    assert new["mode"] == "forward" and new["engine"] == "tangent batch" and new["E"].shape == (196, 1280)
    A0 = model.decompose_features(x).detach()
    dims = torch.tensor([0, 127, 128, 500, 777, 1024, 1279])
    A = A0.clone().requires_grad_(True)
    g = model.run_with_layer_replaced(x, A)[0]
    (grads,) = torch.autograd.grad(g, A, grad_outputs=torch.eye(1280)[dims], is_grads_batched=True)
    expect = (grads[:, 0] * A0[0]).sum(1).reshape(len(dims), -1).T.double()
    scale = float(new["E"].abs().max())
    assert float((new["E"][:, dims] - expect).abs().max()) <= 2e-6 * scale
    torch.testing.assert_close(new["g"], g.detach().double())
    assert new["residual_ratio"] > 0.5  # far from exact here: see the warning test below


def test_forward_equals_backward_on_residual_and_squeeze_excitation_networks():
    """In-place ReLU and ``out += identity`` (torchvision ResNet), max pooling after the layer (VGG),
    SiLU and a squeeze-excitation gate, a product of two tangent inputs (timm EfficientNet-B0)."""
    import timm
    import torchvision

    torch.manual_seed(0)
    vgg_like = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                             nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(16, 32))
    nets = [(torchvision.models.resnet18(num_classes=16), "layer2", 64),
            (vgg_like, "1", 32),
            (timm.create_model("efficientnet_b0", pretrained=False, num_classes=16), "blocks.3", 64)]
    for net, layer, size in nets:
        model = sv.SimilarityModel.wrap(net.eval(), layer=layer,
                                        preprocess=PreprocessConfig(input_size=(size, size), resize_short=None))
        x = model.prepare(_image(8, size)).tensor
        new = _gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
        assert new["engine"] == "tangent batch", layer
        _assert_same_vectors(new, _backward_contributions(model, x, bias=False))


class _Normed(nn.Module):
    """conv -> conv -> GroupNorm (no rule in the tangent batch) -> ReLU -> avg pool -> linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.norm, self.relu = nn.GroupNorm(2, 8), nn.ReLU()
        self.pool, self.flatten, self.head = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)
        self.eval()

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.relu(self.norm(self.conv2(self.conv1(x)))))))


def test_ops_without_a_tangent_batch_rule_use_torch_func():
    model = sv.SimilarityModel.wrap(_Normed(), layer="conv1",
                                    preprocess=PreprocessConfig(input_size=(16, 16), resize_short=None))
    x = model.prepare(_image(9, 16)).tensor
    out = _gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
    assert out["mode"] == "forward" and out["engine"] == "torch.func"
    _assert_same_vectors(out, _backward_contributions(model, x, bias=False))


def test_a_wrong_tangent_rule_is_caught_by_the_check_against_torch_func(monkeypatch):
    """The first chunk's strongest position is recomputed with torch.func: a rule that scaled batch
    norm wrongly is noticed, noted, and torch.func gives the right vectors instead."""
    from simviz_widgets.explain import tangent_batch

    def wrong(func, x, *args, **kwargs):
        out = tangent_batch._batch_norm(func, x, *args, **kwargs)
        out.factor = out.factor * 1.5
        return out

    monkeypatch.setitem(tangent_batch._RULES, torch.nn.functional.batch_norm, wrong)
    model = sv.SimilarityModel.wrap(_scene_net(), preprocess=SCENE_PREPROCESS, layer="backbone.2")
    x = model.prepare(_image(1)).tensor
    out = _gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
    assert out["engine"] == "torch.func"
    assert any("disagreed with torch.func" in note for note in out["notes"])
    _assert_same_vectors(out, _backward_contributions(model, x, bias=False))


def test_auto_mode_takes_the_cheaper_direction():
    """Forward while N positions <= 2 D dimensions: tiny_test (D = 12) at its 16 x 16 layer goes
    backward (256 > 24); the same network with D = 128 goes forward (256 <= 256)."""
    wide = sv.load_model("tiny_test", layer="backbone.3")
    x = wide.prepare(_image(0)).tensor
    assert _gradient_contributions(wide, x, bias=True, show_progress=False)["mode"] == "backward"
    assert _gradient_contributions(wide, x, bias=True, show_progress=False, mode="forward")["mode"] == "forward"
    narrow = sv.SimilarityModel.wrap(TinyEmbeddingNet(dim=128), preprocess=TINY_PREPROCESS, layer="backbone.3")
    assert _gradient_contributions(narrow, x, bias=True, show_progress=False)["mode"] == "forward"


# ------------------------------------------------------------------------------------------
# Exactness where gradient x input is exact


def _bias_free_relu_model(layer):
    net = TinyEmbeddingNet(pooling="avg", head="linear_nobias", seed=5)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.zero_()
    return sv.SimilarityModel.wrap(net, preprocess=TINY_PREPROCESS, layer=layer)


@pytest.mark.parametrize("layer", ["backbone.0", "backbone.3"])
def test_forward_mode_is_exact_for_a_bias_free_relu_network(layer):
    """Positively homogeneous: Euler's identity makes sum_i e_i == g with no residual to spread."""
    model = _bias_free_relu_model(layer)
    x = model.prepare(_image(2)).tensor
    out = _gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
    assert out["engine"] == "tangent batch"
    torch.testing.assert_close(out["E"].sum(0), out["g"], rtol=1e-5, atol=1e-6 * float(out["g"].abs().max()))
    assert out["residual_ratio"] < 1e-5
    # ... while the same network with biases is only first order.
    biased = sv.SimilarityModel.wrap(TinyEmbeddingNet(pooling="avg", head="linear", seed=5),
                                     preprocess=TINY_PREPROCESS, layer=layer)
    biased_out = _gradient_contributions(biased, x, bias=False, show_progress=False, mode="forward")
    assert biased_out["residual_ratio"] > 1e-3


# ------------------------------------------------------------------------------------------
# The first-order warning, on a hand-set model with a known residual


class _ShiftedMean(nn.Module):
    """A = mean RGB per pixel (the layer), then g = mean_i ReLU(4 A_i + 2) in both of 2 dimensions.

    With every pre-activation positive, gradient x input gives sum_i e_i = 4 mean(A) per dimension and
    the residual is the bias 2: |r| / |g| = 2 / (4 p + 2) for an image of constant value p.
    """

    def __init__(self):
        super().__init__()
        self.mean = nn.Conv2d(3, 1, 1, bias=False)
        self.affine = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.mean.weight.fill_(1 / 3)
            self.affine.weight.fill_(4.0)
            self.affine.bias.fill_(2.0)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.eval()

    def forward(self, x):
        return self.pool(self.relu(self.affine(self.mean(x)))).flatten(1)


PLAIN = PreprocessConfig(input_size=(8, 8), resize_short=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _constant(value):
    return np.full((8, 8, 3), value, dtype=np.uint8)


def test_first_order_warning_fires_with_the_ratio():
    model = sv.SimilarityModel.wrap(_ShiftedMean(), preprocess=PLAIN, layer="mean", metric="dot")
    p = 64 / 255
    expect = 2 / (4 * p + 2)  # 0.666: warned
    with pytest.warns(UserWarning, match=r"far from exact.*0\.666 \(query\)") as caught:
        exp = sv.explain(model, _constant(64), _constant(255), show_progress=False)
    assert exp.info["residual_ratio"]["query"] == pytest.approx(expect, rel=1e-5)
    assert exp.info["residual_ratio"]["reference"] == pytest.approx(1 / 3, rel=1e-5)  # 2 / 6: not warned
    message = exp.info["first_order_warning"]
    assert message == str(caught[0].message)
    assert "'mean'" in message and "reference" not in message and "spread evenly" in message
    assert exp.completeness_error < 1e-6  # the residual is spread: the maps still sum to the score


def test_first_order_warning_stays_quiet_when_close_to_exact():
    model = sv.SimilarityModel.wrap(_ShiftedMean(), preprocess=PLAIN, layer="mean", metric="dot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exp = sv.explain(model, _constant(255), _constant(200), show_progress=False)  # 1/3 and 0.39
    assert "first_order_warning" not in exp.info
    assert max(exp.info["residual_ratio"].values()) < 0.5
    # Exact mode (no layer=) has no residual and no such key.
    exact = sv.explain(sv.SimilarityModel.wrap(_ShiftedMean(), preprocess=PLAIN, metric="dot"),
                       _constant(64), _constant(255))
    assert "first_order_warning" not in exact.info and "residual_ratio" not in exact.info


# ------------------------------------------------------------------------------------------
# Fallback to backward mode


class _Warp(nn.Module):
    """A fixed affine resampling: grid_sample has no forward-mode derivative in torch."""

    def forward(self, x):
        theta = torch.tensor([[[0.9, 0.1, 0.0], [-0.1, 0.9, 0.0]]], dtype=x.dtype).expand(x.shape[0], 2, 3)
        grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return nn.functional.grid_sample(x, grid, align_corners=False)


class _OldStyleSwish(torch.autograd.Function):
    """x * sigmoid(x) as memory-efficient Swish implementations define it: forward(ctx, ...) and a
    backward, no setup_context and no jvp, which torch.func transforms refuse."""

    @staticmethod
    def forward(ctx, i):
        ctx.save_for_backward(i)
        return i * torch.sigmoid(i)

    @staticmethod
    def backward(ctx, grad):
        (i,) = ctx.saved_tensors
        s = torch.sigmoid(i)
        return grad * (s * (1 + i * (1 - s)))


class _Swish(nn.Module):
    def forward(self, x):
        return _OldStyleSwish.apply(x)


@pytest.mark.filterwarnings("ignore:decomposition at layer '0'")  # first order far from exact here
@pytest.mark.parametrize("block,match", [(_Warp, "grid_sampler_2d"), (_Swish, "setup_context")])
def test_models_without_forward_ad_fall_back_to_backward_mode(block, match):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), block(),
                        nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(5, 128)).eval()  # D = 128: 256 positions stay in forward mode
    model = sv.SimilarityModel.wrap(net, layer="0", preprocess=PreprocessConfig(input_size=(16, 16),
                                                                                resize_short=None))
    x = model.prepare(_image(3, 16)).tensor
    out = _gradient_contributions(model, x, bias=True, show_progress=False, mode="forward")
    assert out["mode"] == "backward"
    assert any("forward-mode AD is not available" in note and match in note for note in out["notes"])
    _assert_same_vectors(out, _backward_contributions(model, x, bias=True))
    exp = sv.explain(model, _image(3, 16), _image(4, 16), show_progress=False)
    assert any("used backward mode instead" in note for note in exp.info["notes"])
    assert exp.completeness_error < 1e-6


def test_mode_is_checked():
    model = sv.load_model("tiny_test", layer="backbone.2")
    x = model.prepare(_image(0)).tensor
    with pytest.raises(InputError, match=r"mode='sideways' is not one of \['auto', 'forward', 'backward'\]"):
        _gradient_contributions(model, x, bias=True, show_progress=False, mode="sideways")


# ------------------------------------------------------------------------------------------
# grid_layers, at_layer, at_resolution


def test_grid_layers_of_the_tiny_model():
    model = sv.load_model("tiny_test")
    layers = model.grid_layers()
    assert list(layers) == ["backbone", "backbone.0", "backbone.1", "backbone.2", "backbone.3", "backbone.4",
                            "backbone.5"]
    assert layers["backbone.1"] == (32, 32) and layers["backbone.3"] == (16, 16) and layers["backbone.5"] == (8, 8)
    layers["backbone.1"] = (1, 1)  # a copy: the cached listing is unchanged
    assert model.grid_layers()["backbone.1"] == (32, 32)


def test_at_layer_shares_the_module_and_matches_wrap():
    model = sv.load_model("tiny_test", metric="dot")
    finer = model.at_layer("backbone.3")
    assert finer.module is model.module and finer.head is model.head
    assert finer.decompose_layer == "backbone.3" and finer.metric == "dot" and finer.preprocess == model.preprocess
    assert model.decompose_layer is None  # the original is untouched
    direct = sv.SimilarityModel.wrap(model.module, layer="backbone.3", metric="dot", preprocess=TINY_PREPROCESS)
    q, r = _image(5), _image(6)
    a = sv.explain(finer, q, r, show_progress=False)
    b = sv.explain(direct, q, r, show_progress=False)
    assert a.query_map.shape == (16, 16)
    np.testing.assert_allclose(a.query_map, b.query_map, rtol=1e-6, atol=1e-7)
    assert finer.at_layer(None).decompose_layer is None  # back to exact mode
    assert finer.at_layer(model.module.backbone[1]).decompose_layer == "backbone.1"


def test_at_layer_keeps_output_normalisation():
    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = TinyEmbeddingNet(seed=2)

        def forward(self, x):
            return nn.functional.normalize(self.inner(x), dim=1)

    model = sv.SimilarityModel.wrap(Normalised().eval(), preprocess=TINY_PREPROCESS)
    assert model.output_normalized
    finer = model.at_layer("inner.backbone.3")
    assert finer.output_normalized
    x = model.prepare(_image(7)).tensor
    with torch.no_grad():
        torch.testing.assert_close(finer.embed_tensor(x), model.module(x))


def test_at_resolution_picks_the_deepest_stage_output():
    model = sv.load_model("tiny_test")
    assert model.at_resolution(16).decompose_layer == "backbone.3"
    assert model.at_resolution(32).decompose_layer == "backbone.1"
    exact = model.at_resolution(8)  # the pooling input's grid: exact mode
    assert exact.decompose_layer is None and exact.describe()["mode"] == "exact"


def test_at_resolution_on_the_default_model(default_model):
    assert default_model.at_resolution(14).decompose_layer == "blocks.4"
    assert default_model.at_resolution(28).decompose_layer == "blocks.2"
    assert default_model.at_resolution(7).decompose_layer is None
    assert default_model.grid_layers()["blocks.4"] == (14, 14)


def test_at_resolution_and_at_layer_errors():
    model = sv.load_model("tiny_test")
    with pytest.raises(InputError, match=r"n=5: no layer of tiny_test outputs a 5x5 grid at its input size "
                                         r"64x64; available resolutions: 32, 16, 8"):
        model.at_resolution(5)
    with pytest.raises(InputTypeError, match=r"n='16' must be an integer"):
        model.at_resolution("16")
    with pytest.raises(InputTypeError, match=r"n=True must be an integer"):
        model.at_resolution(True)
    with pytest.raises(InputError, match=r"n=0 must be >= 1"):
        model.at_resolution(0)
    with pytest.raises(InputTypeError, match=r"layer must be a str, nn.Module or None \(got int\)"):
        model.at_layer(3)
    with pytest.raises(ModelAdapterError, match=r"layer 'backbone.9' is not a module of tiny_test"):
        model.at_layer("backbone.9")


def test_bundled_photo_pair_at_a_finer_grid_warns_and_sums(default_model):
    """A mirrored photo at blocks.4: the residual is large (first order far from exact), the warning
    says so, and with the residual spread the maps still sum to the score."""
    model = default_model.at_resolution(14)
    photo = load_photo("chelsea")
    with pytest.warns(UserWarning, match="first-order"):
        exp = sv.explain(model, photo, photo[:, ::-1].copy(), show_progress=False)
    assert exp.query_map.shape == (14, 14)
    assert exp.completeness_error < 1e-6
    assert "forward mode" in exp.info["notes"][0]


def test_the_first_order_warning_suggests_the_spatial_split_only_when_it_is_not_in_use():
    from simviz_widgets.explain.any_layer import first_order_warning

    even = first_order_warning("blocks.4", {"query": 1.3}, True)
    spatial = first_order_warning("blocks.4", {"query": 1.3}, "spatial")
    assert "bias_split='spatial' gives" in even and "bias_split='spatial' gives" not in spatial
    assert "not piecewise linear" in spatial and "1.3" in spatial
    assert first_order_warning("blocks.4", {"query": 0.4}, "spatial") is None

"""Vision transformers in SimilarityModel.wrap (adapters/tokens.py, frozen_norm.py, conservative.py).

Tiny random-weight networks of each family (no downloads): the wrapped model computes the network's
own output, patch tokens form the (rows, cols) grid, mean/max-pooled tokens decompose exactly, and a
class-token readout is decomposed at the last block's input with gradient x input, checked against a
hand-computed answer.
"""

import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer as TvSwin
from torchvision.models.vision_transformer import VisionTransformer as TvViT

import simviz_widgets as sv
from simviz_widgets.adapters import ModelAdapterError, SimilarityModel
from simviz_widgets.adapters.tokens import TokenView
from simviz_widgets.explain.any_layer import gradient_contributions
from simviz_widgets.explain.decomposition import position_contributions

SMALL_VIT = dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=8)


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights of order one (the families' own inits leave heads at zero and tokens near zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, nn.LayerNorm):  # scales near one
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (1.0 if name == "weight" else 0.0))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.ndim < 2 else p.shape[-1] ** -0.5))
    return net.eval()


def tv_vit():
    return _randomise(TvViT(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                            num_classes=8))


def timm_vit(pool="token"):
    # Non-square (64 x 32 pixels -> 4 x 2 patches): a transposed grid would not fit.
    return _randomise(TimmViT(img_size=(64, 32), global_pool=pool, **SMALL_VIT))


def deit_distilled():
    return _randomise(VisionTransformerDistilled(img_size=64, **SMALL_VIT))


def timm_swin():
    return _randomise(TimmSwin(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1),
                               num_heads=(1, 2), num_classes=8))


def tv_swin():
    return _randomise(TvSwin(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=[4, 4],
                             num_classes=8))


# name -> (builder, input size, token grid at the pooling input or decomposed layer, exact?)
FAMILIES = {
    "torchvision_vit": (tv_vit, (64, 64), (4, 4), False),
    "timm_vit_token": (timm_vit, (64, 32), (4, 2), False),
    "timm_vit_avg": (lambda: timm_vit("avg"), (64, 32), (4, 2), True),
    "timm_vit_max": (lambda: timm_vit("max"), (64, 32), (4, 2), True),
    "deit_distilled": (deit_distilled, (64, 64), (4, 4), False),
    "timm_swin": (timm_swin, (64, 64), (8, 8), True),
    "torchvision_swin": (tv_swin, (224, 224), (28, 28), True),
}


def _pair(size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)]


def _quiet_explain(model, a, b, **kw):
    with warnings.catch_warnings():  # random weights: the first-order warning may fire
        warnings.simplefilter("ignore", UserWarning)
        return sv.explain(model, a, b, **kw)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_embed_equals_the_networks_own_output_and_the_network_is_shared_unchanged(family):
    build, size, _, _ = FAMILIES[family]
    net = build()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = SimilarityModel.wrap(net)
    assert isinstance(model.module, TokenView) and model.module.net is net
    assert model.preprocess.input_size == size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(model.embed_tensor(x), expected, rtol=1e-5, atol=1e-6)
        assert torch.allclose(model.copy().embed_tensor(x), expected, rtol=1e-5, atol=1e-6)
    images = _pair(size)
    prepared = torch.cat([model.prepare(im).tensor for im in images])
    with torch.no_grad():
        assert torch.allclose(model.embed(images), net(prepared), rtol=1e-5, atol=1e-6)
    _quiet_explain(model, *images)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_explain_maps_have_the_token_grid_and_hover_works(family):
    build, size, grid, exact = FAMILIES[family]
    model = SimilarityModel.wrap(build())
    a, b = _pair(size)
    e = _quiet_explain(model, a, b)  # the default method
    assert e.method == "decomposition"
    assert e.query_map.shape == e.reference_map.shape == grid
    assert e.info["mode"] == ("exact" if exact else "gradient x input")
    assert abs(e.score - model.similarity(a, b)) < 1e-5
    # Hovering: a query pixel's map over the reference grid, its rows summing to the reference map.
    hover = e.from_query(size[0] // 2, size[1] // 2)
    assert hover.shape == grid and np.isfinite(hover).all()
    p2p = e.point_to_point
    D = p2p.scale * (p2p.query_factors @ p2p.reference_factors.T)
    assert np.allclose(D.sum(0).reshape(grid), e.reference_map, atol=1e-5)
    if exact:
        assert e.completeness_error < 1e-5
        assert "residual_ratio" not in e.info
    else:
        ratios = e.info["residual_ratio"]
        assert set(ratios) == {"query", "reference"} and all(np.isfinite(r) for r in ratios.values())


def test_grid_layers_are_the_token_grids():
    token = SimilarityModel.wrap(timm_vit())
    # After the last block the patch tokens no longer reach the class token: no grid there.
    assert token.grid_layers() == {"tokens.0": (4, 2), "tokens.1": (4, 2), "features": (1, 1)}
    assert token.decompose_layer == "tokens.1"  # the last block's input
    avg = SimilarityModel.wrap(timm_vit("avg"))
    assert avg.grid_layers() == {"tokens.0": (4, 2), "tokens.1": (4, 2), "tokens.2": (4, 2), "features": (4, 2)}
    assert avg.decompose_layer is None and avg.feature_layer == "features"
    swin = SimilarityModel.wrap(timm_swin())
    assert swin.grid_layers() == {"tokens.0": (16, 16), "tokens.1": (16, 16), "tokens.2": (8, 8), "features": (8, 8)}
    assert swin.at_resolution(16).decompose_layer == "tokens.1"
    vit = SimilarityModel.wrap(tv_vit())
    assert vit.at_resolution(4).decompose_layer == "tokens.1"
    assert vit.at_layer("tokens.0").decompose_layer == "tokens.0"
    # at_layer(None) is the pooling input, exact: for a class token that is the 1 x 1 output map.
    exact = vit.at_layer(None)
    assert exact.decompose_layer is None and exact.feature_layer == "features"
    assert exact.copy().decompose_layer is None  # copies keep the mode


def test_mean_pooled_tokens_with_layernorm_head_decompose_exactly_with_the_real_offsets():
    net = timm_vit("avg")
    assert isinstance(net.fc_norm, nn.LayerNorm)
    model = SimilarityModel.wrap(net)
    assert model.head_kind == "generic"
    x = model.prepare(_pair((64, 32))[0]).tensor
    out = position_contributions(model, x, bias=False)
    with torch.no_grad():
        g = net(x)[0].double()
        offsets = net.head.weight.double() @ net.fc_norm.bias.double() + net.head.bias.double()
    # LayerNorm's scale held at the observed input: the positions carry g minus the head's true offsets.
    assert torch.allclose(out["E"].sum(0), g - offsets, atol=1e-5)
    assert torch.allclose(out["g"], g, atol=1e-5)
    assert "LayerNorm" in out["notes"][0]
    # The Jacobian would not do: LayerNorm is scale-invariant, J p ~ 0.
    pooled = model.pooling(model.features(x))
    J = torch.func.jacrev(lambda v: model.head(v[None])[0])(pooled[0].detach())
    assert (J @ pooled[0]).norm() < 1e-3 * (g - offsets).norm()


def _known_answer_vit() -> TimmViT:
    """A ViT whose last block, with LayerNorm scales and attention weights held, is linear in its
    tokens: query and key weights zero (uniform attention), the MLP's output layer zero."""
    net = _randomise(TimmViT(img_size=(64, 32), **SMALL_VIT), seed=3)
    last = net.blocks[-1]
    dim = net.embed_dim
    with torch.no_grad():
        last.attn.qkv.weight[: 2 * dim] = 0
        last.attn.qkv.bias[: 2 * dim] = 0
        last.mlp.fc2.weight.zero_()
        last.mlp.fc2.bias.zero_()
    return net


def _hand_contributions(net: TimmViT, tokens: torch.Tensor) -> torch.Tensor:
    """e_j = W_h D_f Cen P (1/T) V D_1 Cen(x_j) for the patch tokens x_j entering the last block."""
    last, dim = net.blocks[-1], net.embed_dim
    prefix, T = net.num_prefix_tokens, tokens.shape[0]

    def ln_slope(v, norm):  # LayerNorm with its scale held: gamma * (v - mean v) / sigma
        return lambda u: norm.weight.double() * (u - u.mean()) / torch.sqrt(v.var(unbiased=False) + norm.eps)

    with torch.no_grad():
        c = last(tokens[None])[0, 0].double()  # the class token after the last block
        V = last.attn.qkv.weight.double()[2 * dim:]
        P = last.attn.proj.weight.double()
        final = ln_slope(c, net.norm)
        rows = [net.head.weight.double() @ final(P @ (V @ ln_slope(x, last.norm1)(x)) / T)
                for x in tokens[prefix:].double()]
    return torch.stack(rows)


@pytest.mark.parametrize("mode", ["forward", "backward"])
def test_class_token_gradient_x_input_matches_the_hand_computed_answer(mode):
    net = _known_answer_vit()
    model = SimilarityModel.wrap(net)
    assert model.decompose_layer == "tokens.1"
    x = model.prepare(_pair((64, 32))[0]).tensor
    seen = {}
    handle = net.blocks[-1].register_forward_pre_hook(lambda m, args: seen.update(t=args[0][0].clone()))
    with torch.no_grad():
        net(x)
    handle.remove()
    out = gradient_contributions(model, x, bias=False, show_progress=False, mode=mode)
    expected = _hand_contributions(net, seen["t"])  # rows in token order = grid row-major order
    assert out["grid"] == (4, 2)
    assert torch.allclose(out["E"], expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert 0 < out["residual_ratio"] < np.inf


def test_plain_gradients_vanish_at_a_pre_norm_block_input():
    """Why the conservative rules: without them, LayerNorm's scale invariance makes every token's
    gradient x input zero at the last block's input."""
    model = SimilarityModel.wrap(_known_answer_vit())
    x = model.prepare(_pair((64, 32))[0]).tensor
    held = gradient_contributions(model, x, bias=False, show_progress=False, mode="backward")
    model.module.conservative = False
    plain = gradient_contributions(model, x, bias=False, show_progress=False, mode="backward")
    assert plain["E"].norm() < 1e-4 * held["g"].norm()
    assert held["E"].norm() > 0.01 * held["g"].norm()
    assert plain["residual_ratio"] > 0.999
    assert not any("LayerNorm scales" in note for note in plain["notes"])
    assert any("LayerNorm scales and attention weights held" in note for note in held["notes"])


def test_named_timm_models_and_their_preprocessing():
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=8).eval()
    model = SimilarityModel.wrap(net)
    assert model.preprocess.input_size == (64, 64)  # the network's own size
    assert model.preprocess.mean == tuple(net.pretrained_cfg["mean"])
    assert model.decompose_layer == f"tokens.{len(net.blocks) - 1}"
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=8).eval()
    assert SimilarityModel.wrap(deit).grid_layers()["tokens.0"] == (4, 4)


def test_train_mode_is_switched_off_with_a_warning():
    net = tv_vit().train()
    with pytest.warns(UserWarning, match="train mode"):
        model = SimilarityModel.wrap(net)
    assert not net.training and not any(m.training for m in net.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.embed_tensor(x), net(x), atol=1e-6)


class _HomeMadeViT(nn.Module):
    """A transformer of no supported family: patch embedding, one attention layer, mean over tokens."""

    def __init__(self, conv=True):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 8, stride=8) if conv else nn.Linear(3 * 64, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        if isinstance(self.embed, nn.Conv2d):
            t = self.embed(x).flatten(2).transpose(1, 2)
        else:
            t = self.embed(x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(x.shape[0], -1, 3 * 64))
        return self.attn(t, t, t, need_weights=False)[0].mean(1)


@pytest.mark.parametrize("net", [_HomeMadeViT(), _HomeMadeViT(conv=False),
                                 timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=56)],
                         ids=["conv-embedding", "linear-embedding", "timm-eva"])
def test_an_unsupported_transformer_gets_an_error_saying_what_to_pass(net):
    with pytest.raises(ModelAdapterError, match="looks like a vision transformer") as info:
        SimilarityModel.wrap(net.eval())
    assert "AdaptiveAvgPool2d" in str(info.value) and "layer=" in str(info.value)


class _RolledViT(TimmViT):
    """A subclass whose forward_features the replay does not follow."""

    def forward_features(self, x, **kwargs):
        return super().forward_features(x, **kwargs).roll(1, dims=1)


def test_a_variant_the_replay_does_not_follow_is_refused():
    net = _randomise(_RolledViT(img_size=(64, 32), **SMALL_VIT))
    with pytest.raises(ModelAdapterError, match="does not reproduce"):
        SimilarityModel.wrap(net)


def test_a_block_is_not_a_feature_map():
    net = timm_vit()
    with pytest.raises(ModelAdapterError, match=r"expected a feature map"):
        SimilarityModel.wrap(net, layer=net.blocks[0])


def test_torchvision_vit_b_16_grid_at_224():
    net = torchvision.models.vit_b_16()
    net.encoder.layers = net.encoder.layers[:1]  # one block keeps the test fast; the grid is the point
    model = SimilarityModel.wrap(net.eval())
    assert model.preprocess.input_size == (224, 224)
    assert model.grid_layers() == {"tokens.0": (14, 14), "features": (1, 1)}
    assert model.decompose_layer == "tokens.0"


def test_explain_takes_the_network_itself():
    net = timm_vit("avg")
    a, b = _pair((64, 32))
    e = sv.explain(net, a, b)
    assert e.query_map.shape == (4, 2) and e.completeness_error < 1e-5
    assert abs(e.score - SimilarityModel.wrap(net).similarity(a, b)) < 1e-6


@pytest.mark.parametrize("family", ["torchvision_vit", "timm_vit_token", "deit_distilled"])
def test_class_token_forward_mode_runs_and_equals_backward_mode(family):
    """torchvision's attention (nn.MultiheadAttention, whose fused CPU kernel has no forward-mode
    derivative) is written out under the rules: forward mode needs no fallback."""
    build, size, grid, _ = FAMILIES[family]
    model = SimilarityModel.wrap(build())
    x = model.prepare(_pair(size)[0]).tensor
    fwd = gradient_contributions(model, x, bias=False, show_progress=False, mode="forward")
    bwd = gradient_contributions(model, x, bias=False, show_progress=False, mode="backward")
    assert fwd["mode"] == "forward" and fwd["grid"] == grid
    assert torch.allclose(fwd["E"], bwd["E"], atol=1e-6 * float(bwd["E"].abs().max()) + 1e-9)
    # The rules change derivatives only: the pass with the layer replaced computes the embedding.
    A0 = model.decompose_features(x)
    with torch.no_grad():
        assert torch.allclose(model.run_with_layer_replaced(x, A0.clone()), model.embed_tensor(x), atol=1e-5)


def test_held_layer_norm_keeps_float16_statistics_finite():
    """The LayerNorm rule squared float16 deviations: a value 300 from its token's mean overflowed
    (65504) and the token's output collapsed to the bias. Statistics now run in float32, as torch's own."""
    from simviz_widgets.adapters.conservative import conservative

    ln = nn.LayerNorm(8).half()
    x = torch.linspace(-1, 1, 16).reshape(2, 8).half()
    x[0, 3] = 300.0
    native = ln(x)
    with conservative():
        held = ln(x)
    assert torch.isfinite(held).all()
    assert torch.allclose(held.float(), native.float(), atol=2e-3)

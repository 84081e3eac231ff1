"""Spatial attribution of the later layers' biases in the any-layer mode (explain/bias_terms.py):
exact completeness for piecewise-linear networks, known answers on hand-set nets, the tangent batch
against torch.func, the option and the face model's default."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import simviz_widgets as sv
from simviz_widgets.checks import InputError
from simviz_widgets.explain import bias_terms
from simviz_widgets.explain.decomposition import _gradient_contributions
from simviz_widgets.images import PreprocessConfig

sys.path.insert(0, str(Path(__file__).parent))
from face_helpers import require_face_data  # noqa: E402

PLAIN = PreprocessConfig(input_size=(32, 32), resize_short=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _image(seed, size=32):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


class _Block(nn.Module):
    """conv + BN + ReLU, conv + BN, plus a shortcut (2x2 average pool when it halves), ReLU."""

    def __init__(self, c, down):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c, c, 3, stride=2 if down else 1, padding=1)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (F.avg_pool2d(x, 2) if self.down else x))


class _BiasedReLUNet(nn.Module):
    """A small ReLU ResNet with biases everywhere: 32 px -> stem 16 x 16 (max pool 8 x 8) -> blocks at
    8 x 8, 4 x 4, 2 x 2 -> global mean -> Linear with bias. Batch-norm statistics set by hand."""

    def __init__(self, act=F.relu, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.act = act
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.block1, self.block2, self.block3 = _Block(8, False), _Block(8, True), _Block(8, True)
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
                elif isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.bias.uniform_(-0.5, 0.5)
        self.eval()

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.pool(self.act(self.stem(x))))))
        return self.fc(self.flatten(self.gap(x)))


def _wrap(net, layer="block1", metric="dot"):
    return sv.SimilarityModel.wrap(net, preprocess=PLAIN, layer=layer, metric=metric)


def test_cell_shares_are_area_overlaps_summing_to_one():
    shares = bias_terms.cell_shares(8, 3)  # a 3-position grid over 8 cells: 3/8 of the line each
    torch.testing.assert_close(shares.sum(0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(shares[:, 0], torch.tensor([3 / 8, 3 / 8, 1 / 4, 0, 0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(bias_terms.cell_shares(4, 4), torch.eye(4, dtype=torch.float64))
    # A finer later grid: each position lies in one cell.
    torch.testing.assert_close(bias_terms.cell_shares(2, 4), torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]],
                                                                         dtype=torch.float64))


@pytest.mark.parametrize("layer", ["block1", "block2"])
def test_spatial_bias_makes_a_biased_relu_network_exact(layer):
    """Plain gradient x input misses the biases (ratio far from 0); with the bias terms the rows sum
    to g to float32 round-off, the biases of batch norm, conv and the head included."""
    model = _wrap(_BiasedReLUNet(), layer)
    x = model.prepare(_image(1)).tensor
    plain = _gradient_contributions(model, x, bias=False, show_progress=False)
    spatial = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert plain["residual_ratio"] > 0.1
    assert spatial["residual_ratio"] < 1e-5
    # From the parts (E itself sums to g by construction): sum e + sum e_bias = g.
    assert _bias_gap(model, x)[0] < 1e-5
    assert any("split over the" in note for note in spatial["notes"])


def test_spatial_bias_is_exact_to_float64_round_off_in_float64():
    net = _BiasedReLUNet().double()
    model = sv.SimilarityModel.wrap(net, preprocess=PLAIN, layer="block1", metric="dot")
    x = model.prepare(_image(2)).tensor.double()
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert out["residual_ratio"] < 1e-12


def test_tangent_batch_matches_torch_func():
    model = _wrap(_BiasedReLUNet(seed=3), "block1")
    x = model.prepare(_image(3)).tensor
    A0, sites, _, skipped = bias_terms._find_sites(model, x)
    # block2 and block3: conv1, bn1, conv2, bn2 each (the head's bias is the wrapper's, not a module call).
    assert len(sites) == 8 and skipped == []
    cells = torch.eye(64)
    with torch.no_grad():
        fast = bias_terms._tangent_batch(model, x, A0, sites, cells)
        slow = torch.func.vmap(bias_terms._product(model, x, A0, sites))(cells)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6 * float(slow.abs().max()))


class _Quadrants(nn.Module):
    """The layer: A = the input's first channel (1, 1, 4, 4). Then a 2x2 stride-2 conv (weight 1,
    bias -1) -> 2 x 2, ReLU, global mean, fc = [1, 2] without bias. A quadrant summing to 0 leaves
    its ReLU off; elsewhere (sums > 1) the bias -1 passes, a quarter of it to each of the 4 cells."""

    def __init__(self):
        super().__init__()
        self.pick = nn.Conv2d(3, 1, 1, bias=False)
        self.down = nn.Conv2d(1, 1, 2, stride=2)
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.pick.weight.zero_()
            self.pick.weight[0, 0] = 1.0
            self.down.weight.fill_(1.0)
            self.down.bias.fill_(-1.0)
            self.fc.weight.copy_(torch.tensor([[1.0], [2.0]]))
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(self.gap(F.relu(self.down(self.pick(x))))))


def test_known_answer_bias_shares_follow_the_active_positions():
    ident = PreprocessConfig(input_size=(4, 4), resize_short=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    model = sv.SimilarityModel.wrap(_Quadrants(), preprocess=ident, layer="pick", metric="dot")
    x = torch.full((1, 3, 4, 4), 2.0)
    x[0, 0, :2, :2] = 0.0  # the top-left quadrant: 0 - 1 < 0, its ReLU is off
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    E = out["E"].reshape(4, 4, 2)
    # e_i = fc (A_i / 4 quadrants' mean) for an active cell: 2 / 4 * [1, 2]; the bias' share
    # -1 * (1/4 of the quadrant) / 4 (mean) * [1, 2]; the switched-off quadrant gets nothing.
    active = torch.tensor([2 / 4 - 1 / 16, 2 * (2 / 4 - 1 / 16)], dtype=torch.float64)
    for r in range(4):
        for c in range(4):
            expect = torch.zeros(2, dtype=torch.float64) if r < 2 and c < 2 else active
            torch.testing.assert_close(E[r, c], expect)
    # g = fc (mean of the quadrants 0, 7, 7, 7) = [21 / 4, 42 / 4] = the sum of the 12 active cells.
    torch.testing.assert_close(out["g"], torch.tensor([21 / 4, 42 / 4], dtype=torch.float64))
    torch.testing.assert_close(out["E"].sum(0), out["g"])
    assert out["residual_ratio"] < 1e-6


def test_smooth_network_keeps_a_reported_residual():
    """SiLU is not piecewise linear: the bias terms do not close the gap, the rest is reported and
    (bias on) spread evenly so the rows still sum to g."""
    model = _wrap(_BiasedReLUNet(act=F.silu), "block1")
    x = model.prepare(_image(4)).tensor
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert out["residual_ratio"] < 1e-5  # the layer is after the SiLU stem: still exact
    smooth = _BiasedReLUNet()
    smooth.block2.forward = lambda x, b=smooth.block2: F.silu(b.bn2(b.conv2(F.silu(b.bn1(b.conv1(x))))))
    model = _wrap(smooth, "block1")
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert out["residual_ratio"] > 1e-3
    torch.testing.assert_close(out["E"].sum(0), out["g"])


class _GroupNormAfter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.norm = nn.GroupNorm(1, 4)  # has a bias but is not affine in its input
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(self.gap(F.relu(self.norm(self.conv(x))))))


def test_a_bias_of_a_non_affine_layer_is_named_and_left_in_the_residual():
    model = _wrap(_GroupNormAfter(), "conv")
    x = model.prepare(_image(5)).tensor
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert any("non-affine" in note and "norm" in note for note in out["notes"])
    torch.testing.assert_close(out["E"].sum(0), out["g"])


def test_explain_option_removes_the_first_order_warning():
    model = _wrap(_BiasedReLUNet(), "block1", metric="euclidean")
    a, b = _image(6), _image(7)
    with pytest.warns(UserWarning, match="far from exact"):
        even = sv.explain(model, a, b, show_progress=False)
    assert even.info["bias_split"] == "even"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spatial = sv.explain(model, a, b, bias_split="spatial", show_progress=False)
    assert max(spatial.info["residual_ratio"].values()) < 1e-5 and spatial.info["bias_split"] == "spatial"
    assert spatial.score == pytest.approx(even.score, rel=1e-6)
    assert spatial.completeness_error < 1e-6
    with pytest.raises(InputError, match="bias_split"):
        sv.explain(model, a, b, bias_split="area", show_progress=False)
    # bias=False drops every bias term: the same maps as before this option.
    with pytest.warns(UserWarning, match="left out of the maps"):
        off = sv.explain(model, a, b, bias=False, bias_split="spatial", show_progress=False)
        off_even = sv.explain(model, a, b, bias=False, show_progress=False)
    np.testing.assert_allclose(off.query_map, off_even.query_map)


def test_face_model_defaults_to_the_spatial_split_and_is_exact():
    require_face_data()
    from simviz_widgets.datasets import load_face

    model = sv.load_model("face_resnet")
    a, b = load_face("obama", crop=True), load_face("obama3", crop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no first-order warning
        e = sv.explain(model, a, b, method="decomposition", show_progress=False)
    assert e.info["bias_split"] == "spatial"
    assert max(e.info["residual_ratio"].values()) < 1e-5
    exact = sv.explain(model.at_layer(None), a, b, method="decomposition")
    assert e.score == pytest.approx(exact.score, rel=1e-5)


def _bias_gap(model, x):
    """|sum_i e_i + sum_i e_i^bias - g| / |g| from the two parts themselves (not the residual-spread E)."""
    plain = _gradient_contributions(model, x, bias=False, show_progress=False)
    E_bias, notes = bias_terms.bias_contributions(model, x, plain["g"].shape[0], show_progress=False)
    g = plain["g"]
    return float((plain["E"].sum(0) + E_bias.sum(0) - g).norm() / g.norm()), E_bias, notes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_finds_every_bias_site(dtype):
    """The affinity check allows the dtype's round-off: all 8 later bias calls are found (not classed
    non-affine) and the residual falls to round-off level (0.43 when they were missed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _wrap(_BiasedReLUNet().to(dtype), "block1")
    x = model.prepare(_image(1)).tensor
    _, sites, _, notes = bias_terms._find_sites(model, x)
    assert len(sites) == 8 and notes == []
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert out["residual_ratio"] < 0.02 < out["first_order_ratio"]


class _Tied(nn.Module):
    """``sh`` (a biased conv) runs before and after the layer ``mid``: weight tying."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.a, self.sh, self.mid = nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 1, 1), nn.Conv2d(4, 4, 3, 2, 1)
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        x = F.relu(self.mid(F.relu(self.sh(F.relu(self.a(x))))))
        return self.fc(self.flatten(self.gap(F.relu(self.sh(x)))))


def test_a_module_run_before_and_after_the_layer_counts_only_after():
    model = _wrap(_Tied(), "mid")
    x = model.prepare(_image(8)).tensor
    _, sites, _, _ = bias_terms._find_sites(model, x)
    assert [s.module for s in sites] == [model.module.sh]
    gap, _, _ = _bias_gap(model, x)
    assert gap < 1e-5
    e = sv.explain(model, _image(8), _image(9), bias_split="spatial", show_progress=False)
    assert max(e.info["residual_ratio"].values()) < 1e-5


class _NoForwardADReLU(torch.autograd.Function):
    """A ReLU with a backward but no jvp / setup_context: torch.func cannot push tangents through it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0)


class _ActNet(nn.Module):
    def __init__(self, act):
        super().__init__()
        torch.manual_seed(6)
        self.act = act
        self.a, self.b = nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 2, 1)
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(self.gap(self.act(self.b(F.relu(self.a(x)))))))


def test_an_op_without_forward_ad_gets_the_bias_terms_by_backward_mode():
    """The same network with F.relu (forward mode) and with a ReLU lacking forward AD (backward
    mode, with a note): the same bias terms."""
    x = _wrap(_ActNet(F.relu), "a").prepare(_image(10)).tensor
    gap, forward, _ = _bias_gap(_wrap(_ActNet(F.relu), "a"), x)
    model = _wrap(_ActNet(_NoForwardADReLU.apply), "a")
    gap_custom, backward, notes = _bias_gap(model, x)
    assert gap < 1e-5 and gap_custom < 1e-5
    assert any("backward mode" in note for note in notes)
    torch.testing.assert_close(backward, forward, rtol=1e-5, atol=1e-6 * float(forward.abs().max()))
    out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    assert out["residual_ratio"] < 1e-5


def test_spatial_split_under_a_meta_default_device():
    model = _wrap(_BiasedReLUNet(), "block1")
    x = model.prepare(_image(11)).tensor
    torch.set_default_device("meta")
    try:
        assert bias_terms.cell_shares(3, 2).device.type == "cpu"
        out = _gradient_contributions(model, x, bias="spatial", show_progress=False)
    finally:
        torch.set_default_device(None)
    assert out["residual_ratio"] < 1e-5


class _ConvPlus(nn.Module):
    """A module with its own bias around a biased conv: conv(x) + bias."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)
        self.bias = nn.Parameter(torch.full((1, 4, 1, 1), 0.5))

    def forward(self, x):
        return self.conv(x) + self.bias


class _Container(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.a, self.h = nn.Conv2d(3, 4, 3, 2, 1), _ConvPlus()
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, bias=False)
        self.eval()

    def forward(self, x):
        return self.fc(self.flatten(self.gap(F.relu(self.h(F.relu(self.a(x)))))))


def test_a_biased_module_with_biased_children_counts_once():
    model = _wrap(_Container(), "a")
    x = model.prepare(_image(12)).tensor
    _, sites, _, _ = bias_terms._find_sites(model, x)
    assert [s.module for s in sites] == [model.module.h]  # its m(0) holds the conv's bias
    assert _bias_gap(model, x)[0] < 1e-5


class _MLP(nn.Module):
    """After the layer (1, 4, 8, 8): a per-position Linear(4, 4) on channels-last (B, H, W, C) like a
    ConvNeXt block's MLP, or the same map as a 1x1 conv on (B, C, H, W)."""

    def __init__(self, channels_last):
        super().__init__()
        torch.manual_seed(8)
        self.channels_last = channels_last
        self.a = nn.Conv2d(3, 4, 3, 4, 1)
        self.mix = nn.Linear(4, 4) if channels_last else nn.Conv2d(4, 4, 1)
        with torch.no_grad():
            self.mix.bias.uniform_(-1, 1)
        self.gap, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
        self.eval()

    def forward(self, x):
        x = F.relu(self.a(x))
        x = self.mix(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if self.channels_last else self.mix(x)
        return self.fc(self.flatten(self.gap(F.relu(x))))


def test_channels_last_outputs_split_over_their_own_grid_axes():
    first, last = _MLP(False), _MLP(True)
    with torch.no_grad():
        last.mix.weight.copy_(first.mix.weight[:, :, 0, 0])
        last.mix.bias.copy_(first.mix.bias)
    x = _wrap(first, "a").prepare(_image(13)).tensor
    _, E_first, _ = _bias_gap(_wrap(first, "a"), x)
    gap, E_last, _ = _bias_gap(_wrap(last, "a"), x)
    assert gap < 1e-5
    torch.testing.assert_close(E_last, E_first, rtol=1e-5, atol=1e-6 * float(E_first.abs().max()))


def test_grid_axes_from_the_layer_type_the_bias_length_or_where_the_map_varies():
    plus = _ConvPlus()
    assert bias_terms._grid_axes(nn.Linear(8, 8), torch.zeros(8), torch.zeros(1, 8, 8, 8)) == (1, 2)
    assert bias_terms._grid_axes(nn.Conv2d(8, 8, 1), torch.zeros(8), torch.zeros(1, 8, 8, 8)) == (2, 3)
    assert bias_terms._grid_axes(plus, torch.zeros(4), torch.zeros(1, 4, 6, 6)) == (2, 3)
    assert bias_terms._grid_axes(plus, torch.zeros(4), torch.zeros(1, 6, 6, 4)) == (1, 2)
    per_channel = torch.arange(8.0)
    assert bias_terms._grid_axes(plus, per_channel, per_channel.reshape(1, 8, 1, 1).expand(1, 8, 8, 8)) == (2, 3)
    assert bias_terms._grid_axes(plus, per_channel, per_channel.expand(1, 8, 8, 8)) == (1, 2)
    assert bias_terms._grid_axes(plus, per_channel, torch.ones(1, 8, 8, 8)) is None  # unclear: evenly, with a note

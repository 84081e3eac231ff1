"""The decomposition's maths: completeness, symmetry, interpolation, pooling masks, known answers."""


import numpy as np
import pytest
import torch

import simviz_widgets as sv
from simviz_widgets.adapters import Pooling
from simviz_widgets.explain import position_contributions
from simviz_widgets.models import TinyEmbeddingNet
from simviz_widgets.models.tiny import TINY_PREPROCESS

REL = 1e-5


def _images(seed=0, size=64):
    g = np.random.default_rng(seed)
    # Smooth-ish random images: blocky noise so features vary over the grid.
    a = g.random((size // 8, size // 8, 3))
    b = g.random((size // 8, size // 8, 3))

    def up(m):
        return np.kron(m, np.ones((8, 8, 1)))

    return up(a) * 0.7 + g.random((size, size, 3)) * 0.3, up(b) * 0.7 + g.random((size, size, 3)) * 0.3


def _wrap(pooling, head, metric, seed=0, dtype=torch.float32):
    net = TinyEmbeddingNet(pooling=pooling, head=head, seed=seed).to(dtype)
    return net, sv.SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS)


GRID = [
    (pool, head)
    for pool in ("avg", "max", "gem")
    for head in ("identity", "linear", "linear_nobias", "bn", "linear_bn", "mlp")
] + [("flatten", "flat_linear"), ("flatten", "mlp")]


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("pool,head", GRID)
def test_completeness_with_bias(pool, head, metric):
    # float64 network: the identity is exact, so only rounding of the order 1e-15 may remain, and
    # the model's own score is not blurred by float32 cancellation (Euclidean: S = 2g.g - |g|^2 - |g|^2).
    net, model = _wrap(pool, head, metric, dtype=torch.float64)
    q, r = _images()
    exp = sv.explain(model, q, r, bias=True)
    # The score is the wrapped module's own similarity, computed independently here.
    xq, xr = model.prepare(q).tensor, model.prepare(r).tensor
    with torch.no_grad():
        gq, gr = net(xq.double())[0], net(xr.double())[0]
    expected = {
        "cosine": float(gq @ gr / (gq.norm() * gr.norm())),
        "dot": float(gq @ gr),
        "euclidean": float(-((gq - gr) ** 2).sum()),
    }[metric]
    assert exp.score == pytest.approx(expected, rel=1e-9, abs=1e-12)
    total = float(exp.point_to_point.matrix().astype(np.float64).sum())
    assert abs(total - expected) <= 1e-9 * max(abs(expected), 1.0)
    assert exp.completeness_error < 1e-10
    # Overall maps are the row / column sums of D.
    D = exp.point_to_point.matrix()
    np.testing.assert_allclose(exp.query_map.ravel(), D.sum(1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(exp.reference_map.ravel(), D.sum(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pool,head",
                         [("avg", "linear"), ("max", "linear_bn"), ("gem", "bn"), ("flatten", "flat_linear")])
def test_without_bias_matches_hand_computation(pool, head):
    """bias=False drops b: for the dot metric sum D = (g_X - b).(g_Y - b) with b the folded head bias."""
    net, model = _wrap(pool, head, "dot")
    q, r = _images(1)
    exp = sv.explain(model, q, r, bias=False)
    b = model.head_bias.double()
    with torch.no_grad():
        gq = net(model.prepare(q).tensor)[0].double()
        gr = net(model.prepare(r).tensor)[0].double()
    expected = float((gq - b) @ (gr - b))
    assert float(exp.point_to_point.matrix().astype(np.float64).sum()) == pytest.approx(expected, rel=1e-4)
    assert b.abs().max() > 0.01  # the test means something only if the bias is not negligible
    assert exp.completeness_error > 1e-4


def test_bias_free_head_is_exact_without_bias():
    _, model = _wrap("avg", "linear_nobias", "cosine")
    q, r = _images(2)
    assert sv.explain(model, q, r, bias=False).completeness_error < REL


def test_swap_transposes_D():
    _, model = _wrap("gem", "linear_bn", "euclidean")
    q, r = _images(3)
    a = sv.explain(model, q, r)
    b = sv.explain(model, r, q)
    np.testing.assert_allclose(a.point_to_point.matrix(), b.point_to_point.matrix().T, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.query_map, b.reference_map, rtol=1e-5, atol=1e-7)
    assert a.score == pytest.approx(b.score, rel=1e-6)
    s = a.swapped()
    np.testing.assert_allclose(s.point_to_point.matrix(), a.point_to_point.matrix().T, rtol=1e-6)


def test_point_map_at_cell_centre_equals_row_of_D():
    _, model = _wrap("avg", "linear", "cosine")
    q, r = _images(4)
    exp = sv.explain(model, q, r)
    D = exp.point_to_point.matrix()
    H, W = exp.query_size
    h, w = exp.query_map.shape
    for i, j in [(0, 0), (3, 5), (h - 1, w - 1), (2, 7)]:
        row = (i + 0.5) * H / h - 0.5
        col = (j + 0.5) * W / w - 0.5
        np.testing.assert_allclose(exp.from_query(row, col).ravel(), D[i * w + j], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(exp.from_reference(row, col).ravel(), D[:, i * w + j], rtol=1e-5, atol=1e-7)


def test_point_map_between_centres_is_bilinear():
    _, model = _wrap("avg", "linear", "dot")
    q, r = _images(5)
    exp = sv.explain(model, q, r)
    D = exp.point_to_point.matrix()
    H, W = exp.query_size
    h, w = exp.query_map.shape
    # A pixel a quarter of the way from cell (2, 3) to (3, 4).
    u, v = 2.25, 3.25
    row, col = (u + 0.5) * H / h - 0.5, (v + 0.5) * W / w - 0.5
    expect = (0.75 * 0.75 * D[2 * w + 3] + 0.75 * 0.25 * D[2 * w + 4]
              + 0.25 * 0.75 * D[3 * w + 3] + 0.25 * 0.25 * D[3 * w + 4])
    np.testing.assert_allclose(exp.from_query(row, col).ravel(), expect, rtol=1e-5, atol=1e-7)
    # Beyond the outer cell centres the map is clamped to the edge row.
    np.testing.assert_allclose(exp.from_query(0, 0).ravel(), D[0], rtol=1e-5, atol=1e-7)


def test_max_pool_keeps_one_position_per_channel_first_on_ties():
    feats = torch.rand(2, 5, 4, 4)
    feats[0, 1] = 0.5  # a constant channel: every position ties
    feats[1, 2, 0, 3] = feats[1, 2, 2, 1] = 9.0  # two tied maxima
    a = Pooling("max").weights(feats)
    assert torch.equal((a != 0).sum(2), torch.ones(2, 5, dtype=torch.long))
    assert torch.equal(a.sum(2), torch.ones(2, 5))
    assert a[0, 1, 0] == 1  # the first of 16 tied positions
    assert a[1, 2, 0 * 4 + 3] == 1 and a[1, 2, 2 * 4 + 1] == 0
    pooled = (a * feats.flatten(2)).sum(2)
    assert torch.equal(pooled, feats.amax(dim=(2, 3)))


@pytest.mark.parametrize("kind", ["avg", "gem"])
def test_pooling_weights_reproduce_pooling(kind):
    feats = torch.rand(3, 7, 5, 6, dtype=torch.float64) + 0.01
    pool = Pooling(kind, p=2.5)
    a = pool.weights(feats)
    torch.testing.assert_close((a * pool.prepare_features(feats).flatten(2)).sum(2), pool(feats))


def test_known_answer_mean_colour_model():
    """MeanColorNet: cells are 4x4 mean colours, embedding = mean colour, D(i, j) = c_i.c_j / N^2."""
    model = sv.load_model("mean_color", metric="dot", size=8)  # 2 x 2 cells
    q = np.zeros((8, 8, 3))
    q[:, :4, 0] = 1.0  # left half red
    q[:, 4:, 2] = 1.0  # right half blue
    r = np.zeros((8, 8, 3))
    r[:4, :, 0] = 0.5  # top half dark red
    r[4:, :, 1] = 1.0  # bottom half green
    exp = sv.explain(model, q, r)
    cq = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], float)
    cr = np.array([[128 / 255, 0, 0], [128 / 255, 0, 0], [0, 1, 0], [0, 1, 0]], float)
    D = cq @ cr.T / 16
    np.testing.assert_allclose(exp.point_to_point.matrix(), D, atol=1e-6)
    assert exp.score == pytest.approx(D.sum(), abs=1e-6)
    # Only the red cells of the query match the red cells of the reference.
    np.testing.assert_allclose(exp.query_map, [[D[0].sum(), 0], [D[2].sum(), 0]], atol=1e-6)


def test_euclidean_parts_sum_to_score():
    _, model = _wrap("avg", "linear", "euclidean")
    q, r = _images(6)
    exp = sv.explain(model, q, r)
    parts = exp.info["parts"]
    assert sum(parts.values()) == pytest.approx(exp.score, rel=1e-5)
    gq = model.embed(q)[0].double()
    gr = model.embed(r)[0].double()
    assert parts["cross"] == pytest.approx(float(2 * gq @ gr), rel=1e-5)
    assert parts["self_query"] == pytest.approx(float(-gq @ gq), rel=1e-5)
    pm = exp.info["part_maps"]
    total = pm["cross_query"].sum() + pm["self_query"].sum() + parts["self_reference"]
    assert total == pytest.approx(exp.score, rel=1e-4)


def test_clip_variant_matches_authors_display_form():
    _, model = _wrap("avg", "linear", "cosine")
    q, r = _images(7)
    exact = sv.explain(model, q, r)
    clipped = sv.explain(model, q, r, clip=True)
    D = exact.point_to_point.matrix()
    expect = np.maximum(D / D.max(), 0)
    np.testing.assert_allclose(clipped.point_to_point.matrix(), expect, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(clipped.query_map.ravel(), expect.sum(1), rtol=1e-5, atol=1e-6)


def test_gradient_mode_exact_for_bias_free_relu_network():
    """Any-layer mode on a bias-free ReLU net with a bias-free linear head: gradient x input is exact."""
    net = TinyEmbeddingNet(pooling="avg", head="linear_nobias", seed=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.bias.zero_()
    model = sv.SimilarityModel.wrap(net, metric="cosine", preprocess=TINY_PREPROCESS, layer="backbone.3")
    assert model.decompose_layer == "backbone.3"
    q, r = _images(8)
    exp = sv.explain(model, q, r, bias=False)
    assert exp.query_map.shape == (16, 16)  # the earlier layer's grid
    assert exp.info["residual_ratio"]["query"] < 1e-5
    assert exp.completeness_error < 1e-5
    # ... and with biases it is only first order: the residual is reported, and spread when bias=True.
    net2 = TinyEmbeddingNet(pooling="avg", head="linear", seed=3)
    model2 = sv.SimilarityModel.wrap(net2, metric="cosine", preprocess=TINY_PREPROCESS, layer="backbone.3")
    exp2 = sv.explain(model2, q, r, bias=True)
    assert exp2.info["residual_ratio"]["query"] > 1e-3
    assert exp2.completeness_error < 1e-5


def test_gradient_mode_per_position_matches_autograd_loop():
    """e_i[d] = sum_c dg_d/dA_i[c] A_i[c], checked against a plain per-dimension backward loop."""
    net = TinyEmbeddingNet(pooling="max", head="mlp", seed=4).double()
    model = sv.SimilarityModel.wrap(net, preprocess=TINY_PREPROCESS, layer="backbone.2")
    x = model.prepare(_images(9)[0]).tensor
    E = position_contributions(model, x, bias=False)["E"]
    A = model.decompose_features(x).detach().requires_grad_(True)
    g = model.run_with_layer_replaced(x, A)[0]
    for d in (0, 5, g.shape[0] - 1):
        (grad,) = torch.autograd.grad(g[d], A, retain_graph=True)
        expect = (grad * A).sum(1).reshape(-1).double()
        torch.testing.assert_close(E[:, d], expect, rtol=1e-9, atol=1e-12)


def test_explain_leaves_inputs_untouched():
    _, model = _wrap("avg", "linear", "cosine")
    q, r = _images(10)
    q32 = q.astype(np.float32)
    t = torch.from_numpy(r.astype(np.float32)).permute(2, 0, 1).clone()
    q_copy, t_copy = q32.copy(), t.clone()
    sv.explain(model, q32, t)
    assert np.array_equal(q32, q_copy) and torch.equal(t, t_copy)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut"])
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_default_model_completeness(default_model, photos, name, metric):
    model = sv.SimilarityModel.wrap(default_model.module, head="identity", metric=metric,
                                    preprocess=default_model.preprocess)
    other = photos["rocket"]
    exp = sv.explain(model, photos[name], other)
    assert exp.query_map.shape == (7, 7)
    assert exp.completeness_error < REL
    assert float(exp.point_to_point.matrix().astype(np.float64).sum()) == pytest.approx(exp.score, rel=REL)
    # The score is the model's own: cosine of the pooled pre-logits features of the timm network.
    if metric == "cosine":
        net = default_model.module
        with torch.no_grad():
            fa = net.forward_head(net.forward_features(model.prepare(photos[name]).tensor), pre_logits=True)
            fb = net.forward_head(net.forward_features(model.prepare(other).tensor), pre_logits=True)
        assert exp.score == pytest.approx(float(torch.cosine_similarity(fa, fb)[0]), abs=1e-6)

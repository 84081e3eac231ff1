"""The method suite beyond the decomposition: similarity maps, Grad-CAM / RGrad-CAM, similarity
attention, SFAM, RISE, sliding window, and SimilarityTarget — identities, known answers, errors."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import simviz_widgets as sv
from simviz_widgets.datasets import default_pair
from simviz_widgets.explain import (
    ExplanationCancelled,
    RiseMasks,
    SimilarityTarget,
    get_method,
    position_contributions,
    similarity_gradients,
)
from simviz_widgets.explain.perturbation import sliding_windows
from simviz_widgets.explain.sfam import cosine_cis, euclidean_cis
from simviz_widgets.images import ImageInputError
from simviz_widgets.models import TinyEmbeddingNet
from simviz_widgets.models.tiny import TINY_PREPROCESS

METHODS = ["similarity_map", "gradcam", "rgradcam", "similarity_attention", "sfam", "rise", "sliding_window"]
PIXEL_METHODS = {"rise", "sliding_window"}
SIGNED = {"similarity_map": True, "gradcam": False, "rgradcam": True, "similarity_attention": False,
          "sfam": False, "rise": False, "sliding_window": True}


def _images(seed=0, size=64):
    """Two blocky random pictures in [0, 1] (features vary over the grid)."""
    g = np.random.default_rng(seed)

    def up(m):
        return np.kron(m, np.ones((size // 8, size // 8, 1)))

    a = up(g.random((8, 8, 3))) * 0.7 + g.random((size, size, 3)) * 0.3
    b = up(g.random((8, 8, 3))) * 0.7 + g.random((size, size, 3)) * 0.3
    return a, b


def _tiny(pooling="avg", head="linear", metric="cosine", dtype=torch.float64, seed=0):
    net = TinyEmbeddingNet(pooling=pooling, head=head, seed=seed).to(dtype)
    if pooling == "gem":
        with torch.no_grad():  # the seeded init leaves p ~ 0.17; use the usual GeM power
            net.pool.p.fill_(3.0)
    return sv.SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS)


def _fast(method):
    """Options that keep the perturbation methods quick in tests."""
    if method == "rise":
        return {"masks": 64, "show_progress": False}
    if method == "sliding_window":
        return {"window": 16, "stride": 16, "show_progress": False}
    return {}


# ------------------------------------------------------------------------------------------
# Every method on the tiny and the default model


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_tiny_test(method):
    model = sv.load_model("tiny_test")
    q, r = _images()
    exp = sv.explain(model, q, r, method=method, **_fast(method))
    grid = (64, 64) if method in PIXEL_METHODS else (8, 8)
    assert exp.method == method
    assert exp.query_map.shape == grid and exp.reference_map.shape == grid
    assert exp.query_map.dtype == np.float32 and exp.reference_map.dtype == np.float32
    assert np.isfinite(exp.query_map).all() and np.isfinite(exp.reference_map).all()
    assert exp.signed is SIGNED[method]
    assert exp.score == pytest.approx(model.similarity(q, r), abs=1e-6)
    assert np.ptp(exp.query_map) > 0  # not a constant map
    assert (exp.point_to_point is not None) == (method == "similarity_map")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_default_model(default_model, method):
    q, r = default_pair()
    opts = {"masks": 64, "batch_size": 16, "show_progress": False} if method == "rise" else (
        {"window": 56, "stride": 56, "show_progress": False} if method == "sliding_window" else {})
    exp = sv.explain(default_model, q, r, method=method, **opts)
    grid = (224, 224) if method in PIXEL_METHODS else (7, 7)
    assert exp.query_map.shape == grid and exp.reference_map.shape == grid
    assert np.isfinite(exp.query_map).all() and np.isfinite(exp.reference_map).all()
    assert exp.score == pytest.approx(default_model.similarity(q, r), abs=1e-6)
    assert np.ptp(exp.query_map) > 0
    assert exp.info["model"] == "efficientnet_lite0"


# ------------------------------------------------------------------------------------------
# SimilarityTarget and pytorch-grad-cam


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_similarity_target_matches_model_metric(metric):
    model = _tiny(metric=metric)
    q, r = _images(3)
    gq, gr = model.embed(q), model.embed(r)
    target = SimilarityTarget(gr, metric=metric)
    expected = float(model.score_embeddings(gq, gr)[0])
    assert float(target(gq[0])) == pytest.approx(expected, rel=1e-12)  # (D,) like pytorch-grad-cam
    batch = torch.cat([gq, gr, 2 * gq])
    out = target(batch)  # (B, D) like Captum
    assert out.shape == (3,)
    assert float(out[0]) == pytest.approx(expected, rel=1e-12)
    assert float(out[1]) == pytest.approx({"cosine": 1.0, "dot": float(gr[0] @ gr[0]), "euclidean": 0.0}[metric])
    t2 = SimilarityTarget.for_image(model, r)
    assert t2.metric == metric and torch.equal(t2.reference, gr[0])


def test_similarity_target_gradient_flows_and_reference_is_detached():
    ref = torch.tensor([1.0, 2.0, 2.0], requires_grad=True)
    target = SimilarityTarget(ref, metric="dot")
    g = torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    (grad,) = torch.autograd.grad(target(g), g)
    assert torch.equal(grad, torch.tensor([1.0, 2.0, 2.0]))
    assert not target.reference.requires_grad
    with torch.no_grad():
        ref.mul_(0)  # the target kept a copy
    assert float(target(g).detach()) == pytest.approx(2.5)


def test_similarity_target_errors():
    with pytest.raises(ValueError, match=r"metric='l1' is not one of \['cosine', 'dot', 'euclidean'\]"):
        SimilarityTarget(torch.ones(3), metric="l1")
    with pytest.raises(ValueError, match=r"reference_embedding has shape \(2, 3\); expected one embedding"):
        SimilarityTarget(torch.ones(2, 3))
    with pytest.raises(TypeError, match="reference_embedding must be a torch tensor or numpy array"):
        SimilarityTarget([1.0, 2.0])
    with pytest.raises(ValueError, match=r"embedding has shape \(4,\); expected \(D,\) or \(B, D\) with D = 3"):
        SimilarityTarget(np.ones(3))(torch.ones(4))


class _EmbeddingModule(nn.Module):
    """What pytorch-grad-cam needs: a module whose forward returns the embedding."""

    def __init__(self, model):
        super().__init__()
        self.net = model.module
        self.model = model

    def forward(self, x):
        return self.model.embed_from_features(self.model.features(x))


def _grad_cam_postprocess(cam, size):
    """pytorch-grad-cam's post-processing (base_cam.py / utils/image.py, v1.5): min-max scale with
    1e-7, cv2.resize to the input size, then (one layer) min-max scale again."""
    import cv2

    cam = np.maximum(cam, 0)
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    cam = cv2.resize(np.float32(cam), (size[1], size[0]))
    cam = np.maximum(cam, 0)
    cam = cam - cam.min()
    return np.float32(cam / (1e-7 + cam.max()))


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_gradcam_equals_pytorch_grad_cam_with_similarity_target(which, request):
    from pytorch_grad_cam import GradCAM as LibraryGradCAM

    if which == "tiny":
        model = sv.load_model("tiny_test")
        q, r = _images(5)
        layer = model.module.backbone  # its output is the pooling input F
    else:
        model = request.getfixturevalue("default_model")
        q, r = default_pair()
        layer = model.module.bn2  # timm EfficientNet: F = input of global_pool = output of bn2
    ours = sv.explain(model, q, r, method="gradcam")
    xq, xr = model.prepare(q).tensor, model.prepare(r).tensor
    with torch.no_grad():
        gr = model.embed_tensor(xr)
    with LibraryGradCAM(model=_EmbeddingModule(model), target_layers=[layer]) as cam:
        theirs = cam(input_tensor=xq, targets=[SimilarityTarget(gr[0], metric=model.metric)])[0]
    mine = _grad_cam_postprocess(ours.query_map, xq.shape[-2:])
    assert theirs.shape == mine.shape == tuple(xq.shape[-2:])
    np.testing.assert_allclose(mine, theirs, atol=1e-5)
    assert theirs.max() == pytest.approx(1.0, abs=1e-5) and np.ptp(theirs) > 0.5


# ------------------------------------------------------------------------------------------
# Identities between the gradient methods and the decomposition (docs/methods.md, "Gradient methods")


def test_gap_dot_gradcam_is_decomposition_minus_constant():
    """GAP, dot metric, linear head with bias: dS/dA_i = W^T g_Y / N for every i, so Grad-CAM
    before the ReLU is sum_c A_i[c] (W^T g_Y)[c] / N = e_i . g_Y - b . g_Y / N_X: the with-bias
    decomposition minus the constant b . g_Y / N_X. RGrad-CAM is the same map (the gradient does not
    vary over positions)."""
    model = _tiny("avg", "linear", "dot")
    q, r = _images(1)
    gcam = sv.explain(model, q, r, method="gradcam", relu=False)
    rgrad = sv.explain(model, q, r, method="rgradcam")
    dec = sv.explain(model, q, r, method="decomposition", bias=True)
    b = model.head_bias.double()
    gq, gr = model.embed(q)[0].double(), model.embed(r)[0].double()
    n = 64
    assert abs(float(b @ gr)) / n > 1e-3  # the constant is not negligible: the test can fail
    for side, other in (("query", gr), ("reference", gq)):
        # Maps are float32: compare at 1e-5 relative to the maps' magnitude.
        expected = dec.maps[side].astype(np.float64) - float(b @ other) / n
        scale = np.abs(expected).max()
        np.testing.assert_allclose(gcam.maps[side], expected, rtol=1e-5, atol=1e-6 * scale)
        np.testing.assert_allclose(rgrad.maps[side], gcam.maps[side], rtol=1e-5, atol=1e-6 * scale)
    # With the ReLU, Grad-CAM is the positive part of the same map (a cosine model, where the
    # scattered gradient gives negative cells).
    cosine = _tiny("avg", "linear", "cosine")
    pre = sv.explain(cosine, q, r, method="gradcam", relu=False).query_map
    relu = sv.explain(cosine, q, r, method="gradcam").query_map
    assert (pre < 0).any() and (pre > 0).any()
    np.testing.assert_array_equal(relu, np.maximum(pre, 0))


@pytest.mark.parametrize("pooling", ["max", "gem", "avg"])
def test_rgradcam_equals_masked_decomposition(pooling):
    """Dot metric: RGrad-CAM(i) = sum_c dp_c/dA_i[c] A_i[c] (W^T g_Y)_c. For max pooling
    dp_c/dA_i[c] is the argmax mask a(c, i) (and for GeM, homogeneous of degree 1, it is again the
    decomposition's weight a(c, i)), so RGrad-CAM = e_i . g_Y with the bias-free contributions: the
    masked decomposition without bias when the head has none, and the with-bias decomposition minus
    b . g_Y / N_X when it has one."""
    q, r = _images(2)
    nobias = _tiny(pooling, "linear_nobias", "dot")
    rgrad = sv.explain(nobias, q, r, method="rgradcam")
    dec0 = sv.explain(nobias, q, r, method="decomposition", bias=False)
    for side in ("query", "reference"):
        scale = np.abs(dec0.maps[side]).max()
        np.testing.assert_allclose(rgrad.maps[side], dec0.maps[side], rtol=1e-5, atol=1e-6 * scale)
    if pooling == "max":  # one position per channel: cells without any argmax contribute exactly 0
        assert (rgrad.query_map == 0).sum() > 0 and np.ptp(rgrad.query_map) > 0

    biased = _tiny(pooling, "linear", "dot")
    rgrad = sv.explain(biased, q, r, method="rgradcam")
    dec = sv.explain(biased, q, r, method="decomposition", bias=True)
    b = biased.head_bias.double()
    gr = biased.embed(r)[0].double()
    expected = dec.query_map.astype(np.float64) - float(b @ gr) / 64
    np.testing.assert_allclose(rgrad.query_map, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_max_pooling_cosine_rgradcam_has_the_normalisation_term():
    """With cosine, dS/dg_X = (ĝ_Y - S ĝ_X)/|g_X|: RGrad-CAM = masked decomposition minus
    S (e_i . g_X) / |g_X|^2 — the term that makes gradient maps differ from the decomposition."""
    model = _tiny("max", "linear_nobias", "cosine")
    q, r = _images(2)
    rgrad = sv.explain(model, q, r, method="rgradcam")
    dec = sv.explain(model, q, r, method="decomposition")
    parts = position_contributions(model, model.prepare(q).tensor, bias=False, show_progress=False)
    g = model.embed(q)[0].double()
    correction = (parts["E"] @ g).numpy().reshape(8, 8) * rgrad.score / float(g @ g)
    expected = dec.query_map - correction
    np.testing.assert_allclose(rgrad.query_map, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert np.abs(correction).max() > 0.1 * np.abs(dec.query_map).max()


def test_cosine_gradient_formula_against_autograd():
    """dS/dA_i = a(., i) * W^T (ĝ_Y - S ĝ_X) / |g_X| (avg pooling: a = 1/N for every i)."""
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(4)
    g = similarity_gradients(model, model.prepare(q).tensor, model.prepare(r).tensor)
    gx, gy, S = g["g_query"].double(), g["g_reference"].double(), g["score"]
    ux, uy = gx / gx.norm(), gy / gy.norm()
    W = model.head_weight.double()
    per_channel = W.T @ ((uy - S * ux) / gx.norm()) / 64
    expected = per_channel[:, None, None].expand(-1, 8, 8)
    torch.testing.assert_close(g["grad_query"].double(), expected, rtol=1e-6, atol=1e-10)
    # Symmetric for the reference.
    expected_r = (W.T @ ((ux - S * uy) / gy.norm()) / 64)[:, None, None].expand(-1, 8, 8)
    torch.testing.assert_close(g["grad_reference"].double(), expected_r, rtol=1e-6, atol=1e-10)
    assert S == pytest.approx(float(F.cosine_similarity(gx, gy, dim=0)), abs=1e-12)


def test_gradients_do_not_accumulate_between_calls():
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(4)
    first = sv.explain(model, q, r, method="rgradcam")
    second = sv.explain(model, q, r, method="rgradcam")
    np.testing.assert_array_equal(first.query_map, second.query_map)
    assert all(p.grad is None for p in model.module.parameters())


# ------------------------------------------------------------------------------------------
# Similarity maps (Stylianou et al.)


def test_similarity_map_equals_decomposition_without_head():
    model = _tiny("avg", "identity", "cosine")
    q, r = _images(6)
    sim = sv.explain(model, q, r, method="similarity_map")
    dec = sv.explain(model, q, r, method="decomposition")
    np.testing.assert_allclose(sim.query_map, dec.query_map, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sim.reference_map, dec.reference_map, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sim.point_to_point.matrix(), dec.point_to_point.matrix(), rtol=1e-9, atol=1e-14)
    assert float(sim.query_map.sum()) == pytest.approx(sim.score, abs=1e-6)


def test_similarity_map_works_on_the_pooled_feature_not_the_embedding():
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(6)
    sim = sv.explain(model, q, r, method="similarity_map")
    dec = sv.explain(model, q, r, method="decomposition")
    xq, xr = model.prepare(q).tensor, model.prepare(r).tensor
    with torch.no_grad():
        Aq, Ar = model.features(xq)[0].double(), model.features(xr)[0].double()
    pq, pr = Aq.mean((1, 2)), Ar.mean((1, 2))
    # heat_X(i) = <A_i, p_Y> / (N_X |p_X| |p_Y|), by hand.
    heat = torch.einsum("chw,c->hw", Aq, pr) / (64 * pq.norm() * pr.norm())
    np.testing.assert_allclose(sim.query_map, heat.numpy(), rtol=1e-6, atol=1e-9)
    pooled_cos = float(F.cosine_similarity(pq, pr, dim=0))
    assert float(sim.query_map.sum()) == pytest.approx(pooled_cos, abs=1e-6)
    assert float(sim.point_to_point.matrix().sum()) == pytest.approx(pooled_cos, abs=1e-9)
    np.testing.assert_allclose(sim.point_to_point.matrix().sum(0), sim.reference_map.ravel(), rtol=1e-5, atol=1e-8)
    # The head changes the answer: the maps and their totals differ from the decomposition's.
    assert abs(pooled_cos - sim.score) > 1e-3
    assert np.abs(sim.query_map / sim.query_map.sum() - dec.query_map / dec.query_map.sum()).max() > 1e-3


def test_similarity_map_max_pooling_surrogate():
    model = _tiny("max", "linear", "cosine")
    q, r = _images(7)
    sim = sv.explain(model, q, r, method="similarity_map")
    with torch.no_grad():
        Aq = model.features(model.prepare(q).tensor)[0].double().reshape(16, 64)
        Ar = model.features(model.prepare(r).tensor)[0].double().reshape(16, 64)
    pq, pr = Aq.max(1).values, Ar.max(1).values
    surrogate = torch.zeros_like(Aq)
    surrogate[torch.arange(16), Aq.argmax(1)] = pq  # each channel only at its argmax
    heat = (surrogate.T @ pr) / (pq.norm() * pr.norm())
    np.testing.assert_allclose(sim.query_map.ravel(), heat.numpy(), rtol=1e-6, atol=1e-9)
    assert float(sim.query_map.sum()) == pytest.approx(float(F.cosine_similarity(pq, pr, dim=0)), abs=1e-6)


# ------------------------------------------------------------------------------------------
# Similarity attention (Zheng et al.)


@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("with_negative", [False, True])
def test_similarity_attention_closed_form(absolute, with_negative):
    """Avg pooling, linear head: ds_X/dA_i = W^T (sign(g_X)^[abs] * w) / N for every i, so the map is
    ReLU(sum_c (W^T (sign * w))_c A_i[c] / N)."""
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(8)
    z = _images(9)[0]
    opts = {"absolute": absolute, "negative": z if with_negative else None}
    exp = sv.explain(model, q, r, method="similarity_attention", **opts)
    gq, gr, gz = (model.embed(im)[0].double() for im in (q, r, z))
    uq, ur, uz = (F.normalize(g, dim=0) for g in (gq, gr, gz))
    w = 1 - (uq - ur).abs()
    if with_negative:
        w = w * (uq - uz).abs()
    np.testing.assert_allclose(exp.info["weights"], w.numpy(), rtol=1e-5, atol=1e-7)
    W = model.head_weight.double()
    for side, image, g in (("query", q, gq), ("reference", r, gr)):
        with torch.no_grad():
            A = model.features(model.prepare(image).tensor)[0].double()
        sign = torch.sign(g) if absolute else torch.ones_like(g)
        alpha = W.T @ (sign * w) / 64
        expected = torch.einsum("c,chw->hw", alpha, A).clamp_min(0)
        np.testing.assert_allclose(exp.maps[side], expected.numpy(), rtol=1e-5, atol=1e-8)
    assert (torch.sign(gq) < 0).any()  # abs and plain variants differ on this model


# ------------------------------------------------------------------------------------------
# SFAM


def test_sfam_cosine_cis_closed_form():
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(10)
    exp = sv.explain(model, q, r, method="sfam")
    with torch.no_grad():
        Aq = model.features(model.prepare(q).tensor)[0].double()
        Ar = model.features(model.prepare(r).tensor)[0].double()
    pq, pr = Aq.mean((1, 2)), Ar.mean((1, 2))
    cis = (pq / pq.norm()) * (pr / pr.norm())
    assert float(cis.sum()) == pytest.approx(float(F.cosine_similarity(pq, pr, dim=0)), abs=1e-12)
    assert exp.info["cis"] == "cosine"
    np.testing.assert_allclose(exp.query_map, torch.einsum("c,chw->hw", cis, Aq).clamp_min(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(exp.reference_map, torch.einsum("c,chw->hw", cis, Ar).clamp_min(0).numpy(), rtol=1e-6)


def test_sfam_euclidean_cis():
    p, q = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 1.0])
    # squared differences 0, 4, 9 -> mean 13/3
    torch.testing.assert_close(euclidean_cis(p, q), torch.tensor([13 / 3, 13 / 3 - 4, 13 / 3 - 9]))
    torch.testing.assert_close(cosine_cis(p, q).sum(), F.cosine_similarity(p, q, dim=0))
    model = _tiny("avg", "linear", "euclidean")
    a, b = _images(11)
    exp = sv.explain(model, a, b, method="sfam")  # 'auto' picks the Euclidean CIS
    assert exp.info["cis"] == "euclidean"
    assert abs(float(exp.info["cis_values"].sum())) < 1e-5 * np.abs(exp.info["cis_values"]).max()


def test_sfam_custom_cis_and_bad_cis():
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(12)

    def ones(p_query, p_reference):
        return torch.ones_like(p_query)

    exp = sv.explain(model, q, r, method="sfam", cis=ones)
    with torch.no_grad():
        A = model.features(model.prepare(q).tensor)[0].double()
    np.testing.assert_allclose(exp.query_map, A.sum(0).numpy(), rtol=1e-6)
    assert exp.info["cis"] == "ones"
    with pytest.raises(ValueError, match=r"cis function returned shape \(3,\); expected \(16,\)"):
        sv.explain(model, q, r, method="sfam", cis=lambda a, b: torch.ones(3))
    with pytest.raises(ValueError, match="cis='dot' is not one of"):
        sv.explain(model, q, r, method="sfam", cis="dot")


# ------------------------------------------------------------------------------------------
# RISE


def test_rise_masks_shape_values_and_batch_independence():
    masks = RiseMasks(40, (30, 20), grid=4, keep=0.3, seed=5)
    assert masks.cell_size == (8, 5) and masks.upsampled_size == (40, 25)
    whole = masks.batch(0, 40)
    assert whole.shape == (40, 1, 30, 20) and whole.dtype == torch.float32
    assert float(whole.min()) >= 0 and float(whole.max()) <= 1
    assert torch.equal(torch.cat([masks.batch(0, 7), masks.batch(7, 40)]), whole)
    # Prefix-stable: the first k masks do not depend on the total count.
    assert torch.equal(RiseMasks(7, (30, 20), grid=4, keep=0.3, seed=5).batch(0, 7), whole[:7])
    # A mask is a shifted crop of the upsampled grid: a fully kept grid gives ones.
    full = RiseMasks(3, (30, 20), grid=4, keep=1.0, seed=0).batch(0, 3)
    torch.testing.assert_close(full, torch.ones_like(full), rtol=0, atol=1e-6)
    big = RiseMasks(2000, (16, 16), grid=4, keep=0.3, seed=1)
    assert big.cells.mean() == pytest.approx(0.3, abs=0.01)


def test_rise_is_seeded():
    model = sv.load_model("tiny_test")
    q, r = _images(13)
    opts = {"masks": 48, "show_progress": False}
    a = sv.explain(model, q, r, method="rise", seed=3, **opts)
    b = sv.explain(model, q, r, method="rise", seed=3, **opts)
    c = sv.explain(model, q, r, method="rise", seed=4, **opts)
    np.testing.assert_array_equal(a.query_map, b.query_map)
    assert np.abs(a.query_map - c.query_map).max() > 1e-4


def test_rise_batched_equals_per_mask_loop():
    """Same masks, same sums: batched RISE equals a one-mask-at-a-time loop. A float64 network,
    because float32 convolutions round differently for different batch sizes (~1e-7)."""
    model = _tiny("avg", "linear", "cosine")
    q, r = _images(14)
    n = 37  # not a multiple of the batch size
    exp = sv.explain(model, q, r, method="rise", masks=n, batch_size=8, seed=2, show_progress=False)
    # Reference implementation: one mask at a time, straight from the definition.
    xq, xr = model.prepare(q).tensor, model.prepare(r).tensor
    masks = RiseMasks(n, (64, 64), grid=8, keep=0.5, seed=2)
    with torch.no_grad():
        gr = model.embed_tensor(xr)
        num = torch.zeros(64, 64, dtype=torch.float64)
        den = torch.zeros(64, 64, dtype=torch.float64)
        scores = []
        for k in range(n):
            m = masks.batch(k, k + 1)
            s = float(F.cosine_similarity(model.embed_tensor(xq * m), gr, dim=-1, eps=1e-12)[0])
            scores.append(s)
            num += s * m[0, 0].double()
            den += m[0, 0].double()
    np.testing.assert_allclose(exp.info["query"]["mask_scores"], scores, rtol=1e-12, atol=0)
    np.testing.assert_allclose(exp.query_map, (num / den).numpy(), rtol=1e-6, atol=0)  # float32 map
    # Within the method the batch size changes nothing: masks and sums go mask by mask.
    one = sv.explain(model, q, r, method="rise", masks=n, batch_size=1, seed=2, show_progress=False)
    np.testing.assert_array_equal(one.query_map, exp.query_map)


def test_rise_both_explains_the_reference_with_the_query_fixed():
    model = sv.load_model("tiny_test")
    q, r = _images(15)
    opts = {"masks": 40, "show_progress": False, "seed": 1}
    single = sv.explain(model, q, r, method="rise", **opts)
    both = sv.explain(model, q, r, method="rise", both=True, **opts)
    swapped = sv.explain(model, r, q, method="rise", **opts)
    assert not single.reference_map.any()  # both=False: not computed
    assert "not computed" in single.info["reference"]["note"]
    np.testing.assert_array_equal(both.query_map, single.query_map)
    np.testing.assert_array_equal(both.reference_map, swapped.query_map)
    assert both.info["passes_done"] == 80 and single.info["passes_done"] == 40


def test_rise_cancel_returns_partial_result_in_the_exception():
    model = sv.load_model("tiny_test")
    q, r = _images(16)
    calls = {"n": 0}

    def stop_after_two_batches():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(ExplanationCancelled, match="cancelled after 16 of 64 forward passes") as info:
        sv.explain(model, q, r, method="rise", masks=64, batch_size=8, cancel=stop_after_two_batches,
                   show_progress=False)
    partial = info.value.partial
    assert partial.info["cancelled"] and partial.info["passes_done"] == 16
    # The partial map is exactly RISE with the masks done (masks are prefix-stable).
    short = sv.explain(model, q, r, method="rise", masks=16, batch_size=8, show_progress=False)
    np.testing.assert_array_equal(partial.query_map, short.query_map)

    event = threading.Event()
    event.set()
    with pytest.raises(ExplanationCancelled) as info:
        sv.explain(model, q, r, method="sliding_window", window=16, cancel=event, show_progress=False)
    assert info.value.partial.info["passes_done"] == 0 and not info.value.partial.query_map.any()


# ------------------------------------------------------------------------------------------
# Sliding window


def test_sliding_windows_cover_every_pixel():
    pos = sliding_windows((30, 20), 8, 6)
    assert [r for r, c in pos if c == 0] == [0, 6, 12, 18, 22]
    assert sorted({c for r, c in pos}) == [0, 6, 12]
    covered = np.zeros((30, 20), int)
    for r, c in pos:
        covered[r : r + 8, c : c + 8] += 1
    assert covered.min() >= 1


def _red_square_scene(size=32):
    """Black picture with a red 8x8 square at rows/cols 8..15; mean_color has mean 0 / std 1, so
    the normalised space is RGB in [0, 1] and fill=0 is black."""
    image = np.zeros((size, size, 3), np.uint8)
    image[8:16, 8:16, 0] = 255
    red = np.zeros((size, size, 3), np.uint8)
    red[..., 0] = 255
    return image, red


def test_sliding_window_known_answer_mean_color():
    """Embedding = mean RGB; dot similarity to a pure red reference = the red fraction of the query.
    Windows aligned with the square: occluding it drops the score by 64/1024 exactly there, and
    occluding black changes nothing."""
    model = sv.load_model("mean_color")
    query, red = _red_square_scene()
    exp = sv.explain(model, query, red, method="sliding_window", window=8, stride=8, similarity="model",
                     show_progress=False)
    expected = np.zeros((32, 32), np.float32)
    expected[8:16, 8:16] = 64 / 1024
    np.testing.assert_allclose(exp.query_map, expected, atol=1e-7)
    assert exp.score == pytest.approx(64 / 1024, abs=1e-7)


def test_sliding_window_signs_with_cosine():
    """Left half red, right half green, red reference, cosine: hiding red lowers the similarity
    (positive saliency), hiding green raises it (negative)."""
    model = sv.load_model("mean_color", metric="cosine")
    query = np.zeros((32, 32, 3), np.uint8)
    query[:, :16, 0] = 255
    query[:, 16:, 1] = 255
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    exp = sv.explain(model, query, red, method="sliding_window", window=8, stride=4, show_progress=False)
    assert (exp.query_map[:, :8] > 0.01).all()
    assert (exp.query_map[:, 24:] < -0.01).all()
    assert exp.signed


# ------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "method,options,error,match",
    [
        ("rise", {"masks": 0}, ValueError, r"rise: option masks=0 must be >= 1"),
        ("rise", {"keep": 1.5}, ValueError, r"keep=1.5 must be in \(0.0, 1.0\]"),
        ("rise", {"batch_size": 2.5}, TypeError, r"batch_size=2.5 must be an integer \(got float\)"),
        ("rise", {"similarity": "l2"}, ValueError, r"similarity='l2' is not one of \['cosine', 'model'\]"),
        ("rise", {"cancel": 5}, TypeError, r"cancel=5 must be None, a callable"),
        ("rise", {"both": "yes"}, TypeError, r"both='yes' must be True or False"),
        ("rise", {"grid": 100}, ValueError, r"grid=100 cells is finer than the query image \(64x64 px\)"),
        ("rise", {"mask": 10}, TypeError, r"unknown option\(s\) \['mask'\]"),
        ("sliding_window", {"window": 100}, ValueError, r"window=100 px is larger than the query image"),
        ("sliding_window", {"stride": 0}, ValueError, r"stride=0 must be >= 1"),
        ("sliding_window", {"fill": "grey"}, ValueError, r"fill='grey' must be a finite number or three"),
        ("sliding_window", {"fill": (0.0, 1.0)}, ValueError, r"must be a finite number or three"),
        ("gradcam", {"relu": "no"}, TypeError, r"gradcam: option relu='no' must be True or False"),
        ("similarity_attention", {"absolute": 1}, TypeError, r"absolute=1 must be True or False"),
        ("similarity_attention", {"negative": np.zeros((8, 8, 5), np.uint8)}, ImageInputError,
         r"negative has 5 channels"),
    ],
)
def test_bad_options_give_clear_errors(method, options, error, match):
    model = sv.load_model("tiny_test")
    q, r = _images()
    with pytest.raises(error, match=match):
        sv.explain(model, q, r, method=method, **options)


def test_pooled_methods_refuse_flattened_heads():
    model = _tiny("flatten", "flat_linear", "cosine")
    q, r = _images()
    for method in ("similarity_map", "sfam"):
        with pytest.raises(ValueError, match=f"method '{method}' needs a global pooling"):
            sv.explain(model, q, r, method=method)
    # The gradient methods do not need a pooled vector.
    assert sv.explain(model, q, r, method="gradcam").query_map.shape == (8, 8)


def test_methods_are_registered_with_papers():
    for name in METHODS:
        cls = get_method(name)
        assert cls.paper and "arXiv" in cls.paper or "ECCV" in cls.paper
        assert "Deviation" in cls.__doc__ or "deviat" in cls.__doc__.lower()

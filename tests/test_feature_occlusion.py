"""Feature-space occlusion and the shared-content map: known answers on hand-set tiny models (the
map is the score drop when the feature vectors of N(i) are zeroed, for linear pooling and affine
heads), the linearised cases, option checks, both sides, and the pointing rate on real pairs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import shared_object_pairs
from simviz_widgets.evaluate import compare
from simviz_widgets.explain import get_method, list_methods, position_contributions
from simviz_widgets.explain.feature_occlusion import neighbourhood_matrix, occlusion_maps
from simviz_widgets.explain.shared_content import correspondence_maps
from simviz_widgets.models import TinyEmbeddingNet
from simviz_widgets.models.tiny import TINY_PREPROCESS

NEW = ["feature_occlusion", "shared_content"]


def _images(seed=0, size=64):
    g = np.random.default_rng(seed)
    up = np.ones((size // 8, size // 8, 1))
    return tuple(np.kron(g.random((8, 8, 3)), up) * 0.7 + g.random((size, size, 3)) * 0.3 for _ in range(2))


def _tiny(pooling="avg", head="linear", metric="cosine", net=None):
    net = (net or TinyEmbeddingNet(pooling=pooling, head=head, seed=0)).double()
    return sv.SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS)


def _zeroed_drops(model, x, other_g, radius):
    """Independent answer: zero the feature map at N(i), pool, head (and the model's normalisation),
    score against the other embedding; the drop from the unoccluded score, per cell."""
    with torch.no_grad():
        feats = model.features(x)
        score = model.score_embeddings(model.embed_from_features(feats), other_g)[0]
        _, _, h, w = feats.shape
        drops = np.zeros((h, w))
        for r in range(h):
            for c in range(w):
                occluded = feats.clone()
                occluded[:, :, max(r - radius, 0):r + radius + 1, max(c - radius, 0):c + radius + 1] = 0
                drops[r, c] = float(score - model.score_embeddings(model.embed_from_features(occluded), other_g)[0])
    return drops


class NormalizedNet(TinyEmbeddingNet):
    """L2-normalises its output outside modules (wrap() detects it): occlusion must re-normalise."""

    def forward(self, x):
        return F.normalize(super().forward(x), dim=1)


# ------------------------------------------------------------------------------------------
# Known answers: exact for linear pooling and affine heads


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("pooling,head", [("avg", "identity"), ("avg", "linear"), ("avg", "linear_bn"),
                                          ("flatten", "flat_linear")])
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_map_is_the_score_drop_of_zeroing_the_neighbourhood(pooling, head, metric, radius):
    model = _tiny(pooling, head, metric)
    q, r = (model.prepare(im) for im in _images(1))
    with torch.no_grad():
        gq, gr = model.embed_tensor(q.tensor), model.embed_tensor(r.tensor)
    cq = position_contributions(model, q.tensor, bias=False)
    cr = position_contributions(model, r.tensor, bias=False)
    qmap, rmap = occlusion_maps(model, cq, cr, radius)
    # Both sides, each against the other image's embedding; the head's bias stays in the embedding.
    np.testing.assert_allclose(qmap.numpy(), _zeroed_drops(model, q.tensor, gr, radius), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(rmap.numpy(), _zeroed_drops(model, r.tensor, gq, radius), rtol=1e-9, atol=1e-11)
    exp = get_method("feature_occlusion")(radius=radius)(model, q, r)
    assert exp.info["exact"] is True and exp.signed is True and exp.metric == metric
    assert exp.info["exactness"].startswith("exact:") and "no extra forward pass" in exp.info["cost"]
    np.testing.assert_allclose(exp.query_map, qmap.numpy(), rtol=1e-5, atol=1e-7)  # maps are float32
    assert exp.score == pytest.approx(model.similarity(q.display, r.display), abs=1e-6)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_a_normalising_model_is_re_normalised_after_occlusion(metric):
    model = _tiny(net=NormalizedNet(seed=0), metric=metric)
    assert model.output_normalized
    q, r = (model.prepare(im) for im in _images(2))
    with torch.no_grad():
        gr = model.embed_tensor(r.tensor)
    exp = sv.explain(model, q.display, r.display, method="feature_occlusion")
    np.testing.assert_allclose(exp.query_map, _zeroed_drops(model, q.tensor, gr, 1), rtol=1e-5, atol=1e-7)


def test_whole_grid_removal_leaves_the_bias():
    """Radius covering the grid: every cell removes every feature. Without a head bias the embedding
    becomes 0, whose cosine is 0: each cell's drop is the whole score."""
    model = _tiny("avg", "linear_nobias")
    q, r = _images(3)
    exp = sv.explain(model, q, r, method="feature_occlusion", radius=8)
    np.testing.assert_allclose(exp.query_map, exp.score, rtol=1e-6)
    np.testing.assert_allclose(exp.reference_map, exp.score, rtol=1e-6)


def test_dot_metric_is_linear_in_the_removed_contributions():
    """mean_color (hand-set: cell = its mean RGB, avg pooling, identity head, dot): the drop is
    sum_{k in N(i)} e_k . g_Y — a cell's mean colour / N dotted with the other image's mean colour."""
    model = sv.load_model("mean_color", size=16)  # 4 x 4 grid of 4 x 4 px cells
    g = np.random.default_rng(4)
    q = (np.kron(g.random((4, 4, 3)), np.ones((4, 4, 1))) * 255).astype(np.uint8)
    r = (np.kron(g.random((4, 4, 3)), np.ones((4, 4, 1))) * 255).astype(np.uint8)
    for radius in (0, 1):
        exp = sv.explain(model, q, r, method="feature_occlusion", radius=radius)
        cells = (q / 255.0).reshape(4, 4, 4, 4, 3).mean(axis=(1, 3)).reshape(16, 3) / 16  # e_k
        other = (r / 255.0).reshape(-1, 3).mean(0)  # g_Y: the mean colour
        expected = (neighbourhood_matrix((4, 4), radius).numpy() @ (cells @ other)).reshape(4, 4)
        np.testing.assert_allclose(exp.query_map, expected, rtol=1e-5)


def test_neighbourhood_is_cut_at_the_border():
    m = neighbourhood_matrix((3, 4), 1).numpy()
    assert m.shape == (12, 12) and np.array_equal(m, m.T)
    assert m[0].sum() == 4 and m[5].sum() == 9 and m[3].sum() == 4  # corner, inside, corner
    assert np.array_equal(neighbourhood_matrix((3, 4), 0).numpy(), np.eye(12))


def test_swapping_the_images_swaps_the_maps():
    model = _tiny()
    q, r = _images(5)
    a = sv.explain(model, q, r, method="feature_occlusion")
    b = sv.explain(model, r, q, method="feature_occlusion")
    np.testing.assert_allclose(a.query_map, b.reference_map, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.reference_map, b.query_map, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_point_to_point_is_the_decompositions(metric):
    model = _tiny(metric=metric)
    q, r = _images(6)
    occ = sv.explain(model, q, r, method="feature_occlusion")
    dec = sv.explain(model, q, r, method="decomposition")
    np.testing.assert_allclose(occ.point_to_point.matrix(), dec.point_to_point.matrix(), rtol=1e-9, atol=1e-12)
    row = occ.from_query(10.0, 20.0, reading="correspondence")
    np.testing.assert_allclose(row, dec.from_query(10.0, 20.0, reading="correspondence"), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Linearised cases say so


@pytest.mark.parametrize("pooling,head,words", [("max", "linear", "max pooling"), ("gem", "linear", "GeM"),
                                                ("avg", "mlp", "generic head")])
def test_linearised_cases_are_flagged(pooling, head, words):
    model = _tiny(pooling, head)
    q, r = _images(7)
    exp = sv.explain(model, q, r, method="feature_occlusion")
    assert exp.info["exact"] is False and exp.info["exactness"].startswith("linearised:")
    assert any(words in note for note in exp.info["notes"]), exp.info["notes"]
    assert np.isfinite(exp.query_map).all() and np.ptp(exp.query_map) > 0


def test_max_pooling_removes_the_contributions_not_the_maximum():
    """Linearised: the map removes the contributions at the observed argmax; zeroing the features
    moves the maximum elsewhere, so the two differ (and the info says which one this is)."""
    model = _tiny("max", "linear")
    q, r = (model.prepare(im) for im in _images(8))
    with torch.no_grad():
        gr = model.embed_tensor(r.tensor)
    exp = get_method("feature_occlusion")()(model, q, r)
    assert not np.allclose(exp.query_map, _zeroed_drops(model, q.tensor, gr, 1), atol=1e-4)
    assert "argmax" in " ".join(exp.info["notes"])


def test_any_layer_mode_is_first_order():
    model = sv.load_model("tiny_test", layer="backbone.2")
    q, r = _images(9)
    exp = sv.explain(model, q, r, method="feature_occlusion", show_progress=False)
    assert exp.info["exact"] is False and "any-layer" in " ".join(exp.info["notes"])
    assert exp.query_map.shape == (16, 16)


# ------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("value,error", [("1", InputTypeError), (1.0, InputTypeError), (True, InputTypeError),
                                         (None, InputTypeError), (-1, InputError)])
def test_radius_is_type_checked(method, value, error):
    with pytest.raises(error, match=f"{method}: option radius"):
        get_method(method)(radius=value)


def test_unknown_and_badly_typed_options_are_refused():
    with pytest.raises(InputTypeError, match=r"unknown option\(s\) \['neighborhood'\].*'radius'"):
        get_method("feature_occlusion")(neighborhood=3)
    with pytest.raises(InputTypeError, match="option layer"):
        get_method("shared_content")(layer=3)
    with pytest.raises(InputTypeError, match="option relevance"):
        get_method("shared_content")(relevance="yes")
    model = sv.load_model("tiny_test")
    q, r = _images(10)
    with pytest.raises(ValueError, match="backbone.44"):
        sv.explain(model, q, r, method="shared_content", layer="backbone.44")
    with pytest.raises(InputError, match="gave no 4-D feature map"):
        sv.explain(model, q, r, method="shared_content", layer="head")  # runs after the feature map


# ------------------------------------------------------------------------------------------
# The shared-content map


def test_shared_content_is_relevance_times_correspondence():
    model = _tiny()
    q, r = _images(11)
    exp = sv.explain(model, q, r, method="shared_content")
    assert exp.info["correspondence_layer"] == "backbone.3" and exp.query_map.shape == (16, 16)
    assert exp.signed is False and exp.info["exact"] is False
    assert exp.query_map.min() >= 0 and exp.query_map.max() <= 1 + 1e-6
    only = sv.explain(model, q, r, method="shared_content", relevance=False)
    assert np.all(exp.query_map <= only.query_map + 1e-6)  # the relevance weight is in [0, 1]
    with torch.no_grad():
        fq = model.module.backbone[:4](model.prepare(q).tensor.double())[0]
        fr = model.module.backbone[:4](model.prepare(r).tensor.double())[0]
    cq, cr = correspondence_maps(fq, fr)
    np.testing.assert_allclose(only.query_map, cq.clamp_min(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(only.reference_map, cr.clamp_min(0).numpy(), rtol=1e-5, atol=1e-6)
    occ = sv.explain(model, q, r, method="feature_occlusion")
    np.testing.assert_allclose(exp.info["occlusion_maps"]["query"], occ.query_map)
    named = sv.explain(model, q, r, method="shared_content", layer="backbone.3")
    np.testing.assert_allclose(named.query_map, exp.query_map)


def test_shared_content_without_a_finer_layer_matches_contributions():
    model = sv.load_model("mean_color", size=16)  # one conv: nothing finer than its 4 x 4 grid
    q, r = _images(12, size=16)
    exp = sv.explain(model, q, r, method="shared_content")
    assert exp.query_map.shape == (4, 4) and "contributions are matched" in " ".join(exp.info["notes"])


def test_correspondence_finds_a_copied_patch():
    g = torch.Generator().manual_seed(0)
    fq, fr = torch.randn(32, 6, 6, generator=g), torch.randn(32, 6, 6, generator=g)
    fr[:, 4, 1] = 3 * fq[:, 2, 3]  # the same content (scaled) at another place of the other image
    cq, cr = correspondence_maps(fq, fr)
    assert cq.argmax() == 2 * 6 + 3 and cr.argmax() == 4 * 6 + 1


# ------------------------------------------------------------------------------------------
# Everywhere a method goes


def test_new_methods_are_listed_and_run_through_compare():
    assert set(NEW) <= set(list_methods()) and set(NEW) <= set(sv.list_methods())
    model = sv.load_model("tiny_test")
    pairs = shared_object_pairs(n=2, size=64)
    result = compare(model, pairs, NEW, ["pointing_game", ("deletion", {"steps": 11}), "correspondence_pck"],
                     show_progress=False)
    for row in result.table:
        assert np.isfinite(row["pointing_game"]) and np.isfinite(row["deletion"]) and row["runtime_s"] > 0


@pytest.mark.slow
def test_pointing_on_small_shared_objects(default_model):
    """Objects of 1-1.75 cells (benchmarks/bench_quality.py, set 'small'; its first 8 pairs):
    measured 1.00 (shared_content) and 0.50 (feature_occlusion) against 0.05 for the decomposition.
    Bars well below the measurement, far above the decomposition."""
    pairs = shared_object_pairs(n=8, seed=1, scale=(0.15, 0.25))
    result = compare(default_model, pairs, NEW, [("pointing_game", {"side": "query"})], show_progress=False)
    rate = {row["method"]: row["pointing_game"] for row in result.table}
    assert rate["shared_content"] >= 0.625, rate
    assert rate["feature_occlusion"] >= 0.25, rate

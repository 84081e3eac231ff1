"""Retrieval: region scores are the decomposition's rows, exact for every metric; known answers on a
hand-set model; regions as cell weights; search, backends, similarity matrix and orders."""

from __future__ import annotations

import numpy as np
import pytest

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets import random_scenes
from simviz_widgets.retrieval import (
    Gallery,
    cluster_order,
    order_by_similarity,
    region_query_map,
    region_reference_map,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _flat(colour, size=32):
    return np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()


def _halves(left, right, size=32):
    image = _flat(left, size)
    image[:, size // 2:] = right
    return image


@pytest.fixture(scope="module")
def scenes():
    return [s.image for s in random_scenes(10, seed=3)]


def _row_sums(explanation) -> np.ndarray:
    """sum_j D(i, j) per query cell, from the explanation's own factors."""
    p2p = explanation.point_to_point
    return p2p.scale * (p2p.query_factors @ p2p.reference_factors.sum(0))


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("pooling", ["avg", "gem", "max"])
def test_region_score_is_the_sum_of_the_decompositions_rows_over_the_region(scenes, metric, pooling):
    model = sv.load_model("tiny_test", metric=metric, pooling=pooling)
    gallery = Gallery.build(model, scenes[1:], show_progress=False)
    q = gallery.query(scenes[0])
    mask = np.zeros(q.size, dtype=bool)
    mask[5:40, 10:37] = True  # not aligned with the 8-pixel cells: fractional weights
    for region in ((8, 16, 40, 56), (3.5, 0, 61, 20.25), mask):
        weights = q.weights(region)
        scores = q.scores(region)
        for j in range(len(gallery)):
            explanation = gallery.explain(q, j)
            natural = max(abs(explanation.score), 1.0) if metric != "euclidean" else \
                float(np.abs(_row_sums(explanation)).sum())
            expected = float(weights.reshape(-1) @ _row_sums(explanation))
            assert abs(scores[j] - expected) <= 2e-6 * natural
            # the hit's answer to the region sums to the region score; the query's side too
            assert abs(region_reference_map(explanation, weights).sum() - expected) <= 1e-9 * natural
            assert abs(region_query_map(explanation, weights).sum() - expected) <= 1e-9 * natural
    # no region: the model's own score of the two images (float32 rows: to float32 round-off of the
    # metric's natural scale, |g_X|^2 + |g_Y|^2 for Euclidean)
    whole = q.scores()
    for j in (0, 4, 8):
        natural = 1.0 if metric == "cosine" else float(q.embedding @ q.embedding + gallery.embeddings[j] @
                                                       gallery.embeddings[j])
        assert abs(whole[j] - model.similarity(scenes[0], scenes[1 + j])) <= 2e-6 * natural


def test_known_answers_on_the_mean_colour_model():
    # embedding = the image's mean RGB (in [0, 1]); the query's left half red, right half blue
    images = [_flat(RED), _flat(GREEN), _flat(BLUE)]
    query = _halves(RED, BLUE)
    left, right = (0, 0, 32, 16), (0, 16, 32, 32)
    dot = Gallery.build(sv.load_model("mean_color", metric="dot"), images, names=["red", "green", "blue"],
                        show_progress=False)
    q = dot.query(query)
    np.testing.assert_allclose(q.scores(left), [0.5, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(q.scores(right), [0.0, 0.0, 0.5], atol=1e-7)
    np.testing.assert_allclose(q.scores(), [0.5, 0.0, 0.5], atol=1e-7)
    assert dot.search(query, region=left, k=1).names == ["red"]
    assert dot.search(query, region=right, k=1).names == ["blue"]
    cosine = Gallery.build(sv.load_model("mean_color", metric="cosine"), images, show_progress=False)
    # g_R . g_Y / (|g_X| |g_Y|) with g_X = (.5, 0, .5): the region's share of the whole cosine
    np.testing.assert_allclose(cosine.query(query).scores(left), [0.5 / np.sqrt(0.5), 0.0, 0.0], atol=1e-6)
    euclid = Gallery.build(sv.load_model("mean_color", metric="euclidean"), images, show_progress=False)
    # 2 g_R.g_Y - f |g_Y|^2 - g_R.g_X with g_R = (.5, 0, 0), f = 1/2
    np.testing.assert_allclose(euclid.query(query).scores(left), [0.25, -0.75, -0.75], atol=1e-6)
    np.testing.assert_allclose(euclid.query(query).scores(), [-0.5, -1.5, -0.5], atol=1e-6)  # -|g_X - g_Y|^2


def test_euclidean_region_ranks_by_distance_to_the_region_scaled_to_a_whole_image(scenes):
    model = sv.load_model("tiny_test", metric="euclidean")
    gallery = Gallery.build(model, scenes[1:], show_progress=False)
    q = gallery.query(scenes[0])
    weights = q.weights((0, 0, 24, 64))
    g_r = q.region_embedding(weights)
    f = weights.sum() / weights.size
    distance = ((np.asarray(gallery.embeddings, np.float64) - g_r / f) ** 2).sum(1)
    np.testing.assert_array_equal(q.ranking((0, 0, 24, 64)), np.argsort(distance, kind="stable"))


def test_euclidean_hits_are_scored_in_float64_a_self_match_is_distance_zero():
    # the mean-colour model on raw 0..255 values: |g|^2 ~ 1e5, where float32 products alone leave
    # ~1e-2 on a self-match (and a positive "similarity" above -distance^2 = 0)
    from simviz_widgets.models.tiny import MeanColorNet

    raw = sv.PreprocessConfig(input_size=(32, 32), resize_short=None, mean=0.0, std=1.0, scale=1.0)
    model = sv.SimilarityModel.wrap(MeanColorNet(), metric="euclidean", preprocess=raw)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    gallery = Gallery.build(model, images, show_progress=False)
    q = gallery.query(images[2])
    assert q.embedding @ q.embedding > 1e4
    hits = q.search(k=6)
    assert hits.indices[0] == 2 and -1e-9 < hits.scores[0] <= 0.0
    g = np.asarray(gallery.embeddings, np.float64)
    np.testing.assert_allclose(hits.scores, -((g[hits.indices] - q.embedding) ** 2).sum(1), rtol=1e-9, atol=1e-8)


def test_region_weights_are_the_cells_area_inside_the_region():
    model = sv.load_model("mean_color", size=32)  # 8x8 cells of 4x4 pixels
    q = Gallery.build(model, [_flat(RED)], show_progress=False).query(_flat(BLUE))
    aligned = q.weights((4, 8, 12, 32))
    expected = np.zeros((8, 8))
    expected[1:3, 2:] = 1.0
    np.testing.assert_array_equal(aligned, expected)
    half = q.weights((2, 0, 4, 6))  # half of row 0's height; cols: cell 0 whole, cell 1 half
    np.testing.assert_allclose(half[0, :3], [0.5, 0.25, 0.0])
    assert half[1:].sum() == 0
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:12, 8:32] = True
    np.testing.assert_array_equal(q.weights(mask), aligned)
    np.testing.assert_array_equal(q.weights(mask.astype(np.uint8)), aligned)  # a 0/1 mask is a mask
    np.testing.assert_array_equal(q.weights(np.array([4, 8, 12, 32])), aligned)  # a box as an array
    mask[0, 0] = True  # one pixel of a 16-pixel cell
    assert q.weights(mask)[0, 0] == 1 / 16
    assert q.weights(None) is None


def test_regions_in_source_pixels_follow_the_resize_and_the_crop():
    small = Gallery.build(sv.load_model("mean_color", size=32), [_flat(RED, 64)], show_progress=False)
    q = small.query(_flat(BLUE, 64))  # 64 px source -> 32 px display: scale 1/2
    np.testing.assert_array_equal(q.weights((0, 0, 32, 64), coords="source"), q.weights((0, 0, 16, 32)))
    source_mask = np.zeros((64, 64), dtype=bool)
    source_mask[:32] = True
    np.testing.assert_array_equal(q.weights(source_mask, coords="source"), q.weights((0, 0, 16, 32)))
    tiny = Gallery.build(sv.load_model("tiny_test"), [_flat(RED, 64)], show_progress=False)
    wide = np.zeros((64, 128, 3), np.uint8)  # centre crop keeps source columns 32..96
    qw = tiny.query(wide)
    np.testing.assert_array_equal(qw.weights((0, 32, 64, 64), coords="source"), qw.weights((0, 0, 64, 32)))
    with pytest.raises(InputError, match="outside the part of the image the model sees"):
        qw.weights((0, 0, 64, 32), coords="source")


@pytest.mark.parametrize("region, error, match", [
    ((0, 0, 0, 10), InputError, "not a non-empty box"),
    ((0, 0, 70, 10), InputError, "inside the 64x64 image"),
    ((0, 0, 10), InputTypeError, "4 numbers"),
    ((0, 0, True, 10), InputTypeError, "region box"),
    (np.zeros((64, 64), bool), InputError, "selects no pixel"),
    (np.ones((32, 32), bool), InputError, "32x32 but expected 64x64 .the query's display size"),
    (np.full((64, 64), 0.5), InputError, "values other than 0 and 1"),
    ("left half", InputTypeError, "expected None, a .top, left, bottom, right. box"),
])
def test_bad_regions_are_refused_with_a_clear_message(scenes, region, error, match):
    gallery = Gallery.build(sv.load_model("tiny_test"), scenes[:3], show_progress=False)
    with pytest.raises(error, match=match):
        gallery.search(scenes[4], region=region)


def test_search_results_rank_changes_and_exclusion(scenes):
    gallery = Gallery.build(sv.load_model("tiny_test"), scenes, show_progress=False)
    q = gallery.query(scenes[2])
    whole = q.search(k=4)
    assert whole.indices[0] == 2 and abs(whole.scores[0] - 1.0) < 1e-5
    assert np.all(np.diff(whole.scores) <= 0) and len(whole) == 4
    assert 2 not in q.search(k=4, exclude=[2]).indices
    assert len(q.search(k=50)) == len(scenes)  # k beyond the gallery: all of it
    box = (0, 0, 32, 32)
    res = q.search(box, k=len(scenes))
    np.testing.assert_array_equal(res.indices, q.ranking(box))
    full = q.ranking()
    for rank, index, _ in res:
        assert res.rank_of(index) == rank
        assert res.rank_of(index, whole_image=True) == int(np.flatnonzero(full == index)[0])
        assert res.rank_changes()[rank] == res.rank_of(index, whole_image=True) - rank
    with pytest.raises(InputError, match=r"exclude\[0\]=10 must be in \[0, 9\]"):
        q.search(k=3, exclude=[len(scenes)])
    with pytest.raises(InputTypeError, match="exclude"):
        q.search(k=3, exclude="2")
    assert q.search(k=3, exclude=2).indices.tolist() == q.search(k=3, exclude=[2]).indices.tolist()
    assert len(q.search(k=len(scenes), exclude=None)) == len(scenes)


def test_rank_changes_leave_the_excluded_items_out_of_both_rankings(scenes):
    # the query is gallery item 0, excluded from its own results: a region ranking exactly like the
    # whole image must move nothing (the excluded item must not count in either ranking)
    gallery = Gallery.build(sv.load_model("tiny_test"), scenes, show_progress=False)
    q = gallery.query(scenes[0])
    whole = q.search(k=5, exclude=[0])
    assert 0 not in whole.indices and whole.rank_changes().tolist() == [0] * 5
    assert [whole.rank_of(i) for i in whole.indices] == list(range(5))
    region = q.search((0, 0, 40, 64), k=len(scenes) - 1, exclude=[0])
    kept = [i for i in q.ranking() if i != 0]
    for rank, index, _ in region:
        assert region.rank_changes()[rank] == kept.index(index) - rank
    with pytest.raises(InputError, match="index 0 is not a gallery item of this search"):
        region.rank_of(0)
    with pytest.raises(InputTypeError, match="k"):
        q.search(k=2.0)


def test_faiss_flat_finds_the_exact_top_k_and_ivf_matches_when_it_searches_every_list(scenes):
    pytest.importorskip("faiss")  # in the test extra: CI always has it
    rng = np.random.default_rng(0)
    model = sv.load_model("tiny_test", metric="euclidean")
    dim = model.embed(scenes[0]).shape[1]
    embeddings = rng.standard_normal((3000, dim)).astype(np.float32)
    names = [f"item {k}" for k in range(3000)]
    items = [scenes[k % len(scenes)] for k in range(3000)]
    gallery = Gallery.from_embeddings(model, embeddings, items, names=names)
    q = gallery.query(scenes[1])
    exact = q.search((0, 0, 40, 64), k=10)
    gallery.use_backend("faiss-flat")
    flat = q.search((0, 0, 40, 64), k=10)
    np.testing.assert_array_equal(flat.indices, exact.indices)
    np.testing.assert_allclose(flat.scores, exact.scores, rtol=1e-5)
    gallery.use_backend("faiss-ivf", nlist=16, nprobe=16)
    np.testing.assert_array_equal(q.search((0, 0, 40, 64), k=10).indices, exact.indices)
    with pytest.raises(InputError, match="'faiss-flat' takes no nprobe"):
        gallery.use_backend("faiss-flat", nprobe=4)
    with pytest.raises(InputError, match="pq=7 does not divide"):
        gallery.use_backend("faiss-ivf", nlist=8, pq=7)
    with pytest.raises(InputError, match="backend"):
        gallery.use_backend("annoy")


def test_similarity_matrix_equals_the_models_pairwise_scores_and_orders(scenes):
    for metric in ("cosine", "dot", "euclidean"):
        model = sv.load_model("tiny_test", metric=metric)
        gallery = Gallery.build(model, scenes[:5], show_progress=False)
        matrix = gallery.similarity_matrix()
        assert np.array_equal(matrix, matrix.T)
        for a, b in ((0, 1), (2, 4), (3, 3)):
            expected = model.similarity(scenes[a], scenes[b])
            assert abs(matrix[a, b] - expected) <= 1e-5 * max(1.0, abs(expected))
    # two copies of four images: clustering puts each pair of copies side by side
    model = sv.load_model("tiny_test")
    twice = [scenes[k] for k in (0, 1, 2, 3, 0, 1, 2, 3)]
    order = cluster_order(Gallery.build(model, twice, show_progress=False).similarity_matrix())
    assert sorted(order.tolist()) == list(range(8))
    position = {int(i): p for p, i in enumerate(order)}
    assert all(abs(position[k] - position[k + 4]) == 1 for k in range(4))
    by_one = order_by_similarity(Gallery.build(model, twice, show_progress=False).similarity_matrix(), 2)
    assert set(by_one[:2].tolist()) == {2, 6}
    with pytest.raises(InputError, match="square"):
        cluster_order(np.zeros((3, 2)))


def test_a_whole_image_query_among_near_duplicates_moves_nothing(scenes):
    # float64 scores are shown, but the order stays the one ranking() and the rank changes use
    rng = np.random.default_rng(0)
    model = sv.load_model("tiny_test")
    base = model.embed(scenes[0]).numpy()
    near = base + rng.normal(0, 1e-6, (40, base.shape[1])).astype(np.float32)
    gallery = Gallery.from_embeddings(model, near, [scenes[0]] * 40)
    hits = gallery.query(scenes[0]).search(k=10)
    assert hits.rank_changes().tolist() == [0] * 10
    assert [hits.rank_of(i) for i in hits.indices] == list(range(10))


def test_memory_mapped_galleries_score_block_by_block_like_in_memory(scenes, tmp_path, monkeypatch):
    from simviz_widgets.retrieval import index as index_module

    monkeypatch.setattr(index_module, "_CHUNK_ROWS", 3)  # 10 rows: four blocks
    for metric in ("cosine", "dot", "euclidean"):
        model = sv.load_model("tiny_test", metric=metric)
        rows = model.embed(list(scenes)).numpy()
        np.save(tmp_path / f"{metric}.npy", rows)
        mapped = Gallery.from_embeddings(model, np.load(tmp_path / f"{metric}.npy", mmap_mode="r"), scenes)
        assert isinstance(mapped.embeddings, np.memmap)
        q_map, q_mem = mapped.query(scenes[1]), Gallery.from_embeddings(model, rows, scenes).query(scenes[1])
        np.testing.assert_array_equal(q_map.scores((0, 0, 40, 64)), q_mem.scores((0, 0, 40, 64)))
        picked = np.array([7, 2, 2, 9])
        np.testing.assert_array_equal(mapped.exact_index.exact(picked, q_map._vector(None)[0]),
                                      q_mem.gallery.exact_index.exact(picked, q_mem._vector(None)[0]))

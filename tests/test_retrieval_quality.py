"""Region queries on synthetic scenes with known objects find the region's object more often than
the whole image does (the default model, real weights); the static pictures say what they show."""

from __future__ import annotations

import numpy as np
import pytest

import simviz_widgets as sv
from simviz_widgets.checks import InputError
from simviz_widgets.datasets import random_scenes
from simviz_widgets.retrieval import Gallery
from simviz_widgets.retrieval.figure import matrix_figure, results_figure
from simviz_widgets.retrieval.labels import score_text
from simviz_widgets.retrieval.quality import object_box, region_precision


@pytest.fixture(scope="module")
def model():
    return sv.load_model("efficientnet_lite0")


def test_a_region_query_finds_its_object_more_often_than_the_whole_image(model):
    result = region_precision(model, gallery_size=80, queries=12, show_progress=False)
    p, chance = result["precision"], result["chance"]
    assert result["counts"]["query_objects"] >= 20
    for relevance in ("object", "texture"):
        assert p["region (mask)"][relevance] > p["whole image"][relevance] + 0.05
        assert p["region (box)"][relevance] > p["whole image"][relevance] + 0.05
        assert p["whole image"][relevance] > chance[relevance]
    assert p["region (mask)"]["object"] > 2 * chance["object"]


def test_object_box_is_the_masks_extent():
    mask = np.zeros((10, 12), dtype=bool)
    mask[3:7, 2:9] = True
    mask[5, 10] = True
    assert object_box(mask) == (3, 2, 7, 11)


def test_results_figure_titles_rank_changes_and_scores():
    tiny = sv.load_model("tiny_test", metric="euclidean")
    scenes = [s.image for s in random_scenes(8, seed=4)]
    gallery = Gallery.build(tiny, scenes, names=[f"s{k}" for k in range(8)], show_progress=False)
    results = gallery.search(scenes[0], region=(0, 0, 32, 64), k=4)
    fig = results_figure(results, box=(0, 0, 32, 64))
    titles = [ax.get_title() for ax in fig.axes[1:5]]
    for (rank, index, score), change, title in zip(results, results.rank_changes(), titles):
        assert title.startswith(f"#{rank + 1}") and f"s{index}" in title
        # a region's share of -distance² is not a distance: written as a share
        assert score_text(score, "euclidean", region=True) in title and "−d² share" in title
        assert (f"▲{change}" in title) if change > 0 else (f"▼{-change}" in title if change < 0 else "▲" not in title)
    assert fig.axes[0].patches  # the box outlined on the query
    assert len(fig.axes) == 6  # query, 4 hits, colour bar
    figure = matrix_figure(gallery, order="gallery", thumbs=False)
    np.testing.assert_allclose(figure.axes[0].images[0].get_array(), np.sqrt(-gallery.similarity_matrix()),
                               rtol=1e-6)  # distances
    assert figure.axes[0].get_title().endswith("(order: gallery order)")
    reverse = np.arange(8)[::-1]
    custom = matrix_figure(gallery, order=reverse, thumbs=False)
    np.testing.assert_allclose(custom.axes[0].images[0].get_array(),
                               np.sqrt(-gallery.similarity_matrix()[np.ix_(reverse, reverse)]), rtol=1e-6)
    assert custom.axes[0].get_title().endswith("(order: custom)")
    with pytest.raises(InputError, match="permutation"):
        matrix_figure(gallery, order=[0] * 8)

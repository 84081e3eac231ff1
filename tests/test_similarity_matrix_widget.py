"""SimilarityMatrix (widgets/similarity_matrix.py) and its plain state, without a browser: the
matrix is the model's own pairwise scores, every order permutes rows, columns and thumbnails
together, the clustered order puts near-duplicates side by side, the page's cell and thumbnail
messages open pairs and sort, bad input is refused. Tiny model, synthetic scenes: a few seconds."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError
from simviz_widgets.datasets.synthetic import random_scenes
from simviz_widgets.render import colormap_lut
from simviz_widgets.retrieval import Gallery, cluster_order, order_by_similarity
from simviz_widgets.retrieval.labels import score_text
from simviz_widgets.widgets import SimilarityMatrix, WidgetClosedError
from simviz_widgets.widgets.similarity_matrix_state import MAX_IMAGES, SimilarityMatrixState


@pytest.fixture(scope="module")
def scenes():
    return [s.image for s in random_scenes(10, seed=3)]


@pytest.fixture(scope="module")
def models():
    return {metric: sv.load_model("tiny_test", metric=metric) for metric in ("cosine", "dot", "euclidean")}


@pytest.fixture(scope="module")
def galleries(models, scenes):
    return {metric: Gallery.build(model, scenes, show_progress=False) for metric, model in models.items()}


@pytest.fixture
def matrix(galleries):
    widget = SimilarityMatrix(galleries["cosine"])
    yield widget
    widget.close()


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _cell(kind: str, row: int, col: int) -> dict:
    """The message bqplot's GridHeatMap sends for a cell (positions in the shown order)."""
    return {"event": "hover" if kind == "hover" else "element_click",
            "data": {"rowNum": row, "columnNum": col, "row": float(row), "column": float(col), "color": 0.5}}


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_matrix_is_the_models_pairwise_scores(galleries, models, scenes, metric):
    state = SimilarityMatrixState(galleries[metric])
    scale = np.abs(state.matrix).max()
    for a, b in [(0, 1), (2, 7), (9, 4), (5, 5)]:
        expected = models[metric].similarity(scenes[a], scenes[b])
        # float32 embeddings: equal to a few float32 ulps of the largest score
        assert abs(state.matrix[a, b] - expected) <= 4e-6 * max(scale, 1.0), (a, b, state.matrix[a, b], expected)
    np.testing.assert_allclose(state.matrix, state.matrix.T, rtol=0, atol=1e-12)
    assert not state.matrix.flags.writeable  # the scores on show cannot be changed by a caller


@pytest.mark.parametrize("order", ["gallery", "cluster", "similarity", "custom"])
def test_orders_permute_rows_columns_and_thumbnails_together(galleries, order):
    gallery = galleries["cosine"]
    n = len(gallery)
    given = np.random.default_rng(1).permutation(n) if order == "custom" else order
    widget = SimilarityMatrix(gallery, order="gallery", anchor=4)
    try:
        widget.order = given
        expected = {"gallery": np.arange(n), "cluster": cluster_order(widget.matrix),
                    "custom": given}.get(order)
        if order == "similarity":
            expected = order_by_similarity(widget.matrix, 4)
            expected = np.array([4, *[i for i in expected if i != 4]])
        np.testing.assert_array_equal(widget.indices, expected)
        assert widget.order == order
        shown = widget.matrix[expected][:, expected]
        colours = widget.colour_data()
        off = ~np.eye(n, dtype=bool)
        np.testing.assert_array_equal(colours[off], shown[off])  # cosine: the scores themselves
        lo, hi = widget.state.colour_range
        assert lo == shown[off].min() and hi == shown[off].max()
        np.testing.assert_array_equal(np.diag(colours), np.full(n, hi))  # cosine 1, drawn at the top end
        # the strips hold each position's thumbnail, rows top to bottom and columns left to right
        thumbs = [widget._thumb(int(i)) for i in expected]
        np.testing.assert_array_equal(_png(widget.row_strip.image.value), np.concatenate(thumbs, axis=0))
        np.testing.assert_array_equal(_png(widget.column_strip.image.value), np.concatenate(thumbs, axis=1))
        assert widget.order_menu.value == (order if order != "custom" else "gallery")  # a permutation has no entry
        assert (widget.anchor_menu.layout.display != "none") == (order == "similarity")
    finally:
        widget.close()


def test_euclidean_colours_are_distances_on_a_reversed_scale(galleries):
    widget = SimilarityMatrix(galleries["euclidean"], order="gallery")
    try:
        n = len(widget.matrix)
        off = ~np.eye(n, dtype=bool)
        np.testing.assert_allclose(widget.colour_data()[off], np.sqrt(-widget.matrix[off]), rtol=1e-12)
        lo, _hi = widget.state.colour_range
        assert np.all(np.diag(widget.colour_data()) == lo)  # distance 0 drawn at the "alike" end
        assert widget.state.reversed_colours
        top, bottom = (f"#{r:02x}{g:02x}{b:02x}" for r, g, b in colormap_lut("viridis")[[255, 0], :3])
        assert (widget._colour.colors[0], widget._colour.colors[-1]) == (top, bottom)  # small distance = top colour
        assert "distance" in widget.colorbar.text and "distance 0" in widget.caption.value
        a, b = 1, 6
        assert score_text(widget.matrix[a, b], "euclidean") == f"distance {np.sqrt(-widget.matrix[a, b]):.3f}"
        widget.hover(a, b)
        assert f"distance {np.sqrt(-widget.matrix[a, b]):.3f}" in widget.readout.text
    finally:
        widget.close()


def test_cluster_order_puts_near_duplicates_side_by_side(models):
    base = [s.image for s in random_scenes(4, seed=11)]
    rng = np.random.default_rng(0)
    copies = [np.clip(im.astype(int) + rng.integers(-4, 5, size=im.shape), 0, 255).astype(np.uint8) for im in base]
    images = base + copies  # image k and its noisy copy k + 4 are far apart in gallery order
    gallery = Gallery.build(models["cosine"], images, show_progress=False)
    widget = SimilarityMatrix(gallery)
    try:
        assert widget.order == "cluster"
        position = {int(index): k for k, index in enumerate(widget.indices)}
        gaps = [abs(position[k] - position[k + 4]) for k in range(4)]
        assert gaps == [1, 1, 1, 1], f"copies not adjacent in {widget.indices.tolist()}"
    finally:
        widget.close()


def test_cell_click_opens_that_pair_in_the_viewer(matrix, galleries):
    gallery = galleries["cosine"]
    order = matrix.indices
    row, col = 2, 7
    query, reference = int(order[row]), int(order[col])
    matrix._cell_event("hover", _cell("hover", row, col))
    assert matrix.hovered == (query, reference)
    names = gallery.names
    assert names[query] in matrix.readout.text and names[reference] in matrix.readout.text
    assert f"cosine {matrix.matrix[query, reference]:.3f}" in matrix.readout.text
    ranked = [int(i) for i in np.argsort(-matrix.matrix[query], kind="stable") if i != query]
    assert f"rank {ranked.index(reference) + 1} of {len(ranked)} for this query" in matrix.readout.text
    for image, index in zip(matrix.readout.images, (query, reference)):  # the pair's images, query first
        np.testing.assert_array_equal(_png(image.value), gallery.thumbnail(index, 96))
    assert matrix.viewer is None  # nothing is explained before a click

    matrix._cell_event("click", _cell("click", row, col))
    assert matrix.selected == (query, reference)
    viewer = matrix.viewer
    assert viewer is not None and matrix.viewer_box.layout.display != "none"
    np.testing.assert_array_equal(viewer.inputs[0], gallery.image(query))  # row image = query
    np.testing.assert_array_equal(viewer.inputs[1], gallery.image(reference))
    assert abs(viewer.explanation.score - matrix.matrix[query, reference]) < 1e-5
    assert names[query] in matrix.viewer_title.value and names[reference] in matrix.viewer_title.value
    # the outline: the cell, its row's thumbnail and its column's thumbnail, at their positions
    boxes = np.asarray(matrix._outlines[1].x), np.asarray(matrix._outlines[1].y)
    assert matrix._outlines[1].visible
    assert (boxes[0][0].min(), boxes[0][0].max(), boxes[1][0].min(), boxes[1][0].max()) == (col, col + 1, row, row + 1)

    # a second pair goes to the same viewer (set_pair), transposed: the query is now the other image
    matrix._cell_event("click", _cell("click", col, row))
    assert matrix.viewer is viewer and matrix.selected == (reference, query)
    np.testing.assert_array_equal(viewer.inputs[0], gallery.image(reference))
    np.testing.assert_array_equal(viewer.inputs[1], gallery.image(query))

    # the selection follows its images when the order changes
    # the mouse leaving the matrix (ipyevents' mouseleave): the readout shows the selected pair
    matrix._leave._dom_handlers({"type": "mouseleave"})  # what ipyevents calls on a mouseleave
    assert matrix.hovered is None and matrix.readout.text.count("selected pair") == 1
    assert names[reference] in matrix.readout.text

    matrix.order = "gallery"
    cell_x, cell_y = np.asarray(matrix._outlines[1].x)[0], np.asarray(matrix._outlines[1].y)[0]
    assert (cell_x.min(), cell_y.min()) == (query, reference)  # gallery order: position = index; row = the query


def test_select_and_messages_that_are_not_cells(matrix, galleries):
    viewer = matrix.select(3, 3)  # an image with itself: cosine 1
    assert abs(viewer.explanation.score - 1.0) < 1e-5
    assert "the same image" in matrix.readout.text
    before = matrix.selected
    for content in ({"event": "hover", "data": None}, {"event": "element_click", "data": {"x": 1}},
                    {"event": "element_click", "data": {"rowNum": 99, "columnNum": 0}}):
        matrix._cell_event("click", content)
    assert matrix.selected == before and matrix.status_label.value == ""


def test_thumbnail_click_sorts_by_that_image(matrix):
    position = 5
    index = int(matrix.indices[position])
    matrix._strip_event("row", {"event": "element_click", "data": {"click_x": -0.7, "click_y": position + 0.4}})
    assert (matrix.order, matrix.anchor, int(matrix.indices[0])) == ("similarity", index, index)
    scores = matrix.matrix[index, matrix.indices[1:]]
    assert np.all(np.diff(scores) <= 0)  # the rest by decreasing similarity to it
    assert matrix.anchor_menu.value == index and matrix.order_menu.value == "similarity"
    column_index = int(matrix.indices[2])
    matrix._strip_event("column", {"event": "element_click", "data": {"click_x": 2.5, "click_y": -0.5}})
    assert matrix.anchor == column_index
    matrix._strip_event("column", {"event": "element_click", "data": {"click_x": -3.0, "click_y": -0.5}})
    assert matrix.anchor == column_index  # a click outside the strip's cells changes nothing


def test_menus_change_the_order(matrix):
    matrix.order_menu.value = "gallery"
    assert matrix.order == "gallery"
    np.testing.assert_array_equal(matrix.indices, np.arange(len(matrix.matrix)))
    matrix.anchor_menu.value = 6
    assert (matrix.order, matrix.anchor, int(matrix.indices[0])) == ("similarity", 6, 6)
    matrix.order_menu.value = "cluster"
    np.testing.assert_array_equal(matrix.indices, cluster_order(matrix.matrix))


def test_bad_input_is_refused(galleries, scenes, models):
    gallery = galleries["cosine"]
    n = len(gallery)
    cases = [
        (dict(gallery=scenes), InputTypeError, "gallery"),
        (dict(order="sorted"), InputError, "order"),
        (dict(order=[0] * n), InputError, "permutation"),
        (dict(order=list(range(n - 1))), InputError, "permutation"),
        (dict(order=np.arange(n) + 0.0), InputError, "permutation"),
        (dict(order=3), InputError, "order"),
        (dict(anchor=n), InputError, "anchor"),
        (dict(anchor=1.0), InputTypeError, "anchor"),
        (dict(cell_px=True), InputTypeError, "cell_px"),
        (dict(cmap="viridiss"), InputError, "cmap"),
        (dict(method="no_such_method"), InputError, "method"),
        (dict(viewer_size="big"), InputTypeError, "size"),
    ]
    for options, error, word in cases:
        given = {"gallery": gallery, **options}
        with pytest.raises(error, match=word):
            SimilarityMatrix(given.pop("gallery"), **given)
    single = Gallery.build(models["cosine"], scenes[:1], show_progress=False)
    with pytest.raises(InputError, match="at least 2"):
        SimilarityMatrix(single)
    widget = SimilarityMatrix(gallery, order="gallery")
    with pytest.raises(InputError, match="row"):
        widget.select(n, 0)
    with pytest.raises(InputTypeError, match="col"):
        widget.select(0, "1")
    with pytest.raises(InputError, match="order"):
        widget.order = "random"
    assert widget.order == "gallery"  # a refused order leaves the matrix as it was
    widget.select(0, 1)
    viewer = widget.viewer
    widget.close()
    widget.close()  # a second close does nothing
    assert viewer._closed
    for action in (lambda: widget.select(0, 1), lambda: setattr(widget, "order", "cluster"),
                   lambda: widget.hover(0, 1)):
        with pytest.raises(WidgetClosedError):
            action()


def test_a_gallery_too_large_to_read_is_refused_with_the_way_to_a_subset(galleries, scenes):
    small = galleries["cosine"]
    n = MAX_IMAGES + 1
    rows = np.resize(small.embeddings, (n, small.embeddings.shape[1]))  # no model run: rows repeated
    big = Gallery.from_embeddings(small.model, rows, [scenes[i % len(scenes)] for i in range(n)])
    for make in (SimilarityMatrixState, SimilarityMatrix):
        with pytest.raises(InputError, match=f"gallery has {n} images.*up to {MAX_IMAGES}") as refused:
            make(big)
    # the subset the message suggests, evaluated as written, is accepted and holds the same scores
    suggestion = str(refused.value).split("without embedding again ")[1]
    subset = eval(suggestion, {"Gallery": Gallery, "gallery": big})
    state = SimilarityMatrixState(subset, order="gallery")
    assert state.n == MAX_IMAGES and state.names == big.names[:MAX_IMAGES]
    np.testing.assert_allclose(state.matrix, big.similarity_matrix()[:MAX_IMAGES, :MAX_IMAGES], rtol=1e-12)

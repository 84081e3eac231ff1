"""The retrieval explorer's overlays and the pair viewer it opens, without a browser: overlays
against region_reference_map of the gallery's explanation, its background job (a stale overlay
never lands: an Event-gated explanation, no sleeps decide an outcome), explanations kept per query,
and the pair viewer sharing the explorer's hover state. Regions, ranks and input checks:
test_retrieval_widget.py.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import retrieval_widget_helpers as shared
import traitlets
from PIL import Image
from widget_helpers import move

from simviz_widgets.retrieval import region_reference_map
from simviz_widgets.widgets.retrieval_draw import MARK, OPEN_CLASS, thumbnail_rgb

# The shared fixtures (tests/retrieval_widget_helpers.py): pytest finds fixtures among a module's names.
tiny, scenes, gallery, outsider = shared.tiny, shared.scenes, shared.gallery, shared.outsider
explorers, gate = shared.explorers, shared.gate
K, _open = shared.K, shared.open_explorer


# ------------------------------------------------------------------------------------------------
# overlays (background job)


def test_overlays_are_the_region_maps_of_the_gallery_explanations(tiny, gallery, explorers, outsider):
    x = _open(explorers, tiny, gallery, outsider, k=K)
    assert x.wait(60)
    for rank, row in enumerate(x.rows):  # whole image: the explanation's own reference map
        np.testing.assert_allclose(x.overlay(rank), gallery.explain(outsider, row.index).reference_map,
                                   rtol=1e-4, atol=1e-6)
    x.set_region(box=(8, 8, 40, 36))
    assert x.wait(60) and not x.computing
    weights = x.results.region_weights
    scale = x.state.colour_scale()
    for rank, row in enumerate(x.rows):
        values = x.overlay(rank)
        np.testing.assert_allclose(values, region_reference_map(gallery.explain(outsider, row.index), weights),
                                   rtol=1e-4, atol=1e-6)
        assert values.sum() == pytest.approx(row.score, abs=1e-4)  # the map splits the region's score
        assert abs(values).max() <= scale.hi and scale.lo == -scale.hi  # one symmetric scale for all
        card = x.grid.cards[rank]
        shown = np.array(Image.open(io.BytesIO(card.image.value)))
        thumb = gallery.thumbnail(row.index, 112)
        assert np.array_equal(shown, thumbnail_rgb(thumb, values, scale, x.options["alpha"]))
        assert not np.array_equal(shown, thumb) and "computing" not in card.caption.value
    assert "cells that answered the region" in x.grid.colorbar.caption.value
    x.overlay_toggle.value = False  # the plain colour thumbnails, no colour bar
    for row, card in zip(x.rows, x.grid.cards):
        shown = np.array(Image.open(io.BytesIO(card.image.value)))
        assert np.array_equal(shown, gallery.thumbnail(row.index, 112))
    assert x.grid.colorbar.layout.visibility == "hidden"


def test_a_fast_region_change_never_shows_a_stale_overlay(tiny, gallery, explorers, outsider, gate):
    x = _open(explorers, tiny, gallery, 0, k=K)
    assert x.wait(60)
    gate.clear()
    x.set_query(outsider)  # nothing explained for it yet: the job blocks on its first result
    first_key = x.state.key
    x.set_region(box=(0, 0, 32, 32))
    region_a = x.state.key
    x.set_region(box=(32, 32, 64, 64))
    assert x.computing and all(x.overlay(r) is None for r in range(len(x.rows)))
    for row, card in zip(x.rows, x.grid.cards):  # plain thumbnails, each saying it is computing
        shown = np.array(Image.open(io.BytesIO(card.image.value)))
        assert np.array_equal(shown, gallery.thumbnail(row.index, 112)) and "computing" in card.caption.value
    kept = []
    apply = x.state.apply_overlay
    x.state.apply_overlay = lambda payload: kept.append(payload[0]) or apply(payload)
    gate.set()
    assert x.runner.join_all(60)  # every thread, the superseded ones too, then delivery
    assert x.wait(60)
    assert kept and set(kept) == {x.state.key} and first_key not in kept and region_a not in kept
    weights = x.results.region_weights
    for rank, row in enumerate(x.rows):
        np.testing.assert_allclose(x.overlay(rank), region_reference_map(gallery.explain(outsider, row.index),
                                                                         weights), rtol=1e-4, atol=1e-6)
    # and the state itself refuses a map computed for another region
    row = x.rows[0]
    explanation = x.state.explanation(row.index)
    assert not apply((region_a, row.index, explanation, np.zeros((8, 8))))
    assert np.abs(x.overlay(0)).max() > 0


def test_a_region_seen_before_needs_no_model_run(tiny, gallery, explorers, outsider, gate):
    x = _open(explorers, tiny, gallery, outsider, k=K)
    x.set_region(box=(0, 0, 40, 40))
    assert x.wait(60)
    gate.clear()  # any model run would now block
    x.clear_region()
    x.set_region(box=(0, 0, 40, 40))
    assert not x.computing and all(x.overlay(r) is not None for r in range(len(x.rows)))


def test_a_new_query_drops_the_old_querys_overlays(tiny, gallery, explorers, outsider, gate):
    x = _open(explorers, tiny, gallery, outsider, k=K)
    gate.clear()
    x.set_query(2)
    gate.set()
    assert x.runner.join_all(60) and x.wait(60)
    for rank, row in enumerate(x.rows):
        np.testing.assert_allclose(x.overlay(rank), gallery.explain(gallery.image(2), row.index).reference_map,
                                   rtol=1e-4, atol=1e-6)


def test_no_trait_is_set_from_a_worker_thread(tiny, gallery, explorers, outsider, monkeypatch):
    offenders = []
    original = traitlets.TraitType.set

    def checked_set(self, obj, value):
        if threading.current_thread() is not threading.main_thread():
            offenders.append((type(obj).__name__, self.name))
        return original(self, obj, value)

    monkeypatch.setattr(traitlets.TraitType, "set", checked_set)
    x = _open(explorers, tiny, gallery, outsider, k=K)
    x.set_region(box=(0, 0, 32, 64))
    assert x.wait(60)
    assert offenders == []


# ------------------------------------------------------------------------------------------------
# the pair viewer


def test_clicking_a_result_opens_the_pair_with_the_same_hover_state(tiny, gallery, explorers, outsider, commands):
    x = _open(explorers, tiny, gallery, outsider, k=K)
    assert x.wait(60)
    x.grid.events[2]._dom_handlers({"type": "click"})  # what ipyevents calls on a click
    row = x.rows[2]
    viewer = x.viewer
    assert viewer is not None and viewer.state is x.hover_state and x.viewer_box.layout.display is None
    assert viewer.explanation is x.state.explanation(row.index)  # computed by the job: not explained again
    assert np.array_equal(viewer.inputs[1], gallery.image(row.index))
    assert OPEN_CLASS in x.grid.cards[2].box._dom_classes and "open below" in x.grid.cards[2].caption.value
    commands.clear()
    assert move(viewer, "query", 30.0, 20.0)
    assert x.hover_state.hovered == ("query", 30.0, 20.0)
    assert "strokeLineSegments" in commands.names(x.query_canvas.canvas[MARK])  # the crosshair on the query
    # pins of the query stay when another result opens (the same query), the result's go
    query_pin, _ = viewer.pin("query", 10.0, 12.0), viewer.pin("reference", 40.0, 40.0)
    x.open_result(3)
    assert x.hover_state.pins == (query_pin,) and viewer.explanation is x.state.explanation(x.rows[3].index)
    # a method chosen in the viewer stays when another result opens
    viewer.method = "gradcam"
    x.open_result(4)
    assert x.viewer is viewer and viewer.explanation.method == "gradcam"
    assert np.array_equal(viewer.explanation.reference, gallery.prepared(x.rows[4].index).display)
    assert x.hover_state.pins == (query_pin,)  # set_pair clears the viewer's pins; the query's come back
    x.set_query(5)
    assert x.hover_state.pins == ()


def test_opening_a_result_before_its_overlay_explains_the_pair(tiny, gallery, explorers, outsider, gate):
    x = _open(explorers, tiny, gallery, 0, k=K)
    gate.clear()
    x.set_query(outsider)
    viewer = x.open_result(0)
    expected = gallery.explain(outsider, x.rows[0].index)
    np.testing.assert_allclose(viewer.explanation.reference_map, expected.reference_map, rtol=1e-5, atol=1e-7)
    assert viewer.explanation.score == pytest.approx(expected.score, rel=1e-6)
    gate.set()
    assert x.wait(60)
    x.set_query(1)  # the open pair was of the old query
    assert x.viewer_box.layout.display == "none" and x.state.open_index is None

"""The cross-view explorer without a browser: its plain state after simulated events, what reaches
its canvases (ipycanvas draw commands), its background jobs (the one job design: a result lands
only while current and for the pair on show), and its option checks.

Geometry that must be real (a mirror and a rotation of chelsea) uses the default model
(EfficientNet-Lite0, explained once per module); everything else the tiny test model.
"""

from __future__ import annotations

import html
import threading

import numpy as np
import pytest
from widget_helpers import click, make_explanation, move

import simviz_widgets as sv
from simviz_widgets.checks import InputError, InputTypeError, Option
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.explain import Explainer, ExplanationCancelled, register_method
from simviz_widgets.explain.base import _METHODS
from simviz_widgets.geometry import correspondences, fit_geometry
from simviz_widgets.widgets import CrossViewExplorer, CrossViewState, WidgetClosedError
from simviz_widgets.widgets import crossview as crossview_module
from simviz_widgets.widgets._canvas import photo_rgba
from simviz_widgets.widgets.crossview_draw import ALIGNMENT_CLASS, GAP_PX, LINES_CLASS, MATCHES, POINTER, STACK_CLASS
from simviz_widgets.widgets.crossview_state import HOVER, INLIER, OUTLIER, pair_job

CELL = 224 / 7  # one feature cell of the default model, in display pixels


@pytest.fixture(scope="module")
def tiny():
    return sv.load_model("tiny_test")


@pytest.fixture(scope="module")
def cat():
    return load_photo("chelsea")


@pytest.fixture(scope="module")
def mirror_exp(default_model, cat):
    return sv.explain(default_model, cat, views(cat, "mirror").image)


@pytest.fixture(scope="module")
def rotation_exp(default_model, cat):
    return sv.explain(default_model, cat, views(cat, "rotation", angle=30).image)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(5)
    return [tuple(rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.fixture
def explorers():
    made = []
    yield made
    for explorer in made:
        explorer.close()


def _open(made, *args, **kwargs) -> CrossViewExplorer:
    explorer = CrossViewExplorer(*args, **kwargs)
    made.append(explorer)
    return explorer


def _opened(made, explanation, **kwargs) -> CrossViewExplorer:
    explorer = CrossViewExplorer.from_explanation(explanation, **kwargs)
    made.append(explorer)
    return explorer


# ------------------------------------------------------------------------------------------------
# hover and lines on a real mirror pair


@pytest.mark.parametrize("point", [(100.0, 60.0), (80.0, 48.0), (144.0, 176.0)])
def test_hovering_a_point_draws_a_line_to_near_its_mirror_image(mirror_exp, explorers, commands, point):
    x = _opened(explorers, mirror_exp)
    commands.clear()
    assert move(x.viewer, "query", *point)
    line = x.state.hover_line
    row, col = point
    mirrored = (row, mirror_exp.reference_size[1] - 1 - col)
    assert line.style == HOVER and line.query == pytest.approx((row, col))
    assert abs(line.reference[0] - mirrored[0]) <= CELL and abs(line.reference[1] - mirrored[1]) <= CELL, (
        f"hover {point}: best match {line.reference}, mirror {mirrored}")
    # drawn on the line canvas's pointer layer, from the point to its match (canvas x, y)
    drawn = [c["args"] for c in commands.on(x.lines.canvas[POINTER]) if c["name"] == "strokeLineSegments"]
    y0, x0 = x.line_position("query", row, col)
    y1, x1 = x.line_position("reference", *line.reference)
    assert len(drawn) == 2  # a dark outline, then the white line (and the fit's cross) over it
    for args in drawn:
        points = np.asarray(args[1], float).reshape(-1, 2)  # (count, flat points, points per segment)
        assert points[:2].ravel() == pytest.approx([x0, y0, x1, y1])
    assert x.viewer.logic.point_values is not None  # the viewer's own hover: the map in the other image
    assert "best match in the reference" in x.hover_label.value


def test_hovering_the_reference_draws_the_line_back_to_the_query(mirror_exp, explorers):
    x = _opened(explorers, mirror_exp)
    move(x.viewer, "reference", 100.0, 163.0)
    line = x.state.hover_line
    assert line.reference == pytest.approx((100.0, 163.0))
    assert abs(line.query[0] - 100) <= CELL and abs(line.query[1] - 60) <= CELL
    x.viewer._handle_event("reference", {"type": "mouseleave"})
    assert x.state.hover_line is None and x.hover_label.value.endswith("></div>")


def test_match_lines_are_the_strongest_matches_coloured_by_strength(mirror_exp, explorers, commands):
    x = _opened(explorers, mirror_exp, kind="affine", n_lines=12)
    matches = correspondences(mirror_exp)
    assert len(x.matches) == len(matches) and np.allclose(x.matches.strength, matches.strength)
    lines = x.state.lines()
    assert len(lines) == 12
    assert sorted(line.strength for line in lines) == pytest.approx(sorted(matches.strength[:12]))
    inliers = [line for line in lines if line.style == INLIER]
    by_strength = sorted(inliers, key=lambda line: line.strength)
    assert by_strength[0].colour != by_strength[-1].colour  # weak and strong differ
    assert lines[-1].style == INLIER and lines[-1].strength == max(line.strength for line in inliers)  # on top
    commands.clear()
    x.lines_slider.value = 4  # the slider: fewer lines drawn
    drawn = commands.names(x.lines.canvas[MATCHES])
    assert drawn.count("strokeLine") == 2 * 4  # each line: a dark halo, then its colour
    assert len(x.state.lines()) == 4 and x.n_lines == 4
    x.n_lines = 1000  # more than there are: all of them, and the slider says so
    assert len(x.state.lines()) == len(matches) == x.lines_slider.value
    assert f"showing the {len(matches)} strongest" in x.readout.value


def test_inliers_and_outliers_are_drawn_differently(rotation_exp, explorers, commands):
    x = _opened(explorers, rotation_exp, kind="similarity", n_lines=100)
    fit = x.fit
    assert fit.n_inliers and fit.n_inliers < len(fit.inliers)  # both kinds present on this pair
    styles = [line.style for line in x.state.lines()]
    assert styles.count(INLIER) == fit.n_inliers and styles.count(OUTLIER) == len(fit.inliers) - fit.n_inliers
    assert styles == sorted(styles, key=lambda s: s != OUTLIER)  # outliers under the inliers
    x.lines_slider.value = 1
    commands.clear()
    x.lines_slider.value = len(fit.inliers)  # all again
    dashes = [c["args"][0] for c in commands.on(x.lines.canvas[MATCHES]) if c["name"] == "setLineDash"]
    assert [6, 4] in dashes and [] in dashes  # dashed outliers, solid inliers
    assert "dashed" in x.legend.value or "outlier" in x.legend.value


# ------------------------------------------------------------------------------------------------
# geometry: kind, readout, warning, alignment


def test_changing_the_kind_refits_and_the_readout_gives_the_fitted_numbers(rotation_exp, explorers):
    x = _opened(explorers, rotation_exp)
    fit = x.fit
    assert fit.kind == "similarity" and fit.reliable
    assert 15 < fit.rotation_deg < 40  # a 30 degree rotation, counter-clockwise, seen on a 7x7 grid (20.1)
    text = html.unescape(x.readout.value)
    for number in (f"{fit.rotation_deg:+.1f}°", f"{fit.scale:.3f}", f"{fit.n_inliers}/{len(fit.inliers)}",
                   f"{fit.translation[0]:+.1f}, {fit.translation[1]:+.1f} px"):
        assert number in text, (number, text)
    x.kind_dropdown.value = "affine"
    expected = fit_geometry(correspondences(rotation_exp), kind="affine")
    assert x.fit.kind == "affine" and x.kind == "affine"
    assert x.fit.rotation_deg == pytest.approx(expected.rotation_deg) and x.fit.n_inliers == expected.n_inliers
    assert "affine" in x.readout.value and f"{expected.rotation_deg:+.1f}°" in html.unescape(x.readout.value)
    x.kind = "disparity"
    assert "disparity" in x.readout.value and x.fit.kind == "disparity"


def test_an_unreliable_fit_shows_its_warning(mirror_exp, explorers, commands):
    commands.clear()
    x = _opened(explorers, mirror_exp, kind="similarity")  # no rotation-and-scale maps a mirror
    assert not x.fit.reliable and x.fit.warning
    assert "unreliable" in x.readout.value and html.escape(x.fit.warning) in x.readout.value
    labels = " ".join(commands.texts(x.alignment.canvas[1]))
    assert "unreliable" in labels
    x.kind = "affine"  # an affine map can mirror: reliable, no warning
    assert x.fit.reliable and "unreliable" not in x.readout.value


def test_blend_0_is_the_reference_and_1_the_warped_query_where_valid(rotation_exp, explorers, commands):
    x = _opened(explorers, rotation_exp, blend=0.0)
    reference = rotation_exp.reference
    image, valid = x.state.alignment_image()
    np.testing.assert_array_equal(image, reference)
    warped, valid = x.fit.warp(rotation_exp.query)
    assert 0.3 < valid.mean() < 1.0
    commands.clear()
    x.blend_slider.value = 1.0
    image, mask = x.state.alignment_image()
    np.testing.assert_array_equal(mask, valid)
    np.testing.assert_array_equal(image[valid], warped[valid])
    np.testing.assert_array_equal(image[~valid], reference[~valid])  # only where the warp lands
    sent = commands.last_image(x.alignment.canvas[0])  # what reaches the canvas: that image, resized
    np.testing.assert_array_equal(sent, photo_rgba(image, x.alignment.size))
    half, _ = x.state.alignment_image(0.5)
    expected = np.rint(0.5 * reference[valid].astype(float) + 0.5 * warped[valid])
    np.testing.assert_array_equal(half[valid], expected.astype(np.uint8))
    frame = [c for c in commands.on(x.alignment.canvas[1]) if c["name"] == "strokePolygon"]
    assert frame, "no outline of the warped query"


def test_the_hover_text_says_whether_the_point_agrees_with_the_fit(rotation_exp, explorers):
    x = _opened(explorers, rotation_exp)
    move(x.viewer, "query", 112.0, 112.0)  # the centre: the rotation moves it least
    predicted = x.state.predicted()
    assert predicted is not None
    text = x.state.hover_text()
    assert f"puts it at ({predicted[0]:.0f}, {predicted[1]:.0f})" in text and "the fit" in text
    x.kind = "affine"  # the prediction follows the new fit
    rows, cols = x.fit.map_points(np.array([112.0]), np.array([112.0]))
    assert x.state.predicted() == pytest.approx((rows[0], cols[0]))
    assert "affine fit puts it" in x.hover_label.value


# ------------------------------------------------------------------------------------------------
# state without widgets, pins, methods without matches, layout


def test_state_is_usable_without_widgets():
    exp = make_explanation(query_grid=(4, 4), reference_grid=(4, 4), reference_size=(224, 224))
    state = CrossViewState(exp, kind="affine", n_lines=3)
    assert len(state.lines()) == 3
    line = state.hover("query", 50.0, 50.0)
    assert line.style == HOVER and line.query == (50.0, 50.0)
    state.leave()
    assert state.hover_line is None and state.hover_text() == ""
    with pytest.raises(InputError, match="kind"):
        state.kind = "rotation"
    with pytest.raises(InputTypeError, match="n_lines"):
        state.n_lines = 2.5


def test_a_pin_gets_a_line_to_its_best_match(mirror_exp, explorers, commands):
    x = _opened(explorers, mirror_exp)
    commands.clear()
    click(x.viewer, "query", 100.0, 60.0)
    (pin,) = x.hover_state.pins
    (line,) = x.state.pin_lines()
    assert line.colour == pin.colour and line.query == pytest.approx((100.0, 60.0))
    assert abs(line.reference[1] - 163) <= CELL
    assert "strokeLine" in commands.names(x.lines.canvas[POINTER])
    x.viewer.clear_pins()
    assert x.state.pin_lines() == []


def test_a_method_without_point_to_point_maps_says_so(tiny, explorers, commands):
    exp = sv.explain(tiny, *(np.full((64, 64, 3), v, np.uint8) for v in (80, 160)), method="gradcam")
    commands.clear()
    x = _opened(explorers, exp)
    assert x.matches is None and x.fit is None and x.state.lines() == []
    assert "no point-to-point part" in x.readout.value and x.lines_slider.disabled
    assert any("no alignment" in text for text in commands.texts(x.alignment.canvas[1]))
    move(x.viewer, "query", 10.0, 10.0)
    assert x.state.hover_line is None


def test_plain_photos_by_default_and_the_colour_bar_only_for_a_map_on_show(mirror_exp, explorers):
    x = _opened(explorers, mirror_exp)
    assert x.viewer.show_overall is False and x.viewer.colorbar.layout.visibility == "hidden"
    move(x.viewer, "query", 100.0, 60.0)  # a point map is drawn: its scale is shown
    assert x.viewer.colorbar.layout.visibility == "visible"
    x.viewer._handle_event("query", {"type": "mouseleave"})
    assert x.viewer.colorbar.layout.visibility == "hidden"
    x.viewer.overall_toggle.value = True  # the overall maps back: their scale too
    assert x.viewer.colorbar.layout.visibility == "visible"
    assert _opened(explorers, mirror_exp, show_overall=True).viewer.show_overall is True


def test_the_line_canvas_spans_both_images_over_the_viewers_pads(mirror_exp, explorers):
    x = _opened(explorers, mirror_exp, size=300)
    q, r = (x.viewer.logic.geometry[s].canvas for s in ("query", "reference"))
    assert (x.lines.canvas.height, x.lines.canvas.width) == (max(q[0], r[0]), q[1] + GAP_PX + r[1])
    assert LINES_CLASS in x.lines.canvas._dom_classes and ALIGNMENT_CLASS in x.alignment.canvas._dom_classes
    stack = x.parts.stack
    assert STACK_CLASS in stack._dom_classes
    row = stack.children[0]
    assert row.children[0] is x.viewer.drawing.pads["query"] and row.children[2] is x.viewer.drawing.pads["reference"]
    assert x.viewer.children[1].children[1] is stack  # in place of the viewer's own row of images
    assert x.line_position("reference", 0, 0)[1] > q[1] + GAP_PX  # reference side after the gap


# ------------------------------------------------------------------------------------------------
# background jobs: a new pair, the shared-content map


class SharedGate:
    """A registered slow method that blocks each call until released; its maps are tagged with the
    call's number (1, 2, ...) so a test can tell whose result is on show."""

    def __init__(self, name: str):
        self.name, self.calls = name, 0
        self.started = [threading.Event() for _ in range(4)]
        self.release = [threading.Event() for _ in range(4)]
        gate = self

        class Blocking(Explainer):
            slow = True
            options = {"cancel": Option.custom(None, "", lambda v, n: v), "show_progress": Option.flag(True, "")}

            def compute(self, model, query, reference):
                call = gate.calls
                gate.calls += 1
                gate.started[call].set()
                while not gate.release[call].wait(0.002):
                    cancel = self.config["cancel"]
                    if callable(cancel) and cancel():
                        raise ExplanationCancelled("cancelled", None)
                exp = sv.explain(model, query, reference, method="similarity_map")
                exp.query_map = np.full_like(exp.query_map, call + 1.0)
                exp.reference_map = np.full_like(exp.reference_map, call + 1.0)
                exp.method = gate.name
                return exp

        register_method(name)(Blocking)


@pytest.fixture
def shared_gate():
    gate = SharedGate("_shared_gate")
    yield gate
    for event in gate.release:
        event.set()
    _METHODS.pop(gate.name, None)


def test_the_shared_map_of_an_old_pair_never_shows_after_a_new_pair(tiny, pairs, explorers, shared_gate):
    x = _open(explorers, tiny, *pairs[0], size=96, shared_method="_shared_gate", show_shared=True, show_overall=True)
    first = x.explanation
    assert shared_gate.started[0].wait(10) and x.computing == "_shared_gate"
    x.set_pair(*pairs[1])  # supersedes the running shared job at once
    shared_gate.release[0].set()  # the old job finishes first...
    x.shared_runner.join_all(10)
    assert x.state.shared is None  # ...and is dropped, whichever pair is on show
    assert x.runner.wait(30)  # the new pair lands and starts its own shared job
    assert x.explanation is not first and x.hover_state.pins == ()
    np.testing.assert_array_equal(x.explanation.query, sv.explain(tiny, *pairs[1]).query)
    assert shared_gate.started[1].wait(10)
    shared_gate.release[1].set()
    assert x.wait(30)
    assert x.state.shared is not None and np.all(x.state.shared["query"] == 2.0)  # the second call's maps
    assert "what the pair shares" in x.legend.value and x.status_label.value == ""
    assert x.viewer.show_overall is False  # the plain photos under the shared overlay
    x.show_shared = False
    assert x.viewer.show_overall is True


def test_the_last_pair_wins_whatever_order_the_jobs_finish_in(tiny, pairs, explorers, monkeypatch):
    started = [threading.Event() for _ in range(2)]
    release = [threading.Event() for _ in range(2)]
    calls = []

    def gated(method_cls, query, reference, job, *, kind, reading):
        call = len(calls)
        calls.append(call)
        started[call].set()
        release[call].wait(30)
        return pair_job(method_cls, query, reference, job, kind=kind, reading=reading)

    monkeypatch.setattr(crossview_module, "pair_job", gated)
    x = _open(explorers, tiny, *pairs[0], size=96)
    x.set_pair(*pairs[1])
    assert started[0].wait(10) and x.computing == "pair" and "computing the new pair" in x.status_label.value
    x.set_pair(*pairs[2])
    assert started[1].wait(10)
    release[1].set()
    assert x.runner.wait(30)
    newest = x.explanation
    np.testing.assert_array_equal(newest.query, sv.explain(tiny, *pairs[2]).query)
    assert x.state.explanation is newest and x.state.geometry.explanation is newest  # lines of that pair
    release[0].set()  # the older job ends last: its result must not land
    x.runner.join_all(30)
    assert x.explanation is newest and x.computing is None and x.status_label.value == ""


def test_a_pending_pair_never_undoes_a_later_model_or_method_choice(tiny, pairs, explorers, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def gated(method_cls, query, reference, job, *, kind, reading):
        started.set()
        release.wait(30)
        return pair_job(method_cls, query, reference, job, kind=kind, reading=reading)

    monkeypatch.setattr(crossview_module, "pair_job", gated)
    x = _open(explorers, tiny, *pairs[0], size=96)
    x.set_pair(*pairs[1])
    assert started.wait(10)
    other = sv.load_model("mean_color")
    x.viewer.set_model(other)  # chosen after the pair job started: it must win
    x.viewer.wait(30)
    chosen = x.explanation
    assert chosen.score == pytest.approx(sv.explain(other, *pairs[0]).score)
    release.set()
    x.runner.join_all(30)
    assert x.explanation is chosen and x.viewer.model is other
    assert x.computing is None


def test_no_trait_is_set_from_a_worker_thread(tiny, pairs, explorers, monkeypatch):
    import traitlets

    offenders = []
    original = traitlets.TraitType.set

    def checked_set(self, obj, value):
        if threading.current_thread() is not threading.main_thread():
            offenders.append((type(obj).__name__, self.name, threading.current_thread().name))
        return original(self, obj, value)

    monkeypatch.setattr(traitlets.TraitType, "set", checked_set)
    x = _open(explorers, tiny, *pairs[0], size=96, shared_method="similarity_map", show_shared=True)
    assert x.wait(60) and x.state.shared is not None
    x.set_pair(*pairs[1])
    assert x.wait(60) and x.state.shared is not None and x.computing is None
    np.testing.assert_array_equal(x.explanation.query, sv.explain(tiny, *pairs[1]).query)
    assert offenders == []


def test_an_unregistered_shared_method_is_said_unavailable(tiny, pairs, explorers):
    x = _open(explorers, tiny, *pairs[0], size=96, shared_method="no_such_method", show_shared=True)
    assert "unavailable" in x.status_label.value and "no_such_method" in x.status_label.value
    assert not x.shared_runner.running and x.state.shared is None


def test_close_stops_the_jobs_and_refuses_work(tiny, pairs, shared_gate):
    x = CrossViewExplorer(tiny, *pairs[0], size=96, shared_method="_shared_gate", show_shared=True)
    assert shared_gate.started[0].wait(10)
    x.close()
    x.close()  # a second call does nothing
    assert x.shared_runner.current is None
    with pytest.raises(WidgetClosedError):
        x.set_pair(*pairs[1])
    with pytest.raises(WidgetClosedError):
        x.kind = "affine"


# ------------------------------------------------------------------------------------------------
# options


def test_resolution_uses_the_models_at_resolution(tiny, pairs, explorers, monkeypatch):
    asked = []

    def at_resolution(self, n):
        asked.append(n)
        return self

    with monkeypatch.context() as patch:
        patch.setattr(type(tiny), "at_resolution", at_resolution, raising=False)
        x = _open(explorers, tiny, *pairs[0], size=96, resolution=14)
        assert asked == [14] and x.viewer.model is tiny
    with monkeypatch.context() as patch:  # a model without it: said, not ignored
        patch.delattr(type(tiny), "at_resolution", raising=False)
        with pytest.raises(InputError, match=r"resolution=14 needs SimilarityModel.at_resolution"):
            CrossViewExplorer(tiny, *pairs[0], resolution=14)


@pytest.mark.skipif(not hasattr(sv.SimilarityModel, "at_resolution"), reason="no SimilarityModel.at_resolution yet")
def test_resolution_gives_a_finer_grid_of_matches(tiny, pairs, explorers):
    coarse = _open(explorers, tiny, *pairs[0], size=96)
    fine = _open(explorers, tiny, *pairs[0], size=96, resolution=16)
    assert coarse.explanation.point_to_point.query_grid == (8, 8)
    assert fine.explanation.point_to_point.query_grid == (16, 16)
    assert fine.matches.query_grid == (16, 16) and len(fine.state.lines()) == min(30, len(fine.matches))


@pytest.mark.parametrize("options, error, words", [
    ({"kind": "rotation"}, InputError, "kind"),
    ({"kind": None}, InputError, "kind"),
    ({"n_lines": -1}, InputError, "n_lines"),
    ({"n_lines": 2.5}, InputTypeError, "n_lines"),
    ({"n_lines": True}, InputTypeError, "n_lines"),
    ({"blend": 1.5}, InputError, "blend"),
    ({"blend": "0.5"}, InputTypeError, "blend"),
    ({"show_shared": "false"}, InputTypeError, "show_shared"),  # never bool("false") == True
    ({"show_shared": 1}, InputTypeError, "show_shared"),
    ({"show_overall": "no"}, InputTypeError, "show_overall"),
    ({"resolution": 0}, InputError, "resolution"),
    ({"resolution": 7.0}, InputTypeError, "resolution"),
    ({"shared_method": 3}, InputTypeError, "shared_method"),
    ({"size": 4}, InputError, "size"),
    ({"hover": "page"}, InputError, "hover"),
])
def test_bad_options_name_the_input_and_what_was_expected(tiny, pairs, options, error, words):
    with pytest.raises(error, match=words):
        CrossViewExplorer(tiny, *pairs[0], **options)


def test_bad_calls_name_the_input(tiny, pairs, explorers):
    with pytest.raises(InputError, match="model is None"):
        CrossViewExplorer(None, *pairs[0])
    x = _open(explorers, tiny, *pairs[0], size=96)
    with pytest.raises(InputTypeError, match="show_shared"):
        x.show_shared = 1
    with pytest.raises(InputError, match="blend"):
        x.blend = -0.1
    with pytest.raises(InputError, match="kind"):
        x.kind = "euclidean"
    with pytest.raises(InputError, match="image_a"):
        x.set_pair(None, pairs[1][1])
    assert x.computing is None  # nothing started
    exp_only = _opened(explorers, sv.explain(tiny, *pairs[0]))
    with pytest.raises(InputError, match="needs a model"):
        exp_only.set_pair(*pairs[1])

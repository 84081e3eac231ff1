"""The method-comparison panel: grid, labels, sorted charts, cache, background work, cancel, and the
link to the pair viewer. Small model (tiny_test, 64 px) and a few fast methods; methods and
metrics that count their calls are registered only for the test that needs them."""

from __future__ import annotations

import io
import math
import threading

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.datasets import shared_object_pairs
from simviz_widgets.evaluate import get_metric
from simviz_widgets.evaluate import metrics as metrics_module
from simviz_widgets.explain import ExplanationCancelled, PairExplanation
from simviz_widgets.explain import base as explain_base
from simviz_widgets.explain.base import Explainer
from simviz_widgets.widgets._canvas import value_at_pixel
from simviz_widgets.widgets import HoverState, MethodComparisonPanel, PairExplorer, PairViewer
from simviz_widgets.widgets.comparison_panel import (
    METHOD_COLOURS,
    RUNTIME,
    format_runtime,
    format_value,
    is_slow,
)

WAIT_S = 120  # generous: the machine is shared; only a hang would reach it
FAST_METRICS = [("deletion", {"steps": 11}), ("insertion", {"steps": 11})]


@pytest.fixture(scope="module")
def tiny():
    import simviz_widgets as sv

    return sv.load_model("tiny_test")


@pytest.fixture(scope="module")
def pairs():
    return shared_object_pairs(n=2, size=64)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("RGB"))


# ------------------------------------------------------------------------------------------------
# methods and metrics that count their calls (registered for one test, removed after it)


def constant_explanation(model, query, reference, method: str, value: float) -> PairExplanation:
    """A flat-topped map with one hot cell, so metrics have something to sort."""
    grid = np.zeros((4, 4), np.float32)
    grid[1, 2] = value
    return PairExplanation(method=method, score=0.5, query=query.display, reference=reference.display,
                           query_map=grid, reference_map=grid.T.copy(), signed=False, metric=model.metric)


@pytest.fixture
def counting_methods(monkeypatch):
    """Registers 'counted' (fast) and 'gated' (slow: has a cancel option, waits for a release
    event, checks cancel every 10 ms). Returns their call counters and events."""
    calls = {"counted": 0, "gated": 0}
    gate = {"release": threading.Event(), "started": threading.Event()}

    class Counted(Explainer):
        name = "counted"
        options = {"value": (1.0, "hot cell value")}

        def compute(self, model, query, reference):
            calls["counted"] += 1
            return constant_explanation(model, query, reference, self.name, self.config["value"])

    class Gated(Explainer):
        name = "gated"
        options = {"cancel": (None, "callable"), "show_progress": (True, "unused")}

        def compute(self, model, query, reference):
            calls["gated"] += 1
            gate["started"].set()
            cancel = self.config["cancel"]
            for _ in range(10_000):
                if cancel is not None and cancel():
                    partial = constant_explanation(model, query, reference, self.name, 0.5)
                    partial.info["passes_done"] = 1
                    raise ExplanationCancelled("gated was cancelled", partial)
                if gate["release"].wait(0.01):
                    return constant_explanation(model, query, reference, self.name, 2.0)
            raise RuntimeError("gated was never released")

    monkeypatch.setitem(explain_base._METHODS, "counted", Counted)
    monkeypatch.setitem(explain_base._METHODS, "gated", Gated)
    return calls, gate


@pytest.fixture
def counting_metric(monkeypatch):
    calls = []

    class HotCell(metrics_module.Metric):
        """The query map's maximum (a stand-in with a known answer)."""

        name = "hot_cell"
        higher_is_better = True
        category = "faithfulness"
        needs = frozenset()

        def evaluate(self, explanation, context):
            calls.append(explanation.method)
            return float(explanation.query_map.max())

    monkeypatch.setitem(metrics_module._METRICS, "hot_cell", HotCell)
    return calls


# ------------------------------------------------------------------------------------------------
# grid, labels, charts


def test_grid_has_a_row_per_method_labelled_with_runtime_and_scores(tiny, pairs):
    pair = pairs[0]
    methods = ["decomposition", "gradcam", "sfam"]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=methods, metrics=FAST_METRICS,
                                  background=False)
    assert list(panel.rows) == methods
    assert len(panel.grid.children) == 1 + len(methods)  # a header and one row per method
    for name in methods:
        exp = panel.explanation(name)
        assert exp is not None and exp.method == name
        label = panel.rows[name]["label"].value
        assert f"runtime {format_runtime(exp.runtime_s)}" in label
        for spec in FAST_METRICS:
            expected = get_metric(spec[0], **spec[1])(exp, model=tiny)  # scored independently
            got = panel.scores[name][spec[0]]
            assert got == pytest.approx(expected, abs=0.05)
            arrow = "↓" if spec[0] == "deletion" else "↑"
            assert f"{spec[0]} {arrow} {format_value(got)}" in label
        # Both thumbnails show a map over the photo, not the washed-out placeholder.
        assert panel.rows[name]["shown"] is exp
    assert "point-to-point" in panel.rows["decomposition"]["label"].value
    assert "point-to-point" not in panel.rows["gradcam"]["label"].value
    assert panel.progress.bar_style == "success" and not panel.computing
    panel.close()


def test_bars_are_sorted_best_first_per_metric_direction(tiny, pairs):
    pair = pairs[0]
    methods = ["decomposition", "gradcam", "rgradcam", "similarity_map"]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=methods, metrics=FAST_METRICS,
                                  background=False)
    scores = panel.scores
    deletion = panel.chart_order("deletion")
    insertion = panel.chart_order("insertion")
    runtime = panel.chart_order(RUNTIME)
    assert deletion == sorted(methods, key=lambda n: scores[n]["deletion"])  # lower is better
    assert insertion == sorted(methods, key=lambda n: -scores[n]["insertion"])  # higher is better
    assert runtime == sorted(methods, key=lambda n: scores[n][RUNTIME])
    # The values drawn are the scores, in that order, each bar in its method's colour.
    bars = panel.bars["insertion"]
    assert list(bars.y) == pytest.approx([scores[n]["insertion"] for n in insertion])
    assert list(bars.colors) == [METHOD_COLOURS[methods.index(n)] for n in insertion]
    assert "higher is better" in panel.charts["insertion"].title
    assert "lower is better" in panel.charts["deletion"].title
    panel.close()


def test_metric_that_does_not_apply_is_left_off_its_chart(tiny, pairs):
    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["decomposition", "gradcam"],
                                  metrics=["correspondence_pck"], mapping=pair.mapping, background=False)
    assert math.isfinite(panel.scores["decomposition"]["correspondence_pck"])
    assert math.isnan(panel.scores["gradcam"]["correspondence_pck"])  # no point-to-point part
    assert panel.chart_order("correspondence_pck") == ["decomposition"]
    assert "gradcam" in panel.chart_notes["correspondence_pck"].value
    assert "correspondence_pck ↑ n/a" in panel.rows["gradcam"]["label"].value
    panel.close()


def test_ground_truth_adds_pointing_and_correspondence_metrics(tiny, pairs):
    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["decomposition"],
                                  query_mask=pair.query_mask, reference_mask=pair.reference_mask,
                                  mapping=pair.mapping, background=False)
    assert [m.name for m in panel.metrics] == ["deletion", "insertion", "pointing_game", "correspondence_pck"]
    exp = panel.explanation("decomposition")
    from simviz_widgets.evaluate import mask_to_display

    q = tiny.prepare(pair.query)
    r = tiny.prepare(pair.reference)
    expected = get_metric("pointing_game")(exp, query_mask=mask_to_display(pair.query_mask, q),
                                           reference_mask=mask_to_display(pair.reference_mask, r))
    assert panel.scores["decomposition"]["pointing_game"] == expected
    panel.close()


# ------------------------------------------------------------------------------------------------
# cache


def test_results_are_cached_per_pair(tiny, pairs, counting_methods, counting_metric):
    calls, _ = counting_methods
    first, second = pairs
    panel = MethodComparisonPanel(tiny, first.query, first.reference, methods=["counted"], metrics=["hot_cell"],
                                  background=False)
    assert calls["counted"] == 1 and counting_metric == ["counted"]
    assert panel.scores["counted"]["hot_cell"] == 1.0
    panel.set_pair(second.query, second.reference)
    assert calls["counted"] == 2 and len(counting_metric) == 2
    panel.set_pair(first.query, first.reference)  # back: nothing is recomputed
    assert calls["counted"] == 2 and len(counting_metric) == 2
    assert panel.scores["counted"]["hot_cell"] == 1.0
    panel.run()
    assert calls["counted"] == 2
    # Other options are another entry: computed once.
    other = MethodComparisonPanel(tiny, first.query, first.reference, methods=["counted"], metrics=["hot_cell"],
                                  method_options={"counted": {"value": 3.0}}, background=False, cache=panel.cache)
    assert calls["counted"] == 3 and other.scores["counted"]["hot_cell"] == 3.0
    again = MethodComparisonPanel(tiny, first.query, first.reference, methods=["counted"], metrics=["hot_cell"],
                                  method_options={"counted": {"value": 3.0}}, background=False, cache=panel.cache)
    assert calls["counted"] == 3 and again.scores["counted"]["hot_cell"] == 3.0
    for p in (panel, other, again):
        p.close()


# ------------------------------------------------------------------------------------------------
# background work and cancel


def test_slow_methods_run_in_the_background_and_fill_the_grid(tiny, pairs, counting_methods, counting_metric):
    calls, gate = counting_methods
    pair = pairs[0]
    assert is_slow("gated") and is_slow("rise") and not is_slow("counted")
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["counted", "gated"],
                                  metrics=["hot_cell"])
    try:
        # The constructor returned while 'gated' waits: the fast method is there already.
        assert gate["started"].wait(WAIT_S)
        assert panel.explanation("counted") is not None
        assert panel.results["gated"].status == "running" and panel.computing
        assert panel.rows["gated"]["shown"] == "photo"  # placeholder until it finishes
        assert "running" in panel.rows["gated"]["label"].value
        assert not panel.cancel_button.disabled
        gate["release"].set()
        assert panel.wait(WAIT_S)
        exp = panel.explanation("gated")
        assert exp is not None and calls["gated"] == 1
        assert panel.rows["gated"]["shown"] is exp
        label = panel.rows["gated"]["label"].value
        assert f"runtime {format_runtime(exp.runtime_s)}" in label and "hot_cell ↑ 2" in label
        assert panel.chart_order("hot_cell") == ["gated", "counted"]
        assert panel.progress.value == panel.progress.max and panel.progress.bar_style == "success"
        assert panel.cancel_button.disabled
    finally:
        gate["release"].set()
        panel.close()


def test_cancel_stops_a_slow_method_and_run_resumes(tiny, pairs, counting_methods, counting_metric):
    calls, gate = counting_methods
    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["counted", "gated"],
                                  metrics=["hot_cell"])
    try:
        assert gate["started"].wait(WAIT_S)
        panel.cancel()
        assert panel.wait(WAIT_S)
        result = panel.results["gated"]
        assert result.status == "cancelled" and result.explanation is None
        assert result.partial is not None  # shown, not cached
        assert panel.rows["gated"]["shown"] is result.partial
        assert "not cached" in panel.rows["gated"]["label"].value
        assert not panel.run_button.disabled and panel.progress.bar_style == "warning"
        gate["release"].set()
        panel.run()  # computes what is missing only
        assert panel.wait(WAIT_S)
        assert calls == {"counted": 1, "gated": 2}
        assert panel.results["gated"].status == "done"
    finally:
        gate["release"].set()
        panel.close()


def test_cancel_stops_rise_between_batches(tiny, pairs):
    pair = pairs[0]
    masks = 400_000  # minutes of work: only a cancel ends it
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["rise"], metrics=FAST_METRICS,
                                  method_options={"rise": {"masks": masks, "batch_size": 8}})
    try:
        started = threading.Event()
        for _ in range(WAIT_S * 20):
            progress = panel.results["rise"].progress
            if progress is not None and progress > 0 and panel.progress.value > 0:
                started.set()
                break
            started.wait(0.05)
        assert started.is_set(), "rise never reported progress"
        assert 0 < panel.progress.value < panel.progress.max
        panel.cancel()
        assert panel.wait(WAIT_S)
        result = panel.results["rise"]
        assert result.status == "cancelled"
        assert 0 < result.partial.info["passes_done"] < masks
        assert panel.cache.explanation(panel._exp_key("rise")) is None
    finally:
        panel.close()


# ------------------------------------------------------------------------------------------------
# the viewer


def test_selecting_a_method_pushes_its_cached_explanation_into_the_viewer(tiny, pairs, counting_methods):
    calls, _ = counting_methods
    pair = pairs[0]
    viewer = PairViewer(tiny, pair.query, pair.reference, size=64)
    panel = MethodComparisonPanel.for_viewer(viewer, methods=["decomposition", "counted", "rise"],
                                             metrics=FAST_METRICS, method_options={"rise": {"masks": 50}},
                                             background=False)
    assert panel.state is viewer.state
    assert panel.selected == "decomposition"  # the viewer's method
    assert panel.select("counted")
    assert viewer.explanation is panel.explanation("counted") and calls["counted"] == 1
    assert viewer.method_dropdown.value == "counted" and panel.selected == "counted"
    assert panel.rows["counted"]["button"].button_style == "info"
    # Overall maps only: hovering and pinning work and say so.
    viewer.hover("query", 10.0, 20.0)
    assert "overall maps only" in viewer.status_label.value
    pin = viewer.pin("query", 10.0, 20.0)
    counted_map = panel.explanation("counted").query_map
    assert viewer.contribution(pin.source, pin.row, pin.col) == pytest.approx(
        value_at_pixel(counted_map, (64, 64), pin.row, pin.col))
    viewer.unhover()
    # A pixel-resolution map (RISE), chosen by clicking its row button.
    panel.rows["rise"]["button"].click()
    assert viewer.explanation is panel.explanation("rise")
    viewer.hover("reference", 30.0, 30.0)
    assert viewer.point_map("reference", 30.0, 30.0) is None
    # A bar: the best method of the deletion chart.
    best = panel.chart_order("deletion")[0]
    panel.bars["deletion"].selected = [0]
    assert viewer.explanation is panel.explanation(best) and panel.bars["deletion"].selected is None
    # Choosing in the viewer's menu moves the highlight.
    viewer.method_dropdown.value = "decomposition"
    assert panel.selected == "decomposition"
    assert calls["counted"] == 1
    panel.close()
    viewer.close()


def test_viewer_keeps_using_the_model_while_the_panel_works_in_the_background(tiny, pairs):
    """The worker runs a private copy of the model: the viewer recomputing with the model itself at
    the same time (its method menu) disturbs neither (hooks on one module would collide)."""
    pair = pairs[0]
    options = {"masks": 1000, "batch_size": 8}
    viewer = PairViewer(tiny, pair.query, pair.reference, size=64)
    panel = MethodComparisonPanel.for_viewer(viewer, methods=["decomposition", "rise"], metrics=[],
                                             method_options={"rise": options})
    try:
        worker_model = panel._run.worker_model
        assert worker_model.module is not tiny.module  # its own copy, hooks and all
        shown = []
        while panel.computing and len(shown) < 400:
            for method in ("gradcam", "decomposition"):
                viewer.method_dropdown.value = method
                shown.append(viewer.explanation)
        assert panel.wait(WAIT_S)
        assert shown, "the background work ended before the viewer could run"
        assert "failed" not in viewer.status_label.value
        from simviz_widgets.explain import explain

        expected = {m: explain(tiny, pair.query, pair.reference, method=m) for m in ("gradcam", "decomposition")}
        for exp in shown:
            np.testing.assert_allclose(exp.query_map, expected[exp.method].query_map, rtol=1e-5, atol=1e-6)
        rise = explain(tiny, pair.query, pair.reference, method="rise", show_progress=False, **options)
        assert panel.results["rise"].status == "done"
        np.testing.assert_allclose(panel.explanation("rise").query_map, rise.query_map, atol=1e-4)
    finally:
        panel.close()
        viewer.close()


def test_panel_follows_the_viewer_to_a_new_pair(tiny, pairs):
    first, second = pairs
    viewer = PairViewer(tiny, first.query, first.reference, size=64)
    panel = MethodComparisonPanel.for_viewer(viewer, methods=["decomposition", "gradcam"], metrics=FAST_METRICS,
                                             background=False)
    before = panel.explanation("gradcam")
    viewer.set_pair(second.query, second.reference)
    assert panel.wait(WAIT_S)
    after = panel.explanation("gradcam")
    assert after is not None and after is not before
    assert np.array_equal(after.query, viewer.explanation.query)
    assert panel.selected == "decomposition"
    panel.close()
    viewer.close()


def test_pins_are_marked_on_every_thumbnail(tiny, pairs):
    pair = pairs[0]
    state = HoverState()
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["gradcam"], metrics=[],
                                  state=state, size=64, background=False)
    before = png_pixels(panel.rows["gradcam"]["query"].value)
    pin = state.add_pin("query", 32.0, 16.0)
    after = png_pixels(panel.rows["gradcam"]["query"].value)
    colour = np.array(Image.new("RGB", (1, 1), pin.colour).getpixel((0, 0)))
    assert np.array_equal(after[32, 16], colour) and not np.array_equal(before[32, 16], colour)
    assert np.array_equal(after[5, 5], before[5, 5])  # far from the pin: unchanged
    reference = png_pixels(panel.rows["gradcam"]["reference"].value)
    state.add_pin("reference", 8.0, 40.0)
    marked = png_pixels(panel.rows["gradcam"]["reference"].value)
    colour = np.array(Image.new("RGB", (1, 1), state.pins[-1].colour).getpixel((0, 0)))
    assert np.array_equal(marked[8, 40], colour) and not np.array_equal(reference[8, 40], colour)
    panel.close()


def test_explorer_composes_the_comparison_panel(tiny, pairs):
    pair = pairs[0]
    explorer = PairExplorer(tiny, pair.query, pair.reference, size=64, panel_size=64,
                            comparison={"methods": ["decomposition", "sfam"], "metrics": [], "background": False})
    assert explorer.comparison in explorer.children
    assert explorer.comparison.state is explorer.state
    explorer.comparison.select("sfam")
    assert explorer.viewer.explanation.method == "sfam" and explorer.panel.explanation.method == "sfam"
    explorer.viewer.cmap = "viridis"
    assert explorer.comparison.cmap == "viridis"
    explorer.close()
    with pytest.raises(TypeError, match="comparison"):
        PairExplorer(tiny, pair.query, pair.reference, comparison="yes")


def test_static_form_is_a_png_of_the_grid(tiny, pairs):
    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["gradcam", "sfam"], metrics=[],
                                  size=48, background=False)
    image = panel.to_image()
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert image.shape[0] >= 2 * 48  # one band per method
    assert "image/png" in panel._repr_mimebundle_()
    panel.close()


# ------------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_named(tiny, pairs):
    pair = pairs[0]
    q, r = pair.query, pair.reference
    with pytest.raises(TypeError, match="model is a str"):
        MethodComparisonPanel("tiny", q, r)
    with pytest.raises(ValueError, match="'nope' is not registered"):
        MethodComparisonPanel(tiny, q, r, methods=["nope"])
    with pytest.raises(ValueError, match="repeat"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam", "gradcam"])
    with pytest.raises(ValueError, match="panel sets these itself"):
        MethodComparisonPanel(tiny, q, r, methods=["rise"], method_options={"rise": {"cancel": None}})
    with pytest.raises(ValueError, match="not among the methods"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], method_options={"rise": {"masks": 10}})
    with pytest.raises(TypeError, match="unknown option"):
        MethodComparisonPanel(tiny, q, r, methods=["rise"], method_options={"rise": {"mask": 10}})
    one = MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=("deletion", {"steps": 5}), background=False)
    assert [m.name for m in one.metrics] == ["deletion"] and one.metrics[0].config["steps"] == 5
    with pytest.raises(TypeError, match="metrics is 3"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=3)
    with pytest.raises(ValueError, match="query_mask"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=["pointing_game"])
    with pytest.raises(ValueError, match="not in this panel"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=[], background=False).select("sfam")
    viewer = PairViewer.from_explanation(
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=[], background=False).explanation("gradcam"))
    with pytest.raises(ValueError, match="viewer has no model"):
        MethodComparisonPanel.for_viewer(viewer)
    with pytest.raises(TypeError, match="viewer is a str"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], viewer="viewer")
    other_model = PairViewer(type(tiny).wrap(tiny.module, pooling=tiny.pooling, head=tiny.head), q, r, size=32)
    with pytest.raises(ValueError, match="another model"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], viewer=other_model)

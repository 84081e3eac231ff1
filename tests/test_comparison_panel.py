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

from simviz_widgets.checks import Option
from simviz_widgets.datasets import shared_object_pairs
from simviz_widgets.evaluate import get_metric
from simviz_widgets.evaluate import metrics as metrics_module
from simviz_widgets.explain import ExplanationCancelled, PairExplanation
from simviz_widgets.explain import base as explain_base
from simviz_widgets.explain.base import Explainer, get_method
from simviz_widgets.widgets import HoverState, MethodComparisonPanel, PairExplorer, PairViewer
from simviz_widgets.widgets._canvas import value_at_pixel
from simviz_widgets.widgets.comparison import RUNTIME, ComparisonSession
from simviz_widgets.widgets.comparison.charts import METHOD_COLOURS, format_runtime, format_value

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
    """Registers 'counted' (fast) and 'gated' (slow: declares ``slow``, has a cancel option, waits
    for a release event, checks cancel every 10 ms). Returns their call counters and events."""
    calls = {"counted": 0, "gated": 0}
    gate = {"release": threading.Event(), "started": threading.Event()}

    class Counted(Explainer):
        name = "counted"
        options = {"value": Option.number(1.0, "hot cell value")}

        def compute(self, model, query, reference):
            calls["counted"] += 1
            return constant_explanation(model, query, reference, self.name, self.config["value"])

    class Gated(Explainer):
        name = "gated"
        slow = True
        options = {"cancel": Option.custom(None, "callable", lambda v, n: v),
                   "show_progress": Option.flag(True, "unused")}

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
    assert get_method("gated").slow and get_method("rise").slow and not get_method("counted").slow
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["counted", "gated"],
                                  metrics=["hot_cell"])
    try:
        # The constructor returned while 'gated' waits: the fast method is there already.
        assert gate["started"].wait(WAIT_S)
        panel.session.deliver()  # what the worker posted so far (a kernel's event loop does this)
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
            panel.session.deliver()
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
        assert panel.cache.explanation(panel.session.exp_key("rise")) is None
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
        job = panel.session.runner.current
        assert job.model is not tiny and job.model.module is not tiny.module  # its own copy, hooks and all
        shown = []
        while not job.done.is_set() and len(shown) < 400:
            for method in ("gradcam", "decomposition"):
                viewer.method_dropdown.value = method
                assert viewer.explanation.method == method, viewer.job_label.value  # no failed choice
                assert viewer.job_label.value == ""
                shown.append(viewer.explanation)
        assert panel.wait(WAIT_S)
        assert shown, "the background work ended before the viewer could run"
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
    with pytest.raises(TypeError, match=r"model must be a SimilarityModel .*\(got str\)"):
        MethodComparisonPanel("tiny", q, r)
    with pytest.raises(ValueError, match="'nope' is not registered"):
        MethodComparisonPanel(tiny, q, r, methods=["nope"])
    with pytest.raises(ValueError, match="repeat"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam", "gradcam"])
    with pytest.raises(ValueError, match="panel sets these itself"):
        MethodComparisonPanel(tiny, q, r, methods=["rise"], method_options={"rise": {"cancel": None}})
    with pytest.raises(ValueError,
                       match=r"method_options has unknown key\(s\) \['rise'\]; expected keys among \['gradcam'\]"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], method_options={"rise": {"masks": 10}})
    with pytest.raises(TypeError, match="unknown option"):
        MethodComparisonPanel(tiny, q, r, methods=["rise"], method_options={"rise": {"mask": 10}})
    one = MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=("deletion", {"steps": 5}), background=False)
    assert [m.name for m in one.metrics] == ["deletion"] and one.metrics[0].config["steps"] == 5
    with pytest.raises(TypeError, match="metrics is 3"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=3)
    with pytest.raises(ValueError, match="query_mask"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=["pointing_game"])
    with pytest.raises(ValueError, match=r"method='sfam' is not one of \['gradcam'\]"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=[], background=False).select("sfam")
    viewer = PairViewer.from_explanation(
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], metrics=[], background=False).explanation("gradcam"))
    with pytest.raises(ValueError, match="viewer has no model"):
        MethodComparisonPanel.for_viewer(viewer)
    with pytest.raises(TypeError, match=r"viewer must be a PairViewer or None \(got str\)"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], viewer="viewer")
    other_model = PairViewer(type(tiny).wrap(tiny.module, pooling=tiny.pooling, head=tiny.head), q, r, size=32)
    with pytest.raises(ValueError, match="another model"):
        MethodComparisonPanel(tiny, q, r, methods=["gradcam"], viewer=other_model)


# ------------------------------------------------------------------------------------------------
# the session without widgets, superseded jobs, threads and model copies


@pytest.fixture
def holding_method(monkeypatch):
    """Registers 'holding': slow, NOT cancellable (it ignores cancellation), records the model it
    ran on and the query it explained, signals ``entered`` and blocks until ``release`` is set."""
    hold = {"release": threading.Event(), "entered": threading.Semaphore(0), "calls": []}

    class Holding(Explainer):
        name = "holding"
        slow = True
        options = {}

        def compute(self, model, query, reference):
            hold["calls"].append((model, query.display))
            hold["entered"].release()
            if not hold["release"].wait(WAIT_S):
                raise RuntimeError("holding was never released")
            return constant_explanation(model, query, reference, self.name, 3.0)

    monkeypatch.setitem(explain_base._METHODS, "holding", Holding)
    return hold


def test_session_modules_import_no_widget_library():
    import ast
    from pathlib import Path

    import simviz_widgets.widgets.comparison as package

    folder = Path(package.__file__).parent
    for name in ("session.py", "results.py", "worker.py"):
        tree = ast.parse((folder / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
        assert not {m for m in imported if m.split(".")[0] in ("ipywidgets", "bqplot", "ipycanvas")}, name
        assert not {m for m in imported if m.lstrip(".").startswith(("_canvas", "panel", "charts"))}, name


def test_session_is_usable_from_a_script(tiny, pairs, counting_methods, counting_metric):
    from ipywidgets.widgets import widget

    calls, gate = counting_methods
    pair = pairs[0]
    before = len(widget._instances)
    events = []
    session = ComparisonSession(tiny, methods=["counted", "gated"], metrics=["hot_cell"])
    session.subscribe(lambda event: events.append((event, threading.current_thread())))
    session.set_pair(pair.query, pair.reference)
    try:
        assert gate["started"].wait(WAIT_S)
        assert session.computing and session.status.state == "computing"
        assert session.explanation("counted") is not None  # fast: explained in set_pair
        assert session.tasks == [("score", "counted"), ("explain", "gated"), ("score", "gated")]
        gate["release"].set()
        assert session.wait(WAIT_S)
        assert not session.computing and session.status.state == "done"
        assert session.status.text == "all results ready" and session.status.fraction == 1.0
        assert {n: r.status for n, r in session.results.items()} == {"counted": "done", "gated": "done"}
        assert session.scores["counted"]["hot_cell"] == 1.0 and session.scores["gated"]["hot_cell"] == 2.0
        assert session.ranking("hot_cell") == [("gated", 2.0), ("counted", 1.0)]
        assert session.explanation("gated").method == "gated" and calls == {"counted": 1, "gated": 1}
        assert len(widget._instances) == before  # no widget was made
        assert {e.kind for e, _ in events} == {"pair", "result", "status"}
        assert all(thread is threading.main_thread() for _, thread in events)
    finally:
        gate["release"].set()
        session.close()


def test_a_new_pair_supersedes_the_running_job(tiny, pairs, holding_method, counting_metric):
    hold = holding_method
    first, second = pairs
    session = ComparisonSession(tiny, first.query, first.reference, methods=["holding"], metrics=["hot_cell"])
    seen = []
    session.subscribe(lambda event: seen.append(session.results[event.method].shown)
                      if event.kind == "result" else None)
    try:
        assert hold["entered"].acquire(timeout=WAIT_S)  # the first pair's job is explaining
        old_job = session.runner.current
        session.set_pair(second.query, second.reference)
        assert old_job.cancelled and session.runner.current is not old_job
        assert hold["entered"].acquire(timeout=WAIT_S)  # the second pair's job too
        hold["release"].set()
        # The old worker finishes and posts its explanation and scores: nothing delivers them yet
        # (no event loop); they are dropped when the new job's outcome is delivered.
        old_job.thread.join(WAIT_S)
        assert old_job.done.is_set()
        assert session.wait(WAIT_S)
        second_display = tiny.prepare(second.query).display
        exp = session.explanation("holding")
        assert np.array_equal(exp.query, second_display)
        assert session.scores["holding"]["hot_cell"] == 3.0 and session.status.state == "done"
        shown = [e for e in seen if e is not None]
        assert shown and all(np.array_equal(e.query, second_display) for e in shown)
        assert counting_metric.count("holding") == 1  # the old pair's scoring never ran or was dropped
        # The old job's explanation is not lost: it was cached under the first pair (only its
        # score, never computed, is left to do).
        session.set_pair(first.query, first.reference)
        assert session.explanation("holding") is not None and session.tasks == [("score", "holding")]
        assert session.wait(WAIT_S) and session.scores["holding"]["hot_cell"] == 3.0
        assert len(hold["calls"]) == 2
    finally:
        hold["release"].set()
        session.close()


def test_the_worker_never_sets_a_trait_or_draws(tiny, pairs, counting_methods, counting_metric, monkeypatch):
    """The panel's background work in a running event loop (as in a kernel): every trait set, every
    widget state message happens in the kernel's (main) thread."""
    import asyncio

    import ipywidgets
    import traitlets

    calls, gate = counting_methods
    pair = pairs[0]
    threads = []
    original_set = traitlets.TraitType.__set__
    original_set_trait = traitlets.HasTraits.set_trait
    original_send_state = ipywidgets.Widget.send_state

    def checked_set(self, obj, value):
        threads.append(("set", threading.current_thread()))
        return original_set(self, obj, value)

    def checked_set_trait(self, name, value):
        threads.append(("set_trait", threading.current_thread()))
        return original_set_trait(self, name, value)

    def checked_send_state(self, key=None):
        threads.append(("send_state", threading.current_thread()))
        return original_send_state(self, key)

    monkeypatch.setattr(traitlets.TraitType, "__set__", checked_set)
    monkeypatch.setattr(traitlets.HasTraits, "set_trait", checked_set_trait)
    monkeypatch.setattr(ipywidgets.Widget, "send_state", checked_send_state)

    async def main():
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["counted", "gated", "rise"],
                                      metrics=["hot_cell"], method_options={"rise": {"masks": 64}})
        panel.session.subscribe(lambda _e: finished.set() if panel.session.status.state == "done" else None)
        try:
            assert await loop.run_in_executor(None, gate["started"].wait, WAIT_S)
            gate["release"].set()
            await asyncio.wait_for(finished.wait(), WAIT_S)  # delivered by the loop, not by wait()
            assert panel.session.runner.current is None
            assert panel.rows["gated"]["shown"] is panel.explanation("gated")
            assert panel.progress.bar_style == "success"
        finally:
            gate["release"].set()
            panel.close()

    asyncio.run(main())
    assert calls["gated"] == 1 and len(threads) > 100
    off_main = [(kind, t.name) for kind, t in threads if t is not threading.main_thread()]
    assert off_main == []


def test_concurrent_jobs_never_share_a_model_copy(tiny, pairs, holding_method):
    from simviz_widgets.adapters.copies import ModelCopies

    hold = holding_method
    first, second = pairs
    pool = ModelCopies(tiny)
    a = ComparisonSession(tiny, first.query, first.reference, methods=["holding"], metrics=[], copies=pool)
    b = ComparisonSession(tiny, first.query, first.reference, methods=["holding"], metrics=[], copies=pool)
    try:
        assert hold["entered"].acquire(timeout=WAIT_S) and hold["entered"].acquire(timeout=WAIT_S)
        a.set_pair(second.query, second.reference)  # a's first job is superseded but still running
        assert hold["entered"].acquire(timeout=WAIT_S)
        models = [model for model, _ in hold["calls"]]
        assert len(models) == 3 and len({id(m) for m in models}) == 3
        assert len({id(m.module) for m in models}) == 3
        assert all(m is not tiny and m.module is not tiny.module for m in models)
        assert pool.in_use == 3
        hold["release"].set()
        assert a.wait(WAIT_S) and b.wait(WAIT_S)
        assert a.runner.join_all(WAIT_S)
        assert pool.in_use == 0 and pool.made == 3
    finally:
        hold["release"].set()
        a.close()
        b.close()


@pytest.mark.parametrize("background", [True, False])
def test_a_model_that_cannot_be_copied_is_an_error_in_the_panel(tiny, pairs, counting_methods,
                                                                 counting_metric, background):
    calls, _ = counting_methods
    pair = pairs[0]
    model = tiny.copy()
    model.module.lock = threading.Lock()  # deepcopy fails on it
    panel = MethodComparisonPanel(model, pair.query, pair.reference, methods=["counted", "gated"],
                                  metrics=["hot_cell"], background=background)
    try:
        assert panel.wait(WAIT_S) and not panel.computing
        assert calls == {"counted": 1, "gated": 0}  # the fast one here; nothing ran in a worker
        status = panel.session.status
        assert status.state == "failed" and "cannot be copied" in status.error
        assert "cannot be copied" in panel.status_label.value and "#b00" in panel.status_label.value
        assert panel.progress.bar_style == "danger"
        gated = panel.results["gated"]
        assert gated.status == "failed" and gated.explanation is None and "cannot be copied" in gated.error
        assert "cannot be copied" in panel.rows["gated"]["label"].value
        assert panel.explanation("counted") is not None  # explained in the kernel's thread
        assert not panel.run_button.disabled  # a retry is offered
    finally:
        panel.close()


# ------------------------------------------------------------------------------------------------
# readable charts, header and thumbnails


def flex_row_widths(count: int, basis: int, max_width: int, margin: int, output: int) -> list[list[float]]:
    """The widths a flex-wrap row of ``count`` items (``flex: 1 1 basis``, margin on the right)
    gives them in ``output`` pixels: rows of as many as fit, each grown to share its row."""
    per_row = max(1, output // (basis + margin))
    rows = []
    for start in range(0, count, per_row):
        n = min(per_row, count - start)
        rows.append([min(max_width, (output - n * margin) / n)] * n)
    return rows


def test_charts_are_horizontal_with_full_names_and_fill_the_output(tiny, pairs):
    from simviz_widgets.widgets.comparison import charts as charts_module

    pair = pairs[0]
    methods = ["decomposition", "similarity_attention", "gradcam", "rise"]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=methods, metrics=FAST_METRICS,
                                  method_options={"rise": {"masks": 50}}, background=False)
    try:
        assert list(panel.bars) == ["deletion", "insertion", RUNTIME]
        longest = max(len(m) for m in methods)
        for key, bars in panel.bars.items():
            fig = panel.charts[key]
            assert bars.orientation == "horizontal"
            categories = bars.scales["x"]
            assert categories.reverse  # the first (best) method is drawn on top
            category_axis, value_axis = fig.axes
            assert category_axis.scale is categories and category_axis.side == "left"
            assert value_axis.side == "bottom" and value_axis.tick_format == ".3~g"  # 100, not 1e+02
            ticks = list(value_axis.tick_values)  # a few round ticks from 0 over every bar
            values = [v for v in bars.y]
            assert 3 <= len(ticks) <= 6 and ticks[0] <= min(0.0, min(values)) and ticks[-1] >= max(values)
            steps = np.diff(ticks)
            # 1, 2, 2.5 or 5 x 10^k (nice_ticks' steps; was flaky: the runtime chart's range varies per run
            # and a 2.5 step, e.g. 0.025, failed a check for one significant digit)
            mantissa = float(steps[0]) / 10.0 ** math.floor(math.log10(float(steps[0])))
            assert np.allclose(steps, steps[0]) and any(math.isclose(mantissa, m) for m in (1.0, 2.0, 2.5, 5.0))
            assert (value_axis.scale.min, value_axis.scale.max) == (ticks[0], ticks[-1])
            assert sorted(panel.chart_order(key)) == sorted(methods)  # every name, in full
            assert fig.fig_margin["left"] >= charts_module.CHAR_PX * longest + 10
            # A short title that fits: at most ~0.6 em per character.
            assert 0.6 * charts_module.TITLE_FONT_PX * len(fig.title) < charts_module.CHART_BASIS_PX - 20
            assert fig.title.endswith(("higher is better", "lower is better"))
        assert panel.charts["deletion"].title == "deletion ↓ lower is better"
        assert panel.charts["insertion"].title == "insertion ↑ higher is better"
        assert panel.charts[RUNTIME].axes[1].label == "seconds"
        # Laid out to use the output's width: a wrapping row of flex items sharing it.
        box = panel.charts_box.layout
        assert box.display == "flex" and box.flex_flow == "row wrap" and box.width == "100%"
        basis = charts_module.CHART_BASIS_PX
        for item in panel.charts_box.children:
            assert item.layout.flex == f"1 1 {basis}px" and item.layout.max_width == f"{charts_module.CHART_MAX_PX}px"
        output = charts_module.OUTPUT_WIDTH_PX
        rows = flex_row_widths(len(panel.charts_box.children), basis, charts_module.CHART_MAX_PX,
                               charts_module.GAP_PX, output)
        assert len(rows) == 1 and len(rows[0]) == 3  # three abreast
        assert sum(rows[0]) + 3 * charts_module.GAP_PX == pytest.approx(output)
        assert all(basis <= w <= charts_module.CHART_MAX_PX for w in rows[0])
        # The header says nothing about background work once everything is ready.
        assert panel.session.status.state == "done"
        assert "in the background" not in panel.title.value and "4 methods" in panel.title.value
    finally:
        panel.close()


def test_header_says_what_runs_in_the_background_only_while_it_runs(tiny, pairs, counting_methods,
                                                                    counting_metric):
    calls, gate = counting_methods
    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["counted", "gated"],
                                  metrics=["hot_cell"])
    try:
        assert gate["started"].wait(WAIT_S)
        panel.session.deliver()
        assert "computing in the background: gated" in panel.title.value
        assert "counted" not in panel.title.value.split("background:")[1]  # already scored
        gate["release"].set()
        assert panel.wait(WAIT_S)
        assert "background" not in panel.title.value
        assert panel.status_label.value == "all results ready"
    finally:
        gate["release"].set()
        panel.close()


def test_a_side_without_a_map_shows_the_plain_photo_labelled_n_a(tiny, pairs):
    from simviz_widgets.widgets._canvas import display_size, photo_rgba
    from simviz_widgets.widgets.comparison.thumbnails import NO_MAP_LABEL, fitted_label, label_box

    pair = pairs[0]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["rise"], metrics=[], size=64,
                                  method_options={"rise": {"masks": 50}}, background=False)
    try:
        exp = panel.explanation("rise")
        assert exp.has_map("query") and not exp.has_map("reference")
        for side in ("query", "reference"):
            png = png_pixels(panel.rows["rise"][side].value)
            image = exp.image(side)
            photo = photo_rgba(image, display_size(image.shape[:2], 64))[..., :3]
            assert png.shape == photo.shape
            left, top, right, bottom = label_box(png.shape[:2], NO_MAP_LABEL)
            outside = np.ones(png.shape[:2], bool)
            outside[top:bottom, left:right] = False
            if side == "reference":
                # The photo itself outside the label (not darkened, not washed out)...
                assert np.array_equal(png[outside], photo[outside])
                # ...and a dark label with light text inside it.
                inside = png[top:bottom, left:right].astype(int)
                assert bottom - top < png.shape[0] // 2 and right - left < png.shape[1]
                assert (inside.max(axis=-1) < 60).mean() > 0.5 and (inside.min(axis=-1) > 180).any()
            else:
                assert not np.array_equal(png[outside], photo[outside])  # the map is drawn over it
        assert "n/a" in NO_MAP_LABEL
        # At the default size the whole label fits.
        big = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=["rise"], metrics=[],
                                    method_options={"rise": {"masks": 50}}, background=False)
        png = png_pixels(big.rows["rise"]["reference"].value)
        left, top, right, bottom = label_box(png.shape[:2], NO_MAP_LABEL)
        assert fitted_label(NO_MAP_LABEL, png.shape[1]) == NO_MAP_LABEL and right < png.shape[1] // 2 + 30
        big.close()
    finally:
        panel.close()


def test_methods_keep_one_colour_in_rows_and_charts(tiny, pairs):
    pair = pairs[0]
    methods = ["gradcam", "decomposition", "sfam"]
    panel = MethodComparisonPanel(tiny, pair.query, pair.reference, methods=methods, metrics=FAST_METRICS,
                                  background=False)
    try:
        for key in panel.bars:
            order = panel.chart_order(key)
            assert list(panel.bars[key].colors) == [METHOD_COLOURS[methods.index(n)] for n in order]
        for k, name in enumerate(methods):
            swatch = panel.rows[name]["box"].children[0].children[0]
            assert METHOD_COLOURS[k] in swatch.value
    finally:
        panel.close()


def test_a_closed_comparison_panel_refuses_every_change_and_runs_no_model(pairs):
    """Was: select, cancel and the look traits of a closed panel were accepted (select pushed an
    explanation into the viewer); set_pair/run said only that the *session* was closed."""
    import simviz_widgets as sv
    from simviz_widgets.widgets.session import WidgetClosedError

    model = sv.load_model("tiny_test", seed=7)
    q, r = pairs[0].query, pairs[0].reference
    viewer = PairViewer(model, q, r, size=48)
    panel = MethodComparisonPanel.for_viewer(viewer, methods=["decomposition", "gradcam"], metrics=[],
                                             background=False)
    shown = viewer.explanation
    calls = []
    handle = model.module.register_forward_hook(lambda *_: calls.append(1))
    try:
        panel.close()
        panel.close()  # twice is fine
        for change in (lambda: panel.set_pair(r, q), lambda: panel.set_model(model), lambda: panel.select("gradcam"),
                       panel.cancel, panel.run, lambda: setattr(panel, "cmap", "gray"),
                       lambda: setattr(panel, "alpha", 0.2)):
            with pytest.raises(WidgetClosedError, match="this MethodComparisonPanel is closed"):
                change()
    finally:
        handle.remove()
    assert calls == [] and viewer.explanation is shown and panel.cmap is None
    viewer.close()

"""One background-job design: generation tokens, cancel on supersede, apply on the kernel's event
loop, never touch a widget from a thread, one model copy per concurrent job.

The race tests use methods that block on an event (deterministic: no sleeps decide an outcome).
Each reproduces a defect seen on the earlier viewer (issue: "Widget layer: correct under fast
interaction").
"""

from __future__ import annotations

import asyncio
import copy
import threading

import numpy as np
import pytest
import torch
import traitlets

import simviz_widgets as sv
from simviz_widgets.adapters import ModelAdapterError, SimilarityModel
from simviz_widgets.adapters.copies import ModelCopies
from simviz_widgets.checks import Option
from simviz_widgets.explain import Explainer, ExplanationCancelled, register_method
from simviz_widgets.explain.base import _METHODS
from simviz_widgets.widgets.jobs import JobRunner
from simviz_widgets.widgets.pair_viewer import PairViewer
from simviz_widgets.widgets.session import FAST_DEFAULT, ExplanationSession


@pytest.fixture(scope="module")
def tiny():
    return sv.load_model("tiny_test")


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    return tuple(rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8))


ACTIVE: set = set()  # ids of the models any gate is running right now
ACTIVE_LOCK = threading.Lock()


class Gate:
    """A slow method that blocks until released (or cancelled); records which model ran it."""

    def __init__(self, name: str):
        self.name = name
        self.release, self.started = threading.Event(), threading.Event()
        self.models: list = []
        self.shared: list = []  # a model that was already running another job when this one started
        gate = self

        class Blocking(Explainer):
            slow = True
            options = {"cancel": Option.custom(None, "", lambda v, n: v), "show_progress": Option.flag(True, "")}

            def compute(self, model, query, reference):
                with ACTIVE_LOCK:
                    if id(model) in ACTIVE:
                        gate.shared.append(model)
                    ACTIVE.add(id(model))
                gate.models.append(model)
                gate.started.set()
                try:
                    # The job hands methods a cancel *check* (a callable, widgets/jobs.py); the gate
                    # treated it as an Event, which failed whenever the 2 ms wait lapsed (a loaded machine).
                    while not gate.release.wait(0.002):
                        if self.config["cancel"] is not None and self.config["cancel"]():
                            raise ExplanationCancelled("cancelled", None)
                    exp = sv.explain(model, query, reference, method="similarity_map")
                finally:
                    with ACTIVE_LOCK:
                        ACTIVE.discard(id(model))
                exp.method = gate.name
                return exp

        register_method(name)(Blocking)


@pytest.fixture
def gates():
    made = {name: Gate(name) for name in ("_gate_a", "_gate_b")}
    yield made
    for name in made:
        _METHODS.pop(name, None)


# ------------------------------------------------------------------------------------------------
# JobRunner


def test_superseded_job_is_never_applied_even_if_it_finishes_first():
    runner, applied = JobRunner(), []
    first_may_finish, second_may_finish = threading.Event(), threading.Event()
    first = runner.start(lambda job: (first_may_finish.wait(10), "first")[1], on_result=applied.append)
    second = runner.start(lambda job: (second_may_finish.wait(10), "second")[1], on_result=applied.append)
    assert first.cancelled and not second.cancelled and runner.token == second.token
    first_may_finish.set()
    first.done.wait(10)
    runner.deliver()  # the old job's outcome is in the inbox: dropped, not applied
    assert applied == []
    second_may_finish.set()
    assert runner.wait(10)
    assert applied == ["second"] and not runner.running


def test_outcomes_are_applied_on_the_event_loop_thread_not_the_worker():
    threads = []

    async def main():
        runner = JobRunner()
        done = asyncio.Event()

        def apply(value):
            threads.append(threading.current_thread())
            done.set()

        runner.start(lambda job: 1, on_result=apply)
        await asyncio.wait_for(done.wait(), 10)

    asyncio.run(main())
    assert threads == [threading.main_thread()]


def test_errors_and_progress_are_delivered_and_cancel_drops_them():
    runner, seen = JobRunner(progress_interval_s=0.0), []

    def work(job):
        job.report(0.5, "half")
        raise ValueError("broken")

    runner.start(work, on_result=seen.append, on_error=lambda e: seen.append(repr(e)),
                 on_progress=lambda f, t: seen.append((f, t)))
    assert runner.wait(10)
    assert seen == [(0.5, "half"), "ValueError('broken')"]
    gate = threading.Event()
    job = runner.start(lambda job: (gate.wait(10), job.check())[1], on_result=seen.append,
                       on_error=seen.append, on_cancelled=seen.append)
    assert runner.cancel() and job.cancelled
    gate.set()
    job.done.wait(10)
    runner.deliver()
    assert len(seen) == 2 and not runner.running


# ------------------------------------------------------------------------------------------------
# model copies and thread-safe hooks


def _embed_concurrently(models, calls: int = 300) -> tuple[list, list]:
    """Thread k embeds its own input on ``models[k]`` ``calls`` times; returns (errors, mixed-up
    results) against each model's single-threaded answer."""
    inputs = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(k)) for k in range(len(models))]
    with torch.no_grad():
        expected = [m.embed_tensor(x) for m, x in zip(models, inputs)]
    errors, mixed = [], []

    def run(k):
        for _ in range(calls):
            try:
                with torch.no_grad():
                    got = models[k].embed_tensor(inputs[k])
            except Exception as error:  # noqa: BLE001 - counted
                errors.append(error)
                continue
            if not torch.allclose(got, expected[k], atol=1e-6):
                mixed.append(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, mixed


def test_two_threads_embedding_on_one_model_never_mix_or_fail(tiny):
    """Was: 14,802 of 35,412 calls raised and 17 returned the other thread's embedding."""
    assert _embed_concurrently([tiny, tiny]) == ([], [])


def test_two_copies_embedding_at_once_never_mix(tiny):
    assert _embed_concurrently([tiny.copy(), tiny.copy()]) == ([], [])


def test_copies_are_independent_and_equal(tiny):
    copy_ = tiny.copy()
    assert copy_.module is not tiny.module
    assert all(p is not q for p, q in zip(copy_.module.parameters(), tiny.module.parameters()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(copy_.embed_tensor(x), tiny.embed_tensor(x), atol=1e-6)
    pool = ModelCopies(tiny)
    a, b = pool.acquire(), pool.acquire()
    assert a is not b and tiny not in (a, b) and pool.in_use == 2
    pool.release(a)
    assert pool.acquire() is a and pool.made == 2


def test_an_uncopyable_module_is_an_error_never_the_users_module(tiny):
    class NoCopy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

        def __deepcopy__(self, memo):
            raise RuntimeError("holds a file handle")

    wrapped = SimilarityModel.wrap(NoCopy(copy.deepcopy(tiny.module)), preprocess=tiny.preprocess)
    with pytest.raises(ModelAdapterError, match="cannot be copied for a background job"):
        wrapped.copy()


# ------------------------------------------------------------------------------------------------
# the viewer's session: the reproducers


def test_new_explanation_while_a_slow_method_runs_is_not_replaced_by_the_old_pair(tiny, pair, gates):
    """Was: set_explanation(explain(m, coffee, astronaut)) during RISE -> the old pair came back."""
    query, reference = pair
    v = PairViewer(tiny, query, reference, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    other = sv.explain(tiny, reference, query, method="similarity_map")
    v.set_explanation(other)
    gates["_gate_a"].release.set()
    assert v.wait(10)
    v.session.runner.join_all(10)
    assert v.explanation is other and v.method == "similarity_map" and v.computing is None
    assert v.method_dropdown.value == "similarity_map"
    v.close()


def test_choosing_back_the_method_on_show_cancels_the_slow_one(tiny, pair, gates):
    """Was: rise then back to decomposition -> after wait() maps and menu were rise."""
    v = PairViewer(tiny, *pair, size=96)
    v.method_dropdown.value = "_gate_a"
    assert gates["_gate_a"].started.wait(10) and v.computing == "_gate_a"
    v.method_dropdown.value = "decomposition"
    gates["_gate_a"].release.set()
    v.session.runner.join_all(10)
    assert v.wait(10)
    assert v.explanation.method == "decomposition" and v.method_dropdown.value == "decomposition"
    assert v.computing is None and v.job_label.value == ""
    v.close()


def test_the_last_choice_wins_whatever_order_the_jobs_finish_in(tiny, pair, gates):
    """Was: with a delay between the worker's 'still current?' check and its apply, an older
    choice (sliding_window) replaced the user's last one (gradcam)."""
    v = PairViewer(tiny, *pair, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    v.method = "_gate_b"
    assert gates["_gate_b"].started.wait(10)
    # No copy runs in two jobs at once. (The first job's thread runs until it sees the cancel; if it
    # ended before the second job started, the second may rightly reuse its copy.)
    assert not gates["_gate_a"].shared and not gates["_gate_b"].shared
    gates["_gate_b"].release.set()
    assert v.wait(10) and v.explanation.method == "_gate_b"
    gates["_gate_a"].release.set()  # the older job ends last: its result must not land
    v.session.runner.join_all(10)
    assert v.explanation.method == "_gate_b" and v.method == "_gate_b"
    v.method = "_gate_a"
    gates["_gate_a"].release.set()
    v.method = "gradcam"  # a fast choice after a slow one: shown at once, the slow one dropped
    v.session.runner.join_all(10)
    assert v.wait(10) and v.explanation.method == "gradcam" and v.method_dropdown.value == "gradcam"
    v.close()


def test_set_pair_with_a_slow_method_chosen_does_not_block(tiny, pair, gates):
    """Was: set_pair blocked the caller for the whole run (35-40 s at 2000 RISE masks)."""
    query, reference = pair
    v = PairViewer(tiny, query, reference, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    gates["_gate_a"].started.clear()
    v.set_pair(reference, query)  # returns while the gate is closed: it cannot have waited for it
    assert v.explanation.method == FAST_DEFAULT and np.array_equal(v.explanation.query, reference[:64, :64])
    assert v.computing == "_gate_a" and v.method == "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    gates["_gate_a"].release.set()
    assert v.wait(10)
    assert v.explanation.method == "_gate_a" and np.array_equal(v.explanation.query, reference[:64, :64])
    v.close()


def test_after_cancel_the_menu_names_the_method_on_show(tiny, pair, gates):
    v = PairViewer(tiny, *pair, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10) and v.method_dropdown.value == "_gate_a"
    v.cancel_background()
    assert v.computing is None and v.method == "decomposition" and v.method_dropdown.value == "decomposition"
    gates["_gate_a"].release.set()
    v.session.runner.join_all(10)
    assert v.explanation.method == "decomposition"
    v.close()


def test_quick_menu_switches_give_each_running_job_its_own_copy(tiny, pair, gates):
    """Was: 40 quick menu switches gave 12 spurious 'the feature layer did not run'."""
    v = PairViewer(tiny, *pair, size=96)
    for k in range(20):
        v.method = "_gate_a" if k % 2 == 0 else "_gate_b"
    running = gates["_gate_a"].models + gates["_gate_b"].models
    assert gates["_gate_a"].shared == [] and gates["_gate_b"].shared == []  # never two jobs on one copy
    assert all(m is not tiny for m in running)
    assert v.session.runner.copies.made <= len(running)  # copies of finished jobs are reused
    for gate in gates.values():
        gate.release.set()
    v.session.runner.join_all(30)
    assert v.wait(10) and v.explanation.method == "_gate_b" and v.session.status == ""
    v.close()


def test_a_plain_module_is_wrapped_once_and_workers_get_copies(tiny, pair, gates):
    net = copy.deepcopy(tiny.module)
    v = PairViewer(net, *pair, size=96)
    assert isinstance(v.model, SimilarityModel) and v.model.module is net
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    assert gates["_gate_a"].models[0].module is not net  # was: the user's module ran in the worker
    gates["_gate_a"].release.set()
    assert v.wait(10) and v.explanation.method == "_gate_a"
    v.close()


def test_a_copy_failure_is_shown_not_hidden(tiny, pair, gates, monkeypatch):
    v = PairViewer(tiny, *pair, size=96)

    def refuse(self, **kwargs):
        raise ModelAdapterError("model 'tiny_test' cannot be copied for a background job (test)")

    monkeypatch.setattr(SimilarityModel, "copy", refuse)
    v.method_dropdown.value = "_gate_a"
    assert not gates["_gate_a"].started.is_set()
    assert "cannot be copied" in v.job_label.value and v.method_dropdown.value == "decomposition"
    v.close()


def test_no_trait_is_set_from_a_worker_thread(tiny, pair, gates, monkeypatch):
    offenders = []
    original = traitlets.TraitType.set

    def checked_set(self, obj, value):
        if threading.current_thread() is not threading.main_thread():
            offenders.append((type(obj).__name__, self.name, threading.current_thread().name))
        return original(self, obj, value)

    monkeypatch.setattr(traitlets.TraitType, "set", checked_set)
    v = PairViewer(tiny, *pair, size=96)
    v.method = "_gate_a"
    gates["_gate_a"].release.set()
    assert v.wait(10)
    v.method = "sliding_window"
    assert v.wait(60)
    v.set_pair(pair[1], pair[0])
    assert v.wait(60) and v.explanation.method == "sliding_window"
    v.close()
    assert offenders == []


def test_closed_viewer_refuses_work(tiny, pair, gates):
    v = PairViewer(tiny, *pair, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    v.close()
    assert gates["_gate_a"].models and v.session.runner.current is None
    with pytest.raises(RuntimeError, match="closed"):
        v.set_pair(*pair)
    gates["_gate_a"].release.set()


def test_session_works_without_widgets(tiny, pair):
    session = ExplanationSession.explain(tiny, *pair, method="sliding_window")
    assert session.explanation.method == FAST_DEFAULT and session.computing == "sliding_window"
    assert session.wait(60)
    expected = sv.explain(tiny, *pair, method="sliding_window", show_progress=False)
    np.testing.assert_allclose(session.explanation.query_map, expected.query_map, rtol=1e-4, atol=1e-6)
    assert not session.explanation.has_map("reference")
    with pytest.raises(ValueError, match="not registered"):
        session.choose("grad_cam")


# ------------------------------------------------------------------------------------------------
# review reproducers: failures, stale inputs, shared hover state, exit, freed copies


@pytest.fixture
def failing_method():
    class Broken(Explainer):
        options = {}

        def compute(self, model, query, reference):
            raise RuntimeError("broken on purpose")

    register_method("_broken")(Broken)
    yield "_broken"
    _METHODS.pop("_broken", None)


def test_a_failed_choice_never_leaves_a_phantom_job(tiny, pair, gates, failing_method):
    """Was: a choice or set_pair that raised after cancelling left 'computing X' for ever."""
    v = PairViewer(tiny, *pair, size=96)
    v.method = "_gate_a"
    assert gates["_gate_a"].started.wait(10)
    with pytest.raises(ValueError, match="query"):
        v.set_pair(np.zeros(5, np.uint8), pair[1])
    assert v.computing is None and v.method == "decomposition" and v.method_dropdown.value == "decomposition"
    assert "computing" not in v.job_label.value
    v.method = "_gate_a"
    v.method_dropdown.value = failing_method  # from the menu: said in red, nothing left running
    assert v.computing is None and v.method_dropdown.value == "decomposition"
    assert "broken on purpose" in v.job_label.value and "<i>" not in v.job_label.value
    gates["_gate_a"].release.set()
    v.close()


def test_a_method_after_set_explanation_explains_the_new_pair(tiny, pair):
    """Was: set_explanation(other pair) then choosing a method brought the old pair back."""
    query, reference = pair
    v = PairViewer(tiny, query, reference, size=96)
    other = sv.explain(tiny, reference, query)
    v.set_explanation(other)
    v.method = "gradcam"
    assert np.array_equal(v.explanation.query, other.query) and np.array_equal(v.explanation.reference, other.reference)
    v.set_explanation(sv.explain(tiny, query, reference), inputs=(query, reference))
    v.method = "similarity_map"
    assert np.array_equal(v.explanation.query, query[:64, :64])
    v.close()


def test_new_pair_clears_the_shared_hover_point(tiny, pair):
    """Was: after set_pair the shared state kept the old point (panels kept its crosshair)."""
    v = PairViewer(tiny, *pair, size=96)
    v.hover("query", 10, 10)
    assert v.state.hovered is not None
    v.set_pair(pair[1], pair[0])
    assert v.hovered is None and v.state.hovered is None
    v.close()


def test_exiting_with_a_job_running_does_not_abort_the_interpreter():
    """Was: exit code 134 ('terminate called without an active exception') with a RISE thread alive."""
    import subprocess
    import sys

    script = (
        "import numpy as np, simviz_widgets as sv\n"
        "from simviz_widgets.widgets.session import ExplanationSession\n"
        "m = sv.load_model('tiny_test')\n"
        "q, r = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)\n"
        "ExplanationSession.explain(m, q, r, method='rise').close()\n"
        "ExplanationSession.explain(m, q, r, method='rise')  # left running\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_copies_are_freed_on_close_and_bounded(tiny, pair, gates):
    """Was: every copy made for a burst of superseded jobs was kept, even after close()."""
    v = PairViewer(tiny, *pair, size=96)
    for k in range(10):
        v.method = "_gate_a" if k % 2 == 0 else "_gate_b"
    copies = v.session.runner.copies
    for gate in gates.values():
        gate.release.set()
    v.session.runner.join_all(30)
    assert copies.in_use == 0 and len(copies._free) <= copies.max_free
    v.close()
    assert copies._free == []
    with pytest.raises(RuntimeError, match="closed"):
        copies.acquire()


def test_a_closed_comparison_session_refuses_work(tiny, pair):
    from simviz_widgets.widgets.comparison import ComparisonSession

    session = ComparisonSession(tiny, *pair, methods=["decomposition"], metrics=[], background=False)
    session.close()
    for call in (lambda: session.set_pair(*pair), session.run, lambda: session.set_model(tiny)):
        with pytest.raises(RuntimeError, match="comparison session is closed"):
            call()


def test_a_menu_choice_over_a_running_job_never_shows_the_old_method_in_between(tiny, pair, gates):
    """Was: choosing gradcam while a slow job ran first cancelled it, which named the shown method
    (decomposition) in the menu for a moment before gradcam; in the browser that transient value
    could win the race with the user's choice (seen: explanation gradcam, menu 'sliding_window')."""
    v = PairViewer(tiny, *pair, size=96)
    v.method_dropdown.value = "_gate_a"
    assert gates["_gate_a"].started.wait(10) and v.computing == "_gate_a"
    seen = []
    v.method_dropdown.observe(lambda change: seen.append(change["new"]), "value")
    v.method_dropdown.value = "gradcam"  # as the browser's menu sets it
    assert seen == ["gradcam"]
    assert v.explanation.method == "gradcam" and v.method == "gradcam" and v.computing is None
    gates["_gate_a"].release.set()
    v.session.runner.join_all(10)
    assert v.method_dropdown.value == "gradcam"
    v.close()

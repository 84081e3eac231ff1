"""``ComparisonSession``: every explanation method on one pair, with runtimes and metric scores,
computed in the background — without any widget, so scripts can use it as it is::

    session = ComparisonSession(model, query, reference, methods=[...], metrics=[...])
    session.wait()
    session.scores  # {method: {metric: value, "runtime_s": seconds}}

Fast methods are explained in the calling thread when a pair is set; the metrics and the slow
methods (``get_method(name).slow``) run as one job of a :class:`~simviz_widgets.widgets.jobs.JobRunner`
on a private model copy. Results are cached per (model, pair, method, options). The worker posts
each result as it is ready; the session applies it on the kernel's event loop (in :meth:`wait` /
:meth:`deliver` without one) only while the job is current, and tells its listeners
(:meth:`subscribe`, :class:`SessionEvent`), always in the kernel's thread.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from ...adapters import SimilarityModel
from ...adapters.copies import ModelCopies
from ...checks import InputError, check_bool, check_callable, check_choice, check_instance
from ...evaluate.compare import build_metrics, check_method_options, check_methods
from ...explain.base import PairExplanation, get_method, list_methods
from ..jobs import JobRunner
from ..session import check_open
from .results import (
    DEFAULT_METRICS,
    RUNTIME,
    ComparisonPair,
    MethodResult,
    ResultCache,
    SessionEvent,
    SessionStatus,
    apply_update,
    options_key,
)
from .worker import SESSION_OPTIONS, Plan, TaskUpdate, explainer_for, run_plan, score_key

__all__ = ["ComparisonSession"]


class ComparisonSession:
    """Explanation methods compared on one pair: explanations, runtimes and metric scores.

    ``model``: a SimilarityModel. ``query`` / ``reference``: a first pair (or call :meth:`set_pair`). ``methods``:
    names (default: every registered method, fast ones first). ``metrics``: names, ``(name, options)`` or Metric
    objects (default: :data:`DEFAULT_METRICS`, plus ``pointing_game`` with masks and ``correspondence_pck`` with a
    mapping). ``method_options``: ``{method: {option: value}}``. ``query_mask`` / ``reference_mask`` / ``mapping``:
    ground truth over the *input* images (see :meth:`set_pair`). ``background``: False waits for the work in the
    calling thread (scripts, static export). ``cache``: a ResultCache to share. ``copies``: a ModelCopies pool of
    ``model`` to share with other jobs (each job takes its own copy).
    """

    def __init__(self, model, query=None, reference=None, *, methods=None, metrics=None,
                 method_options=None, query_mask=None, reference_mask=None, mapping=None,
                 background: bool = True, cache: ResultCache | None = None, copies: ModelCopies | None = None):
        self._model = _check_model(model)
        background = check_bool(background, "background")
        if cache is not None:
            check_instance(cache, "cache", ResultCache, "ResultCache or None")
        if copies is not None and (check_instance(copies, "copies", ModelCopies).model is not model):
            raise InputError("copies is a ModelCopies of another model; expected one of this session's model")
        ordered = sorted(list_methods(), key=lambda n: (get_method(n).slow, n != "decomposition", n))
        self._methods = check_methods(methods, default=ordered)
        self._method_options = check_method_options(
            method_options, self._methods, reserved=SESSION_OPTIONS,
            reserved_by="a comparison session or panel", why="its progress bar and cancel button")
        if metrics is not None:
            build_metrics(metrics)  # a bad spec fails now; what the metrics need is checked per pair
        self._metric_specs = metrics
        self.background = background
        self.cache = cache if cache is not None else ResultCache()
        self._own_copies = copies is None  # a pool we made is ours to close
        self.runner = JobRunner(copies=copies if copies is not None else ModelCopies(model), name="simviz-comparison")
        self.pair: ComparisonPair | None = None
        self.metrics: list = []
        self.results: dict[str, MethodResult] = {}
        self.tasks: list[tuple[str, str]] = []
        self.status = SessionStatus()
        self._listeners: list[Callable[[SessionEvent], None]] = []
        self._job_pair: ComparisonPair | None = None
        self._closed = False
        if query is not None or reference is not None:
            if query is None or reference is None:
                raise InputError("give both query and reference, or neither (then call set_pair)")
            self.set_pair(query, reference, query_mask=query_mask, reference_mask=reference_mask, mapping=mapping)
        elif query_mask is not None or reference_mask is not None or mapping is not None:
            raise InputError("ground truth (query_mask, reference_mask, mapping) needs a pair; pass it to set_pair")

    # -- observers ---------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[SessionEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` on every change (kernel thread only); returns the unsubscriber."""
        self._listeners.append(check_callable(listener, "listener"))

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, kind: str, method: str | None = None) -> None:
        event = SessionEvent(kind, method)
        for listener in list(self._listeners):
            listener(event)

    def _set_status(self, **changes) -> None:
        self.status = dataclasses.replace(self.status, **changes)
        self._emit("status")

    # -- reading -----------------------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def methods(self) -> list[str]:
        return list(self._methods)

    @property
    def method_options(self) -> dict[str, dict]:
        return {name: dict(options) for name, options in self._method_options.items()}

    @property
    def copies(self) -> ModelCopies:
        return self.runner.copies

    @property
    def computing(self) -> bool:
        return self.runner.running

    def result(self, method: str) -> MethodResult:
        check_choice(method, "method", self._methods)
        if method not in self.results:
            raise InputError("no pair yet; call set_pair(query, reference) first")
        return self.results[method]

    def explanation(self, method: str) -> PairExplanation | None:
        """The finished explanation of ``method`` on the current pair (None while not computed)."""
        return self.result(method).explanation

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """``{method: {metric: value}}`` on the current pair, plus ``runtime_s``; NaN while missing."""
        out = {}
        for name, result in self.results.items():
            row = {m.name: result.scores.get(m.name, float("nan")) for m in self.metrics}
            runtime = result.runtime_s
            row[RUNTIME] = float("nan") if runtime is None else float(runtime)
            out[name] = row
        return out

    def ranking(self, metric: str, *, higher_is_better: bool | None = None) -> list[tuple[str, float]]:
        """``(method, value)`` best first for ``metric`` (or ``runtime_s``), NaN left out; ties
        keep the methods' order."""
        if metric == RUNTIME:
            higher = False
        else:
            known = {m.name: m for m in self.metrics}
            higher = known[check_choice(metric, "metric", [*known, RUNTIME])].higher_is_better
        if higher_is_better is not None:
            higher = check_bool(higher_is_better, "higher_is_better")
        values = [(name, row[metric]) for name, row in self.scores.items()]
        finite = [(n, v) for n, v in values if math.isfinite(v)]
        finite.sort(key=lambda item: item[1], reverse=higher)
        return finite

    def same_pair(self, explanation: PairExplanation | None) -> bool:
        """Whether ``explanation`` is of the current pair (its display images)."""
        if explanation is None or self.pair is None:
            return False
        return (np.array_equal(explanation.query, self.pair.query.display)
                and np.array_equal(explanation.reference, self.pair.reference.display))

    def exp_key(self, method: str) -> tuple:
        """The cache key of ``method``'s explanation on the current pair."""
        return (self.pair.key, method, options_key(self._method_options[method]))

    # -- control -----------------------------------------------------------------------------
    def set_pair(self, query, reference, *, query_mask=None, reference_mask=None, mapping=None,
                 explain_fast_here: bool = True) -> None:
        """Compare the methods on another pair (cached results come back at once). Masks are bool
        over the *input* images, ``mapping(rows, cols) -> (rows, cols, valid)`` maps query to
        reference pixels of the input images; both are carried to display pixels through the
        model's resize and crop. ``explain_fast_here``: explain the fast methods now, in this
        thread (False: in the background too, e.g. from a widget callback)."""
        self._check_open()
        explain_fast_here = check_bool(explain_fast_here, "explain_fast_here")
        self._set(self._model, query, reference, (query_mask, reference_mask, mapping), explain_fast_here)

    def set_model(self, model, *, inputs: tuple | None = None, explain_fast_here: bool = True) -> None:
        """Compare the methods for another model, on the same pair (its ground truth kept), or on
        ``inputs`` = (query, reference) if given (without ground truth)."""
        self._check_open()
        model = _check_model(model)
        explain_fast_here = check_bool(explain_fast_here, "explain_fast_here")
        if inputs is not None and (not isinstance(inputs, tuple) or len(inputs) != 2):
            raise InputError(f"inputs is {type(inputs).__name__}; expected a (query, reference) tuple or None")
        if inputs is not None:
            self._set(model, inputs[0], inputs[1], (None, None, None), explain_fast_here)
        elif self.pair is not None:
            self._set(model, *self.pair.inputs, self.pair.truth_inputs, explain_fast_here)
        else:
            self._adopt_model(model)

    def run(self, *, explain_fast_here: bool = False) -> None:
        """Compute whatever is missing on the current pair (after a cancel or a failure)."""
        self._check_open()
        if self.pair is None:
            raise InputError("no pair yet; call set_pair(query, reference) first")
        self._start(check_bool(explain_fast_here, "explain_fast_here"))

    def cancel(self) -> bool:
        """Stop the background work: a running slow method stops between batches (its partial map
        is kept, not cached); finished results stay. Returns whether anything was running."""
        job = self.runner.current
        if job is None or job.cancelled:
            return False
        job.cancel_event.set()  # not superseded: what the job reports until it stops is applied
        self._set_status(state="cancelling", text="cancelling…")
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background work ends and apply its outcome; False if it still runs
        after ``timeout`` seconds."""
        return self.runner.wait(timeout)

    def deliver(self) -> None:
        """Apply what the worker has posted so far (scripts without an event loop; a kernel's
        loop does it by itself)."""
        self.runner.deliver()

    def close(self) -> None:
        """Cancel the background work (its outcome is dropped) and stop telling listeners."""
        if self._closed:
            return
        self._closed = True
        self.runner.close()
        if self._own_copies:
            self.runner.copies.close()
        self._listeners.clear()

    def _check_open(self) -> None:
        check_open(self._closed, "comparison session")

    def _adopt_model(self, model) -> None:
        """Make ``model`` the session's (its own pool of copies for the worker)."""
        if model is not self._model:
            if self._own_copies:
                self.runner.copies.close()
            self.runner.copies, self._own_copies = ModelCopies(model), True
        self._model = model

    # -- pair and job ----------------------------------------------------------------------
    def _set(self, model, query, reference, truth, explain_fast_here: bool) -> None:
        pair = ComparisonPair.prepare(model, query, reference, truth)
        specs = self._metric_specs
        if specs is None:
            specs = list(DEFAULT_METRICS) + (["pointing_game"] if pair.has_mask else [])
            specs += ["correspondence_pck"] if pair.has_mapping else []
        have = {"model"} | ({"mask"} if pair.has_mask else set()) | ({"mapping"} if pair.has_mapping else set())
        metrics = build_metrics(specs, have=have, where="the pair", hint=True)
        self.runner.cancel()  # supersede: nothing of an older pair's job is applied from now on
        self._adopt_model(model)  # only now that the pair and metrics are good: key and model agree
        self.pair, self.metrics = pair, metrics
        self.results = {name: MethodResult(name, bool(get_method(name).slow)) for name in self._methods}
        self.tasks = []
        self.status = SessionStatus()
        self._emit("pair")
        self._start(explain_fast_here)

    def _fill_from_cache(self, name: str) -> bool:
        """Take ``name``'s explanation and scores from the cache; True if nothing is missing."""
        result = self.results[name]
        key = self.exp_key(name)
        exp = self.cache.explanation(key)
        if exp is None:
            return False
        result.explanation, result.partial, result.error = exp, None, None
        missing = False
        for metric in self.metrics:
            value = self.cache.score(score_key(key, metric, self.pair.truth_key))
            if value is None:
                missing = True
            else:
                result.scores[metric.name] = value
        result.status = "pending" if missing else "done"
        return not missing

    def _start(self, explain_fast_here: bool) -> None:
        """Fill what the cache has; explain fast methods here if asked; queue everything else."""
        if self.runner.running and self._job_pair is self.pair and not self.runner.current.cancelled:
            return  # already computing this pair
        tasks: list[tuple[str, str]] = []
        to_score: list[str] = []
        slow: list[tuple[str, str]] = []
        for name in self._methods:
            result = self.results[name]
            if self._fill_from_cache(name):
                continue
            if result.explanation is None:
                result.status, result.error = "pending", None
                if result.slow:
                    slow += [("explain", name), ("score", name)]
                    continue
                if explain_fast_here:
                    self._explain_here(name)
                    if result.explanation is None:
                        continue  # failed: the result says why
                else:
                    tasks.append(("explain", name))
            to_score.append(name)
        tasks += [("score", name) for name in to_score] + slow
        for name in self._methods:
            self._emit("result", name)
        self.tasks = tasks
        if not tasks:
            self.runner.cancel()  # a cancelled job still stopping has nothing more to say
            self._finish(cancelled=False)
            return
        plan = Plan(pair=self.pair, tasks=tuple(tasks), cache=self.cache, metrics=tuple(self.metrics),
                    explainers={n: (get_method(n), dict(self._method_options[n])) for n in self._methods},
                    exp_keys={n: self.exp_key(n) for n in self._methods},
                    explanations={n: r.explanation for n, r in self.results.items() if r.explanation is not None})
        try:
            self.runner.start(lambda job: run_plan(job, plan), on_result=self._on_done, on_error=self._on_error,
                              on_cancelled=self._on_cancelled, on_progress=self._on_progress,
                              on_post=self._on_post, needs_model=True, name="comparison")
        except Exception as error:  # noqa: BLE001 - e.g. a model that cannot be copied: shown, not hidden
            self._cannot_start(tasks, error)
            return
        self._job_pair = self.pair
        self._set_status(state="computing", done=0.0, total=len(tasks), error=None, missing=(),
                         working_on=tuple(dict.fromkeys(n for _, n in tasks)),
                         text=f"computing {len(tasks)} task(s) in the background…")
        if not self.background:
            self.runner.wait()

    def _explain_here(self, name: str) -> None:
        """Explain a fast method in this (the kernel's) thread with the model itself."""
        result = self.results[name]
        cls = get_method(name)
        try:
            exp = explainer_for(cls, self._method_options[name])(self._model, self.pair.query, self.pair.reference)
        except Exception as error:  # noqa: BLE001 - shown in the row; the other methods go on
            result.status, result.error = "failed", f"{type(error).__name__}: {error}"
            return
        self.cache.put_explanation(self.exp_key(name), exp)
        result.explanation, result.error = exp, None

    def _cannot_start(self, tasks, error: Exception) -> None:
        message = f"{type(error).__name__}: {error}"
        for name in dict.fromkeys(n for _, n in tasks):
            result = self.results[name]
            result.error = f"not computed: {message}"
            if result.explanation is None:
                result.status = "failed"
            self._emit("result", name)
        self._set_status(state="failed", done=0.0, total=len(tasks), working_on=(), error=message,
                         missing=self._missing(), text=f"the background work could not start: {message}")

    # -- outcomes, applied on the kernel's loop (only while the job is current) ------------------
    def _on_post(self, update: TaskUpdate) -> None:
        status_changes = apply_update(self.results, self.tasks, update)
        self._emit("result", update.method)
        if status_changes:
            self._set_status(**status_changes)

    def _on_progress(self, fraction, method: str) -> None:
        result = self.results.get(method)
        if result is None or fraction is None or result.status != "running" or self.status.state == "cancelling":
            return  # after a cancel, the job's last reports must not hide "cancelling…"
        result.progress = float(fraction)
        index = next((k for k, task in enumerate(self.tasks) if task == ("explain", method)), None)
        self._emit("result", method)
        if index is not None:
            self._set_status(done=index + result.progress,
                             text=f"explaining {method} ({index + 1} of {len(self.tasks)}, {100 * fraction:.0f} %)")

    def _on_done(self, _value) -> None:
        self._finish(cancelled=False)

    def _on_cancelled(self, _stop) -> None:
        self._finish(cancelled=True)

    def _on_error(self, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        for name, result in self.results.items():
            if result.status in ("pending", "running"):
                result.status, result.error = "failed", f"background work failed: {message}"
                self._emit("result", name)
        self._set_status(state="failed", working_on=(), error=message, missing=self._missing(),
                         text=f"the background work failed: {message}")

    def _missing(self) -> tuple[str, ...]:
        return tuple(n for n, r in self.results.items()
                     if r.status in ("cancelled", "failed", "pending") or len(r.scores) < len(self.metrics))

    def _finish(self, *, cancelled: bool) -> None:
        for name, result in self.results.items():
            if result.status in ("pending", "running"):
                result.status = "done" if result.explanation is not None else "cancelled"
                result.progress = None
                self._emit("result", name)
        missing = self._missing()
        if cancelled:
            self._set_status(state="cancelled", working_on=(), missing=missing,
                             text=f"cancelled; missing: {', '.join(missing) or 'nothing'}")
        else:
            self._set_status(state="done", done=float(self.status.total), working_on=(), missing=missing,
                             text="all results ready" if not missing else f"done; missing: {', '.join(missing)}")


def _check_model(model):
    return check_instance(model, "model", SimilarityModel, "SimilarityModel (simviz_widgets.load_model(...) "
                          "or SimilarityModel.wrap(module))")

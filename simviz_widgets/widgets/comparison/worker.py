"""The comparison's background work: a :class:`Plan` (made in the kernel's thread, never changed
after) and :func:`run_plan`, which a :class:`~simviz_widgets.widgets.jobs.JobRunner` job runs.

The worker only computes and reports. It reads nothing but the plan and its job (``job.model``
is its private copy of the model), writes nothing but the thread-safe :class:`ResultCache`, and
tells the session what happened through ``job.post(TaskUpdate(...))`` (each explanation and score
as it is ready) and ``job.report(fraction, method)`` (passes of a slow method); the session
applies both on the kernel's event loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...explain.base import PairExplanation
from .results import ComparisonPair, ResultCache, options_key

__all__ = ["Plan", "TaskUpdate", "run_plan", "score_key", "SESSION_OPTIONS"]

#: Options the session sets itself on methods that have them (its progress and cancel).
SESSION_OPTIONS = ("cancel", "show_progress")


@dataclass(frozen=True)
class Plan:
    """One job's work. ``tasks``: ``("explain" | "score", method)`` in order. ``explainers``:
    method -> (class, options). ``exp_keys``: method -> cache key. ``explanations``: methods already
    explained (to score). ``metrics``: the Metric objects (read-only in the worker)."""

    pair: ComparisonPair
    tasks: tuple[tuple[str, str], ...]
    explainers: dict[str, tuple[type, dict]]
    exp_keys: dict[str, tuple]
    explanations: dict[str, PairExplanation]
    metrics: tuple
    cache: ResultCache


@dataclass(frozen=True)
class TaskUpdate:
    """One thing the worker finished, posted to the session. ``kind``: 'start' / 'end' (task
    ``index`` of the plan begins / ends), 'explained' (``explanation``), 'partial' (a cancelled
    method's ``explanation`` so far), 'failed' (``error``), 'score' (``metric``, ``value``, and
    ``error`` if it failed: value NaN)."""

    kind: str
    method: str
    index: int = -1
    explanation: PairExplanation | None = None
    metric: str | None = None
    value: float = math.nan
    error: str | None = None


def score_key(exp_key: tuple, metric, truth_key: str) -> tuple:
    return (exp_key, metric.name, options_key(metric.config), truth_key)


def explainer_for(cls, options: dict, cancel=None):
    """The method built with the session's own options: no tqdm bar (the view has one), and the
    cancel check where the method takes one."""
    options = dict(options)
    if "show_progress" in cls.options:
        options["show_progress"] = False
    if cancel is not None and "cancel" in cls.options:
        options["cancel"] = cancel
    return cls(**options)


def run_plan(job, plan: Plan) -> None:
    """The worker: the plan's tasks in order, each outcome posted as it is ready."""
    from ...evaluate import EvalContext

    pair = plan.pair
    context = EvalContext(model=job.model, query_mask=pair.query_mask, reference_mask=pair.reference_mask,
                          mapping=pair.mapping)
    context.cache["fast_model"] = job.model
    explained = dict(plan.explanations)
    for index, (kind, name) in enumerate(plan.tasks):
        job.check()
        if kind == "explain" or name in explained:  # (nothing to score when explaining failed)
            job.post(TaskUpdate("start", name, index))
            if kind == "explain":
                exp = _explain(job, plan, name)
                if exp is not None:
                    explained[name] = exp
            else:
                _score(job, plan, name, explained[name], context)
        job.post(TaskUpdate("end", name, index))


def _explain(job, plan: Plan, name: str) -> PairExplanation | None:
    from ...explain import ExplanationCancelled
    from ..jobs import JobCancelled, explain_in_job

    key = plan.exp_keys[name]
    exp = plan.cache.explanation(key)
    if exp is None:  # another session sharing the cache may have got there first
        cls, options = plan.explainers[name]
        try:
            exp = explain_in_job(job, cls, options, plan.pair.query, plan.pair.reference, label=name)
        except ExplanationCancelled as stop:
            job.post(TaskUpdate("partial", name, explanation=stop.partial, error=str(stop)))
            if job.cancelled:
                raise JobCancelled(name) from stop
            return None
        except Exception as error:  # noqa: BLE001 - shown in the method's row; the others go on
            job.post(TaskUpdate("failed", name, error=f"{type(error).__name__}: {error}"))
            return None
        plan.cache.put_explanation(key, exp)
    job.post(TaskUpdate("explained", name, explanation=exp))
    return exp


def _score(job, plan: Plan, name: str, exp: PairExplanation, context: Any) -> None:
    cls, options = plan.explainers[name]
    context.method_options = dict(options)
    key = plan.exp_keys[name]
    for metric in plan.metrics:
        job.check()
        skey = score_key(key, metric, plan.pair.truth_key)
        value, error = plan.cache.score(skey), None
        if value is None:
            try:
                value = float(metric.evaluate(exp, context))
            except Exception as failure:  # noqa: BLE001 - one metric failing leaves the others
                value, error = math.nan, f"{metric.name}: {type(failure).__name__}: {failure}"
            else:
                plan.cache.put_score(skey, value)
        job.post(TaskUpdate("score", name, metric=metric.name, value=value, error=error))

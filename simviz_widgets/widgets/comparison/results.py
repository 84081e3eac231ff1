"""What a comparison holds per method (:class:`MethodResult`), the cache of explanations and
scores shared across pairs and panels (:class:`ResultCache`), the current pair
(:class:`ComparisonPair`) and the session's state as the view reads it (:class:`SessionStatus`).

Plain data: no widgets, no threads of their own (the cache is thread-safe: workers fill it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...checks import check_callable
from ...explain.base import PairExplanation

__all__ = ["MethodResult", "ResultCache", "ComparisonPair", "SessionStatus", "SessionEvent",
           "DEFAULT_METRICS", "RUNTIME", "apply_update", "digest", "options_key"]

#: Deletion and insertion with 21 fractions instead of the protocol's 101: five times fewer
#: forward passes, AUCs within about a point of the full curves. Pointing and correspondence
#: metrics join when the ground truth is given.
DEFAULT_METRICS = (("deletion", {"steps": 21}), ("insertion", {"steps": 21}))
#: The key of the runtime in :attr:`ComparisonSession.scores` rows (seconds, lower is better).
RUNTIME = "runtime_s"


def digest(*arrays) -> str:
    """A short hash of arrays (shape, dtype and bytes): the pair part of cache keys."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        if arr is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def options_key(options: dict) -> str:
    return repr(sorted((k, repr(v)) for k, v in options.items()))


@dataclass
class MethodResult:
    """One method on the session's current pair. ``status``: 'pending' | 'running' | 'done' |
    'cancelled' | 'failed'. ``explanation``: the finished explanation (``partial``: what a
    cancelled run had done, shown but never cached). ``scores``: metric name -> value (NaN where
    the metric does not apply). ``progress``: fraction of a running slow method's passes done."""

    method: str
    slow: bool
    status: str = "pending"
    explanation: PairExplanation | None = None
    partial: PairExplanation | None = None
    scores: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    progress: float | None = None

    @property
    def runtime_s(self) -> float | None:
        return None if self.explanation is None else self.explanation.runtime_s

    @property
    def shown(self) -> PairExplanation | None:
        """What to draw: the explanation, else a cancelled run's partial one, else None."""
        return self.explanation if self.explanation is not None else self.partial


class ResultCache:
    """Explanations and metric scores keyed by (model, pair, method, options[, metric, ground
    truth]). Thread-safe; keeps the ``max_explanations`` most recently used explanations (and the
    scores of those only)."""

    def __init__(self, max_explanations: int = 256):
        self.max_explanations = int(max_explanations)
        self._explanations: OrderedDict = OrderedDict()
        self._scores: dict = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def explanation(self, key) -> PairExplanation | None:
        with self._lock:
            exp = self._explanations.get(key)
            if exp is None:
                self.misses += 1
                return None
            self.hits += 1
            self._explanations.move_to_end(key)
            return exp

    def put_explanation(self, key, explanation: PairExplanation) -> None:
        with self._lock:
            self._explanations[key] = explanation
            self._explanations.move_to_end(key)
            while len(self._explanations) > self.max_explanations:
                old, _ = self._explanations.popitem(last=False)
                self._scores = {k: v for k, v in self._scores.items() if k[0] != old}

    def score(self, key) -> float | None:
        with self._lock:
            return self._scores.get(key)

    def put_score(self, key, value: float) -> None:
        with self._lock:
            if key[0] in self._explanations:
                self._scores[key] = float(value)

    def __len__(self) -> int:
        return len(self._explanations)


@dataclass(frozen=True)
class ComparisonPair:
    """The session's current pair: prepared images, ground truth in display pixels, cache keys.

    ``inputs``: the (query, reference) as given; ``query_mask`` / ``reference_mask`` / ``mapping``:
    the ground truth carried to display pixels (``truth_inputs``: as given, for a model change).
    ``key``: (model id, query digest, reference digest); ``truth_key``: the ground truth's."""

    query: Any  # PreparedImage
    reference: Any
    inputs: tuple
    query_mask: np.ndarray | None
    reference_mask: np.ndarray | None
    mapping: Callable | None
    truth_inputs: tuple
    key: tuple
    truth_key: str

    @classmethod
    def prepare(cls, model, query, reference, truth=(None, None, None)) -> "ComparisonPair":
        """``model``'s prepared images of the pair, and ``truth`` = (query_mask, reference_mask,
        mapping) over the input images carried to display pixels (checked: clear errors)."""
        from ...evaluate import display_mapping, mask_to_display

        query_mask, reference_mask, mapping = truth
        check_callable(mapping, "mapping", optional=True)
        q = model.prepare(query, name="query")
        r = model.prepare(reference, name="reference")
        q_mask = None if query_mask is None else mask_to_display(query_mask, q, name="query_mask")
        r_mask = None if reference_mask is None else mask_to_display(reference_mask, r, name="reference_mask")
        return cls(q, r, (query, reference), q_mask, r_mask,
                   None if mapping is None else display_mapping(q, r, mapping), tuple(truth),
                   (id(model), digest(q.tensor.numpy(), q.display), digest(r.tensor.numpy(), r.display)),
                   digest(q_mask, r_mask) + f"/mapping:{id(mapping)}")

    def prepared(self, side: str):
        """The PreparedImage of ``side`` ('query' | 'reference')."""
        from ...explain.base import check_side

        return self.query if check_side(side) == "query" else self.reference

    @property
    def has_mask(self) -> bool:
        return self.query_mask is not None or self.reference_mask is not None

    @property
    def has_mapping(self) -> bool:
        return self.mapping is not None


@dataclass(frozen=True)
class SessionStatus:
    """The session's background work as the view shows it.

    ``state``: 'idle' (nothing to do yet) | 'computing' | 'cancelling' | 'done' | 'cancelled' |
    'failed' (the background work could not run or crashed; ``error`` says why).
    ``text``: one line on what happens (``"explaining rise (2 of 5, 40 %)"``, ``"all results
    ready"``). ``done`` / ``total``: tasks finished (a fraction while one is running) of the job's.
    ``working_on``: the methods the running job still has tasks for (empty when none runs).
    ``missing``: methods with something not computed (cancelled, failed, a score missing)."""

    state: str = "idle"
    text: str = ""
    done: float = 0.0
    total: int = 0
    working_on: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None

    @property
    def computing(self) -> bool:
        return self.state in ("computing", "cancelling")

    @property
    def fraction(self) -> float:
        """Progress of the current (or last) job, 0..1 (1 when there was nothing to do)."""
        return 1.0 if self.total == 0 else min(1.0, self.done / self.total)


@dataclass(frozen=True)
class SessionEvent:
    """What changed, for listeners: ``kind`` 'pair' (a new pair or model: results, metrics and
    rows were replaced), 'result' (``method``'s MethodResult changed) or 'status'
    (:attr:`ComparisonSession.status` changed)."""

    kind: str
    method: str | None = None


def apply_update(results: dict[str, MethodResult], tasks: list[tuple[str, str]], update) -> dict:
    """Apply one worker :class:`~.worker.TaskUpdate` to ``results`` (the job's ``tasks`` give the
    context); returns the :class:`SessionStatus` fields it changes (``{}`` for none)."""
    result = results[update.method]
    kind = update.kind
    if kind == "start":
        task, _ = tasks[update.index]
        if result.status not in ("failed", "cancelled"):
            result.status = "running"
        result.progress = 0.0 if task == "explain" else None
        verb = "explaining" if task == "explain" else "scoring"
        return {"done": float(update.index), "text": f"{verb} {update.method} ({update.index + 1} of {len(tasks)})"}
    if kind == "end":
        result.progress = None
        later = [n for _, n in tasks[update.index + 1:]]
        if result.status == "running":
            result.status = "pending" if update.method in later else "done"
        return {"done": float(update.index + 1), "working_on": tuple(dict.fromkeys(later))}
    if kind == "explained":
        result.explanation, result.partial, result.error = update.explanation, None, None
    elif kind == "partial":
        result.status, result.partial, result.error = "cancelled", update.explanation, update.error
    elif kind == "failed":
        result.status, result.error = "failed", update.error
    elif kind == "score":
        result.scores[update.metric] = update.value
        if update.error:
            result.error = update.error
    return {}

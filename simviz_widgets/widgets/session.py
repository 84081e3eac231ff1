"""What a pair viewer shows and how it gets there, without any widget.

An :class:`ExplanationSession` holds the model (wrapped once as a SimilarityModel), the input pair,
the chosen method and the explanation on show. Fast methods are explained in the calling thread
(tens of milliseconds); slow ones (``get_method(name).slow``: RISE, sliding window) run as a
background job of a :class:`~simviz_widgets.widgets.jobs.JobRunner` on a private model copy, while
the current explanation stays on show. Every change — a new pair, explanation, method, model, a
cancel, ``close()`` — supersedes the job before anything else happens, and a job's result is
applied on the kernel's event loop only while it is current: a fast click never shows a stale
result. ``set_pair`` / ``set_model`` with a slow method chosen never block: they show the fast
default first (:data:`FAST_DEFAULT`) and compute the slow one in the background.

Observable traits (traitlets, no ipywidgets): ``explanation``, ``method`` (the chosen method: the
explanation's, or the one being computed), ``computing`` (the method computing in the background,
or None), ``status`` (what is going on, or an error, as plain text), ``progress`` (fraction or None).
"""

from __future__ import annotations

import numpy as np
import traitlets

from ..adapters import SimilarityModel
from ..adapters.copies import ModelCopies
from ..checks import InputError, InputTypeError, SimvizError, check_instance
from ..explain import explain, get_method, list_methods
from ..explain.base import SIDES, PairExplanation
from .jobs import JobRunner, explain_in_job

__all__ = ["ExplanationSession", "FAST_DEFAULT", "WidgetClosedError", "check_open"]

#: What a new pair or model shows at once while a slow method is computed in the background.
FAST_DEFAULT = "decomposition"


class WidgetClosedError(SimvizError, RuntimeError):
    """A closed widget or session was asked to change: after ``close()`` nothing runs any more."""


def check_open(closed: bool, what: str) -> None:
    """Refuse work on a closed ``what`` ("PairViewer", "comparison session"...)."""
    if closed:
        raise WidgetClosedError(f"this {what} is closed; make a new one (close() freed its widgets and work)")


def _as_similarity_model(model) -> SimilarityModel:
    if isinstance(model, SimilarityModel):
        return model
    import torch

    check_instance(model, "model", torch.nn.Module, "SimilarityModel or torch.nn.Module "
                   "(simviz_widgets.load_model(...) or SimilarityModel.wrap(module))")
    return SimilarityModel.wrap(model)


def _check_inputs(inputs) -> None:
    """``inputs``: None or the (query, reference) images an explanation explains."""
    if inputs is not None and (not isinstance(inputs, tuple) or len(inputs) != 2):
        raise InputTypeError(f"inputs is a {type(inputs).__name__}; expected a (query, reference) tuple or None")


class ExplanationSession(traitlets.HasTraits):
    """Model, pair, chosen method and explanation of one viewer (see the module docstring).

    Build with :meth:`explain` (runs the model) or directly from an explanation; ``model`` may be
    None for a view of a finished explanation (then nothing can be recomputed).
    """

    explanation = traitlets.Instance(PairExplanation)
    method = traitlets.Unicode()
    computing = traitlets.Unicode(None, allow_none=True)
    status = traitlets.Unicode("")
    progress = traitlets.Float(None, allow_none=True)

    def __init__(self, explanation: PairExplanation, *, model=None, inputs: tuple | None = None):
        check_instance(explanation, "explanation", PairExplanation)
        _check_inputs(inputs)
        super().__init__()
        self._model = None if model is None else _as_similarity_model(model)
        self._copies: ModelCopies | None = None
        self.runner = JobRunner(name="simviz-viewer")
        self._inputs = inputs
        self._last_registered = explanation.method if explanation.method in list_methods() else FAST_DEFAULT
        self._closed = False
        with self.hold_trait_notifications():
            self.explanation = explanation
            self.method = explanation.method

    @classmethod
    def explain(cls, model, query, reference, *, method: str = FAST_DEFAULT) -> "ExplanationSession":
        """A session on (query, reference); a slow ``method`` shows :data:`FAST_DEFAULT` first."""
        model = _as_similarity_model(model)
        slow = get_method(method).slow
        session = cls(explain(model, query, reference, method=FAST_DEFAULT if slow else method), model=model,
                      inputs=(query, reference))
        if slow:
            session.choose(method)
        return session

    # -- state -------------------------------------------------------------------------------------
    @property
    def model(self) -> SimilarityModel | None:
        return self._model

    @property
    def inputs(self) -> tuple:
        """The (query, reference) images as given (the explanation's display images when the
        session was made from an explanation): re-preparing display images would crop twice."""
        return self._inputs or (self.explanation.query, self.explanation.reference)

    @property
    def recompute_method(self) -> str:
        """The method a new pair or model is explained with: the chosen one, unless it is not a
        registered method (an attribute's maps), then the last registered one shown."""
        return self.method if self.method in list_methods() else self._last_registered

    # -- changes -----------------------------------------------------------------------------------
    def choose(self, method: str) -> None:
        """Show ``method`` on the current pair: at once for a fast method, in the background for a
        slow one (the current maps stay until it is done). Choosing the method on show cancels a
        pending background job."""
        self._check_open()
        check_instance(method, "method", str, "method name (str)")
        if method == self.explanation.method:
            self.cancel()
            return
        cls = get_method(method)  # a clear error naming the known methods
        if self._model is None:
            raise InputError(
                f"method {method!r} needs a model, and this viewer has none (it was made from an "
                "explanation); call set_model(model) first"
            )
        # One notification per trait for the whole choice: cancelling alone would name the shown
        # method for a moment, and a menu synced to that transient value could be left on it.
        with self.hold_trait_notifications():
            self.cancel()  # first, so that a failure below leaves a consistent state (nothing computing)
            if cls.slow:
                self._start(method)
            else:
                self._show(explain(self._model, *self.inputs, method=method))

    def set_explanation(self, explanation: PairExplanation, *, inputs: tuple | None = None) -> None:
        """Show ``explanation`` (cancels any background job). ``inputs``: the (query, reference)
        images it explains, as given to the model; without them, the current inputs stay if the
        explanation shows the same display images, else its display images become the inputs
        (so a later method or model never brings back the previous pair)."""
        self._check_open()
        check_instance(explanation, "explanation", PairExplanation)
        _check_inputs(inputs)
        self.cancel()
        if inputs is not None:
            self._inputs = inputs
        elif not all(np.array_equal(explanation.image(s), self.explanation.image(s)) for s in SIDES):
            self._inputs = None
        self._show(explanation)

    def set_pair(self, query, reference) -> None:
        """Explain a new pair with the chosen method (a slow one: fast default first)."""
        self._check_open()
        if self._model is None:
            raise InputError(
                "set_pair needs a model, and this viewer has none (it was made from an explanation); "
                "call set_model(model) first or use set_explanation(explanation)"
            )
        self._restart(self._model, (query, reference))

    def set_model(self, model) -> None:
        """Explain the same input pair with another model (chosen method kept)."""
        self._check_open()
        if model is None:
            raise InputError("model is None; expected a SimilarityModel or torch module")
        self._restart(_as_similarity_model(model), self.inputs)

    def cancel(self) -> bool:
        """Stop the background job (if any): the explanation on show stays, and so does the menu's
        choice follow it. Returns whether a job was cancelled."""
        cancelled = self.runner.cancel()
        if cancelled or self.method != self.explanation.method:
            with self.hold_trait_notifications():
                self.computing, self.progress, self.status = None, None, ""
                self.method = self.explanation.method
        return cancelled

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background job (if any) is done and applied; False if it is still
        running after ``timeout`` seconds."""
        return self.runner.wait(timeout)

    def close(self) -> None:
        """Cancel the background job and drop the model copies (a running thread ends at its next
        batch; its copy is freed then)."""
        self._closed = True
        self.runner.close()
        if self._copies is not None:
            self._copies.close()

    # -- internals ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        check_open(self._closed, "viewer's session")

    def _restart(self, model: SimilarityModel, inputs: tuple) -> None:
        method = self.recompute_method
        cls = get_method(method)  # before running anything
        self.cancel()
        first = explain(model, *inputs, method=FAST_DEFAULT if cls.slow else method)
        if model is not self._model:
            self._model, self._copies = model, None
        self._inputs = inputs
        self._show(first)
        if cls.slow:
            self._start(method)

    def _show(self, explanation: PairExplanation) -> None:
        if explanation.method in list_methods():
            self._last_registered = explanation.method
        with self.hold_trait_notifications():
            self.computing, self.progress, self.status = None, None, ""
            self.explanation = explanation
            self.method = explanation.method

    def _start(self, method: str) -> None:
        if self._copies is None:
            self._copies = ModelCopies(self._model)
            self.runner.copies = self._copies
        query, reference = self.inputs
        explainer_cls = get_method(method)

        def work(job):
            q, r = job.model.prepare(query, name="query"), job.model.prepare(reference, name="reference")
            return explain_in_job(job, explainer_cls, {}, q, r, label=method)

        def progressed(fraction, _text):
            self.progress = fraction
            self.status = (f"computing {method} in the background ({100 * fraction:.0f} %); the "
                           f"{self.explanation.method} maps stay until it is done (choose another method to cancel)")

        def failed(error):
            with self.hold_trait_notifications():
                self.computing, self.progress = None, None
                self.method = self.explanation.method
                self.status = f"method {method!r} failed: {type(error).__name__}: {error}"

        try:
            self.runner.start(work, on_result=self._show, on_error=failed, on_cancelled=failed,
                              on_progress=progressed, needs_model=True, name=method)
        except Exception as error:  # noqa: BLE001 - e.g. a module that cannot be copied: said, not hidden
            failed(error)
            return
        with self.hold_trait_notifications():
            self.method, self.computing, self.progress = method, method, None
            self.status = (f"computing {method} in the background; the {self.explanation.method} maps stay "
                           "until it is done (choose another method to cancel)")

"""Background jobs: the one design every widget uses for work too slow for a callback.

A :class:`JobRunner` owns a *generation token*. Starting a job (a new pair, explanation, method or
model) or cancelling (``close()`` too) moves the token on, so any older job is superseded: its
cancel flag is set, and whatever it still produces is dropped. A worker thread never touches a
widget or a trait: it posts its outcome (result, error, progress) to the runner's inbox, and the
runner delivers the inbox **on the kernel's event loop** (``loop.call_soon_threadsafe``), where
each outcome is applied only if its job's token is still current. Check and apply happen in the
same thread, so no interleaving can let an older job's result land after a newer choice.
Without a running event loop (a plain script), :meth:`JobRunner.wait` delivers.

Each job that needs the model runs on its own private copy from a
:class:`~simviz_widgets.adapters.copies.ModelCopies` pool (taken in the kernel's thread when the
job starts, given back when its thread ends): the user's module is never run from a worker, and
two jobs never share one.

>>> runner = JobRunner()
>>> seen = []
>>> job = runner.start(lambda job: 6 * 7, on_result=seen.append)
>>> runner.wait(5), seen
(True, [42])
"""

from __future__ import annotations

import asyncio
import atexit
import math
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable

__all__ = ["Job", "JobRunner", "JobCancelled", "explain_in_job"]


class JobCancelled(Exception):
    """Raised by :meth:`Job.check` in a worker whose job was cancelled or superseded."""


def _running_loop():
    """The loop to deliver on: the running one, else the Jupyter kernel's (a job started from
    code the kernel runs outside its loop), else None (a script: :meth:`JobRunner.wait` delivers)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    import sys

    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.kernelapp import IPKernelApp

        if IPKernelApp.initialized():
            return IPKernelApp.instance().kernel.io_loop.asyncio_loop
    except Exception:  # noqa: BLE001 - another kernel layout: wait() still delivers
        return None
    return None


class Job:
    """One background computation. The worker function receives it: ``job.model`` (a private
    copy, or None), ``job.cancelled`` / ``job.check()`` to stop early, ``job.report(fraction,
    text)`` for progress, and ``job.cancel_event`` for code that takes a ``threading.Event``."""

    def __init__(self, runner: "JobRunner", token: int, name: str, model, loop):
        self.runner = runner
        self.token = token
        self.name = name
        self.model = model
        self.loop = loop
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self._last_report = -float("inf")

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled or superseded."""
        if self.cancel_event.is_set():
            raise JobCancelled(self.name)

    def report(self, fraction: float | None, text: str = "", *, force: bool = False) -> None:
        """Progress from the worker, delivered on the kernel's loop (at most a few per second)."""
        now = time.monotonic()
        if not force and now - self._last_report < self.runner.progress_interval_s:
            return
        self._last_report = now
        self.runner._post(self, "progress", (fraction, text))

    def post(self, payload) -> None:
        """A partial result from the worker (e.g. one task of several finished), delivered to
        ``on_post(payload)`` on the kernel's loop, in order with everything else the job posts,
        and only while the job is current. Never throttled: use :meth:`report` for frequent
        progress."""
        self.runner._post(self, "post", payload)

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else ("cancelled" if self.cancelled else "running")
        return f"Job({self.name!r}, token={self.token}, {state})"


class JobRunner:
    """Runs background jobs one generation at a time (see the module docstring).

    ``copies``: a ModelCopies pool, for jobs started with ``needs_model=True``.
    ``progress_interval_s``: the least time between two progress deliveries of one job.
    """

    def __init__(self, copies=None, *, progress_interval_s: float = 0.25, name: str = "simviz-job"):
        self.copies = copies
        self.progress_interval_s = float(progress_interval_s)
        self.name = name
        self._token = 0
        self._current: Job | None = None
        self._callbacks: dict[int, dict[str, Callable | None]] = {}
        self._inbox: deque = deque()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        _RUNNERS.add(self)

    # -- state ---------------------------------------------------------------------------------
    @property
    def token(self) -> int:
        """The current generation: a job's outcome is applied only while its token equals this."""
        return self._token

    @property
    def current(self) -> Job | None:
        """The current job until its outcome is applied (None when idle)."""
        return self._current

    @property
    def running(self) -> bool:
        return self._current is not None

    # -- control -------------------------------------------------------------------------------
    def start(self, work: Callable[[Job], Any], *, on_result: Callable[[Any], None],
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[float | None, str], None] | None = None,
              on_cancelled: Callable[[BaseException], None] | None = None,
              on_post: Callable[[Any], None] | None = None,
              needs_model: bool = False, name: str = "") -> Job:
        """Supersede any current job and run ``work(job)`` in a new thread. Callbacks run on the
        kernel's event loop (or in :meth:`wait`), and only while the job is current:
        ``on_result(value)``, ``on_error(exception)``, ``on_progress(fraction, text)``,
        ``on_cancelled(exception)`` when the work itself stopped early (e.g. a method's
        ``ExplanationCancelled`` carrying a partial result) without being superseded,
        ``on_post(payload)`` for each :meth:`Job.post`."""
        if self._closed:
            raise RuntimeError("this job runner is closed (its widget or session was closed); it runs no more jobs")
        self.cancel()
        model = self.copies.acquire() if needs_model else None  # in this (the kernel's) thread
        self._token += 1
        job = Job(self, self._token, name or self.name, model, _running_loop())
        self._callbacks[job.token] = {"result": on_result, "error": on_error, "progress": on_progress,
                                      "cancelled": on_cancelled, "post": on_post}
        thread = threading.Thread(target=self._run, args=(job, work), name=f"{self.name}:{job.name}",
                                  daemon=True)
        job.thread = thread
        self._current = job
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job

    def cancel(self) -> bool:
        """Cancel and supersede the current job (its outcome will never be applied). Returns
        whether there was one."""
        job, self._current = self._current, None
        if job is None:
            return False
        job.cancel_event.set()
        self._callbacks.pop(job.token, None)
        self._token += 1
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job's thread ends, then deliver its outcome here. Returns
        False if it is still running after ``timeout`` seconds."""
        job = self._current
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
            if job.thread.is_alive():
                return False
        self.deliver()
        return True

    def join_all(self, timeout: float | None = None) -> bool:
        """Wait for every thread this runner started, superseded ones too (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        alive = any(t.is_alive() for t in self._threads)
        self.deliver()
        return not alive

    def close(self) -> None:
        self.cancel()
        self._closed = True
        with self._lock:
            self._inbox.clear()

    # -- delivery ------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Apply the outcomes posted by workers whose job is still current (kernel thread only)."""
        while True:
            with self._lock:
                if not self._inbox:
                    return
                job, kind, payload = self._inbox.popleft()
            if self._closed or job.token != self._token:
                continue  # superseded or cancelled: dropped
            callbacks = self._callbacks.get(job.token, {})
            if kind in ("progress", "post"):
                callback = callbacks.get(kind)
                if callback is not None and kind == "progress":
                    callback(*payload)
                elif callback is not None:
                    callback(payload)
                continue
            # A final outcome: the job is over once it is applied.
            self._current = None
            self._callbacks.pop(job.token, None)
            callback = callbacks.get(kind)
            if callback is not None:
                callback(payload)
            elif kind == "error":
                raise payload

    def _post(self, job: Job, kind: str, payload) -> None:
        with self._lock:
            self._inbox.append((job, kind, payload))
        loop = job.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.deliver)
            except RuntimeError:  # the loop closed in between: wait() delivers
                pass

    def _run(self, job: Job, work) -> None:
        try:
            try:
                value = work(job)
            except JobCancelled as stop:
                kind, value = "cancelled", stop
            except Exception as error:  # noqa: BLE001 - delivered to on_error on the kernel's loop
                kind, value = ("cancelled", error) if _is_cancellation(error) else ("error", error)
            else:
                kind = "result"
        finally:
            if job.model is not None and self.copies is not None:
                self.copies.release(job.model)
            job.done.set()
        self._post(job, kind, value)


def explain_in_job(job: Job, method_cls, options: dict, query, reference, *, label: str = ""):
    """Run explanation method ``method_cls`` with ``options`` on ``job.model`` and the prepared
    images, inside a job: no tqdm bar (the widget has its own), and where the method takes a
    ``cancel`` check, one that stops it at the job's cancel and reports the fraction of batches done
    (``job.report(fraction, label)``)."""
    options = dict(options)
    if "show_progress" in method_cls.options:
        options["show_progress"] = False
    explainer = method_cls(**options)
    if "cancel" not in method_cls.options:
        return explainer(job.model, query, reference)
    passes = explainer.passes(tuple(query.tensor.shape[-2:]), tuple(reference.tensor.shape[-2:]))
    batch = explainer.config.get("batch_size")
    batches = math.ceil(passes / batch) if passes and batch else None
    started = [0]

    def check() -> bool:  # the method calls it before each batch
        if batches:
            job.report(min(1.0, started[0] / batches), label)
        started[0] += 1
        return job.cancelled

    explainer.config["cancel"] = check
    return explainer(job.model, query, reference)


#: Every runner, so that worker threads are stopped and joined when the interpreter exits: a
#: daemon thread still inside torch at exit aborts the process ("terminate called without an
#: active exception").
_RUNNERS: "weakref.WeakSet[JobRunner]" = weakref.WeakSet()
EXIT_JOIN_TIMEOUT_S = 60.0


@atexit.register
def _stop_all_at_exit() -> None:
    runners = list(_RUNNERS)
    for runner in runners:
        runner.close()
    deadline = time.monotonic() + EXIT_JOIN_TIMEOUT_S
    for runner in runners:
        for thread in list(runner._threads):
            thread.join(max(0.0, deadline - time.monotonic()))


def _is_cancellation(error: BaseException) -> bool:
    from ..explain import ExplanationCancelled

    return isinstance(error, ExplanationCancelled)

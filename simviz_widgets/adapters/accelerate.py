"""Faster forward passes for the black-box methods: the embedding run by ONNX Runtime on the CPU.

RISE and sliding window embed hundreds to thousands of perturbed copies of one image. On a 2-core
CPU the default model (EfficientNet-Lite0, 224 px) costs ~11-15 ms per image in eager torch
(channels-last, inference mode) and ~4.3 ms in ONNX Runtime, whose CPU provider fuses each
convolution with its "same" padding and ReLU6 and runs the network in a blocked (NCHWc) layout;
RISE with 2000 masks goes from ~31 s to ~9 s (``benchmarks/bench_methods.py``, ``benchmarks/README.md``).

:class:`OnnxEmbedder` (image batch -> embeddings, like ``model.embed_tensor``):

* **export**: the model's embedding function (``model.embed_tensor``: the network up to the feature
  map, pooling, head, optional L2 normalisation) is traced with torch's TorchScript-based ONNX
  exporter, once per model and input size, for a static input of one image (a static shape lets
  ONNX Runtime fold timm's "same"-padding arithmetic into the convolutions; batched static exports
  measured no faster per image, a dynamic-batch export 1.5x slower).
* **running**: the images of a batch run ``torch.get_num_threads()`` at a time on pool threads, one
  single-threaded session call each (``PARALLEL_IMAGES``; one image at a time on that many intra-op
  threads measured slower, and much slower when other processes load the CPU: ONNX Runtime's pool
  spins between operators). :meth:`OnnxEmbedder.submit` returns at once, so RISE makes and sums its
  masks while the pool embeds the previous batch.
* **cache**: the exported file is kept in ``$SIMVIZ_ONNX_CACHE`` or else
  ``$XDG_CACHE_HOME/simviz_widgets/onnx`` (``~/.cache/simviz_widgets/onnx``), falling back to a
  temporary directory when that is not writable, named by a hash of the weights and buffers, the
  module structure, the pooling / head / metric, the input shape, the dtype and the torch version.
  Written to a temporary name and renamed, so concurrent processes never read half a file. Within
  a process the ONNX Runtime sessions are kept too (a few, least recently used dropped).
* **verification**: on its first use in a process a session's output is compared with eager torch on
  the caller's first batch; it must agree within ``TOLERANCE`` (1e-4, relative to the largest
  embedding value when that exceeds 1), else the cached file is deleted and the embedder falls back.
* **fallbacks**: ONNX Runtime not installed, a model that is not float32 or not on the CPU, the
  any-layer (gradient x input) mode, an export that fails or whose trace might not hold for other
  inputs (the model's own code converted a tensor to a Python value while being traced), a failed
  verification: with ``required=False`` (``accelerator='auto'``) the embedder warns once and runs
  eager torch — it never raises for these; with ``required=True`` (``accelerator='onnx'``) it raises
  :class:`AcceleratorError`. A model on a GPU or any device other than the CPU is not a fallback:
  ``'auto'`` runs it in eager torch on its device without a warning (``description`` says why).

Threads: background jobs each run on their own model copy; their embedders may share one session
(same weights, same key), which is safe: ``InferenceSession.run`` is thread-safe (ONNX Runtime
guarantees concurrent ``Run`` calls on one session) and releases the GIL. The pool's threads (one
per CPU, shared by all embedders) only run sessions: they never wait on each other, so concurrent
jobs queue their images there and cannot deadlock. Exports are serialised by a lock (the
TorchScript exporter keeps global state). Nothing here touches a widget.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .onnx_export import CACHE_ENV, EXPORT_BATCH, _Unavailable, cache_dir, export_embedding, model_key

__all__ = [
    "ACCELERATORS",
    "AcceleratorError",
    "OnnxEmbedder",
    "EagerEmbedder",
    "embedder",
    "cache_dir",
    "model_key",
    "export_embedding",
    "onnxruntime_available",
    "clear_sessions",
    "CACHE_ENV",
    "TOLERANCE",
]

#: Values of the perturbation methods' ``accelerator`` option.
ACCELERATORS = ("auto", "onnx", "eager")
#: Largest accepted |onnx - eager| on the verification batch, relative to max(1, max |eager|).
TOLERANCE = 1e-4
#: ONNX Runtime sessions kept in memory (least recently used dropped).
MAX_SESSIONS = 8
#: True: the images of a batch run ``torch.get_num_threads()`` at a time, each on one thread (a
#: single-threaded session, no intra-op thread pool); False: one image at a time on that many
#: intra-op threads. Images in parallel measured faster, and far less hurt by other processes
#: loading the CPU (no thread pool spinning between operators): benchmarks/bench_methods.py.
PARALLEL_IMAGES = True



class AcceleratorError(RuntimeError):
    """``accelerator='onnx'`` was asked for and ONNX Runtime cannot run this model (the reason)."""


# ------------------------------------------------------------------------------------------
# Environment


def onnxruntime_available() -> bool:
    """True when ``import onnxruntime`` works (any failure, not only ImportError, counts as no)."""
    try:
        _import_ort()
        return True
    except _Unavailable:
        return False


def _import_ort():
    try:
        import onnxruntime
    except Exception as err:  # noqa: BLE001 - a broken install fails in many ways
        raise _Unavailable(f"onnxruntime cannot be imported ({type(err).__name__}: {err}); "
                           "install it with `pip install onnxruntime`") from None
    return onnxruntime


# ------------------------------------------------------------------------------------------
# Sessions


@dataclass
class _Entry:
    session: Any
    input_name: str
    path: Path
    threads: int
    verified: bool = False


_SESSIONS: "OrderedDict[tuple[str, int], _Entry]" = OrderedDict()
_FAILED: dict[str, str] = {}  # key -> reason: not exported again in this process
_LOCK = threading.Lock()  # guards the two dicts
_FILE_LOCK = threading.Lock()  # held while a cache file is checked and written


def clear_sessions() -> None:
    """Forget the in-memory sessions and failures (files on disk stay)."""
    with _LOCK:
        _SESSIONS.clear()
        _FAILED.clear()


def _new_session(ort, path: Path, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _entry_for(model, size: tuple[int, int]) -> _Entry:
    """The (possibly cached) session for ``model`` at ``size``; raises _Unavailable."""
    ort = _import_ort()
    try:
        key = model_key(model, size)
    except Exception as err:  # noqa: BLE001 - e.g. quantised tensors
        raise _Unavailable(f"its weights cannot be hashed for the cache ({type(err).__name__}: {err})") from None
    threads = 1 if PARALLEL_IMAGES else max(1, torch.get_num_threads())  # intra-op threads
    with _LOCK:
        if key in _FAILED:
            raise _Unavailable(_FAILED[key])
        entry = _SESSIONS.get((key, threads))
        if entry is not None:
            _SESSIONS.move_to_end((key, threads))
            return entry
    try:
        path = cache_dir() / f"{key}.onnx"
        with _FILE_LOCK:  # one export per file in this process (others wait, then load it)
            if not path.exists():
                _export_to(model, path, size)
        try:
            session = _new_session(ort, path, threads)
        except Exception:  # noqa: BLE001 - a damaged cached file: export again, once
            with _FILE_LOCK:
                path.unlink(missing_ok=True)
                _export_to(model, path, size)
            session = _new_session(ort, path, threads)
    except _Unavailable as err:
        with _LOCK:
            _FAILED[key] = str(err)
        raise
    except Exception as err:  # noqa: BLE001 - ONNX Runtime refused the exported graph
        reason = f"ONNX Runtime cannot load the exported model ({type(err).__name__}: {str(err)[:300]})"
        with _LOCK:
            _FAILED[key] = reason
        raise _Unavailable(reason) from None
    entry = _Entry(session, session.get_inputs()[0].name, path, threads)
    with _LOCK:
        entry = _SESSIONS.setdefault((key, threads), entry)
        _SESSIONS.move_to_end((key, threads))
        while len(_SESSIONS) > MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    return entry


def _export_to(model, path: Path, size) -> None:
    """Export to a private temporary name in the cache directory, then rename (atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".onnx")
    os.close(fd)
    try:
        export_embedding(model, tmp, size)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_POOL = None


def _pool():
    """Threads that run images alongside the calling thread (shared by all embedders; one per CPU)."""
    global _POOL
    if _POOL is None:
        with _LOCK:
            if _POOL is None:
                from concurrent.futures import ThreadPoolExecutor

                _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                           thread_name_prefix="simviz-onnx")
    return _POOL


def _off_cpu(model) -> str | None:
    """Why a model is not on the CPU (its parameters or buffers live elsewhere), or None."""
    devices = {p.device.type for p in model.module.parameters()} | {b.device.type for b in model.module.buffers()}
    if devices - {"cpu"}:
        return f"the model is on {sorted(devices - {'cpu'})}; the accelerator runs on the CPU only"
    return None


def _model_unsupported(model) -> str | None:
    """Why the ONNX path is not tried for this model at all, or None."""
    if getattr(model, "decompose_layer", None):
        return (f"the model uses the any-layer mode (layer {model.decompose_layer!r}); "
                "the accelerator only runs models in the exact mode")
    if model.dtype != torch.float32:
        return f"the model is {model.dtype}; the accelerator runs float32 models only"
    return _off_cpu(model)


# ------------------------------------------------------------------------------------------
# Embedders


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside this module (the code that ran the embedder), as
    seen from the function calling this one."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _eager_embed(model) -> Callable[[torch.Tensor], torch.Tensor]:
    def embed(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.embed_tensor(batch)

    return embed


class EagerEmbedder:
    """``eager(batch)``, described like an :class:`OnnxEmbedder` (``accelerator='eager'``)."""

    accelerated = False

    def __init__(self, model, eager: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 reason: str = "accelerator='eager'"):
        self._eager = eager or _eager_embed(model)
        self.reason = reason

    @property
    def backend(self) -> str:
        return "eager"

    @property
    def description(self) -> str:
        return f"eager torch ({self.reason})"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self._eager(batch)

    def submit(self, batch: torch.Tensor) -> "_Done":
        """``self(batch)``, computed now, behind the :meth:`OnnxEmbedder.submit` interface."""
        return _Done(self(batch))


class _Done:
    """A result computed synchronously, behind the interface of :class:`_Running`."""

    def __init__(self, value: torch.Tensor):
        self._value = value

    def result(self) -> torch.Tensor:
        return self._value


class _Running:
    """Embeddings being computed by pool threads; :meth:`result` waits for them (and re-raises an
    error of theirs). Holds the input array until then."""

    def __init__(self, futures, outs: list, array: np.ndarray):
        self._futures, self._outs, self._array = futures, outs, array

    def result(self) -> torch.Tensor:
        for future in self._futures:
            future.result()
        outs = self._outs
        return torch.from_numpy(np.concatenate(outs) if len(outs) > 1 else outs[0])


class OnnxEmbedder:
    """Embeddings of image batches (B, 3, H, W) at one input ``size`` run by ONNX Runtime, with
    ``eager`` (default: ``model.embed_tensor`` in inference mode) as the fallback.

    Construction is cheap; the export (or the cached file) and the session are prepared on the
    first call, whose output is verified against ``eager``. ``required``: raise
    :class:`AcceleratorError` instead of warning and falling back. After a fallback every call runs
    ``eager``; ``backend`` is then 'eager' and ``reason`` says why. A batch of another size, dtype
    or device than the export runs ``eager`` (that call only).
    """

    def __init__(self, model, size: tuple[int, int], *, required: bool = False,
                 eager: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.model = model
        self.size = (int(size[0]), int(size[1]))
        self.required = bool(required)
        self._eager = eager or _eager_embed(model)
        self._entry: _Entry | None = None
        self._ready = False
        self.reason: str | None = None
        self.workers = 1  # images run at once (set when the session is opened)

    # -- state -------------------------------------------------------------------------
    @property
    def accelerated(self) -> bool:
        return self._entry is not None

    @property
    def backend(self) -> str:
        if not self._ready:
            return "pending"
        return "onnxruntime" if self._entry is not None else "eager"

    @property
    def description(self) -> str:
        if not self._ready:
            return "onnxruntime (not used yet)"
        if self._entry is None:
            return f"eager torch ({self.reason})"
        import onnxruntime

        how = (f"{self.workers} images at a time, 1 thread each" if self.workers > 1
               else f"{self._entry.threads} intra-op thread(s)")
        return f"onnxruntime {onnxruntime.__version__} CPU, {how}, exported embedding {self._entry.path.name[:12]}"

    def prepare(self) -> "OnnxEmbedder":
        """Export or load the model and open the session now (else on the first call)."""
        if not self._ready:
            self._ready = True
            reason = _model_unsupported(self.model)
            if reason is not None and not self.required and _off_cpu(self.model):
                # A model on a GPU (or any other device) runs eager torch there: the right path, not a
                # fallback, so no warning; the description says why (info['forward_passes']).
                self.reason = reason
                return self
            try:
                if reason is not None:
                    raise _Unavailable(reason)
                self._entry = _entry_for(self.model, self.size)
                self.workers = max(1, torch.get_num_threads()) if self._entry.threads == 1 else 1
            except _Unavailable as err:
                self._fall_back(str(err))
        return self

    def _fall_back(self, reason: str) -> None:
        self._entry = None
        self.reason = reason
        name = getattr(self.model, "name", "model")
        if self.required:
            raise AcceleratorError(f"accelerator='onnx' cannot run {name}: {reason}")
        warnings.warn(f"ONNX Runtime accelerator not used for {name}, running eager torch instead: {reason}",
                      RuntimeWarning, stacklevel=_caller_level())

    # -- running -----------------------------------------------------------------------
    def _start(self, batch: torch.Tensor) -> _Running:
        """Start ONNX Runtime on a (B, 3, H, W) float32 CPU batch: EXPORT_BATCH images per call, the
        calls shared among ``workers`` pool threads (``run`` releases the GIL)."""
        entry = self._entry
        array = np.ascontiguousarray(batch.detach().numpy())
        starts = list(range(0, array.shape[0], EXPORT_BATCH))
        outs: list = [None] * len(starts)
        workers = min(self.workers, len(starts))

        def work(first: int) -> None:
            for k in range(first, len(starts), workers):
                outs[k] = entry.session.run(None, {entry.input_name: array[starts[k] : starts[k] + EXPORT_BATCH]})[0]

        return _Running([_pool().submit(work, j) for j in range(workers)], outs, array)

    def _run_onnx(self, batch: torch.Tensor) -> torch.Tensor:
        """ONNX Runtime's embeddings of a batch (waits for them)."""
        return self._start(batch).result()

    def _refuse_non_finite(self, batch: torch.Tensor) -> None:
        """The eager path's check of non-finite values, in numpy (one thread: a torch reduction would
        wake its thread pool for every batch), raising the eager path's error."""
        if not np.isfinite(batch.detach().numpy()).all():
            self.model.check_tensor(batch)

    def _fits(self, batch: torch.Tensor) -> bool:
        return (isinstance(batch, torch.Tensor) and batch.ndim == 4 and batch.shape[1] == 3
                and tuple(batch.shape[-2:]) == self.size and batch.dtype == torch.float32
                and batch.device.type == "cpu" and batch.shape[0] % EXPORT_BATCH == 0)

    def submit(self, batch: torch.Tensor):
        """Start embedding ``batch``; ``.result()`` of the returned handle gives the embeddings. Once
        the session is verified the work runs on pool threads while the caller goes on (RISE
        prepares the next batch meanwhile); ``batch``'s memory must stay unchanged until
        ``.result()`` returns. Otherwise (first use, fallback) it is ``self(batch)``, computed now."""
        self.prepare()
        if self._entry is not None and self._entry.verified and self._fits(batch):
            self._refuse_non_finite(batch)
            return self._start(batch)
        return _Done(self(batch))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.prepare()
        if self._entry is None or not self._fits(batch):
            return self._eager(batch)
        self._refuse_non_finite(batch)
        out = self._run_onnx(batch)
        entry = self._entry
        if not entry.verified:
            reference = self._eager(batch)
            diff = float((out - reference).abs().max()) if out.shape == reference.shape else float("inf")
            scale = max(1.0, float(reference.abs().max()))
            if not diff <= TOLERANCE * scale:  # NaN fails too
                with _LOCK:
                    for k, v in list(_SESSIONS.items()):
                        if v is entry:
                            del _SESSIONS[k]
                            _FAILED[k[0]] = f"its output differs from eager torch by {diff:.3g}"
                entry.path.unlink(missing_ok=True)
                self._fall_back(f"the exported model's output differs from eager torch by {diff:.3g} "
                                f"(tolerance {TOLERANCE:g} x {scale:.3g})")
                return reference
            entry.verified = True
        return out


def embedder(model, size: tuple[int, int], accelerator: str = "auto", *,
             eager: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """The batch -> embeddings function the perturbation methods call for images of ``size``:
    'auto' an :class:`OnnxEmbedder` that falls back to ``eager`` with a warning, 'onnx' one that
    raises :class:`AcceleratorError` instead, 'eager' ``eager`` itself (an :class:`EagerEmbedder`)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator={accelerator!r} is not one of {list(ACCELERATORS)}")
    if accelerator == "eager":
        return EagerEmbedder(model, eager)
    return OnnxEmbedder(model, size, required=accelerator == "onnx", eager=eager)

"""Exporting a similarity model's embedding to ONNX, and the on-disk cache of exported files.

:func:`export_embedding` traces ``model.embed_tensor`` with torch's TorchScript-based exporter for
a static input shape; :func:`cache_dir` and :func:`model_key` name where the file is kept (a hash of
the weights and buffers, the module structure, pooling / head / metric, the input shape, the dtype
and the torch version). Used by :mod:`simviz_widgets.adapters.accelerate`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["CACHE_ENV", "OPSET", "EXPORT_BATCH", "cache_dir", "model_key", "export_embedding"]

#: Environment variable naming the directory of exported models.
CACHE_ENV = "SIMVIZ_ONNX_CACHE"
#: ONNX opset of the export (ONNX Runtime >= 1.14 runs it).
OPSET = 17
#: Images per exported call (static shape); a batch of B runs as B / EXPORT_BATCH calls.
EXPORT_BATCH = 1
_FORMAT = "simviz-onnx-embedding-v1"  # bump when the export changes
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


class _Unavailable(Exception):
    """Internal: why the ONNX path cannot be used (becomes a warning or an AcceleratorError)."""


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_dir() -> Path:
    """Where exported models are kept: ``$SIMVIZ_ONNX_CACHE``, else
    ``$XDG_CACHE_HOME/simviz_widgets/onnx`` (default ``~/.cache/simviz_widgets/onnx``); a
    per-user temporary directory when that is not writable."""
    override = os.environ.get(CACHE_ENV)
    if override:
        preferred = Path(override).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        preferred = Path(base) / "simviz_widgets" / "onnx"
    if _writable(preferred):
        return preferred
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    fallback = Path(tempfile.gettempdir()) / f"simviz_widgets-onnx-{user}"
    if _writable(fallback):
        return fallback
    raise _Unavailable(f"no writable cache directory for exported models ({preferred}, {fallback}); "
                       f"set {CACHE_ENV}")


# ------------------------------------------------------------------------------------------
# Key and export


def _hash_tensor(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def model_key(model, size: tuple[int, int]) -> str:
    """Hash naming the export of ``model``'s embedding at input ``size`` = (H, W): the weights and
    buffers (any memory format: channels-last copies share it), each module's type and settings,
    the pooling, head and normalisation, the dtype, the torch version and the export format."""
    h = hashlib.blake2b(digest_size=20)

    def add(text: str) -> None:
        h.update(text.encode())
        h.update(b"\0")

    add(f"{_FORMAT} torch={torch.__version__} opset={OPSET} batch={EXPORT_BATCH} "
        f"size={int(size[0])}x{int(size[1])} dtype={model.dtype}")
    add(repr(sorted(model.describe().items())))
    add(repr(model.pooling))
    add(f"head_kind={model.head_kind} normalized={model.output_normalized}")
    owners = [("module", model.module)]
    if isinstance(model.head, nn.Module):
        owners.append(("head", model.head))
    for label, owner in owners:
        for name, sub in owner.named_modules():
            kind = type(sub)
            add(f"{label}.{name}:{kind.__module__}.{kind.__qualname__}({sub.extra_repr()})")
        for name, tensor in owner.state_dict(keep_vars=True).items():
            _hash_tensor(h, f"{label}.{name}", tensor)
    for name in ("head_weight", "head_bias"):
        tensor = getattr(model, name, None)
        if isinstance(tensor, torch.Tensor):
            _hash_tensor(h, name, tensor)
    return h.hexdigest()


class _Embedding(nn.Module):
    """``model.embed_tensor`` as a module (the network and head registered, so their parameters
    are traced as parameters)."""

    def __init__(self, model):
        super().__init__()
        self.network = model.module
        if isinstance(model.head, nn.Module):
            self.head = model.head
        self._model = model

    def forward(self, x):
        return self._model.embed_tensor(x)


_EXPORT_LOCK = threading.Lock()


def export_embedding(model, path, size: tuple[int, int], batch: int = EXPORT_BATCH, *,
                     dynamic_batch: bool = False) -> None:
    """Export ``model.embed_tensor`` for a (batch, 3, H, W) input to the ONNX file ``path``
    (TorchScript-based exporter, opset ``OPSET``). Raises :class:`_Unavailable` when the export
    fails, or when the model's own code converted a tensor to a Python value during the trace
    (data-dependent Python control flow would be frozen into the graph). The modules' train / eval
    modes are left as they were."""
    wrapper = _Embedding(model).eval()  # exporter restores the wrapper's mode: keep it eval
    modes = [(m, m.training) for m in wrapper.modules()]
    x = torch.zeros((batch, 3, int(size[0]), int(size[1])), dtype=model.dtype)
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"image": {0: "batch"}, "embedding": {0: "batch"}}
    with _EXPORT_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.onnx.export(wrapper, (x,), str(path), dynamo=False, input_names=["image"],
                                  output_names=["embedding"], opset_version=OPSET, do_constant_folding=True,
                                  **kwargs)
        except Exception as err:  # noqa: BLE001 - any exporter failure means: run eager
            raise _Unavailable(f"torch.onnx.export failed ({type(err).__name__}: {str(err)[:300]})") from None
        finally:
            for m, mode in modes:
                m.training = mode
    risky = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)
             and not str(w.filename).startswith(_PACKAGE_DIR)]
    for w in caught:  # warnings of other kinds (another thread's too) are not swallowed
        if not issubclass(w.category, (torch.jit.TracerWarning, DeprecationWarning, FutureWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if risky:
        w = risky[0]
        raise _Unavailable(
            f"the model's code converts a tensor to a Python value while traced "
            f"({os.path.basename(str(w.filename))}:{w.lineno}: {str(w.message).splitlines()[0][:120]}); "
            "an exported graph might not hold for other inputs"
        )

"""The gallery's cache: float32 embeddings in a ``.npy`` file (memory-mapped when large) and a
``.json`` record of what made them, which names that file: writing the record is the one atomic
commit point, so an interrupted build never pairs one model's record with another's rows, and the
rows it replaces are deleted after it.

The file name is keyed by the model (name, layer, pooling, head, metric), its preprocessing and the
list of item references; the record holds a fingerprint of the weights and one per item. A record
whose weights differ is stale and rebuilt whole; items whose fingerprint changed (a file edited, an
array changed) are embedded again and the rest reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import torch

__all__ = ["default_cache_dir", "model_identity", "weights_fingerprint", "cache_stem", "read_cache",
           "open_rows", "commit_cache", "MMAP_BYTES"]

#: Galleries whose embeddings file is larger than this are memory-mapped, not read into memory.
MMAP_BYTES = 256 * 2**20
FORMAT = 1


def default_cache_dir() -> Path:
    """``$SIMVIZ_CACHE/galleries`` or ``~/.cache/simviz_widgets/galleries``."""
    root = os.environ.get("SIMVIZ_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "simviz_widgets")
    return Path(root) / "galleries"


def model_identity(model) -> dict:
    """What decides an embedding apart from the weights: the model's description and preprocessing."""
    return {"describe": {k: str(v) for k, v in model.describe().items()},
            "preprocess": {k: str(v) for k, v in dataclasses.asdict(model.preprocess).items()},
            "dtype": str(model.dtype)}


def weights_fingerprint(model) -> str:
    """sha1 of every parameter and buffer (names, shapes, bytes): a retrained model is a new model."""
    h = hashlib.sha1()
    modules = [("module", model.module)] + ([("head", model.head)] if model.head is not None else [])
    for prefix, module in modules:
        for name, t in list(module.state_dict().items()):
            if not isinstance(t, torch.Tensor):
                continue
            h.update(f"{prefix}.{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_stem(model, references: list[str]) -> str:
    key = json.dumps([model_identity(model), references], sort_keys=True)
    return f"{model.name}-{hashlib.sha1(key.encode()).hexdigest()[:20]}".replace(os.sep, "_")


def read_cache(folder: Path, stem: str, weights: str, dim: int) -> tuple[np.ndarray | None, dict]:
    """(rows, record) of a usable cache, or (None, {"reason": ...}) when there is none or it is stale.
    The record is the commit point: it names the rows file written before it."""
    record_path = folder / f"{stem}.json"
    if not record_path.is_file():
        return None, {"reason": "no cache yet"}
    try:
        record = json.loads(record_path.read_text())
        if record.get("format") != FORMAT:
            return None, {"reason": "old format"}
        rows = np.load(folder / record["rows"], mmap_mode="r")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, {"reason": f"unreadable cache ({error})"}
    if record.get("weights") != weights:
        return None, {"reason": "the model's weights changed"}
    if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape != (len(record.get("fingerprints", ())), dim):
        return None, {"reason": "cache file does not match its record"}
    return rows, record


def _token() -> str:
    return uuid.uuid4().hex[:12]


def open_rows(folder: Path, stem: str, count: int, dim: int) -> tuple[np.ndarray, Path]:
    """A new float32 (count, dim) array to fill and its in-progress file (a ``.part`` name no
    cleanup touches; a new one per build): memory-mapped when large, so a gallery beyond memory is
    written as it is embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{stem}.{_token()}.part"
    if count * dim * 4 > MMAP_BYTES:
        return np.lib.format.open_memmap(part, mode="w+", dtype=np.float32, shape=(count, dim)), part
    return np.empty((count, dim), dtype=np.float32), part


def commit_cache(folder: Path, stem: str, rows: np.ndarray, part: Path, record: dict) -> tuple[np.ndarray, Path]:
    """Finish ``rows`` as ``<stem>.<token>.npy``, then atomically replace the record (a temporary
    file renamed: the commit point) naming it, then delete the rows the replaced record named. A
    build killed at any point leaves the previous record and its rows intact; builds running at once
    never delete each other's files in progress. Returns the rows (memory-mapped when large) and
    their file."""
    if isinstance(rows, np.memmap):
        rows.flush()
        del rows
    else:
        with open(part, "wb") as handle:  # a file object: np.save adds no ".npy" to the name
            np.save(handle, rows)
    path = folder / f"{stem}.{_token()}.npy"
    os.replace(part, path)
    record_path = folder / f"{stem}.json"
    try:
        replaced = json.loads(record_path.read_text()).get("rows")
    except (OSError, ValueError, AttributeError):
        replaced = None
    record_tmp = folder / f".{stem}.{_token()}.json.tmp"
    record_tmp.write_text(json.dumps(dict(record, format=FORMAT, rows=path.name)))
    os.replace(record_tmp, record_path)
    if isinstance(replaced, str) and replaced != path.name and "/" not in replaced:
        (folder / replaced).unlink(missing_ok=True)  # a reader that mapped it keeps its pages (POSIX)
    return load_rows(path), path


def load_rows(path: Path) -> np.ndarray:
    if path.stat().st_size > MMAP_BYTES:
        return np.load(path, mmap_mode="r")
    return np.load(path)

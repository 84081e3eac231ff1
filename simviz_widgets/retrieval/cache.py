"""The gallery's cache: float32 embeddings in a ``.npy`` file (memory-mapped when large) and a
``.json`` record of what made them, which names that file: writing the record is the one atomic
commit point, so an interrupted build never pairs one model's record with another's rows.

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


def _unique(folder: Path, stem: str, suffix: str) -> Path:
    return folder / f"{stem}.{uuid.uuid4().hex[:12]}{suffix}"


def open_rows(folder: Path, stem: str, count: int, dim: int) -> tuple[np.ndarray, Path]:
    """A new float32 (count, dim) array to fill and the file it will be saved as (a new name per
    build, so a build never overwrites rows another record names): memory-mapped when large, so a
    gallery beyond memory is written as it is embedded."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _unique(folder, stem, ".npy")
    if count * dim * 4 > MMAP_BYTES:
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dim)), path
    return np.empty((count, dim), dtype=np.float32), path


def commit_cache(folder: Path, stem: str, rows: np.ndarray, path: Path, record: dict) -> np.ndarray:
    """Save ``rows`` to ``path``, then atomically replace the record (a temporary file renamed: the
    commit point) naming it, then delete the rows files no record names any more. A build killed
    at any point leaves the previous record and its rows intact. Returns the rows, memory-mapped
    from the file when large."""
    if isinstance(rows, np.memmap):
        rows.flush()
        del rows
    else:
        np.save(path, rows)
    record_tmp = _unique(folder, f".{stem}", ".json.tmp")
    record_tmp.write_text(json.dumps(dict(record, format=FORMAT, rows=path.name)))
    os.replace(record_tmp, folder / f"{stem}.json")
    for old in folder.glob(f"{stem}.*.npy"):
        if old != path:
            old.unlink(missing_ok=True)  # a reader that mapped it keeps its pages (POSIX)
    return load_rows(path)


def load_rows(path: Path) -> np.ndarray:
    if path.stat().st_size > MMAP_BYTES:
        return np.load(path, mmap_mode="r")
    return np.load(path)

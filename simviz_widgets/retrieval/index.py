"""Top-k by one inner product, whatever the metric, and the backends that compute it.

Every metric's region score is an inner product ``a_Y . q`` plus a constant per query
(docs/retrieval.md, "Scores"), so a backend only finds the k largest ``a_Y . q`` (the numpy index
multiplies the embeddings and applies the per-row factor after; faiss stores the rows ``a_Y``):

* cosine: ``a_Y = g_Y / |g_Y|``, ``q = g_R / |g_X|``
* dot: ``a_Y = g_Y``, ``q = g_R``
* Euclidean (similarity -|g_X - g_Y|^2): ``a_Y = [g_Y, |g_Y|^2]``, ``q = [2 g_R, -f]`` with
  ``f = sum(w) / N``, plus the constant ``-g_R . g_X``.

Backends: numpy (exact, chunked so a memory-mapped gallery streams from disk), faiss ``IndexFlatIP``
(exact) and a faiss IVF index (approximate, ``nprobe`` lists searched; with ``pq=`` the vectors are
stored as product-quantised codes, for galleries beyond memory). The flat index searches one query
with one thread: it is slower multithreaded (100k x 1280 on 2 cores: 38 ms with 1 thread, 66 ms with
2; benchmarks/README.md); an IVF query reads a few lists and keeps faiss's own threads.
"""

from __future__ import annotations

import numpy as np

from ..checks import InputError, check_choice, check_int

__all__ = ["BACKENDS", "index_rows", "top_k", "NumpyIndex", "FaissIndex", "make_index"]

BACKENDS = ("numpy", "faiss-flat", "faiss-ivf")
_CHUNK_ROWS = 65536  # rows per matrix-vector block: bounded memory on a memory-mapped gallery


def index_rows(embeddings: np.ndarray, metric: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """The rows ``a_Y`` (float32) of ``embeddings[start:stop]`` for ``metric``."""
    g = np.asarray(embeddings[start:stop], dtype=np.float32)
    # squared norms accumulated in float64 without a float64 copy of the rows (100k x 1280: 1 GB)
    sq = np.einsum("nd,nd->n", g, g, dtype=np.float64)
    if metric == "cosine":
        norms = np.sqrt(sq)
        # torch's cosine_similarity convention: an all-zero embedding scores 0 against everything
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 1e-12)
        return g * scale.astype(np.float32)[:, None]
    if metric == "dot":
        return g
    return np.concatenate([g, sq[:, None].astype(np.float32)], axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (ties: lower index first)."""
    k = min(k, scores.shape[0])
    if k == scores.shape[0]:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]


class NumpyIndex:
    """Exact: one matrix-vector product per query over the embeddings themselves (a memory map
    streams in blocks); the metric's part of ``a_Y`` — cosine's 1 / abs(g_Y), Euclidean's abs(g_Y)^2 — is
    one number per row, kept apart, so no second copy of the gallery is made."""

    name = "numpy"

    def __init__(self, embeddings: np.ndarray, metric: str):
        self.metric = metric
        self.size, self.dim = embeddings.shape
        self._embeddings = embeddings
        sq = np.empty(self.size, dtype=np.float64)
        for start, stop in self._blocks():
            block = np.asarray(embeddings[start:stop], dtype=np.float32)
            sq[start:stop] = np.einsum("nd,nd->n", block, block, dtype=np.float64)
        self._sq = sq
        norms = np.sqrt(sq)
        # torch's cosine_similarity convention: an all-zero embedding scores 0 against everything
        self._inverse_norm = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 1e-12)

    def _blocks(self):
        # in memory: one product; memory-mapped: blocks of rows, so memory stays bounded
        step = _CHUNK_ROWS if isinstance(self._embeddings, np.memmap) else max(self.size, 1)
        return ((start, min(start + step, self.size)) for start in range(0, self.size, step))

    def scores(self, q: np.ndarray) -> np.ndarray:
        """(N,) float64 ``a_Y . q`` for every row (the product in float32, the rest in float64)."""
        head = np.ascontiguousarray(q[:self.dim], dtype=np.float32)
        out = np.empty(self.size, dtype=np.float64)
        for start, stop in self._blocks():
            out[start:stop] = np.asarray(self._embeddings[start:stop], dtype=np.float32) @ head
        if self.metric == "cosine":
            out *= self._inverse_norm
        elif self.metric == "euclidean":
            out += self._sq * float(q[self.dim])
        return out

    def exact(self, indices: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``a_Y . q`` of rows ``indices`` all in float64 (a Euclidean score cancels large terms:
        float32 products would leave ~1e-4 of them on a self-match)."""
        rows = np.asarray(self._embeddings[indices], dtype=np.float64)
        out = rows @ np.asarray(q[:self.dim], dtype=np.float64)
        if self.metric == "cosine":
            return out * self._inverse_norm[indices]
        if self.metric == "euclidean":
            return out + self._sq[indices] * float(q[self.dim])
        return out

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(q)
        idx = top_k(s, k)
        return idx.astype(np.int64), s[idx]


def _faiss():
    try:
        import faiss
    except ImportError as error:  # optional dependency
        raise ImportError("the faiss backends need faiss-cpu: pip install 'simviz_widgets[faiss]'") from error
    return faiss


class FaissIndex:
    """faiss inner-product index over the same rows: 'faiss-flat' (exact ``IndexFlatIP``) or
    'faiss-ivf' (``IVF{nlist},Flat``, or ``IVF{nlist},PQ{pq}`` codes; trained on the gallery)."""

    def __init__(self, embeddings: np.ndarray, metric: str, kind: str = "faiss-flat", *,
                 nlist: int | None = None, nprobe: int | None = None, pq: int | None = None, seed: int = 0):
        faiss = _faiss()
        self.name, self.metric, self.size = kind, metric, embeddings.shape[0]
        dim = index_rows(embeddings, metric, 0, 1).shape[1]
        if kind == "faiss-flat":
            given = [n for n, v in (("nlist", nlist), ("nprobe", nprobe), ("pq", pq)) if v is not None]
            if given:
                raise InputError(f"backend 'faiss-flat' takes no {', '.join(given)}; those are options of 'faiss-ivf'")
            self.index = faiss.IndexFlatIP(dim)
        else:
            # faiss's rule of thumb, 4 sqrt(N) lists, with at least 39 training points per list
            nlist = nlist if nlist is not None else max(1, min(4096, int(4 * np.sqrt(self.size)), self.size // 39))
            nlist = check_int(nlist, "nlist", minimum=1, maximum=self.size)
            codes = "Flat" if pq is None else f"PQ{check_int(pq, 'pq', minimum=1)}"
            if pq is not None and dim % pq:
                raise InputError(f"pq={pq} does not divide the index dimension {dim}; expected a divisor")
            self.index = faiss.index_factory(dim, f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
            # faiss asks for 39-256 training points per list; 64 per list, at most 200k, is plenty
            count = min(self.size, 64 * nlist, 200_000)
            sample = np.sort(np.random.default_rng(seed).choice(self.size, count, replace=False))
            self.index.train(index_rows(embeddings[sample], metric))
            self.index.nprobe = 16 if nprobe is None else check_int(nprobe, "nprobe", minimum=1)
        for start in range(0, self.size, _CHUNK_ROWS):
            self.index.add(index_rows(embeddings, metric, start, min(start + _CHUNK_ROWS, self.size)))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        if self.name == "faiss-flat":
            faiss.omp_set_num_threads(1)  # one query over every row: slower multithreaded
        try:
            scores, idx = self.index.search(np.ascontiguousarray(q[None], dtype=np.float32), min(k, self.size))
        finally:
            faiss.omp_set_num_threads(threads)
        keep = idx[0] >= 0  # IVF may find fewer than k in the lists it searched
        return idx[0][keep].astype(np.int64), scores[0][keep].astype(np.float64)


def make_index(embeddings: np.ndarray, metric: str, backend: str = "numpy", **options):
    backend = check_choice(backend, "backend", BACKENDS)
    if backend == "numpy":
        if options:
            raise InputError(f"backend 'numpy' takes no options; got {sorted(options)}")
        return NumpyIndex(embeddings, metric)
    return FaissIndex(embeddings, metric, backend, **options)

"""A query decomposed once, searched by any region of it without running the model again.

The query's per-cell contributions ``e_i`` (``sum_i e_i = g_X``, the decomposition of
Zhu et al., IEEE TIP 2021) give a region R with cell weights ``w_i`` the partial embedding
``g_R = sum_i w_i e_i``; its score against gallery item Y is the sum of the decomposition's
``D(i, j)`` over the region's rows (docs/retrieval.md, "Scores"):

* cosine: ``g_R . g_Y / (|g_X| |g_Y|)`` — ranks like ``cos(g_R, g_Y)``;
* dot: ``g_R . g_Y``;
* Euclidean (similarity ``-|g_X - g_Y|^2``): ``2 g_R . g_Y - f |g_Y|^2 - g_R . g_X`` with
  ``f = sum(w) / N`` — ranks by the distance of g_Y to ``g_R / f``, the region scaled to a whole image.

With no region it is the model's own score of the two images.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ..checks import InputError, check_int, check_sequence
from ..explain.decomposition import position_contributions
from ..images import PreparedImage
from .index import top_k
from .regions import region_weights

__all__ = ["QueryDecomposition", "SearchResults"]


class QueryDecomposition:
    """The query's contributions (one forward pass); :meth:`search` re-ranks by any region."""

    def __init__(self, gallery, prepared: PreparedImage):
        self.gallery = gallery
        self.prepared = prepared
        found = position_contributions(gallery.model, prepared.tensor, bias=True, show_progress=False)
        self.contributions = found["E"].numpy()  # (N, D) float64, rows sum to g
        self.embedding = found["g"].numpy()
        self.grid = tuple(found["grid"])
        self._rankings: dict = {}

    @property
    def size(self) -> tuple[int, int]:
        """(rows, cols) of the query's display: the pixels a region is given in."""
        return self.prepared.size

    def weights(self, region=None, *, coords: str = "display") -> np.ndarray | None:
        """(h, w) cell weights of ``region`` (None: the whole image); see :func:`region_weights`."""
        return region_weights(region, self.prepared, self.grid, coords=coords)

    def region_embedding(self, weights: np.ndarray | None) -> np.ndarray:
        """``g_R = sum_i w_i e_i`` (float64); the embedding itself for the whole image."""
        return self.embedding if weights is None else weights.reshape(-1) @ self.contributions

    def _vector(self, weights) -> tuple[np.ndarray, float]:
        """(q, c): the region score of item Y is ``a_Y . q + c`` (retrieval/index.py)."""
        g_r = self.region_embedding(weights)
        metric = self.gallery.model.metric
        if metric == "cosine":
            norm = float(np.linalg.norm(self.embedding))
            return (g_r / norm if norm > 1e-12 else np.zeros_like(g_r)), 0.0
        if metric == "dot":
            return g_r, 0.0
        f = 1.0 if weights is None else float(weights.sum()) / weights.size
        return np.concatenate([2.0 * g_r, [-f]]), -float(g_r @ self.embedding)

    def scores(self, region=None, *, coords: str = "display", weights=None) -> np.ndarray:
        """(N,) float64 region scores of every gallery item (exact: the numpy backend)."""
        w = self.weights(region, coords=coords) if weights is None else weights
        q, c = self._vector(w)
        return self.gallery.exact_index.scores(q) + c

    def ranking(self, region=None, *, coords: str = "display", weights=None) -> np.ndarray:
        """Every gallery index, best first, for ``region`` (or cell ``weights``; the last few cached)."""
        w = self.weights(region, coords=coords) if weights is None else weights
        key = None if w is None else w.tobytes()
        if key not in self._rankings:
            if len(self._rankings) >= 8:
                self._rankings.pop(next(iter(self._rankings)))
            q, c = self._vector(w)
            self._rankings[key] = top_k(self.gallery.exact_index.scores(q) + c, len(self.gallery))
        return self._rankings[key]

    def search(self, region=None, *, k: int = 10, exclude=(), coords: str = "display") -> "SearchResults":
        """The top ``k`` gallery items for ``region`` with the gallery's backend; ``exclude``:
        gallery indices to leave out (e.g. the query itself). The hits come in the backend's order
        (float32 products, like :meth:`ranking`); their scores are computed again in float64 from
        the stored embeddings."""
        k = check_int(k, "k", minimum=1)
        exclude = _check_exclude(exclude, len(self.gallery))
        w = self.weights(region, coords=coords)
        q, c = self._vector(w)
        idx, _ = self.gallery.index.search(q, min(k + len(exclude), len(self.gallery)))
        idx = np.array([i for i in idx if i not in exclude][:k], dtype=np.int64)
        # The order is the backend's (float32 products, as ranking() and the rank changes use: a
        # re-sort here would make a whole-image query show rank changes among near-duplicates); the
        # scores shown are float64.
        s = self.gallery.exact_index.exact(idx, q) + c
        if w is None and self.gallery.model.metric == "euclidean":
            s = np.minimum(s, 0.0)  # -distance^2: a self-match is 0, never a rounding above it
        return SearchResults(indices=idx, scores=s, names=self.gallery.names_of(idx), region_weights=w,
                             query=self, backend=self.gallery.index.name, exclude=frozenset(exclude))

    def crop(self, box) -> np.ndarray:
        """The crop-and-embed baseline's input: the smallest square around ``box`` (display pixels)
        inside the query's display, so the model's centre crop keeps all of it."""
        from .regions import check_box

        top, left, bottom, right = check_box(box, self.size)
        rows, cols = self.size
        side = min(max(bottom - top, right - left), rows, cols)
        cr, cc = (top + bottom) / 2, (left + right) / 2
        t = int(round(min(max(cr - side / 2, 0), rows - side)))
        lft = int(round(min(max(cc - side / 2, 0), cols - side)))
        side = int(round(side))
        return self.prepared.display[t:t + side, lft:lft + side].copy()


@dataclass(frozen=True, eq=False)
class SearchResults:
    """Top-k gallery items of one query and region, best first."""

    indices: np.ndarray
    scores: np.ndarray
    names: list[str]
    region_weights: np.ndarray | None
    query: QueryDecomposition = field(repr=False)
    backend: str = "numpy"
    exclude: frozenset = frozenset()

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        """(rank, gallery index, score), rank 0 = best."""
        return iter(zip(range(len(self)), self.indices.tolist(), self.scores.tolist()))

    def to_figure(self, **options):
        """The query with its region and the hits with their overlays (see
        :func:`~simviz_widgets.retrieval.figure.results_figure` for the options)."""
        from .figure import results_figure

        return results_figure(self, **options)

    def _ranking(self, whole_image: bool) -> np.ndarray:
        ranking = self.query.ranking(weights=None if whole_image else self.region_weights)
        return ranking[~np.isin(ranking, list(self.exclude))] if self.exclude else ranking

    def rank_of(self, index: int, *, whole_image: bool = False) -> int:
        """0-based rank of gallery item ``index`` in the full ranking of this region (or, with
        ``whole_image``, of the whole query), the excluded items left out: rank changes are
        ``whole - region``."""
        ranking = self._ranking(whole_image)
        found = np.flatnonzero(ranking == index)
        if isinstance(index, bool) or not found.size:
            raise InputError(f"index {index!r} is not a gallery item of this search (0..{len(self.query.gallery) - 1}, "
                             f"excluded {sorted(self.exclude)})")
        return int(found[0])

    def rank_changes(self) -> np.ndarray:
        """(k,) how many places each result moved up against the whole-image query (0 for it),
        both rankings without the excluded items."""
        whole = self._ranking(True)
        position = np.full(len(self.query.gallery), -1, dtype=np.int64)
        position[whole] = np.arange(len(whole))
        return position[self.indices] - np.arange(len(self))


def _check_exclude(exclude, size: int) -> set[int]:
    """Gallery indices to leave out: None, one index or a sequence of them."""
    if exclude is None:
        return set()
    if isinstance(exclude, numbers.Integral) and not isinstance(exclude, (bool, np.bool_)):
        exclude = (exclude,)
    return set(check_sequence(exclude, "exclude", lambda v, label: check_int(v, label, minimum=0, maximum=size - 1),
                              empty=True))

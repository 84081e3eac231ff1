"""What a retrieval explorer shows, without any widget: the query, its region, the top-k results
with their rank change against the whole-image query, the overlays of the results on show and
which result is open (docs/retrieval.md).

Re-ranking by a region is one matrix-vector product over the stored embeddings
(:meth:`~simviz_widgets.retrieval.QueryDecomposition.search`), done at once. An overlay needs the
decomposition of the pair (query, hit), a forward pass of the hit: :func:`overlay_job` computes
them in a background job of :class:`~simviz_widgets.widgets.jobs.JobRunner`, for the results on
show only, on the job's model copy, and each lands through :meth:`RetrievalState.apply_overlay`,
which keeps it only for the query and region it was computed for (``key``): a fast change of
region or query never shows a stale overlay. Explanations do not depend on the region, so they are
kept per query: going back to a region, or a region whose hits were explained before, needs no
model run (the region's map of a known explanation is a product computed here).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from ..checks import InputError, check_int, check_mask
from ..explain import get_method
from ..explain.base import PairExplanation
from ..render import default_cmap
from ..retrieval import Gallery, QueryDecomposition, SearchResults, region_reference_map
from ..retrieval.regions import box_mask, check_box
from ..web.scales import ColourScale

__all__ = ["RetrievalState", "ResultRow", "overlay_job", "explain_hit", "change_text", "OVERLAY_MEANING"]

OVERLAY_MEANING = {
    "region": ("each result's cells that answered the region: Σ over the region's query cells of D(i, j) "
               "(sums to the result's score)"),
    "whole": "each result's cells that answered the query: its overall map, Σ_i D(i, j) (sums to its score)",
}
#: Explanations kept per query (an LRU beyond the k on show: paging back through regions reuses them).
EXPLANATIONS_KEPT = 48
#: The most results on show: each is a card with its thumbnail, overlay (a model run) and click handler.
MAX_K = 48


class ResultRow(NamedTuple):
    """One result on show: ``rank`` (0 = best) for the region, gallery ``index``, ``name``,
    ``score``, ``whole_rank`` (0-based rank for the whole query), ``change`` (``whole_rank - rank``:
    places moved up by the region) and ``new`` (it was outside the whole query's top k)."""

    rank: int
    index: int
    name: str
    score: float
    whole_rank: int
    change: int
    new: bool


def change_text(row: ResultRow, k: int) -> str:
    """The rank change against the whole-image query: ▲3, ▼2, = or "new (was #14)"."""
    if row.new:
        return f"new (was #{row.whole_rank + 1})"
    if row.change > 0:
        return f"▲{row.change}"
    if row.change < 0:
        return f"▼{-row.change}"
    return "="


def region_key(region) -> tuple:
    """A hashable name of a region: ('whole',), ('box', box) or ('mask', digest of its pixels)."""
    if region is None:
        return ("whole",)
    kind, value = region
    if kind == "box":
        return ("box", tuple(value))
    packed = np.packbits(value, axis=None).tobytes()
    return ("mask", value.shape, hashlib.sha1(packed).hexdigest())


def explain_hit(model, query: QueryDecomposition, gallery: Gallery, index: int) -> PairExplanation:
    """The decomposition of (query, gallery item ``index``) with ``model`` (a job's copy of the
    gallery's model): what ``gallery.explain(query, index)`` gives, without the user's module."""
    explainer = get_method("decomposition")()
    return explainer(model, query.prepared, gallery.prepared(index))


def overlay_job(gallery: Gallery, query: QueryDecomposition, indices: list[int], weights, key: tuple, job) -> int:
    """A background job's work: for each gallery index (results on show, best first) its
    explanation and the region's map on it, posted one by one as ``(key, index, explanation, map)``."""
    for done, index in enumerate(indices):
        job.check()
        explanation = explain_hit(job.model, query, gallery, index)
        job.post((key, index, explanation, region_reference_map(explanation, weights)))
        job.report((done + 1) / len(indices), f"{done + 1}/{len(indices)}")
    return len(indices)


class RetrievalState:
    """Query, region, results, overlays and open result of a retrieval explorer (module docstring).

    ``gallery``: a :class:`~simviz_widgets.retrieval.Gallery`; ``k``: how many results are shown
    (1 to :data:`MAX_K`; at most the gallery's size, less the query itself when it is a gallery item).
    """

    def __init__(self, gallery: Gallery, *, k: int = 8):
        if not isinstance(gallery, Gallery):
            raise InputError(f"gallery is a {type(gallery).__name__}; expected a simviz_widgets.retrieval."
                             "Gallery (Gallery.build(model, images) or demo_gallery(name, model))")
        self.gallery = gallery
        self.k = check_int(k, "k", minimum=1)
        if self.k > MAX_K:
            raise InputError(f"k is {self.k}; the explorer shows at most {MAX_K} results (each a card whose overlay "
                             f"needs a model run). For more, search without the widget: gallery.search(query, "
                             f"region=..., k={self.k})")
        self.query: QueryDecomposition | None = None
        self.query_input = None  # the image as given (a viewer explains the pair from it)
        self.query_index: int | None = None  # the gallery item the query is, if it is one
        self.query_id = 0  # changes with every query: part of every overlay's key
        self.region = None  # None (whole image), ("box", box) or ("mask", mask), display pixels
        self.results: SearchResults | None = None
        self.rows: list[ResultRow] = []
        self.weights: np.ndarray | None = None  # (h, w) cell weights; all ones for the whole image
        self.open_index: int | None = None
        self._explanations: OrderedDict = OrderedDict()  # index -> explanation, this query's
        self._overlays: dict = {}  # (query_id, index, region_key) -> map, this query and region's

    # -- query -------------------------------------------------------------------------------------
    def set_query(self, image) -> None:
        """Decompose ``image`` (one forward pass of the gallery's model, in this thread) and show the
        whole-image results; an int is gallery item ``image``, left out of its own results."""
        index = None
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            index = check_int(int(image), "query (a gallery index)", minimum=0, maximum=len(self.gallery) - 1)
            image = self.gallery.image(index)
        if image is None:
            raise InputError("query is None; expected an image (path, array, PIL image) or a gallery index")
        query = self.gallery.query(image)  # before any change: a bad image leaves the state as it was
        self.query, self.query_input, self.query_index = query, image, index
        self.query_id += 1
        self.open_index = None
        self._explanations.clear()
        self._search(None)

    @property
    def shown_k(self) -> int:
        """How many results are shown: ``k``, at most the items left once the query is left out."""
        return min(self.k, len(self.gallery) - (self.query_index is not None))

    # -- region ------------------------------------------------------------------------------------
    def set_region(self, box=None, mask=None) -> None:
        """Re-rank by a region of the query's display: a (top, left, bottom, right) ``box`` (bottom,
        right exclusive) or a bool ``mask`` of the query's display size; neither: the whole image."""
        self._need_query()
        if box is not None and mask is not None:
            raise InputError("give either box= or mask= (or neither for the whole image), not both")
        if box is not None:
            if isinstance(box, np.ndarray) and box.ndim == 2:
                raise InputError("box is a 2-D array; a mask goes in mask=, a box is (top, left, bottom, right)")
            region = ("box", tuple(check_box(box, self.query.size, name="box")))
        elif mask is not None:
            region = ("mask", check_mask(mask, "mask", self.query.size, nonempty=True,
                                         note=" (the query's display size, rows x cols)"))
        else:
            region = None
        self._search(region)

    def region_mask(self) -> np.ndarray | None:
        """The current region as a bool mask of display pixels (None: the whole image)."""
        if self.region is None:
            return None
        kind, value = self.region
        return box_mask(value, self.query.size) if kind == "box" else value.copy()

    @property
    def key(self) -> tuple:
        """What an overlay is computed for: (query id, region key)."""
        return (self.query_id, region_key(self.region))

    def _search(self, region) -> None:
        exclude = () if self.query_index is None else (self.query_index,)
        search_region = None if region is None else region[1]
        results = self.query.search(search_region, k=self.shown_k, exclude=exclude)
        self.region, self.results = region, results
        weights = results.region_weights
        self.weights = np.ones(self.query.grid) if weights is None else weights
        # The core's rank changes (whole-image rank - rank, both without the query itself when it is
        # a gallery item); "new" on top: outside the whole-image top k.
        changes = results.rank_changes().tolist()
        self.rows = [ResultRow(rank, index, results.names[rank], float(score), rank + change, change,
                               rank + change >= self.shown_k)
                     for (rank, index, score), change in zip(results, changes)]
        # Overlays of another region go; those of known explanations are a product away (no model run).
        key = self.key
        self._overlays = {}
        for row in self.rows:
            explanation = self._explanations.get(row.index)
            if explanation is not None:
                self._overlays[(*key, row.index)] = region_reference_map(explanation, self.weights)

    # -- overlays ----------------------------------------------------------------------------------
    def missing(self) -> list[int]:
        """Gallery indices on show whose explanation is still to compute, best first."""
        return [row.index for row in self.rows if row.index not in self._explanations]

    def overlay(self, index: int) -> np.ndarray | None:
        """The region's map on gallery item ``index`` for the query and region on show, or None."""
        return self._overlays.get((*self.key, index))

    def explanation(self, index: int) -> PairExplanation | None:
        """The decomposition of (query, item ``index``) if computed for the query on show."""
        return self._explanations.get(index)

    def apply_overlay(self, payload) -> bool:
        """Keep a job's ``(key, index, explanation, map)``: the explanation if ``key`` is of the query
        on show, the map only if it is also of the region on show. Returns whether the map is kept."""
        key, index, explanation, values = payload
        if key[0] != self.query_id:
            return False  # another query: nothing of it is kept
        self._explanations[index] = explanation
        self._explanations.move_to_end(index)
        shown = {row.index for row in self.rows}
        while len(self._explanations) > max(EXPLANATIONS_KEPT, len(shown)):
            oldest = next(i for i in self._explanations if i not in shown)
            del self._explanations[oldest]
        if tuple(key) != self.key or index not in shown:
            return False
        self._overlays[(*key, index)] = np.asarray(values, dtype=np.float64)
        return True

    def colour_scale(self, cmap: str | None = None) -> ColourScale | None:
        """One symmetric scale for every overlay on show (their colours compare), or None."""
        maps = [m for row in self.rows if (m := self.overlay(row.index)) is not None]
        if not maps:
            return None
        top = max(float(np.max(np.abs(m))) for m in maps)
        top = top if top > 0 else 1.0
        meaning = OVERLAY_MEANING["whole" if self.region is None else "region"]
        return ColourScale(cmap or default_cmap(True), "symmetric", -top, top, meaning)

    # -- the open result ---------------------------------------------------------------------------
    def row(self, rank) -> ResultRow:
        """The result at ``rank`` (0 = best) of those on show."""
        self._need_query()
        rank = check_int(rank.item() if isinstance(rank, np.integer) else rank, "rank",
                         minimum=0, maximum=len(self.rows) - 1)
        return self.rows[rank]

    def open_rank(self) -> int | None:
        """Where the open result ranks among those on show now (None: none open, or not shown)."""
        return next((row.rank for row in self.rows if row.index == self.open_index), None)

    # -- text --------------------------------------------------------------------------------------
    def region_text(self) -> str:
        if self.region is None:
            return "whole image"
        kind, value = self.region
        if kind == "box":
            top, left, bottom, right = (int(round(v)) for v in value)
            return f"box rows {top}–{bottom}, cols {left}–{right}"
        return f"brushed region of {int(value.sum())} px ({100 * value.mean():.0f} % of the image)"

    def legend_text(self) -> tuple[str, str]:
        """(title, meaning): which results these are, and what the score and rank change say."""
        metric = self.gallery.model.metric
        title = f"top {len(self.rows)} of {len(self.gallery)} for the {self.region_text()}"
        if self.region is None:
            meaning = "score: the model's own score of the two images" + (
                ", as the distance (lower = more alike)" if metric == "euclidean" else " (higher = more alike)")
        else:
            meaning = "score: " + {
                "cosine": "cosine of the region's share of the query with each item",
                "dot": "dot product of the region's share of the query with each item",
                "euclidean": "the region's share of −distance² to each item"}.get(metric, f"{metric} score")
            meaning += " (higher = more alike) · ▲/▼: places moved against the whole-image query"
        return title, meaning + " · click a result to open the pair below"

    def _need_query(self) -> None:
        if self.query is None:
            raise InputError("no query yet; call set_query(image) first")

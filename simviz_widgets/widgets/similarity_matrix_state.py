"""What the similarity matrix widget shows, without any widget: a gallery's (N, N) scores, the
order of its rows and columns, the colours, the hovered and selected cells, and the pair a click
opens in the pair viewer.

Rows and columns are gallery images in the same order (row image = query, column image =
reference). Orders: ``"cluster"`` (images the model finds alike side by side,
:func:`~simviz_widgets.retrieval.cluster_order`), ``"gallery"`` (as built), ``"similarity"`` (by
decreasing similarity to the ``anchor`` image, which comes first), or any permutation of
``range(N)`` ("custom"). Positions are places in the shown order; indices are gallery indices.

Colours: cosine and dot product as scores (higher = more alike), Euclidean as the distance
(similarity = -distance², as elsewhere in the project) with the colormap reversed, so the same
colour means "alike" for every metric. The colour range spans the scores of *different* images:
the diagonal (each image with itself: cosine 1, distance 0) would otherwise stretch it and wash the
rest out; it is clipped to the range end, and the caption says so.
"""

from __future__ import annotations

import numpy as np

from ..checks import InputError, check_choice, check_instance, check_int
from ..retrieval import Gallery, cluster_order, order_by_similarity
from ..retrieval.labels import METRIC_NAMES

__all__ = ["SimilarityMatrixState", "ORDERS", "ORDER_LABELS", "MAX_IMAGES"]

ORDERS = ("cluster", "gallery", "similarity")
#: What each order means, for menus and captions.
ORDER_LABELS = {"cluster": "clustered", "gallery": "gallery order", "similarity": "similar to one image"}
#: The most images a matrix shows: beyond it the cells (18 px at least) and thumbnails no longer fit
#: a notebook (200 images: a 3,600 px wide heatmap of 40,000 cells), and scores, strips and the
#: clustering grow as N².
MAX_IMAGES = 200


class SimilarityMatrixState:
    """Scores, order, colours and selection of one gallery's similarity matrix (see the module
    docstring). ``order``: an order name or a permutation; ``anchor``: the image the
    "similarity" order sorts by (a gallery index)."""

    def __init__(self, gallery: Gallery, *, order="cluster", anchor: int = 0):
        check_instance(gallery, "gallery", Gallery, "retrieval Gallery (Gallery.build(model, images))")
        if len(gallery) < 2:
            raise InputError(f"gallery has {len(gallery)} image; a similarity matrix needs at least 2")
        if len(gallery) > MAX_IMAGES:
            raise InputError(
                f"gallery has {len(gallery)} images; a similarity matrix is readable up to {MAX_IMAGES} "
                f"(one cell per pair, a thumbnail per row and column). Show a subset: Gallery.build(model, "
                f"images[:{MAX_IMAGES}]), or without embedding again Gallery.from_embeddings(gallery.model, "
                f"gallery.embeddings[:{MAX_IMAGES}], [gallery.image(i) for i in range({MAX_IMAGES})], "
                f"names=gallery.names[:{MAX_IMAGES}])")
        self.gallery = gallery
        self.metric: str = gallery.model.metric
        matrix = np.array(gallery.similarity_matrix(), dtype=np.float64)
        matrix.setflags(write=False)  # shared with callers: nobody changes the scores on show
        self.matrix = matrix
        self.names: list[str] = gallery.names
        self._cluster: np.ndarray | None = None  # computed on first use (scipy, O(N^2) memory)
        self.anchor = self.as_index(anchor, "anchor")
        self.order_name, self.order = "gallery", np.arange(self.n)
        self.set_order(order)
        self.selected: tuple[int, int] | None = None
        self.hovered: tuple[int, int] | None = None
        self.colour_range = self._colour_range()

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    # -- indices and order -------------------------------------------------------------------
    def as_index(self, value, name: str) -> int:
        """A gallery index in 0 .. N-1 (numpy integers too)."""
        return check_int(value, name, minimum=0, maximum=self.n - 1)

    def order_for(self, order, anchor: int | None = None) -> tuple[str, np.ndarray]:
        """(name, permutation) of ``order``: a name of :data:`ORDERS` or a permutation of range(N)."""
        if isinstance(order, str):
            order = check_choice(order, "order", ORDERS)
            if order == "gallery":
                return order, np.arange(self.n)
            if order == "cluster":
                if self._cluster is None:
                    self._cluster = cluster_order(self.matrix)
                return order, self._cluster.copy()
            anchor = self.anchor if anchor is None else self.as_index(anchor, "anchor")
            # The anchor first even if another image scores as high (a duplicate of it).
            rest = [int(i) for i in order_by_similarity(self.matrix, anchor) if i != anchor]
            return order, np.array([anchor, *rest], dtype=np.int64)
        if isinstance(order, np.ndarray) or isinstance(order, (list, tuple)):
            values = np.asarray(order)
            if values.ndim != 1 or values.dtype.kind not in "iu" or values.size != self.n \
                    or not np.array_equal(np.sort(values), np.arange(self.n)):
                raise InputError(f"order is not a permutation of 0 .. {self.n - 1} (got {order!r:.80}); expected "
                                 f"one of {ORDERS} or every gallery index once")
            return "custom", values.astype(np.int64)
        raise InputError(f"order is a {type(order).__name__}; expected one of {ORDERS} or a permutation of the "
                         "gallery indices")

    def set_order(self, order, anchor: int | None = None) -> None:
        """Show rows and columns in ``order`` (``anchor``: a new image for the "similarity" order)."""
        if anchor is not None:
            anchor = self.as_index(anchor, "anchor")
        self.order_name, self.order = self.order_for(order, anchor)
        if anchor is not None:
            self.anchor = anchor

    def position(self, index: int) -> int:
        """Where gallery image ``index`` is in the shown order."""
        return int(np.flatnonzero(self.order == self.as_index(index, "index"))[0])

    def pair_at(self, row: int, col: int) -> tuple[int, int]:
        """Gallery indices (query, reference) of the cell at display position (row, col)."""
        row = check_int(row, "row position", minimum=0, maximum=self.n - 1)
        col = check_int(col, "column position", minimum=0, maximum=self.n - 1)
        return int(self.order[row]), int(self.order[col])

    def shown(self) -> np.ndarray:
        """The scores in the shown order: ``matrix[order][:, order]``."""
        return self.matrix[np.ix_(self.order, self.order)]

    # -- colours -----------------------------------------------------------------------------
    def colour_values(self, scores: np.ndarray) -> np.ndarray:
        """What the colours show for ``scores``: the scores, or the distance for Euclidean."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.sqrt(np.maximum(-scores, 0.0)) if self.metric == "euclidean" else scores

    def _colour_range(self) -> tuple[float, float]:
        values = self.colour_values(self.matrix)[~np.eye(self.n, dtype=bool)]
        lo, hi = float(values.min()), float(values.max())
        if hi - lo < 1e-9 * max(1.0, abs(lo), abs(hi)):  # every pair alike: a range around it
            pad = 0.05 * abs(lo) if lo else 0.05
            lo, hi = lo - pad, hi + pad
        return lo, hi

    def colour_data(self) -> np.ndarray:
        """The heatmap's (N, N) colour values in the shown order, clipped to :attr:`colour_range`
        (only the diagonal is ever clipped: the range spans the off-diagonal values)."""
        return np.clip(self.colour_values(self.shown()), *self.colour_range)

    @property
    def reversed_colours(self) -> bool:
        """True when lower values mean "more alike" (Euclidean distance): the colormap is reversed."""
        return self.metric == "euclidean"

    def colour_label(self) -> str:
        """Short label of the colour axis."""
        return {"cosine": "cosine similarity", "dot": "dot product",
                "euclidean": "Euclidean distance (lower = more alike)"}[self.metric]

    def caption(self) -> str:
        """One sentence (plain text) on what the colours mean, the diagonal included."""
        lo, hi = self.colour_range
        diagonal = {"cosine": "cosine 1", "dot": "its squared length",
                    "euclidean": "distance 0"}[self.metric]
        end = "the nearest end" if self.metric == "dot" else (
            "the bottom (most alike) end" if self.reversed_colours else "the top (most alike) end")
        what = "distances" if self.metric == "euclidean" else f"{METRIC_NAMES[self.metric]} scores"
        return (f"Colours span the {what} between different images ({lo:.3g} to {hi:.3g}); the diagonal "
                f"(each image with itself, {diagonal}) is drawn in the colour of {end}.")

    # -- hover and selection -----------------------------------------------------------------
    def score(self, query: int, reference: int) -> float:
        return float(self.matrix[self.as_index(query, "row"), self.as_index(reference, "col")])

    def select(self, query: int, reference: int) -> tuple[int, int]:
        """Select the pair (gallery indices; row image = query, column image = reference)."""
        self.selected = (self.as_index(query, "row"), self.as_index(reference, "col"))
        return self.selected

    def pair_images(self, query: int, reference: int) -> tuple[np.ndarray, np.ndarray]:
        """The (query, reference) images as the gallery holds them, for the pair viewer."""
        return self.gallery.image(query), self.gallery.image(reference)

    def rank_of(self, query: int, reference: int) -> int:
        """1-based rank of ``reference`` among the other images by similarity to ``query``."""
        if reference == query:
            return 0
        others = np.delete(self.matrix[query], query)
        return int((others > self.matrix[query, reference]).sum()) + 1

    # -- thumbnails --------------------------------------------------------------------------
    def strip(self, thumbs: dict, size: int, *, vertical: bool) -> np.ndarray:
        """Thumbnails (``thumbs[index]``: (size, size, 3) uint8) in the shown order, one after the
        other: a (N*size, size, 3) column (``vertical``) or a (size, N*size, 3) row."""
        parts = [thumbs[int(i)] for i in self.order]
        for part in parts:
            if part.shape != (size, size, 3):
                raise InputError(f"thumbnail has shape {part.shape}; expected ({size}, {size}, 3)")
        return np.concatenate(parts, axis=0 if vertical else 1)

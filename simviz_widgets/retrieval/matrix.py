"""Orders for a gallery's similarity matrix: clustered (images the model finds alike side by side)
or by similarity to one image."""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
from scipy.spatial.distance import squareform

from ..checks import InputError, check_array, check_int

__all__ = ["cluster_order", "order_by_similarity"]


def _check_matrix(matrix) -> np.ndarray:
    m = check_array(matrix, "matrix", ndim=2, kinds="iuf", finite=True, expected="a square (N, N) similarity matrix")
    if m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InputError(f"matrix has shape {m.shape}; expected a square (N, N) similarity matrix")
    return m.astype(np.float64)


def cluster_order(matrix) -> np.ndarray:
    """(N,) order of the images: average-linkage clustering of the dissimilarity ``max(S) - S``
    (symmetrised), leaves in optimal order (Bar-Joseph et al. 2001), so that neighbours in the order
    are as alike as the clustering allows."""
    s = _check_matrix(matrix)
    n = s.shape[0]
    if n <= 2:
        return np.arange(n)
    s = (s + s.T) / 2
    d = s.max() - s
    np.fill_diagonal(d, 0.0)
    condensed = squareform(d, checks=False)
    tree = linkage(condensed, method="average")
    return leaves_list(optimal_leaf_ordering(tree, condensed)).astype(np.int64)


def order_by_similarity(matrix, index: int) -> np.ndarray:
    """(N,) order by decreasing similarity to image ``index`` (itself first when it scores highest)."""
    s = _check_matrix(matrix)
    index = check_int(int(index) if isinstance(index, np.integer) else index, "index", minimum=0,
                      maximum=s.shape[0] - 1)
    return np.argsort(-s[index], kind="stable").astype(np.int64)

"""How a retrieval score is written, the same in the figures, the explorer and the similarity
matrix: cosine and dot as they are, a Euclidean score (similarity = -squared distance) as the
distance for a whole image and as its share of -distance² for a region (a share is not a distance)."""

from __future__ import annotations

import math

__all__ = ["score_text", "METRIC_NAMES"]

METRIC_NAMES = {"cosine": "cosine", "dot": "dot product", "euclidean": "Euclidean"}


def score_text(score: float, metric: str, *, region: bool = False) -> str:
    """``score`` of ``metric`` as people read it; ``region``: the score of a region of the query."""
    score = float(score)
    if metric == "euclidean":
        if not region:
            return f"distance {math.sqrt(max(-score, 0.0)):.3f}"
        text = f"−d² share {score:.3g}"
    elif metric == "cosine":
        text = f"cosine {score:.3f}"
    else:
        text = f"{METRIC_NAMES.get(metric, metric)} {score:.4g}"
    return text.replace("-", "−")  # a typographic minus: easier to read at small sizes

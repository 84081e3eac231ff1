"""How an explanation's maps are coloured, in one place for every view (the kernel's canvases, the
browser hover layer, the standalone page): the overall maps share one scale per pair; a point map
gets a scale of its own, which depends on the reading.

>>> import numpy as np
>>> point_scale(np.array([[-1.0, 0.5]], np.float32), "contribution")[:4]
('RdBu_r', 'symmetric', -1.0, 1.0)
>>> point_scale(np.array([[0.2, 0.6]], np.float32), "correspondence")[:4]
('viridis', 'minmax', 0.20000000298023224, 0.6000000238418579)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_choice
from ..explain.point_to_point import READINGS, SIDES
from ..render import default_cmap, normalize_map

__all__ = ["ColourScale", "CORRESPONDENCE_CMAP", "CMAP_CHOICES", "READING_STYLES", "overall_scale",
           "point_scale", "reading_styles"]

#: The correspondence reading is a cosine (unsigned in practice: 0.3-0.8 on real pairs), so it gets
#: a sequential scale over the map's own range; signed contributions keep a diverging one.
CORRESPONDENCE_CMAP = "viridis"

#: Colormaps a viewer's menu offers (any matplotlib name can still be given in code).
CMAP_CHOICES = ("RdBu_r", "coolwarm", "PiYG", "PuOr_r", "viridis", "inferno", "magma", "cividis", "turbo", "gray")

#: Per reading: normalisation mode, default colormap (None: the signed default) and what the values mean.
READING_STYLES = {
    "contribution": ("symmetric", None,
                     "contribution: what each cell adds to the score with the hovered point, D(point, cell)"),
    "correspondence": ("minmax", CORRESPONDENCE_CMAP,
                       "correspondence: cosine of each cell's contribution with the hovered point's"),
}


class ColourScale(NamedTuple):
    """How a map is coloured: colormap, normalisation mode, limits, and what the values mean."""

    cmap: str
    mode: str  # "symmetric" (diverging, 0 in the middle) or "minmax" (sequential)
    lo: float
    hi: float
    meaning: str


def reading_styles(cmap: str | None = None) -> dict[str, dict]:
    """{reading: {cmap, mode, meaning}} for point maps; ``cmap`` overrides every default."""
    return {reading: {"cmap": cmap or default or default_cmap(True), "mode": mode, "meaning": meaning}
            for reading, (mode, default, meaning) in READING_STYLES.items()}


def point_scale(values: np.ndarray, reading: str, cmap: str | None = None) -> ColourScale:
    """The scale of one point map: symmetric over its own largest |value| (contribution) or its
    own range (correspondence)."""
    style = reading_styles(cmap)[check_choice(reading, "reading", READINGS)]
    _, lo, hi = normalize_map(values, mode=style["mode"])
    return ColourScale(style["cmap"], style["mode"], lo, hi, style["meaning"])


def overall_scale(explanation, cmap: str | None = None) -> ColourScale:
    """Both overall maps on one scale (so their colours compare): symmetric for signed methods,
    the joint range otherwise; sides without a map do not count."""
    exp = explanation
    mode = "symmetric" if exp.signed else "minmax"
    shown = [exp.map(s).ravel() for s in SIDES if exp.has_map(s)]
    both = np.concatenate(shown)[None] if shown else np.zeros((1, 1), np.float32)
    _, lo, hi = normalize_map(both, mode=mode)
    if exp.sums_to_score:
        meaning = f"overall map: each cell's share of the {exp.metric} score (each map sums to {exp.score:.3g})"
    else:
        sign = "signed" if exp.signed else "unsigned"
        meaning = f"overall map: {exp.method} relevance ({sign}; not a share of the score)"
    return ColourScale(cmap or default_cmap(bool(exp.signed)), mode, lo, hi, meaning)

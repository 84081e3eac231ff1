"""An explanation without a kernel: the standalone page, and the notebook display built on it.

``explanation.to_html(path)`` and ``simviz explain A B --out pair.html`` write
:func:`write_explanation_page`; an explanation's rich display in a notebook is
:func:`explanation_iframe` (that page in an ``<iframe srcdoc>`` over a PNG of the overall maps).
"""

from __future__ import annotations

from ..checks import check_path
from ..explain.point_to_point import SIDES
from .display import composite_png, display_size, photo_rgba
from .page import iframe_html, page_size, standalone_html
from .payload import DEFAULT_ALPHA, explanation_payload
from .scales import overall_scale

__all__ = ["page_title", "resting_png", "write_explanation_page", "explanation_iframe", "DISPLAY_POINT_BYTES"]


def page_title(explanation) -> str:
    return f"{explanation.method}: {explanation.metric} similarity {explanation.score:.4f}"


def resting_png(explanation, *, size: int = 320, cmap: str | None = None, alpha: float = DEFAULT_ALPHA,
                show_overall: bool = True, pins=()) -> bytes:
    """Both photos with their overall maps on one scale (``show_overall``), as the page shows them
    at rest, as one PNG; ``pins``: (image index, canvas y, canvas x, colour)."""
    scale = overall_scale(explanation, cmap)
    panels = []
    for side in SIDES:
        photo = photo_rgba(explanation.image(side), display_size(explanation.size(side), size))[..., :3]
        values = explanation.map(side) if show_overall and explanation.has_map(side) else None
        options = {"alpha": alpha, "cmap": scale.cmap, "mode": scale.mode, "vmin": scale.lo, "vmax": scale.hi,
                   "signed": bool(explanation.signed), "alpha_from_value": True}
        panels.append((side, photo, values, options))
    return composite_png(panels, title=page_title(explanation), pins=pins)


def write_explanation_page(explanation, path=None, *, size: int = 320, cmap: str | None = None,
                           alpha: float = DEFAULT_ALPHA, reading: str = "contribution"):
    """The standalone page of ``explanation`` (str), or written to ``path`` (returns the Path)."""
    path = None if path is None else check_path(path, "path")  # checked before any work
    payload = explanation_payload(explanation, size=size, cmap=cmap, alpha=alpha, reading=reading,
                                  max_point_bytes=None)
    page = standalone_html(payload, title=page_title(explanation))
    if path is None:
        return page
    path.write_text(page, encoding="utf-8")
    return path


#: Point-to-point data a notebook display carries at most (it is stored in the notebook, base64):
#: grids up to about 20x20 cells; larger ones show overall maps only there (to_html has no such cap).
DISPLAY_POINT_BYTES = 2 * 2**20


def explanation_iframe(explanation, *, size: int = 320, cmap: str | None = None, alpha: float = DEFAULT_ALPHA,
                       reading: str = "contribution") -> str:
    """The notebook display: the page in an iframe (live where outputs are trusted: a running
    notebook, nbconvert HTML) over the resting PNG (what a reopened, untrusted notebook keeps)."""
    payload = explanation_payload(explanation, size=size, cmap=cmap, alpha=alpha, reading=reading,
                                  max_point_bytes=DISPLAY_POINT_BYTES)
    page = standalone_html(payload, title=page_title(explanation))
    return iframe_html(page, fallback_png=resting_png(explanation, size=size, cmap=cmap, alpha=alpha),
                       size=page_size(payload))

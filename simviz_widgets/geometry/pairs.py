"""One call from a model and two images to matches, at the grid the user asks for."""

from __future__ import annotations

from ..checks import check_bool, check_int
from ..explain.base import explain
from .matches import Matches, correspondences

__all__ = ["match_pair"]


def match_pair(model, query, reference, *, resolution: int | None = None, multiscale: bool = True,
               show_progress: bool = True, **options) -> Matches:
    """Correspondences of two images under ``model`` (a SimilarityModel): explained with the
    decomposition at the model's own grid, or at ``resolution`` x ``resolution`` through
    ``model.at_resolution`` (the any-layer mode at an earlier block: 14 or 28 for the default
    model). With a finer grid and ``multiscale=True`` the model's own grid is explained too and
    passed as ``coarse`` (see :func:`correspondences`). ``options`` go to :func:`correspondences`.
    The explanations are kept in ``matches.info["explanation"]`` and ``["coarse_explanation"]``."""
    multiscale = check_bool(multiscale, "multiscale")
    show_progress = check_bool(show_progress, "show_progress")
    fine_model = model if resolution is None else model.at_resolution(check_int(resolution, "resolution", minimum=1))
    q, r = model.prepare(query, name="query"), model.prepare(reference, name="reference")
    fine = explain(fine_model, q, r, show_progress=show_progress)
    coarse = None
    if multiscale and fine_model is not model and fine_model.decompose_layer is not None:
        coarse = explain(model, q, r, show_progress=show_progress)
    matches = correspondences(fine, coarse=coarse, **options)
    matches.info["explanation"] = fine
    matches.info["coarse_explanation"] = coarse
    return matches

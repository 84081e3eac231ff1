"""Feature-space occlusion (docs/methods.md, "Feature-space occlusion").

The embedding is a sum of per-position contributions (``position_contributions``), so occluding a
region of the feature map needs no forward pass: take the region's contributions out of the pooled
embedding, re-normalise, and re-score. For each cell i with neighbourhood N(i)

    map_X(i) = S - s(g_X - sum_{k in N(i)} e^X_k, g_Y)

and likewise for the reference against g_X. Exact (the score after zeroing those feature vectors)
for linear pooling (avg, flatten) and affine heads; linearised otherwise.
"""

from __future__ import annotations

import torch

from ..adapters import SimilarityModel
from ..checks import Option
from ..images import PreparedImage
from .base import Explainer, PairExplanation, PointToPoint, register_method, zero_embeddings
from .decomposition import model_score, natural_scale, position_contributions, precision_info, precision_note

__all__ = ["FeatureOcclusion", "neighbourhood_matrix", "occlusion_maps", "contribution_point_to_point",
           "occlusion_exactness"]

EPS = 1e-12  # torch's cosine_similarity / normalize floor
#: An occluded embedding this small relative to the whole one is the rounding residue of removing
#: (nearly) everything: it is set to exactly 0, whose cosine is 0, instead of the cosine of noise.
RESIDUE = 1e-6


def neighbourhood_matrix(grid: tuple[int, int], radius: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, N) float64 0/1 on ``device``: row i marks N(i), the cells within ``radius`` rows and
    columns of cell i (Chebyshev distance, cut at the grid's border: corners keep fewer cells)."""
    h, w = grid
    cells = torch.arange(h * w, device=device)
    rows, cols = torch.div(cells, w, rounding_mode="floor"), cells % w
    near = ((rows[:, None] - rows[None]).abs() <= radius) & ((cols[:, None] - cols[None]).abs() <= radius)
    return near.double()


def _scores(model: SimilarityModel, G: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """The model's similarity of each row of G (N, D) with ``other`` (D,), float64."""
    if model.output_normalized:
        # The model normalises its embedding: an occluded embedding is re-normalised too.
        G = G / G.norm(dim=1, keepdim=True).clamp_min(EPS)
    if model.metric == "cosine":
        return (G @ other) / (G.norm(dim=1).clamp_min(EPS) * max(float(other.norm()), EPS))
    if model.metric == "dot":
        return G @ other
    return -((G - other) ** 2).sum(1)


def occlusion_maps(model: SimilarityModel, cq: dict, cr: dict, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and reference maps (float64, (h, w) each) from ``position_contributions`` results
    computed with ``bias=False``: the score drop when N(i)'s contributions leave the embedding."""
    gq, gr = cq["g"], cr["g"]
    score = _scores(model, gq[None], gr)[0]
    maps = []
    for c, g, other in ((cq, gq, gr), (cr, gr, gq)):
        near = neighbourhood_matrix(c["grid"], radius, c["E"].device)
        occluded = g[None] - near @ c["E"]  # (N, D): one region per row
        occluded[occluded.norm(dim=1) <= RESIDUE * float(g.norm())] = 0.0
        maps.append((score - _scores(model, occluded, other)).reshape(c["grid"]))
    return maps[0], maps[1]


def contribution_point_to_point(model: SimilarityModel, cq: dict, cr: dict, zero: tuple) -> PointToPoint:
    """The decomposition's point-to-point part D(i, j) (docs/methods.md, "Activation decomposition"),
    rebuilt from ``bias=False`` contributions with the bias (any residual) spread evenly, as the
    decomposition's default does. Free: no product is formed until a hover asks for one row."""
    E = []
    for c in (cq, cr):
        n = c["E"].shape[0]
        E.append(c["E"] + (c["g"] - c["E"].sum(0)) / n)
    Eq, Er = E
    gq, gr = cq["g"], cr["g"]
    nq, nr = Eq.shape[0], Er.shape[0]
    if model.metric == "euclidean":
        # D(i, j) = 2 e_i.e_j - (e_i.g_X) / N_Y - (e_j.g_Y) / N_X as one product of augmented factors.
        Gq = torch.cat([Eq, -(Eq @ gq)[:, None], Eq.new_full((nq, 1), 1.0 / nq)], dim=1)
        Gr = torch.cat([2 * Er, Er.new_full((nr, 1), 1.0 / nr), -(Er @ gr)[:, None]], dim=1)
        scale = 1.0
    else:
        Gq, Gr = Eq, Er
        scale = 1.0 if model.metric == "dot" else \
            (0.0 if zero else 1.0 / (max(float(gq.norm()), EPS) * max(float(gr.norm()), EPS)))
    return PointToPoint(query_factors=Gq.numpy(), reference_factors=Gr.numpy(), scale=scale,
                        query_grid=cq["grid"], reference_grid=cr["grid"],
                        query_vectors=Eq.numpy(), reference_vectors=Er.numpy())


def occlusion_exactness(model: SimilarityModel) -> tuple[bool, list[str]]:
    """Whether removing contributions is exactly zeroing those feature vectors, and why not."""
    why = []
    if model.decompose_layer is not None:
        why.append("any-layer mode: contributions are gradient x input, so removing them is first order")
    if model.pooling.kind == "max":
        why.append("max pooling: contributions sit at the observed argmax positions; zeroing them would "
                   "move the maximum to another position, which removal does not follow")
    elif model.pooling.kind == "gem":
        why.append("GeM pooling: contributions use the observed pooling weights (linearised)")
    if model.head_kind == "generic":
        why.append("generic head: linearised at the observed input (its Jacobian, or for a LayerNorm head "
                   "its affine map with the scale held there)")
    return not why, why


@register_method("feature_occlusion")
class FeatureOcclusion(Explainer):
    """Feature-space occlusion: the score drop when a region's contributions leave the embedding.

    ``map_X(i) = S - s(g_X - sum_{k in N(i)} e^X_k, g_Y)`` with ``e_k`` the per-position embedding
    contributions of :func:`position_contributions` (``bias=False``: the head's bias belongs to no
    position and stays in the embedding), ``N(i)`` the cells within ``radius`` rows and columns of
    i (cut at the border), and ``s`` the model's metric (cosine, dot, or -squared Euclidean; a model
    that L2-normalises its embedding is re-normalised). Reference map likewise against ``g_X``.
    Positive: removing the region lowers the score (it supports the similarity); negative: it
    works against it (``signed=True``).

    Paper: none; it is occlusion sensitivity (Zeiler and Fergus, ECCV 2014) moved from pixels to
    the decomposed feature map of Zhu et al. (arXiv 1909.12977), where it costs N re-normalisations
    instead of N forward passes. Deviations from pixel occlusion: the receptive fields of the
    occluded cells still see the region (only the features at N(i) are removed), and it is exact
    only for linear pooling (avg, flatten) with an affine head (identity, Linear, BatchNorm1d):
    max / GeM pooling, generic heads and the any-layer mode remove linearised contributions
    (``info['exact']``, ``info['notes']``). ``radius=0`` is single-cell occlusion, whose first
    order is gradient x input at the embedding, ``e_i . dS/dg_X``.

    The point-to-point part is the decomposition's D(i, j) (bias spread evenly): the contributions
    are computed anyway, so hover keeps its exact pairwise reading at no cost.
    """

    paper = ("Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014 (occlusion), "
             "on the decomposition of Zhu, Yang, Chen, IEEE TIP 2021 (arXiv 1909.12977)")
    options = {
        "radius": Option.integer(1, "neighbourhood N(i): cells within this many rows and columns of i "
                                 "(1 = 3x3, 0 = the cell alone)", minimum=0),
        "show_progress": Option.flag(True, "progress bar for the any-layer mode"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        progress = self.config["show_progress"]
        cq = position_contributions(model, query.tensor, bias=False, show_progress=progress)
        cr = position_contributions(model, reference.tensor, bias=False, show_progress=progress)
        return occlusion_explanation(self.name, model, query, reference, cq, cr, self.config["radius"])


def occlusion_explanation(name: str, model: SimilarityModel, query: PreparedImage, reference: PreparedImage,
                          cq: dict, cr: dict, radius: int) -> PairExplanation:
    """The feature-occlusion PairExplanation from two ``bias=False`` contribution dicts."""
    gq, gr = cq["g"], cr["g"]
    score, decomposed = model_score(model, cq, cr)  # a half-precision model's own score: its rounding
    zero = zero_embeddings(name, model.metric, gq, gr)
    qmap, rmap = occlusion_maps(model, cq, cr, radius)
    if zero:  # the cosine of an all-zero embedding is 0 by convention: nothing to attribute
        qmap, rmap = torch.zeros_like(qmap), torch.zeros_like(rmap)
    exact, why = occlusion_exactness(model)
    info = dict(model.describe())
    info["notes"] = cq["notes"] + [t for t in cr["notes"] if t not in cq["notes"]] + why
    note = precision_note(model, score, decomposed, "the maps are score drops from")
    if note:
        info["notes"].append(note)
    info["precision"] = precision_info(model, score, decomposed, natural_scale(model.metric, gq, gr))
    info.update({
        "radius": radius,
        "neighbourhood": (2 * radius + 1, 2 * radius + 1),
        "exact": exact,
        "exactness": ("exact: the score after zeroing the feature vectors of N(i) and re-pooling (linear "
                      "pooling, affine head)" if exact else
                      "linearised: contributions removed at the observed input (" + "; ".join(why) + ")"),
        "cost": (f"two forward passes (the contributions) + {cq['E'].shape[0]} + {cr['E'].shape[0]} "
                 f"re-normalisations of {cq['E'].shape[1]}-d embeddings; no extra forward pass"),
    })
    if zero:
        info["zero_embedding"] = zero
    return PairExplanation(
        method=name,
        score=score,
        query=query.display,
        reference=reference.display,
        query_map=qmap.float().numpy(),
        reference_map=rmap.float().numpy(),
        signed=True,
        metric=model.metric,
        point_to_point=contribution_point_to_point(model, cq, cr, zero),
        info=info,
    )

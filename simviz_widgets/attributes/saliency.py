"""Batched activation-decomposition maps (docs/methods.md, "Activation decomposition") for the attribute
training and ranking.

For the exact cases (avg / max / GeM pooling, identity or affine head) the overall query map is
``M_X(i) = e^X_i . g_Y / Z`` with ``e_i = W (a(., i) * A_i) + b / N``; this computes it for a batch of
pairs in one pass and equals ``explain(model, X, Y, method="decomposition").query_map`` (tested).
"""

from __future__ import annotations

import torch

from ..adapters import SimilarityModel
from ..checks import InputError, check_instance

__all__ = ["decomposition_maps", "decomposition_maps_from_features", "saliency_distribution"]


def _contributions(model: SimilarityModel, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = feats.shape
    n = h * w
    A = model.pooling.prepare_features(feats).flatten(2)  # (B, C, N)
    a = model.pooling.weights(feats)  # (B, C, N)
    weighted = (a * A).transpose(1, 2)  # (B, N, C)
    if model.head_kind == "identity":
        E = weighted
    else:
        W, bias = model.head_weight, model.head_bias
        E = weighted @ W.T.to(weighted.dtype) + bias.to(weighted.dtype) / n
    g = E.sum(1)
    if model.output_normalized:
        norm = g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        E, g = E / norm[:, None], g / norm
    return E, g


def decomposition_maps(model: SimilarityModel, xq: torch.Tensor, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Overall decomposition maps (B, h, w) of the query and the reference for a batch of pairs of
    normalised images (B, 3, H, W). Exact cases only; other models: use ``explain()`` per pair."""
    _check_exact(model)
    with torch.no_grad():
        return decomposition_maps_from_features(model, model.features(xq), model.features(xr))


def _check_exact(model: SimilarityModel) -> None:
    """``model`` is a SimilarityModel whose decomposition has the batched closed form."""
    check_instance(model, "model", SimilarityModel)
    if model.decompose_layer is not None or model.pooling.kind == "flatten" or (
        model.head_kind not in ("identity",) and model.head_weight is None
    ):
        raise InputError(
            f"batched decomposition maps need avg/max/GeM pooling and an affine head; {model.name} has "
            f"pooling={model.pooling.kind!r}, head={model.head_kind!r}"
        )


def decomposition_maps_from_features(model: SimilarityModel, fq: torch.Tensor, fr: torch.Tensor):
    """:func:`decomposition_maps` from feature maps (B, C, h, w) already computed with
    ``model.features`` (training computes them once for the predictor and the saliency). Computed in
    float64 on the features' device (exact for float16 / bfloat16 maps); returned float32 there."""
    _check_exact(model)
    with torch.no_grad():
        Eq, gq = _contributions(model, fq.double())
        Er, gr = _contributions(model, fr.double())
        if model.metric == "euclidean":
            nq, nr = Eq.shape[1], Er.shape[1]
            qmap = (2 * (Eq @ gr[:, :, None])[..., 0] - (Eq @ gq[:, :, None])[..., 0]
                    - (gr * gr).sum(1, keepdim=True) / nq)
            rmap = (2 * (Er @ gq[:, :, None])[..., 0] - (Er @ gr[:, :, None])[..., 0]
                    - (gq * gq).sum(1, keepdim=True) / nr)
        else:
            z = (gq.norm(dim=1) * gr.norm(dim=1) if model.metric == "cosine"
                 else torch.ones(gq.shape[0], dtype=gq.dtype, device=gq.device))
            z = z.clamp_min(1e-12)[:, None]
            qmap = (Eq @ gr[:, :, None])[..., 0] / z
            rmap = (Er @ gq[:, :, None])[..., 0] / z
    return qmap.float().reshape(fq.shape[0], *fq.shape[2:]), rmap.float().reshape(fr.shape[0], *fr.shape[2:])


def saliency_distribution(saliency: torch.Tensor) -> torch.Tensor:
    """(B, h, w) signed saliency -> (B, h*w) distribution: positive part normalised to sum 1
    (uniform where a map has no positive mass). Decomposition maps sum to the score, with cell values
    of order score / N, so a softmax of the raw values would be nearly uniform; the positive part
    keeps where the match is."""
    flat = saliency.flatten(1).clamp_min(0)
    total = flat.sum(1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total > 0, flat / total.clamp_min(1e-12), uniform)

"""Similarity maps of pooled features (docs/methods.md, "Similarity maps")."""

from __future__ import annotations

import torch

from ..adapters import SimilarityModel
from ..checks import InputError
from ..images import PreparedImage
from .base import Explainer, PairExplanation, PointToPoint, register_method, zero_embeddings

__all__ = ["SimilarityMap"]


@register_method("similarity_map")
class SimilarityMap(Explainer):
    """Similarity maps of the pooled feature (Stylianou, Souvenir, Pless, "Visualizing Deep
    Similarity Networks", WACV 2019, arXiv 1901.00536).

    With average pooling, ``heat_X(i) = <A_i, p_Y> / (N_X |p_X| |p_Y|)`` and likewise for Y; each
    map sums to ``cos(p_X, p_Y)``. Signed, no ReLU, no bias. Max pooling uses the paper's surrogate:
    each channel is kept only at its argmax position (first on ties) and the same formula is used
    with sums instead of means. Pairwise form:
    ``D(i, j) = (a_X A_i) . (a_Y A_j) / (|p_X| |p_Y|)`` (``a`` the pooling weights), which sums to
    ``cos(p_X, p_Y)`` and whose row / column sums are the two maps.

    This works on the **pooled feature** p (W = I), not the model's embedding g = W p + b: when the
    model has a projection head (or another metric than cosine) the maps differ from
    ``'decomposition'`` and sum to cos(p_X, p_Y), not to the model's score; with cosine, an identity
    head and average pooling the two methods coincide. ``score`` is still the model's own
    similarity; ``info['pooled_cosine']`` is what the maps sum to.

    Deviations: GeM pooling is handled with its exact per-position weights (an extension; the paper
    has avg and max); flattened heads have no pooled vector that is a sum over positions and are
    refused. Any-layer mode (``layer=``) is ignored: the pooled feature needs the pooling input.
    """

    paper = ("Stylianou, Souvenir, Pless. Visualizing Deep Similarity Networks. WACV 2019 "
             "(arXiv 1901.00536)")
    options: dict = {}

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        if model.pooling.kind == "flatten":
            raise InputError(
                "method 'similarity_map' needs a global pooling (avg, max or gem); this model "
                "flattens its feature map into the head. Use method='decomposition'."
            )
        with torch.no_grad():
            fq = model.features(query.tensor)
            fr = model.features(reference.tensor)
            gq, gr = model.embed_from_features(fq), model.embed_from_features(fr)
            score = float(model.score_embeddings(gq, gr)[0])
            # Factors and maps on the CPU (numpy): N x C float64 values.
            Gq, pq, grid_q = _weighted_positions(model, fq)
            Gr, pr, grid_r = _weighted_positions(model, fr)
        # The score of a cosine model with an all-zero embedding is 0, and so is every value of the
        # maps; the maps' own cosine (of the pooled features) is undefined for a zero pooled feature.
        zero = zero_embeddings(self.name, model.metric, gq, gr) or \
            zero_embeddings(self.name, "cosine", pq, pr, what="pooled feature")
        norms = float(pq.norm() * pr.norm())
        scale = 1.0 / norms if norms > 0 and not zero else 0.0
        qmap = scale * (Gq @ pr)
        rmap = scale * (Gr @ pq)
        p2p = PointToPoint(
            query_factors=Gq.numpy(),
            reference_factors=Gr.numpy(),
            scale=scale,
            query_grid=grid_q,
            reference_grid=grid_r,
        )
        info = dict(model.describe())
        info["pooled_cosine"] = float(qmap.sum())
        if zero:
            info["zero_embedding"] = zero
        info["notes"] = ["maps of the pooled feature (W = I): they sum to cos(p_X, p_Y), not to the "
                         "score, when the model has a head or another metric"]
        if model.pooling.kind == "max":
            info["notes"].append("max pooling: surrogate activation (each channel at its argmax only)")
        if model.decompose_layer is not None:
            info["notes"].append(f"layer {model.decompose_layer!r} ignored: maps use the pooling input "
                                 f"{model.feature_layer!r}")
            info["layer"] = model.feature_layer
        return PairExplanation(
            method=self.name,
            score=score,
            query=query.display,
            reference=reference.display,
            query_map=qmap.reshape(grid_q).float().numpy(),
            reference_map=rmap.reshape(grid_r).float().numpy(),
            signed=True,
            metric=model.metric,
            point_to_point=p2p,
            info=info,
        )


def _weighted_positions(model: SimilarityModel, feats: torch.Tensor):
    """Rows a(., i) * A_i (N, C) float64, the pooled feature p (C,) and the grid (h, w)."""
    _, C, h, w = feats.shape
    feats = feats.double()  # exact for float16 / bfloat16 / float32 maps: the identities hold in float64
    A = model.pooling.prepare_features(feats)[0].reshape(C, h * w)
    a = model.pooling.weights(feats)[0]
    G = (a * A).T.contiguous().cpu()
    return G, G.sum(0), (h, w)

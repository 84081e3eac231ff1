"""Similar Feature Activation Map (docs/methods.md, "Similar Feature Activation Map")."""

from __future__ import annotations

from typing import Callable

import torch

from ..adapters import SimilarityModel
from ..checks import InputError, Option, check_choice
from ..images import PreparedImage
from .base import Explainer, PairExplanation, register_method, zero_embeddings

__all__ = ["SFAM", "cosine_cis", "euclidean_cis"]


def cosine_cis(p_query: torch.Tensor, p_reference: torch.Tensor) -> torch.Tensor:
    """CIS_c = p̂_X[c] p̂_Y[c]: channel c's exact share of cos(p_X, p_Y) (sums to it)."""
    nq, nr = p_query.norm(), p_reference.norm()
    if nq == 0 or nr == 0:
        return torch.zeros_like(p_query)
    return (p_query / nq) * (p_reference / nr)


def euclidean_cis(p_query: torch.Tensor, p_reference: torch.Tensor) -> torch.Tensor:
    """CIS_c = mean_k (p_X[k] - p_Y[k])^2 - (p_X[c] - p_Y[c])^2: positive for channels closer than
    average; sums to zero over channels."""
    d2 = (p_query - p_reference) ** 2
    return d2.mean() - d2


_CIS = {"cosine": cosine_cis, "euclidean": euclidean_cis}


@register_method("sfam")
class SFAM(Explainer):
    """Similar Feature Activation Map (Liao et al., arXiv 2506.01636, 2025).

    A channel-wise contribution importance score (CIS) is computed from the two pooled features
    p_X, p_Y, and each image's map is the CAM ``ReLU(sum_c CIS_c A[c])`` with the same CIS for both.

    ``cis``: ``'auto'`` (Euclidean for a Euclidean model, else cosine), ``'cosine'``
    (``CIS_c = p̂_X[c] p̂_Y[c]``), ``'euclidean'``
    (``CIS_c = mean_k (p_X[k]-p_Y[k])^2 - (p_X[c]-p_Y[c])^2``), or a callable
    ``cis(p_query, p_reference) -> (C,)`` tensor (float64 inputs of shape (C,)).

    The paper's exact CIS formulas were not available to us: these follow its description
    (importance from the pairwise embedding similarity, then a linear combination with the feature
    map) — hence CIS is pluggable. Deviations: CIS uses the pooled feature (the channels of A), not
    the projected embedding, so the combination with A is well defined when the model has a head;
    any-layer mode (``layer=``) is ignored (the pooled feature needs the pooling input).
    """

    paper = ("Liao, Akpudo, Zhang, Gao, Zhou, Zeng, Zhang. Visual Explanation via Similar Feature Activation "
             "for Metric Learning. arXiv 2506.01636 (2025)")
    options = {
        "cis": Option.custom("auto", "'auto' | 'cosine' | 'euclidean' | callable(p_query, p_reference) -> (C,)",
                             lambda value, name: value if callable(value) else
                             check_choice(value, name, ("auto", *_CIS))),
    }

    def _cis_function(self, model: SimilarityModel) -> tuple[str, Callable]:
        cis = self.config["cis"]
        if callable(cis):
            return getattr(cis, "__name__", "custom"), cis
        if cis == "auto":
            cis = "euclidean" if model.metric == "euclidean" else "cosine"
        return cis, _CIS[cis]

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        if model.pooling.kind == "flatten":
            raise InputError(
                "method 'sfam' needs a global pooling (avg, max or gem); this model flattens its "
                "feature map into the head. Use method='decomposition'."
            )
        name, fn = self._cis_function(model)
        with torch.no_grad():
            fq = model.features(query.tensor)
            fr = model.features(reference.tensor)
            gq, gr = model.embed_from_features(fq), model.embed_from_features(fr)
            score = float(model.score_embeddings(gq, gr)[0])
            pq = model.pooling(fq.double())[0]  # float64 from the model's map (half precision too)
            pr = model.pooling(fr.double())[0]
            cis = fn(pq.clone(), pr.clone())
            if not isinstance(cis, torch.Tensor):
                cis = torch.as_tensor(cis, device=pq.device)
            if cis.shape != pq.shape:
                raise InputError(
                    f"sfam: the cis function returned shape {tuple(cis.shape)}; expected "
                    f"({pq.shape[0]},), one score per channel"
                )
            cis = cis.to(device=pq.device, dtype=torch.float64)
            if not torch.isfinite(cis).all():
                raise InputError("sfam: the cis function returned NaN or infinite values")
            qmap = torch.einsum("c,chw->hw", cis, fq[0].double()).clamp_min(0)
            rmap = torch.einsum("c,chw->hw", cis, fr[0].double()).clamp_min(0)
        info = dict(model.describe())
        # A cosine model's score at an all-zero embedding is 0 by convention: nothing to attribute.
        zero = zero_embeddings(self.name, model.metric, gq, gr)
        if zero:
            qmap, rmap = torch.zeros_like(qmap), torch.zeros_like(rmap)
            info["zero_embedding"] = zero
        info.update({"cis": name, "cis_values": cis.cpu().float().numpy()})
        if model.decompose_layer is not None:
            info["layer"] = model.feature_layer
            info["notes"] = [f"layer {model.decompose_layer!r} ignored: SFAM uses the pooling input"]
        return PairExplanation(
            method=self.name,
            score=score,
            query=query.display,
            reference=reference.display,
            query_map=qmap.cpu().float().numpy(),
            reference_map=rmap.cpu().float().numpy(),
            signed=False,
            metric=model.metric,
            info=info,
        )

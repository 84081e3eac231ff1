"""Activation decomposition for deep metric learning (docs/methods.md, "Activation decomposition").

Zhu, Yang, Chen, "Visual Explanation for Deep Metric Learning", IEEE TIP 2021 (arXiv 1909.12977).

The pooled feature is a weighted sum over positions, so the embedding is a sum of per-position
contributions ``e_i = W (a(., i) * A_i) + b / N`` and the similarity of two embeddings is a sum over
pairs of positions ``D(i, j) = e^X_i . e^Y_j / Z``. ``sum_ij D == score`` holds exactly for affine heads
(identity, Linear, BatchNorm1d folded), for avg / max / GeM pooling and for flattened heads.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..adapters import SimilarityModel
from ..adapters.frozen_norm import frozen_norm_note
from ..checks import Option
from ..images import PreparedImage
from .any_layer import first_order_warning, gradient_contributions
from .base import Explainer, PairExplanation, PointToPoint, register_method, zero_embeddings

__all__ = ["ActivationDecomposition", "position_contributions"]


def position_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool = True,
                           show_progress: bool = True, mode: str = "auto") -> dict:
    """Per-position embedding contributions for one normalised image x (1, 3, H, W).

    Returns a dict with ``E`` (N, D) float64 — rows sum to the embedding when ``bias`` is True —,
    ``g`` (D,) the embedding, ``grid`` (h, w), and ``notes``. Works in float64: completeness is
    checked to 1e-5 relative and the factors are small. In any-layer mode (``layer=``) also
    ``residual_ratio`` and ``mode``: 'forward' (one Jacobian-vector product per position),
    'backward' (one vector-Jacobian product per embedding dimension) or 'auto' (default: the
    cheaper), same values to float32 round-off.
    """
    notes: list[str] = []
    if model.decompose_layer is not None:
        return _gradient_contributions(model, x, bias=bias, show_progress=show_progress, mode=mode)
    with torch.no_grad():
        feats = model.features(x)
        _, C, h, w = feats.shape
        n = h * w
        pooled = model.pooling(feats)
        W, b = model.head_affine(pooled)
        W = W.double()
        b = b.double()
        A = model.pooling.prepare_features(feats)[0].reshape(C, n).double()
        if model.pooling.kind == "flatten":
            # Each position has its own block of the head's weight: W (D, C*h*w) -> (D, C, N).
            E = torch.einsum("dcn,cn->nd", W.reshape(W.shape[0], C, n), A)
        else:
            a = model.pooling.weights(feats)[0].double()  # (C, N)
            weighted = (a * A).T  # (N, C)
            E = weighted if model.head_kind == "identity" else weighted @ W.T
        if bias:
            E = E + b / n
        g = (model.pooling(feats).double() @ W.T + b)[0] if model.head_kind != "identity" else pooled[0].double()
        if model.head_kind == "generic":
            notes.append(
                frozen_norm_note(model.head)  # a LayerNorm head: adapters/frozen_norm.py
                or "head linearised at the observed input (Jacobian J at the pooled feature, offset "
                "h(p) - J p treated as the bias)"
            )
        if model.output_normalized:
            norm = g.norm()
            if norm > 0:
                E, g = E / norm, g / norm
                notes.append("the model L2-normalises its embedding; contributions are divided by |g|")
            else:  # normalize(0) is 0 (torch's eps): the embedding is 0, and so is every contribution
                E, g = torch.zeros_like(E), torch.zeros_like(g)
                notes.append("the embedding is all zero before the model's L2 normalisation (which "
                             "keeps it 0): every contribution is 0")
    return {"E": E, "g": g, "grid": (h, w), "notes": notes}


def _gradient_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool, show_progress: bool,
                            mode: str = "auto", chunk: int | None = None) -> dict:
    """Any-layer mode (explain/any_layer.py): forward mode unless positions outnumber twice the
    embedding dimensions, backward on request or when the model's operations lack forward-mode AD."""
    return gradient_contributions(model, x, bias=bias, show_progress=show_progress, mode=mode, chunk=chunk)


def _backward_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool = True,
                            show_progress: bool = False, chunk: int | None = None) -> dict:
    """The former any-layer path (one vector-Jacobian product per embedding dimension), kept so
    benchmarks and tests compare it with forward mode."""
    return gradient_contributions(model, x, bias=bias, show_progress=show_progress, mode="backward", chunk=chunk)


@register_method("decomposition")
class ActivationDecomposition(Explainer):
    """Activation decomposition of the similarity into pairs of positions.

    Paper: Zhu, Yang, Chen, "Visual Explanation for Deep Metric Learning", IEEE TIP 2021,
    arXiv 1909.12977.

    Deviations and extensions:

    * ``bias=True`` (default) spreads the head's bias evenly over positions so the decomposition is
      exact; the authors' code drops it (``bias=False``).
    * ``clip=False`` (default) keeps the signed, exact D; ``clip=True`` is the authors' display
      variant ``D <- max(D / max(D), 0)`` (then no longer sums to the score).
    * Non-affine heads are linearised at the observed input; flattened heads use per-position
      weight blocks; any layer before non-linear blocks uses gradient x input (not in the paper;
      forward-mode AD, one product per position, explain/any_layer.py). When the first-order
      residual |g - sum_i e_i| / |g| exceeds 0.5 a UserWarning says so, also kept in
      ``info['first_order_warning']``.
    * Cosine metric with an all-zero embedding (undefined): the score is 0 (torch's eps convention)
      and so is every D(i, j), with a warning naming the image; dot and Euclidean are defined at 0.
    * Euclidean metric: S = -|g_X - g_Y|^2 = 2 g_X.g_Y - |g_X|^2 - |g_Y|^2; the cross term is decomposed
      as above and the self terms per position (e_i . g), all within one factorised D.
    """

    paper = "Zhu, Yang, Chen. Visual Explanation for Deep Metric Learning. IEEE TIP 2021 (arXiv 1909.12977)"
    options = {
        "bias": Option.flag(True, "spread the head's bias over positions (exact); False = the authors' code"),
        "clip": Option.flag(False, "the authors' display variant D <- max(D / max(D), 0)"),
        "show_progress": Option.flag(True, "progress bar for the any-layer mode"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        bias = self.config["bias"]
        progress = self.config["show_progress"]
        cq = position_contributions(model, query.tensor, bias=bias, show_progress=progress)
        cr = position_contributions(model, reference.tensor, bias=bias, show_progress=progress)
        Eq, Er, gq, gr = cq["E"], cr["E"], cq["g"], cr["g"]
        nq, nr = Eq.shape[0], Er.shape[0]

        # g is the embedding computed from the very features decomposed (the model's own pooling and
        # head), so no extra forward pass is needed for the score; tests check it against the module.
        score = float(model.score_embeddings(gq[None], gr[None])[0])
        info = dict(model.describe())
        info["notes"] = cq["notes"] + [t for t in cr["notes"] if t not in cq["notes"]]
        if "residual_ratio" in cq:
            info["residual_ratio"] = {"query": cq["residual_ratio"], "reference": cr["residual_ratio"]}
            message = first_order_warning(model.decompose_layer, info["residual_ratio"], bias)
            if message:
                warnings.warn(message, UserWarning, stacklevel=4)  # the caller of explain()
                info["first_order_warning"] = message
        info["bias"] = bias
        # Cosine of an all-zero embedding: score 0 (torch's eps convention), every D(i, j) 0.
        zero = zero_embeddings(self.name, model.metric, gq, gr)
        if zero:
            info["zero_embedding"] = zero

        if model.metric == "euclidean":
            # D(i, j) = 2 e_i.e_j - (e_i . g_X) / N_Y - (e_j . g_Y) / N_X as one product of
            # augmented factors [e_i, -(e_i.g_X), 1/N_X] . [2 e_j, 1/N_Y, -(e_j.g_Y)].
            self_q = -(Eq @ gq)
            self_r = -(Er @ gr)
            Gq = torch.cat([Eq, self_q[:, None], torch.full((nq, 1), 1.0 / nq, dtype=Eq.dtype)], dim=1)
            Gr = torch.cat([2 * Er, torch.full((nr, 1), 1.0 / nr, dtype=Er.dtype), self_r[:, None]], dim=1)
            scale = 1.0
            info["parts"] = {
                "cross": float(2 * Eq.sum(0) @ Er.sum(0)),
                "self_query": float(self_q.sum()),
                "self_reference": float(self_r.sum()),
            }
            info["part_maps"] = {
                "cross_query": (2 * Eq @ Er.sum(0)).float().numpy().reshape(cq["grid"]),
                "cross_reference": (2 * Er @ Eq.sum(0)).float().numpy().reshape(cr["grid"]),
                "self_query": self_q.float().numpy().reshape(cq["grid"]),
                "self_reference": self_r.float().numpy().reshape(cr["grid"]),
            }
        else:
            Gq, Gr = Eq, Er
            # torch's cosine_similarity divides by max(|g|, eps) per vector: the same scale keeps
            # sum D == score even for vanishing (but non-zero) embeddings.
            eps = 1e-12
            scale = (0.0 if zero else 1.0 / (max(float(gq.norm()), eps) * max(float(gr.norm()), eps))) \
                if model.metric == "cosine" else 1.0

        if self.config["clip"]:
            Dm = scale * (Gq @ Gr.T)
            top = Dm.max()
            Dm = (Dm / top).clamp_min(0) if top > 0 else torch.zeros_like(Dm)
            # Still factorised, trivially: D = D_clipped @ I.
            Gq, Gr, scale = Dm, torch.eye(nr, dtype=Dm.dtype), 1.0
            info["notes"].append("clipped display variant: maps no longer sum to the score")

        qmap = (scale * (Gq @ Gr.sum(0))).reshape(cq["grid"])
        rmap = (scale * (Gr @ Gq.sum(0))).reshape(cr["grid"])
        total = float(qmap.sum())
        # Relative to the natural scale of the summed terms: 1 for cosine, |g_X||g_Y| for dot,
        # |g_X|^2 + |g_Y|^2 for Euclidean (a near-zero score would make a plain ratio meaningless).
        natural = {"cosine": 1.0, "dot": float(gq.norm() * gr.norm()),
                   "euclidean": float(gq @ gq + gr @ gr)}[model.metric]
        completeness = abs(total - score) / max(natural, 1e-12)
        info["decomposition_sum"] = total

        p2p = PointToPoint(
            query_factors=Gq.numpy(),
            reference_factors=Gr.numpy(),
            scale=scale,
            query_grid=cq["grid"],
            reference_grid=cr["grid"],
            query_vectors=Eq.numpy(),
            reference_vectors=Er.numpy(),
        )
        return PairExplanation(
            method=self.name,
            score=score,
            query=query.display,
            reference=reference.display,
            query_map=qmap.float().numpy(),
            reference_map=rmap.float().numpy(),
            signed=True,
            metric=model.metric,
            point_to_point=p2p,
            completeness_error=completeness if math.isfinite(completeness) else float("nan"),
            info=info,
        )

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
from ..checks import InputTypeError, Option
from ..images import PreparedImage
from .any_layer import first_order_warning, gradient_contributions
from .base import Explainer, PairExplanation, PointToPoint, register_method, zero_embeddings
from .bias_terms import spatial_contributions

__all__ = ["ActivationDecomposition", "position_contributions", "model_score", "precision_info"]


def _is_half(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


def model_score(model: SimilarityModel, cq: dict, cr: dict) -> tuple[float, float]:
    """(the model's own score, the float64 score of the decomposed embeddings) of two
    ``position_contributions`` results. For float32 / float64 models the two agree to float32
    round-off and the float64 one is reported (as before); a float16 / bfloat16 model's own score is
    the metric of its own rounded embeddings, which the float64 terms do not reproduce exactly."""
    decomposed = float(model.score_embeddings(cq["g"][None], cr["g"][None])[0])
    if _is_half(model.dtype) and "g_model" in cq and "g_model" in cr:
        return float(model.score_embeddings(cq["g_model"][None], cr["g_model"][None])[0]), decomposed
    return decomposed, decomposed


def precision_info(model: SimilarityModel, score: float, decomposed: float, natural: float) -> dict:
    """``info['precision']``: the model's dtype and device, what the terms are accumulated in
    (float64), the score they sum to and how far the model's own score is from it (relative to the
    metric's natural scale): the model's rounding, not an error of the decomposition. In any-layer
    mode the Jacobian products run through the network in its own dtype (``gradient_products``)."""
    dtype = str(model.dtype).replace("torch.", "")
    info = {
        "model_dtype": dtype,
        "device": str(model.device),
        "accumulation": "float64",
        "decomposed_score": decomposed,
        "natural_scale": natural,
        "model_rounding": abs(score - decomposed) / max(natural, 1e-12),
    }
    if model.decompose_layer is not None:
        info["gradient_products"] = dtype
    return info


def precision_note(model: SimilarityModel, score: float, decomposed: float,
                   reading: str = "they sum to") -> str | None:
    """A note for half-precision models: the terms sum to the float64 score, not to the rounded one."""
    if not _is_half(model.dtype):
        return None
    dtype = str(model.dtype).replace("torch.", "")
    source = (f"gradient x input products computed by the network in {dtype}" if model.decompose_layer
              else f"its {dtype} feature map")
    return (f"{dtype} model: contributions accumulated in float64 from {source}; {reading} "
            f"the float64 score {decomposed:.6g}; the model's own {dtype} score {score:.6g} differs by "
            "its rounding")


def natural_scale(metric: str, gq: torch.Tensor, gr: torch.Tensor) -> float:
    """The natural scale of the summed terms: 1 for cosine, |g_X||g_Y| for dot, |g_X|^2 + |g_Y|^2 for
    Euclidean (a near-zero score would make a plain ratio meaningless)."""
    return {"cosine": lambda: 1.0, "dot": lambda: float(gq.norm() * gr.norm()),
            "euclidean": lambda: float(gq @ gq + gr @ gr)}[metric]()


def position_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool | str = True,
                           show_progress: bool = True, mode: str = "auto") -> dict:
    """Per-position embedding contributions for one normalised image x (1, 3, H, W).

    Returns a dict with ``E`` (N, D) float64 on the CPU — rows sum to the embedding when ``bias`` is
    True —, ``g`` (D,) the embedding (float64, CPU) they decompose, ``g_model`` the embedding as the
    model computes it (its dtype and device: its own score), ``grid`` (h, w), and ``notes``. Works in
    float64 whatever the model's dtype (float16, bfloat16 and float32 feature maps are exact in
    float64): completeness is checked to 1e-5 relative and the factors are small. In any-layer mode (``layer=``) also
    ``residual_ratio`` and ``mode``: 'forward' (one Jacobian-vector product per position),
    'backward' (one vector-Jacobian product per embedding dimension) or 'auto' (default: the
    cheaper), same values to float32 round-off. ``bias``: True (the model's ``bias_split``, "even"
    unless it sets one), "even", "spatial" (in any-layer mode the later layers' biases split over the
    cells, explain/bias_terms.py; at the pooling input the same as "even") or False.
    """
    if not (isinstance(bias, bool) or bias in ("even", "spatial")):
        raise InputTypeError(f"bias={bias!r}: expected True, False, 'even' or 'spatial'")
    if bias is True:
        bias = getattr(model, "bias_split", "even")
    bias = True if bias == "even" else bias
    if model.decompose_layer is not None:
        found = _gradient_contributions(model, x, bias=bias, show_progress=show_progress, mode=mode)
    else:
        found = _exact_contributions(model, x, bias=bias is not False)
    # The maps and factors are assembled on the CPU (numpy): N x D float64 values, small.
    found["E"], found["g"] = found["E"].cpu(), found["g"].cpu()
    return found


def _exact_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool) -> dict:
    notes: list[str] = []
    with torch.no_grad():
        feats = model.features(x)
        _, C, h, w = feats.shape
        n = h * w
        pooled = model.pooling(feats)
        W, b = model.head_affine(pooled)
        W = W.double()
        b = b.double()
        # Pooling weights and pooled feature from the feature map in float64 (exact for a float16,
        # bfloat16 or float32 map), so that the rows of E sum to g to float64 round-off.
        feats64 = feats.double()
        A = model.pooling.prepare_features(feats64)[0].reshape(C, n)
        if model.pooling.kind == "flatten":
            # Each position has its own block of the head's weight: W (D, C*h*w) -> (D, C, N).
            E = torch.einsum("dcn,cn->nd", W.reshape(W.shape[0], C, n), A)
        else:
            a = model.pooling.weights(feats64)[0]  # (C, N)
            weighted = (a * A).T  # (N, C)
            E = weighted if model.head_kind == "identity" else weighted @ W.T
        if bias:
            E = E + b / n
        pooled64 = model.pooling(feats64)
        g = (pooled64 @ W.T + b)[0] if model.head_kind != "identity" else pooled64[0]
        g_model = model.embed_from_features(feats)[0]  # the model's own pooling and head, its dtype
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
    return {"E": E, "g": g, "g_model": g_model, "grid": (h, w), "notes": notes}


def _gradient_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool | str, show_progress: bool,
                            mode: str = "auto", chunk: int | None = None) -> dict:
    """Any-layer mode (explain/any_layer.py): forward mode unless positions outnumber twice the
    embedding dimensions, backward on request or when the model's operations lack forward-mode AD.
    ``bias="spatial"``: the later biases split over the cells (explain/bias_terms.py)."""
    if bias == "spatial":
        return spatial_contributions(model, x, show_progress=show_progress, mode=mode, chunk=chunk)
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
      exact; the authors' code drops it (``bias=False``). In any-layer mode ``bias_split="spatial"``
      gives each cell its share of the later layers' biases (FullGrad-like, explain/bias_terms.py)
      before any residual is spread; the default is the model's ``bias_split`` ("even" unless set).
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
        "bias_split": Option.choice(None, "any-layer mode: 'even' spreads the later biases evenly over "
                                    "cells, 'spatial' splits them by area (exact for piecewise-linear "
                                    "networks); None: the model's default", ("even", "spatial", None)),
        "clip": Option.flag(False, "the authors' display variant D <- max(D / max(D), 0)"),
        "show_progress": Option.flag(True, "progress bar for the any-layer mode"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        split = self.config["bias_split"] or getattr(model, "bias_split", "even")
        bias = split if self.config["bias"] else False
        progress = self.config["show_progress"]
        cq = position_contributions(model, query.tensor, bias=bias, show_progress=progress)
        cr = position_contributions(model, reference.tensor, bias=bias, show_progress=progress)
        Eq, Er, gq, gr = cq["E"], cr["E"], cq["g"], cr["g"]
        nq, nr = Eq.shape[0], Er.shape[0]

        # g is the embedding computed from the very features decomposed (the model's own pooling and
        # head), so no extra forward pass is needed for the score; tests check it against the module.
        # A half-precision model's score is its own (rounded); the terms sum to ``decomposed``.
        score, decomposed = model_score(model, cq, cr)
        info = dict(model.describe())
        info["notes"] = cq["notes"] + [t for t in cr["notes"] if t not in cq["notes"]]
        note = precision_note(model, score, decomposed)
        if note:
            info["notes"].append(note)
        if "residual_ratio" in cq:
            info["residual_ratio"] = {"query": cq["residual_ratio"], "reference": cr["residual_ratio"]}
            message = first_order_warning(model.decompose_layer, info["residual_ratio"], bias)
            if message:
                warnings.warn(message, UserWarning, stacklevel=4)  # the caller of explain()
                info["first_order_warning"] = message
        # The split applies to the any-layer mode only: at the pooling input nothing is shared out.
        info["bias"], info["bias_split"] = self.config["bias"], split if model.decompose_layer else None
        # Cosine of an all-zero embedding: score 0 (torch's eps convention), every D(i, j) 0.
        zero = zero_embeddings(self.name, model.metric, gq, gr)
        if zero:
            info["zero_embedding"] = zero

        if model.metric == "euclidean":
            # D(i, j) = 2 e_i.e_j - (e_i . g_X) / N_Y - (e_j . g_Y) / N_X as one product of
            # augmented factors [e_i, -(e_i.g_X), 1/N_X] . [2 e_j, 1/N_Y, -(e_j.g_Y)].
            self_q = -(Eq @ gq)
            self_r = -(Er @ gr)
            Gq = torch.cat([Eq, self_q[:, None], Eq.new_full((nq, 1), 1.0 / nq)], dim=1)
            Gr = torch.cat([2 * Er, Er.new_full((nr, 1), 1.0 / nr), self_r[:, None]], dim=1)
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
            Gq, Gr, scale = Dm, torch.eye(nr, dtype=Dm.dtype, device=Dm.device), 1.0
            info["notes"].append("clipped display variant: maps no longer sum to the score")

        qmap = (scale * (Gq @ Gr.sum(0))).reshape(cq["grid"])
        rmap = (scale * (Gr @ Gq.sum(0))).reshape(cr["grid"])
        total = float(qmap.sum())
        natural = natural_scale(model.metric, gq, gr)
        # The identity: the float64 terms against the float64 score of the same embeddings (for a
        # half-precision model the rounding of its own score is reported apart, info['precision']).
        completeness = abs(total - decomposed) / max(natural, 1e-12)
        info["decomposition_sum"] = total
        info["precision"] = precision_info(model, score, decomposed, natural)

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

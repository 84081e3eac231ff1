"""Gradient methods on a similarity (docs/methods.md, "Gradient methods"): Grad-CAM, RGrad-CAM, similarity attention.

All three take gradients at the decomposed layer A (the feature map feeding pooling, or the model's
``layer=`` in any-layer mode) on a fresh graph per call (``torch.autograd.grad``), so nothing
accumulates between passes — the seed papers' demo code accumulates ``.grad`` across calls.

Why Grad-CAM scatters on cosine models: with S = cos(g_X, g_Y),
``dS/dg_X = (ĝ_Y - S ĝ_X) / |g_X|``. The component of ĝ_Y along ĝ_X is removed, so what is left is
the *difference* between the two embeddings' directions — large where the images disagree, small
where they agree — and channel weights averaged from it mix signs (tests/test_methods.py checks the
formula against autograd).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..adapters import SimilarityModel
from ..checks import Option
from ..images import PreparedImage
from .base import Explainer, PairExplanation, register_method, zero_embeddings

__all__ = [
    "GradCAM",
    "RGradCAM",
    "SimilarityAttention",
    "layer_activations",
    "similarity_gradients",
]


# ------------------------------------------------------------------------------------------
# Shared helpers (also used by similarity_map, sfam and perturbation)


def layer_activations(model: SimilarityModel, x: torch.Tensor) -> tuple[torch.Tensor, Callable]:
    """Activations A (1, C, h, w) at the explained layer, detached, and ``embed(A) -> g (1, D)``.

    The explained layer is the feature map feeding pooling, or ``model.decompose_layer`` when the
    model was wrapped with ``layer=`` (then ``embed`` reruns the network with that layer's output
    replaced, so gradients reach A through every block after it).
    """
    with torch.no_grad():
        if model.decompose_layer is not None:
            A0 = model.decompose_features(x)

            def embed(A):
                return model.run_with_layer_replaced(x, A)
        else:
            A0 = model.features(x)
            embed = model.embed_from_features
    return A0.detach(), embed


def similarity_gradients(model: SimilarityModel, query_tensor: torch.Tensor,
                         reference_tensor: torch.Tensor) -> dict:
    """dS/dA for both images, S the model's similarity, on one fresh graph.

    Returns ``A_query`` / ``A_reference`` (C, h, w), ``grad_query`` / ``grad_reference`` (C, h, w),
    ``g_query`` / ``g_reference`` (D,) and ``score`` (float). S depends on both images, so one
    backward pass gives both partial gradients (each with the other image held fixed).
    """
    Aq0, embed_q = layer_activations(model, query_tensor)
    Ar0, embed_r = layer_activations(model, reference_tensor)
    with torch.enable_grad():
        Aq = Aq0.clone().requires_grad_(True)
        Ar = Ar0.clone().requires_grad_(True)
        gq = embed_q(Aq)
        gr = embed_r(Ar)
        S = model.score_embeddings(gq, gr)[0]
        dq, dr = torch.autograd.grad(S, (Aq, Ar))
    return {
        "A_query": Aq0[0], "A_reference": Ar0[0],
        "grad_query": dq[0], "grad_reference": dr[0],
        "g_query": gq.detach()[0], "g_reference": gr.detach()[0],
        "score": float(S.detach()),
    }


def grad_cam_map(A: torch.Tensor, grad: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """Grad-CAM: alpha_c = mean_i grad[c, i]; map = ReLU(sum_c alpha_c A[c]) (float64, (h, w))."""
    A, grad = A.double(), grad.double()
    alpha = grad.mean(dim=(1, 2))
    cam = torch.einsum("c,chw->hw", alpha, A)
    return cam.clamp_min(0) if relu else cam


def _explanation(method: str, model: SimilarityModel, query: PreparedImage, reference: PreparedImage,
                 qmap: torch.Tensor, rmap: torch.Tensor, score: float, signed: bool, info: dict,
                 embeddings: tuple[torch.Tensor, torch.Tensor]) -> PairExplanation:
    full = dict(model.describe())
    full.update(info)
    # A cosine model's score at an all-zero embedding is 0 by convention; its gradient there is
    # ~1/eps (meaningless), so the maps are 0 as well.
    zero = zero_embeddings(method, model.metric, *embeddings)
    if zero:
        qmap, rmap = torch.zeros_like(qmap), torch.zeros_like(rmap)
        full["zero_embedding"] = zero
    return PairExplanation(
        method=method,
        score=score,
        query=query.display,
        reference=reference.display,
        query_map=qmap.detach().cpu().float().numpy(),
        reference_map=rmap.detach().cpu().float().numpy(),
        signed=signed,
        metric=model.metric,
        info=full,
    )


# ------------------------------------------------------------------------------------------
# Methods


@register_method("gradcam")
class GradCAM(Explainer):
    """Grad-CAM of the similarity S (the model's metric) at the explained layer, for both images.

    Paper: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017 (arXiv 1610.02391); applied to a similarity as the baseline of Zhu et
    al. (arXiv 1909.12977) and Stylianou et al. (arXiv 1901.00536).

    ``alpha_c = mean_i dS/dA_i[c]``, ``map(i) = ReLU(sum_c alpha_c A_i[c])``; the query's gradient is
    taken with the reference fixed and vice versa (one backward pass of S gives both).

    Deviations: gradients come from ``torch.autograd.grad`` on a fresh graph per call (never
    accumulated); ``relu=False`` returns the signed linear combination before the ReLU (used by the
    identity checks: for GAP, a dot metric and a linear head it is the with-bias decomposition minus
    the constant ``b . g_Y / N_X``). Maps are at feature resolution, not upsampled.
    """

    paper = ("Selvaraju et al. Grad-CAM. ICCV 2017 (arXiv 1610.02391); on similarities: Zhu et al. "
             "arXiv 1909.12977")
    options = {
        "relu": Option.flag(True, "apply the ReLU (False: the signed linear combination sum_c alpha_c A[c])"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        relu = self.config["relu"]
        g = similarity_gradients(model, query.tensor, reference.tensor)
        qmap = grad_cam_map(g["A_query"], g["grad_query"], relu=relu)
        rmap = grad_cam_map(g["A_reference"], g["grad_reference"], relu=relu)
        info = {"relu": relu, "target": f"similarity ({model.metric}) with the other image fixed"}
        return _explanation(self.name, model, query, reference, qmap, rmap, g["score"], not relu, info,
                            (g["g_query"], g["g_reference"]))


@register_method("rgradcam")
class RGradCAM(Explainer):
    """RGrad-CAM (rectified Grad-CAM) of the similarity: ``map(i) = sum_c dS/dA_i[c] A_i[c]``.

    Paper: Zhu, Yang, Chen, "Visual Explanation for Deep Metric Learning", IEEE TIP 2021
    (arXiv 1909.12977), which introduces it as gradient x activation per position (no channel
    averaging). Signed; no ReLU. With a dot metric and avg, max or GeM pooling it is exactly
    ``e_i . g_Y`` with the bias-free contributions: the masked decomposition (``bias=False``) for a
    head without bias, the with-bias decomposition minus ``b . g_Y / N_X`` otherwise. With cosine it
    also carries ``-S e_i . g_X / |g_X|^2`` from the normalisation (tests/test_methods.py).

    Deviations: none in the formula; gradients are taken on a fresh graph per call.
    """

    paper = "Zhu, Yang, Chen. Visual Explanation for Deep Metric Learning. IEEE TIP 2021 (arXiv 1909.12977)"
    options: dict = {}

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        g = similarity_gradients(model, query.tensor, reference.tensor)
        qmap = (g["grad_query"].double() * g["A_query"].double()).sum(0)
        rmap = (g["grad_reference"].double() * g["A_reference"].double()).sum(0)
        info = {"target": f"similarity ({model.metric}) with the other image fixed"}
        return _explanation(self.name, model, query, reference, qmap, rmap, g["score"], True, info,
                            (g["g_query"], g["g_reference"]))


@register_method("similarity_attention")
class SimilarityAttention(Explainer):
    """Gradient attention from the embedding (Zheng et al., "Towards Visually Explaining Similarity
    Models", arXiv 2008.06035).

    Per embedding dimension d, weights from the unit-normalised, detached embeddings:
    ``w = 1 - |ĝ_X - ĝ_Y|`` (similar pair), or with a dissimilar third image Z (option ``negative``)
    ``w = (1 - |ĝ_X - ĝ_Y|) * |ĝ_X - ĝ_Z|``. The image's score is ``s_X = sum_d |g_X[d]| w_d`` and the
    map is Grad-CAM of s_X at A (``ReLU(sum_c mean_i(ds_X/dA_i[c]) A[c])``); the same for Y with
    ``s_Y = sum_d |g_Y[d]| w_d`` (the weights are shared).

    Variant: ``absolute=True`` (default) uses |g_X[d]|, the form that stays meaningful for embeddings
    with negative components (for ReLU-pooled features with an identity head it is the same as the
    plain sum); ``absolute=False`` uses ``s_X = sum_d g_X[d] w_d``. Deviations: the paper learns
    the weights' use inside a training objective; here only its inference-time attention is
    computed, with any embedding model, at the explained layer.
    """

    paper = "Zheng, Karanam, Chen, Radke, Wu. Towards Visually Explaining Similarity Models. arXiv 2008.06035"
    options = {
        # The negative image is checked where it is read (model.prepare names it 'negative').
        "negative": Option.custom(None, "optional dissimilar image Z (path, PIL, array, tensor): triplet "
                                  "weights", lambda value, name: value),
        "absolute": Option.flag(True, "s_X = sum_d |g_X[d]| w_d (False: sum_d g_X[d] w_d)"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        absolute = self.config["absolute"]
        negative = self.config["negative"]
        gz = None
        if negative is not None:
            z = model.prepare(negative, name="negative")
            with torch.no_grad():
                gz = model.embed_tensor(z.tensor)[0]
        Aq0, embed_q = layer_activations(model, query.tensor)
        Ar0, embed_r = layer_activations(model, reference.tensor)
        with torch.enable_grad():
            Aq = Aq0.clone().requires_grad_(True)
            Ar = Ar0.clone().requires_grad_(True)
            gq = embed_q(Aq)[0]
            gr = embed_r(Ar)[0]
            uq = F.normalize(gq.detach(), dim=0)
            ur = F.normalize(gr.detach(), dim=0)
            w = 1.0 - (uq - ur).abs()
            if gz is not None:
                w = w * (uq - F.normalize(gz.to(uq.dtype), dim=0)).abs()
            sq = ((gq.abs() if absolute else gq) * w).sum()
            sr = ((gr.abs() if absolute else gr) * w).sum()
            (dq,) = torch.autograd.grad(sq, Aq)
            (dr,) = torch.autograd.grad(sr, Ar)
        score = float(model.score_embeddings(gq.detach()[None], gr.detach()[None])[0])
        qmap = grad_cam_map(Aq0[0], dq[0])
        rmap = grad_cam_map(Ar0[0], dr[0])
        info = {
            "absolute": absolute,
            "triplet": gz is not None,
            "attention_scores": {"query": float(sq.detach()), "reference": float(sr.detach())},
            "weights": w.detach().cpu().float().numpy(),
        }
        return _explanation(self.name, model, query, reference, qmap, rmap, score, False, info,
                            (gq.detach(), gr.detach()))

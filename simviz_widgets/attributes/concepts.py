"""Concept activation vectors and the explanation-suitability prior (TCAV, Kim et al. 2018; SANE §7).

For each attribute, a logistic-regression probe separates images with and without it in the
similarity model's *pooled* feature space (the vector the head reads). Its unit normal is the
concept activation vector (CAV). The prior of the attribute is the fraction of matched pairs whose
similarity *increases* when the query's pooled feature moves along the CAV: the sign of the
directional derivative ``d S(head(p_X + t v), g_Y) / dt`` at ``t = 0`` (exact, by autograd), over
the pairs whose query has the attribute (all pairs if none has it). An attribute the model relies
on to match scores near 1; one it ignores scores near 0.5 or below.

Devices and dtypes: the pooled features and the derivative are computed on the model's device; the
probes (scikit-learn) run on a float64 CPU copy of the pooled features. The derivative is taken in
float64 through an affine or identity head (exact for a half model's pooled features, so a float16
rounding cannot flip a small derivative's sign), through a generic head in the model's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..adapters import SimilarityModel
from ..checks import InputError, check_float, check_instance, check_int
from .data import AttributeData
from .predictor import image_batch

__all__ = ["ConceptVectors", "fit_concept_vectors"]


@dataclass(frozen=True, eq=False)
class ConceptVectors:
    """``vectors`` (K, C) unit CAVs in pooled-feature space; ``probe_accuracy`` (K,) on the fitting
    data; ``prior`` (K,) fraction of pairs whose similarity increases along each CAV."""

    names: tuple[str, ...]
    vectors: np.ndarray
    probe_accuracy: np.ndarray
    prior: np.ndarray
    pairs_used: np.ndarray


def _pooled(model: SimilarityModel, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.pooling(model.features(x[s : s + chunk])) for s in range(0, len(x), chunk)])


def _embedding(model: SimilarityModel, p: torch.Tensor) -> torch.Tensor:
    """The (normalised) embedding of pooled features ``p``: an affine head in ``p``'s dtype, a generic
    head in the model's dtype (its own weights), returned in ``p``'s dtype."""
    if model.head_weight is not None:
        g = p @ model.head_weight.to(p.dtype).T + model.head_bias.to(p.dtype)
    elif model.head_kind == "identity":
        g = p
    else:
        g = model.head(p.to(model.dtype)).to(p.dtype)
    return torch.nn.functional.normalize(g, dim=1) if model.output_normalized else g


def fit_concept_vectors(model: SimilarityModel, data: AttributeData, *, regularization: float = 1.0,
                        seed: int = 0) -> ConceptVectors:
    """Fit one linear probe per attribute on pooled features and the prior over ``data``'s pairs
    (each image with its partner)."""
    from sklearn.linear_model import LogisticRegression

    check_instance(model, "model", SimilarityModel)
    check_instance(data, "data", AttributeData)
    regularization = check_float(regularization, "regularization", above=0.0)
    seed = check_int(seed, "seed", minimum=0)
    x = image_batch(model, data.images)
    pooled = _pooled(model, x)
    feats = pooled.cpu().double().numpy()
    # Standardising keeps the probe well conditioned; the CAV is mapped back to the raw space.
    mu, sd = feats.mean(0), feats.std(0) + 1e-8
    z = (feats - mu) / sd
    vectors, accuracy = [], []
    for k, name in enumerate(data.names):
        y = data.labels[:, k]
        if y.all() or not y.any():
            raise InputError(
                f"attribute {name!r} is {'on every' if y.all() else 'on no'} image; a concept vector needs "
                "images with and without it"
            )
        probe = LogisticRegression(C=regularization, max_iter=2000, random_state=seed).fit(z, y)
        v = probe.coef_[0] / sd  # the normal in raw pooled coordinates
        vectors.append(v / max(np.linalg.norm(v), 1e-12))
        accuracy.append(probe.score(z, y))
    V = torch.as_tensor(np.stack(vectors), dtype=torch.float64, device=pooled.device)

    partners = torch.as_tensor(data.partners, device=pooled.device)
    p = pooled.to(torch.float64, copy=True).requires_grad_(True)  # exact for any model dtype
    with torch.enable_grad():
        g = _embedding(model, p)
        s = model.score_embeddings(g, g.detach()[partners])
        (grad,) = torch.autograd.grad(s.sum(), p)
    derivative = (grad.double() @ V.T).cpu().numpy()  # (B, K): directional derivative of each pair's score
    prior, used = [], []
    for k in range(len(data.names)):
        has = data.labels[:, k]
        rows = has if has.any() else np.ones(len(has), bool)
        prior.append(float((derivative[rows, k] > 0).mean()))
        used.append(int(rows.sum()))
    return ConceptVectors(tuple(data.names), np.stack(vectors).astype(np.float32), np.asarray(accuracy),
                          np.asarray(prior, dtype=np.float32), np.asarray(used))

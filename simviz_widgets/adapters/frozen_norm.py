"""A head with LayerNorm (timm ViT's ``fc_norm``, ConvNeXt's head norm) as one affine map at the observed input.

``LN(p) = gamma * (p - mean(p)) / sigma(p) + beta`` with ``sigma(p) = sqrt(var(p) + eps)``. Centring is
linear; only the division by sigma(p) is not. Holding sigma at its observed value gives an affine
map ``A p + beta``, ``A = diag(gamma / sigma) (I - 1 1^T / C)``, equal to LN at the observed p, so the
decomposition stays exact there, with the head's true offsets (beta, the Linear biases) as its bias.

Why not the Jacobian (``head_affine``'s linearisation of other heads): LayerNorm is scale-invariant,
LN(t p) = LN(p) for t > 0, so its Jacobian J satisfies J p = 0 up to eps. With the Jacobian the
positions' contributions ``J a_i F_i`` would sum to about zero and the offset ``h(p) - J p`` would
hold the whole embedding: the maps would show a zero-sum pattern on top of a uniform share. Holding
the normaliser fixed is the LayerNorm rule of Ali et al., "XAI for Transformers: Better Explanations
through Conservative Propagation", ICML 2022 (docs/methods.md, "Activation decomposition").
"""

from __future__ import annotations

import torch
from torch import nn

from .head import bn_affine, head_layers

__all__ = ["frozen_norm_affine", "frozen_norm_note", "NOTE"]

NOTE = ("head with LayerNorm: its scale 1/sigma held at the observed input, so the head is one affine "
        "map there (exact at this input; beta and the Linear biases are the bias)")


def _chain(head: nn.Module | None) -> list[nn.Module] | None:
    """The head's layers when they are Linear / BatchNorm1d / LayerNorm (one normalised dimension)
    with at least one LayerNorm, else None."""
    if head is None:
        return None
    layers = head_layers(head)
    norms = [m for m in layers if isinstance(m, nn.LayerNorm)]
    if not norms or any(len(m.normalized_shape) != 1 for m in norms):
        return None
    if not all(isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm)) for m in layers):
        return None
    return layers


def frozen_norm_affine(head: nn.Module | None, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(W, b) with ``W p + b == head(p)`` at ``pooled`` (1, P), LayerNorm scales held at their observed
    values; None when the head is not such a chain (or its sizes do not fit)."""
    layers = _chain(head)
    if layers is None:
        return None
    with torch.no_grad():
        v = pooled[0].detach().double()  # the observed vector at the current layer
        f64 = {"dtype": torch.float64, "device": v.device}
        W, b = torch.eye(v.shape[0], **f64), torch.zeros(v.shape[0], **f64)
        for m in layers:
            if isinstance(m, nn.Linear):
                if m.in_features != v.shape[0]:
                    return None
                A = m.weight.double()
                shift = m.bias.double() if m.bias is not None else torch.zeros(A.shape[0], **f64)
            elif isinstance(m, nn.BatchNorm1d):
                s, t = bn_affine(m)
                if s.shape[0] != v.shape[0]:
                    return None
                A, shift = torch.diag(s.double()), t.double()
            else:
                n = v.shape[0]
                if m.normalized_shape[0] != n:
                    return None
                sigma = torch.sqrt(v.var(unbiased=False) + m.eps)
                A = (torch.eye(n, **f64) - 1.0 / n) / sigma
                if m.weight is not None:
                    A = m.weight.double()[:, None] * A
                shift = m.bias.double() if m.bias is not None else torch.zeros(n, **f64)
            W, b, v = A @ W, A @ b + shift, A @ v + shift
    return W.to(pooled.dtype), b.to(pooled.dtype)


def frozen_norm_note(head: nn.Module | None) -> str | None:
    """NOTE when ``frozen_norm_affine`` linearises ``head``, else None."""
    return NOTE if _chain(head) is not None else None

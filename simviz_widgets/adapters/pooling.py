"""Global pooling as a per-position weighting, and recognising a pooling module in a network.

``p[c] = sum_i a(c, i) A_i[c]``: average, max (one position per channel) and GeM pooling all have
this form, which is what makes the decomposition exact; 'flatten' feeds the whole map to the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_choice, check_float
from .errors import ModelAdapterError, adapter_check

__all__ = ["Pooling", "METRICS", "POOLINGS", "pooling_from_module", "is_global_size"]

METRICS = ("cosine", "dot", "euclidean")
POOLINGS = ("avg", "max", "gem", "flatten")


@dataclass(frozen=True)
class Pooling:
    """Global pooling as a per-position weighting: ``p[c] = sum_i a(c, i) A_i[c]``."""

    kind: str = "avg"
    p: float = 3.0  # GeM power
    eps: float = 1e-6  # GeM clamp, as in the usual GeM layers

    def __post_init__(self):
        adapter_check(check_choice, self.kind, "pooling", POOLINGS)
        gem = self.kind == "gem"
        object.__setattr__(self, "p", adapter_check(check_float, self.p, "GeM power p", above=0.0 if gem else None))
        object.__setattr__(self, "eps", adapter_check(check_float, self.eps, "GeM eps", minimum=0.0))

    def prepare_features(self, feats: torch.Tensor) -> torch.Tensor:
        """GeM pools clamped activations; decomposing the clamped map keeps the identity exact."""
        return feats.clamp(min=self.eps) if self.kind == "gem" else feats

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return feats.mean(dim=(2, 3))
        if self.kind == "max":
            return feats.amax(dim=(2, 3))
        if self.kind == "gem":
            return feats.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)
        return feats.flatten(1)

    def weights(self, feats: torch.Tensor) -> torch.Tensor:
        """a (B, C, N) with ``pool(F)[b, c] == sum_i a[b, c, i] * prepare_features(F)[b, c, i]``."""
        b, c, h, w = feats.shape
        n = h * w
        flat = self.prepare_features(feats).flatten(2)
        if self.kind == "avg":
            return torch.full_like(flat, 1.0 / n)
        if self.kind == "max":
            # One position per channel: the first argmax (torch.argmax returns the first maximum).
            idx = flat.argmax(dim=2, keepdim=True)
            return torch.zeros_like(flat).scatter_(2, idx, 1.0)
        if self.kind == "gem":
            pooled = flat.pow(self.p).mean(dim=2, keepdim=True).pow(1.0 / self.p)
            return flat.pow(self.p - 1) / (n * pooled.pow(self.p - 1))
        raise ModelAdapterError("flatten pooling has per-position head weights, not pooling weights")


def pooling_from_module(m: nn.Module) -> Pooling | None:
    """Recognise a global pooling module (torch, timm, or a GeM layer with a ``p``)."""
    if isinstance(m, nn.AdaptiveAvgPool2d) and is_global_size(m.output_size):
        return Pooling("avg")
    if isinstance(m, nn.AdaptiveMaxPool2d) and is_global_size(m.output_size):
        return Pooling("max")
    name = type(m).__name__
    if name == "SelectAdaptivePool2d":  # timm
        pool_type = getattr(m, "pool_type", "avg")
        if pool_type in ("avg", "fast", "fastavg"):
            return Pooling("avg")
        if pool_type in ("max", "fastmax"):
            return Pooling("max")
        if pool_type == "":
            return None
        raise ModelAdapterError(
            f"timm pooling {pool_type!r} is not decomposable here; use pooling='avg', 'max' or 'gem'"
        )
    if "gem" in name.lower() or "generalizedmean" in name.lower():
        p = getattr(m, "p", 3.0)
        p = float(p.detach().reshape(-1)[0]) if isinstance(p, torch.Tensor) else float(p)
        eps = float(getattr(m, "eps", 1e-6))
        return Pooling("gem", p=p, eps=eps)
    return None


def is_global_size(size) -> bool:
    """Whether an adaptive pool's ``output_size`` is 1 (x 1): a global pooling."""
    if isinstance(size, int):
        return size == 1
    return all(s == 1 for s in size)

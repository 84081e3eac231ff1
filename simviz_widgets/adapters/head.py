"""The head: the modules that run after pooling, replayed, and folded into one affine map when
they are a chain of Linear / BatchNorm1d layers (exact), else left to be linearised."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from .errors import ModelAdapterError

__all__ = ["RecordedHead", "NO_OP_TYPES", "essential", "head_layers", "bn_affine", "fold_exact_head",
           "describe_module"]

#: modules that do nothing at inference (or only reshape): left out of the head
NO_OP_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten, nn.AlphaDropout)


class RecordedHead(nn.Module):
    """Replays the modules that ran after pooling, flattening where the model's forward did."""

    def __init__(self, modules: Sequence[nn.Module], pooled_shape: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList(modules)
        self.pooled_shape = tuple(pooled_shape[1:])  # shape per image of the pool's own output

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = pooled.reshape(pooled.shape[0], *self.pooled_shape)
        for layer in self.layers:
            if isinstance(layer, (nn.Linear, nn.BatchNorm1d)) and x.ndim > 2:
                x = x.flatten(1)
            x = layer(x)
        return x.flatten(1) if x.ndim > 2 else x


def essential(modules: Iterable[nn.Module]) -> list[nn.Module]:
    """``modules`` without the no-op ones (dropout, identity, flatten)."""
    return [m for m in modules if not isinstance(m, NO_OP_TYPES)]


def head_layers(head: nn.Module) -> list[nn.Module]:
    """The essential layers of a head (recorded, sequential or a single module)."""
    if isinstance(head, RecordedHead):
        return essential(head.layers)
    if isinstance(head, nn.Sequential):
        return essential(head)
    return essential([head])


def bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm1d in eval mode as y = s * x + t."""
    var = bn.running_var if bn.track_running_stats and bn.running_var is not None else None
    mean = bn.running_mean if var is not None else None
    if var is None:
        raise ModelAdapterError("BatchNorm1d without running statistics cannot be folded")
    s = 1.0 / torch.sqrt(var + bn.eps)
    if bn.affine:
        s = s * bn.weight
        t = bn.bias - mean * s
    else:
        t = -mean * s
    return s.detach(), t.detach()


def fold_exact_head(layers: list[nn.Module], in_dim: int) -> tuple[str, torch.Tensor | None, torch.Tensor | None]:
    """(kind, W, b) when ``layers`` is an affine chain (Linear / BatchNorm1d), else ('generic', None, None)."""
    if not layers:
        return "identity", None, None
    if not all(isinstance(m, (nn.Linear, nn.BatchNorm1d)) for m in layers):
        return "generic", None, None
    # The first layer's dtype and device (a BatchNorm1d without affine parameters: its statistics').
    first = next(iter([*layers[0].parameters(), *layers[0].buffers()]), None)
    dtype, device = (first.dtype, first.device) if first is not None else (torch.get_default_dtype(), None)
    W = torch.eye(in_dim, dtype=dtype, device=device)
    b = torch.zeros(in_dim, dtype=dtype, device=device)
    for m in layers:
        if isinstance(m, nn.Linear):
            if m.in_features != W.shape[0]:
                return "generic", None, None
            W = m.weight.detach() @ W
            b = m.weight.detach() @ b + (m.bias.detach() if m.bias is not None else 0.0)
        else:
            s, t = bn_affine(m)
            if s.shape[0] != W.shape[0]:
                return "generic", None, None
            W = s[:, None] * W
            b = s * b + t
    kind = "linear" if any(isinstance(m, nn.Linear) for m in layers) else "batchnorm"
    return kind, W.contiguous(), b.contiguous()


def describe_module(m: nn.Module) -> str:
    """A module's repr on one line, shortened for messages."""
    text = repr(m).replace("\n", " ")
    return text if len(text) < 90 else text[:87] + "..."

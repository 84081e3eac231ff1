"""Derivatives through a transformer with LayerNorm scales and attention weights held at their observed values.

Gradient x input at a token grid (the any-layer mode, explain/any_layer.py) differentiates the blocks
after that grid. Two operations of a transformer make plain derivatives useless there:

* **LayerNorm is scale-invariant per token**: ``LN(t x) = LN(x)`` for t > 0, so its Jacobian J
  satisfies ``J x = 0`` (up to eps). In a pre-norm block every token enters the attention and the
  MLP through a LayerNorm, so the embedding's derivative along a token of the block's input is zero
  in the direction of that token: gradient x input gives every patch token ~0 at the last block's
  input, and the residual holds the whole embedding.
* **The attention weights** ``softmax(q k^T)`` are a non-linear function of the same tokens; their
  first-order term is not a share of the output.

Following Ali et al., "XAI for Transformers: Better Explanations through Conservative Propagation"
(ICML 2022; the LN and AH rules), the normaliser 1/sigma of every LayerNorm and the attention
probabilities are treated as constants in the derivative (``detach``): the forward values are the
network's own, and a block becomes linear in its tokens apart from the MLP's activation, so the
contributions of the tokens come close to summing to the embedding (the residual, reported as
``residual_ratio``, is what the prefix tokens, the biases and the MLP's curvature leave).

:func:`conservative` is a ``TorchFunctionMode``: ``F.layer_norm``, ``F.scaled_dot_product_attention``,
``F.multi_head_attention_forward`` (torchvision's ViT) and softmax (attention written out, Swin's
windows) are replaced while it is active. It is entered
by the token view (tokens.py) only when a layer's output is replaced to take derivatives, so plain
forward passes run the network's own fused kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["conservative"]


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(-len(normalized_shape), 0))
    # Statistics in float32 at least, as torch's own layer_norm keeps them: in float16 a value 256
    # from the mean would square to infinity.
    xs = x.float() if torch.finfo(x.dtype).bits < 32 else x
    centred = xs - xs.mean(dim=dims, keepdim=True)
    sigma = torch.sqrt(centred.pow(2).mean(dim=dims, keepdim=True) + eps)
    y = (centred / sigma.detach()).to(x.dtype)  # LN rule: the scale is a constant of the derivative
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if dropout_p or enable_gqa:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = (query @ key.transpose(-2, -1)) * scale
    n, m = logits.shape[-2:]
    if is_causal:
        keep = torch.ones(n, m, dtype=torch.bool, device=logits.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
    return logits.softmax(dim=-1).detach() @ value  # AH rule: the attention weights are constants


def _multi_head_attention(query, key, value, embed_dim, num_heads, in_proj_weight, in_proj_bias, bias_k, bias_v,
                          add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
                          key_padding_mask=None, need_weights=True, attn_mask=None, use_separate_proj_weight=False,
                          q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None,
                          average_attn_weights=True, is_causal=False):
    """torch's multi-head attention (torchvision's ViT) with the attention weights held. The mode does
    not see the calls inside a function it handles, so this one is written out; variants it does not
    cover (masks, extra key/value biases, dropout in training) run torch's own code."""
    plain = (bias_k is None and bias_v is None and not add_zero_attn and key_padding_mask is None
             and attn_mask is None and not is_causal and static_k is None and static_v is None
             and not (training and dropout_p) and query.ndim == 3)
    if not plain:
        return F.multi_head_attention_forward(
            query, key, value, embed_dim, num_heads, in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn,
            dropout_p, out_proj_weight, out_proj_bias, training=training, key_padding_mask=key_padding_mask,
            need_weights=need_weights, attn_mask=attn_mask, use_separate_proj_weight=use_separate_proj_weight,
            q_proj_weight=q_proj_weight, k_proj_weight=k_proj_weight, v_proj_weight=v_proj_weight,
            static_k=static_k, static_v=static_v, average_attn_weights=average_attn_weights, is_causal=is_causal)
    (L, N, E), S, H = query.shape, key.shape[0], num_heads
    weights = (q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight else in_proj_weight.chunk(3)
    biases = in_proj_bias.chunk(3) if in_proj_bias is not None else (None, None, None)

    def heads(x, w, b, length):  # (length, N, E) -> (N * H, length, E / H)
        return F.linear(x, w, b).reshape(length, N * H, E // H).transpose(0, 1)

    q, k, v = (heads(x, w, b, n) for x, w, b, n in zip((query, key, value), weights, biases, (L, S, S)))
    attn = ((q @ k.transpose(1, 2)) / math.sqrt(E // H)).softmax(dim=-1).detach()  # AH rule
    out = F.linear((attn @ v).transpose(0, 1).reshape(L, N, E), out_proj_weight, out_proj_bias)
    if not need_weights:
        return out, None
    attn = attn.reshape(N, H, L, S)
    return out, attn.mean(dim=1) if average_attn_weights else attn


def _softmax(func, *args, **kwargs):
    return func(*args, **kwargs).detach()


_T = torch.Tensor
_SOFTMAX = {F.softmax, torch.softmax, _T.softmax}


class _Conservative(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.layer_norm:
            return _layer_norm(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return _attention(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return _multi_head_attention(*args, **kwargs)
        if func in _SOFTMAX:
            return _softmax(func, *args, **kwargs)
        return func(*args, **kwargs)


def conservative() -> TorchFunctionMode:
    """A context (this thread only) in which LayerNorm scales and attention weights are constants of
    the derivative; forward values unchanged (to float round-off)."""
    return _Conservative()

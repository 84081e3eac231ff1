"""The fast path of the any-layer mode's forward products (explain/any_layer.py): a batch of
tangents pushed through the network's own forward code.

torch.func's jvp under vmap spends most of its time copying tangents (forward AD re-lays them out
after nearly every op) and applies batch norm and activation derivatives as separate passes. Here
the layer's output is replaced by a Tangents tensor that stands for the primal (batch 1) and
carries the B tangents of a chunk in its batch dimension: each op computes its primal as usual
and its tangents by that op's linearisation. Elementwise factors (batch norm in eval is affine,
activation derivatives, constant products) pile up at batch-1 cost and are applied once, before
the next op that needs them. An op without a rule raises NotCovered and the torch.func path
runs instead; a check against torch.func on one position guards the rules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import SimilarityModel

__all__ = ["NotCovered", "Tangents", "embedding_tangents"]


def embedding_tangents(model: SimilarityModel, feats) -> torch.Tensor:
    """Jacobian-vector products (B, D) of the embedding, from the pooling input ``feats`` that a
    tangent batch produced: torch.func for the (small) pooling and head."""
    if not isinstance(feats, Tangents):
        raise NotCovered("features that do not depend on the layer")
    at, tangents = feats.primal, feats.applied()

    def head(t):
        return torch.func.jvp(model.embed_from_features, (at,), (t[None],))[1][0]

    return torch.func.vmap(head)(tangents)


class NotCovered(Exception):
    """An operation the tangent batch has no rule for."""


class Tangents(torch.Tensor):
    """The primal (1, ...) for the forward code, plus tangents (B, ...) times a pending elementwise
    factor (None, a number, or a tensor broadcastable to the primal)."""

    @staticmethod
    def __new__(cls, primal, tangents, factor=None):
        self = torch.Tensor._make_wrapper_subclass(cls, primal.shape, strides=primal.stride(),
                                                   dtype=primal.dtype, device=primal.device)
        self.primal, self.tangents, self.factor = primal, tangents, factor
        return self

    def applied(self) -> torch.Tensor:
        if self.factor is not None:
            factor = self.factor
            if isinstance(factor, torch.Tensor) and factor.ndim == 4:  # keep the tangents' layout
                factor = factor.contiguous(memory_format=_layout(self.tangents))
            self.tangents, self.factor = self.tangents * factor, None
        return self.tangents

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            if func in _METADATA:  # shape, dtype...: the wrapper has the primal's
                return func(*args, **(kwargs or {}))
            rule = _RULES.get(func)
            if rule is None:
                raise NotCovered(getattr(func, "__qualname__", None) or repr(func))
            return rule(func, *args, **(kwargs or {}))

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise NotCovered(f"{func} reached below the rules")  # the wrapper holds no data of its own


def _layout(t: torch.Tensor) -> torch.memory_format:
    cl = t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def _batch_of(primal: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
    """The tangents of an output whose primal is ``primal``: one per sample, shaped like it."""
    if primal.shape[0] != 1:
        raise NotCovered("an operation across the batch dimension")
    shape = (tangents.shape[0], *primal.shape[1:])
    if tangents.shape != shape:
        if tangents.ndim != primal.ndim or tangents.shape[0] != shape[0]:
            raise NotCovered("an operation across the batch dimension")
        tangents = tangents.expand(shape)  # a broadcast against a constant
    return tangents


def _same_op(func, x, *args, **kwargs):
    """Ops linear in x that act on each sample alike (pooling, padding with 0, layout, dtype...)."""
    if not isinstance(x, Tangents) or any(isinstance(a, Tangents) for a in (*args, *kwargs.values())):
        raise NotCovered(f"{getattr(func, '__name__', func)} of several tangent inputs")
    out = func(x.primal, *args, **kwargs)
    return Tangents(out, _batch_of(out, func(x.applied(), *args, **kwargs)))


def _reduce(func, x, *args, **kwargs):
    """mean / sum over dimensions other than the batch."""
    dims = kwargs.get("dim", args[0] if args else None)
    dims = [dims] if isinstance(dims, int) else dims
    if dims is None or any(d % x.primal.ndim == 0 for d in dims):
        raise NotCovered("a reduction over the batch dimension")
    return _same_op(func, x, *args, **kwargs)


def _reshape(func, x, *shape, **kwargs):
    out = func(x.primal, *shape, **kwargs)
    if x.primal.shape[0] != 1 or out.shape[0] != 1:
        raise NotCovered("a reshape across the batch dimension")
    t = x.applied()
    return Tangents(out, t.reshape(t.shape[0], *out.shape[1:]))


def _identity_unless_training(func, x, *args, **kwargs):
    training = kwargs.get("training", args[1] if len(args) > 1 else True)
    if training:
        raise NotCovered("dropout in training mode")
    return x


def _pad(func, x, pad, mode="constant", value=None):
    out = func(x.primal, pad, mode, value)
    return Tangents(out, _batch_of(out, func(x.applied(), pad, mode, None if mode == "constant" else value)))


def _affine_map(func, x, weight, bias=None, *args, **kwargs):
    """conv2d / linear: the tangents go through the weight only."""
    if not isinstance(x, Tangents) or isinstance(weight, Tangents) or isinstance(bias, Tangents):
        raise NotCovered("a convolution or linear map with tangent weights")
    out = func(x.primal, weight, bias, *args, **kwargs)
    return Tangents(out, _batch_of(out, func(x.applied(), weight, None, *args, **kwargs)))


def _batch_norm(func, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
    if training or running_var is None or not isinstance(x, Tangents):
        raise NotCovered("batch norm with batch statistics")
    out = func(x.primal, running_mean, running_var, weight, bias, training, momentum, eps)
    scale = torch.rsqrt(running_var + eps) * (1 if weight is None else weight)
    scale = scale.reshape(1, -1, *([1] * (x.primal.ndim - 2)))
    return Tangents(out, x.tangents, scale if x.factor is None else x.factor * scale)


def _elementwise(func, x, *args, **kwargs):
    """A differentiable elementwise function of x (activations, clamp, pow with a constant exponent):
    its slope at the primal joins the pending factor."""
    if not isinstance(x, Tangents) or any(isinstance(a, Tangents) for a in (*args, *kwargs.values())):
        raise NotCovered(f"{getattr(func, '__name__', func)} of several tangent inputs")
    plain, inplace = _IN_PLACE.get(func, (func, False))
    if "inplace" in kwargs:
        inplace = kwargs.pop("inplace")
    elif func in _INPLACE_FLAG and args and isinstance(args[-1], bool):
        inplace, args = args[-1], args[:-1]
    out, slope = torch.func.jvp(lambda a: plain(a, *args, **kwargs), (x.primal,), (torch.ones_like(x.primal),))
    if out.shape != x.primal.shape:
        raise NotCovered(f"{getattr(func, '__name__', func)} changing the shape")
    factor = slope if x.factor is None else x.factor * slope
    return _result(Tangents(out, x.tangents, factor), x, inplace)


def _parts(v):
    return (v.primal, v) if isinstance(v, Tangents) else (v, None)


def _add(func, a, b, *, alpha=1):
    """a + alpha * b and the subtractions (reflected and in-place forms included)."""
    plain, inplace = _IN_PLACE.get(func, (func, False))
    sign = -1 if plain in (torch.sub, torch.Tensor.sub, torch.Tensor.__sub__) else 1
    if plain is torch.Tensor.__rsub__:  # b - a
        a, b, sign, plain = b, a, -1, torch.sub
    (pa, ta), (pb, tb) = _parts(a), _parts(b)
    out = plain(pa, pb, alpha=alpha) if alpha != 1 else plain(pa, pb)
    terms = [ta.applied()] if ta is not None else []
    if tb is not None:
        terms.append(tb.applied() * (sign * alpha) if sign * alpha != 1 else tb.applied())
    t = terms[0] + terms[1] if len(terms) == 2 else terms[0]
    return _result(Tangents(out, _batch_of(out, t)), a, inplace)


def _result(result, receiver, inplace):
    """``result``, written into ``receiver`` for in-place forms (the forward code may keep using it)."""
    if not inplace:
        return result
    if not isinstance(receiver, Tangents):
        raise NotCovered("an in-place update of a constant by a tangent input")
    receiver.primal, receiver.tangents, receiver.factor = result.primal, result.tangents, result.factor
    return receiver


def _mul(func, a, b):
    plain, inplace = _IN_PLACE.get(func, (func, False))
    (pa, ta), (pb, tb) = _parts(a), _parts(b)
    out = plain(pa, pb)
    divide = plain in (torch.div, torch.Tensor.div, torch.Tensor.__truediv__)
    if divide and tb is not None:
        raise NotCovered("a division by a tangent input")
    if ta is not None and tb is not None:  # product rule (squeeze-excitation gates)
        return _result(Tangents(out, _batch_of(out, ta.applied() * pb + pa * tb.applied())), a, inplace)
    x, c = (ta, pb) if ta is not None else (tb, pa)
    if out.shape != x.primal.shape:
        raise NotCovered("a product that broadcasts the tangent input")
    c = 1 / c if divide else c
    return _result(Tangents(out, x.tangents, c if x.factor is None else x.factor * c), a, inplace)


def _neg(func, x):
    return Tangents(func(x.primal), x.tangents, -1 if x.factor is None else -x.factor)


def _max_pool(func, x, *args, **kwargs):
    """max pooling routes each tangent from the position the primal picked (torch's argmax)."""
    if kwargs.pop("return_indices", False):
        raise NotCovered("max pooling returning indices")
    out, where = func(x.primal, *args, return_indices=True, **kwargs)
    t = x.applied()
    picked = t.flatten(2).gather(2, where.flatten(2).expand(t.shape[0], -1, -1))
    return Tangents(out, _batch_of(out, picked.reshape(t.shape[0], *out.shape[1:])))


def _cat(func, tensors, dim=0):
    parts = [_parts(v) for v in tensors]
    out = func([p for p, _ in parts], dim)
    if dim % out.ndim == 0:
        raise NotCovered("a concatenation along the batch dimension")
    batch = next(t.tangents.shape[0] for _, t in parts if t is not None)
    pieces = [t.applied() if t is not None else torch.zeros((batch, *p.shape[1:]), dtype=p.dtype, device=p.device)
              for p, t in parts]
    return Tangents(out, _batch_of(out, func(pieces, dim)))


def _getitem(func, x, index):
    """Indexing that keeps the batch dimension whole: x[:, ...]."""
    first = index[0] if isinstance(index, tuple) and index else index
    if not (isinstance(first, slice) and first == slice(None)) or not isinstance(index, tuple):
        raise NotCovered("indexing the batch dimension")
    return _same_op(func, x, index)


_T = torch.Tensor
_METADATA = {
    _T.shape.__get__, _T.dtype.__get__, _T.device.__get__, _T.ndim.__get__, _T.layout.__get__,
    _T.requires_grad.__get__, _T.is_cuda.__get__, _T.size, _T.dim, _T.numel, _T.__len__, _T.stride,
    _T.is_floating_point, _T.is_complex, _T.is_contiguous,
}
# In-place and reflected forms -> (out-of-place function, in place?).
_IN_PLACE = {
    _T.relu_: (torch.relu, True), torch.relu_: (torch.relu, True), _T.sigmoid_: (torch.sigmoid, True),
    _T.clamp_: (torch.clamp, True), _T.clamp_min_: (torch.clamp_min, True),
    _T.add_: (torch.add, True), _T.__iadd__: (torch.add, True), _T.__radd__: (torch.add, False),
    _T.sub_: (torch.sub, True), _T.__isub__: (torch.sub, True), _T.__rsub__: (_T.__rsub__, False),
    _T.mul_: (torch.mul, True), _T.__imul__: (torch.mul, True), _T.__rmul__: (torch.mul, False),
    _T.div_: (torch.div, True), _T.__itruediv__: (torch.div, True),
}
# Activations of torch.nn.functional whose last positional argument may be ``inplace``.
_INPLACE_FLAG = {F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid, F.mish, F.hardtanh, F.leaky_relu, F.elu}
_RULES = {}
for _f in (*_INPLACE_FLAG, F.gelu, F.sigmoid, F.tanh, F.softplus, torch.relu, _T.relu, _T.relu_, torch.relu_,
           torch.sigmoid, _T.sigmoid, _T.sigmoid_, torch.tanh, _T.tanh, torch.clamp, _T.clamp, _T.clamp_,
           torch.clamp_min, _T.clamp_min, _T.clamp_min_, torch.pow, _T.pow, _T.__pow__, torch.exp, _T.exp,
           torch.sqrt, _T.sqrt):
    _RULES[_f] = _elementwise
for _f in (torch.add, _T.add, _T.add_, _T.__add__, _T.__radd__, _T.__iadd__, torch.sub, _T.sub, _T.sub_,
           _T.__sub__, _T.__isub__, _T.__rsub__):
    _RULES[_f] = _add
for _f in (torch.mul, _T.mul, _T.mul_, _T.__mul__, _T.__rmul__, _T.__imul__, torch.div, _T.div, _T.div_,
           _T.__truediv__, _T.__itruediv__):
    _RULES[_f] = _mul
for _f in (F.adaptive_avg_pool2d, F.avg_pool2d, torch.flatten, _T.flatten, _T.contiguous, _T.clone, torch.clone,
           _T.to, _T.float, _T.double, _T.permute, torch.permute, _T.transpose, torch.transpose, _T.squeeze,
           _T.unsqueeze, torch.squeeze, torch.unsqueeze):
    _RULES[_f] = _same_op
_RULES.update({
    torch.conv2d: _affine_map, F.linear: _affine_map, F.batch_norm: _batch_norm, F.pad: _pad,
    _T.view: _reshape, _T.reshape: _reshape, torch.reshape: _reshape,
    _T.mean: _reduce, torch.mean: _reduce, _T.sum: _reduce, torch.sum: _reduce,
    F.dropout: _identity_unless_training, F.dropout2d: _identity_unless_training,
    F.max_pool2d: _max_pool, F.adaptive_max_pool2d: _max_pool,
    _T.__neg__: _neg, torch.neg: _neg, _T.neg: _neg, torch.cat: _cat, torch.concat: _cat,
    _T.__getitem__: _getitem,
})


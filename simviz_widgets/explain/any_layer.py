"""Any-layer mode of the activation decomposition (docs/methods.md, "Activation decomposition").

A model wrapped with ``layer=`` is decomposed at that layer's output A (1, C, h, w) with gradient x
input per position: ``e_i = J_i A_i``, J_i = dg/dA_i. Two ways give the same vectors (to float32
round-off):

* ``mode="forward"``: ``e_i = J (A * delta_i)`` is a directional derivative, so one Jacobian-vector
  product per *position* (tangent = that position's activation, zero elsewhere), a chunk of
  positions per pass; the cost grows with the number of positions N. The tangents go through the
  network's own forward code as one batch (``_Tangents`` below), or through ``torch.func.jvp`` under
  ``torch.func.vmap`` where an operation has no rule there.
* ``mode="backward"``: one vector-Jacobian product per *embedding dimension*, batched over chunks of
  dimensions (``autograd.grad(..., is_grads_batched=True)``); the cost grows with D.
* ``mode="auto"`` (default): forward when N <= 2 D (a backward pass costs about twice a tangent's).

A model whose operations lack forward-mode AD or vmap support (a ``grid_sample``, an
``autograd.Function`` without ``setup_context``...) falls back to backward mode, with a note.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch
import torch.nn.functional as F

from ..adapters import SimilarityModel
from ..checks import check_choice

__all__ = ["MODES", "FIRST_ORDER_LIMIT", "gradient_contributions", "first_order_warning"]

log = logging.getLogger("simviz_widgets")

MODES = ("auto", "forward", "backward")
# auto: forward mode while N positions <= this many times D dimensions.
_FORWARD_PER_DIMENSION = 2
# Above this |g - sum_i e_i| / |g| the first-order reading is more residual than explanation.
FIRST_ORDER_LIMIT = 0.5
# Memory for the tangents of one chunk (forward mode): about this many copies of the largest
# activation after the layer per position (measured on EfficientNet-Lite0: ~3 for the tangent batch,
# ~10 for torch.func's jvp under vmap).
_TANGENT_BUDGET = 1 << 30
_COPIES = {"tangent batch": 4, "torch.func": 10}
# network -> layers whose tangent batch matched torch.func (see _forward_products).
_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradient_contributions(model: SimilarityModel, x: torch.Tensor, *, bias: bool, show_progress: bool,
                           mode: str = "auto", chunk: int | None = None) -> dict:
    """Per-position gradient x input at ``model.decompose_layer`` for one normalised image x.

    Returns ``E`` (N, D) float64, ``g`` (D,), ``grid``, ``notes``, ``residual_ratio`` (|g - sum_i e_i|
    / |g|), ``mode`` and ``engine`` (the ones used). Exact for bias-free ReLU networks, first order otherwise; with
    ``bias`` the residual is spread evenly over positions so the rows sum to g.
    """
    mode = check_choice(mode, "mode", MODES)
    A0, g, largest = _primal(model, x)
    _, C, h, w = A0.shape
    n = h * w
    notes: list[str] = []
    E = None
    if mode == "auto":
        mode = "forward" if n <= _FORWARD_PER_DIMENSION * g.shape[0] else "backward"
    if mode == "forward":
        try:
            E, engine, engine_notes = _forward_products(model, x, A0, chunk=chunk, show_progress=show_progress,
                                                        per_position=largest * A0.element_size())
            notes += engine_notes
        except Exception as err:  # noqa: BLE001 - any op without forward AD / vmap: fall back
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            notes.append(
                f"forward-mode AD is not available for {model.name} ({type(err).__name__}: {reason}); "
                "used backward mode instead (one vector-Jacobian product per embedding dimension)"
            )
            mode = "backward"
    if E is None:
        E = _backward_products(model, x, A0, chunk=chunk or 128, show_progress=show_progress)
    g_model, g = g, g.double()
    residual = g - E.sum(0)
    ratio = float(residual.norm() / g.norm().clamp_min(1e-12))
    how = ("forward mode, one Jacobian-vector product per position" if mode == "forward"
           else "backward mode, one vector-Jacobian product per embedding dimension")
    spread = ", residual spread evenly over positions" if bias else ""
    notes.insert(0, f"layer {model.decompose_layer!r} decomposed with gradient x input (first order; {how}); "
                    f"|g - sum_i e_i| / |g| = {ratio:.3g}{spread}")
    if getattr(model.module, "derivative_note", None):  # a transformer's rules (adapters/tokens.py)
        notes.insert(1, model.module.derivative_note)
    if bias:
        E = E + residual / n
    return {"E": E, "g": g, "g_model": g_model, "grid": (h, w), "notes": notes, "residual_ratio": ratio, "mode": mode,
            "engine": engine if mode == "forward" else "autograd"}


def _agreement(dtype: torch.dtype) -> float:
    """Largest relative gap between the tangent batch and torch.func: 1e-4 for float32 / float64;
    a half-precision network rounds each op to its eps (float16 ~1e-3, bfloat16 ~8e-3), so 16 eps."""
    return max(1e-4, 16 * torch.finfo(dtype).eps)


def first_order_warning(layer: str, ratios: dict[str, float], bias: bool) -> str | None:
    """The message for a first-order reading far from exact (a ratio above FIRST_ORDER_LIMIT), else None."""
    far = {side: r for side, r in ratios.items() if r > FIRST_ORDER_LIMIT}
    if not far:
        return None
    which = ", ".join(f"{r:.3g} ({side})" for side, r in far.items())
    fate = "spread evenly over positions like a bias" if bias else "left out of the maps (bias=False)"
    if bias == "spatial":  # the biases are already shared out: what is left is not piecewise linear
        return (
            f"decomposition at layer {layer!r}: with the later biases split over the cells, the first-order "
            f"reading still leaves |g - sum_i e_i| / |g| = {which} > {FIRST_ORDER_LIMIT} (the layers after it "
            "are not piecewise linear); that residual is spread evenly over positions. The pooling input has "
            "none (exact mode: model.at_layer(None)), on its coarser grid."
        )
    return (
        f"decomposition at layer {layer!r}: the first-order (gradient x input) reading is far from exact: "
        f"|g - sum_i e_i| / |g| = {which} > {FIRST_ORDER_LIMIT}; that residual is {fate}. Where the "
        "layers after it are piecewise linear (ReLU, pooling, convolutions and affine maps with biases), "
        "bias_split='spatial' gives each cell its share of their biases and the residual vanishes; the "
        "pooling input has none either (exact mode: model.at_layer(None)), on its coarser grid."
    )


def _primal(model: SimilarityModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One plain forward pass: the layer's output A0 (1, C, h, w), the embedding g (D,) and the
    largest number of elements of one output of a module that runs after the layer (for chunking)."""
    layer = model._decompose_module
    owner = threading.get_ident()
    seen = {"A": None, "largest": 0}

    def record(m, inputs, output):
        if threading.get_ident() != owner:
            return
        if m is layer and seen["A"] is None:
            # A copy: an in-place op after the layer (ReLU(inplace=True)) would change the output.
            seen["A"] = output.detach().clone()
        elif seen["A"] is not None and isinstance(output, torch.Tensor) and output.ndim:
            seen["largest"] = max(seen["largest"], output.numel() // max(1, output.shape[0]))

    handles = [m.register_forward_hook(record) for m in model.module.modules() if m is not model.module]
    try:
        with torch.no_grad():
            g = model.embed_from_features(model.features(x))[0]
    finally:
        for handle in handles:
            handle.remove()
    A0 = seen["A"]
    return A0, g.detach(), max(seen["largest"], A0[0].numel())


def _progress(total: int, what: str, show: bool, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"gradient x input ({what})", unit=unit, disable=not show, leave=False)


def _forward_products(model: SimilarityModel, x: torch.Tensor, A0: torch.Tensor, *, chunk: int | None,
                      show_progress: bool, per_position: int) -> tuple[torch.Tensor, str, list[str]]:
    """E (N, D) without bias: row i is the Jacobian-vector product with tangent A0 * delta_i; the
    engine used ('tangent batch' or 'torch.func') and notes. ``chunk``: positions per batch (None:
    as many as _TANGENT_BUDGET allows, ``per_position`` bytes being the largest activation)."""
    _, C, h, w = A0.shape
    n = h * w
    flat = A0[0].reshape(C, n)
    # Channels-last tangents: oneDNN runs (depthwise) convolutions on them without reordering,
    # markedly faster on CPU; only the summation order changes (float32 round-off). The primal keeps
    # the model's own layout, so it is computed exactly as in backward mode and every kink (ReLU at
    # 0, max-pooling ties) is decided alike.
    primal = A0

    def embed(A):
        # A fresh tensor per call: an in-place op after the layer must not write into A0.
        return model.run_with_layer_replaced(x, A.clone())[0]

    def product(tangent):
        return torch.func.jvp(embed, (primal,), (tangent,))[1]

    batched = torch.func.vmap(product)

    def size(engine):
        if chunk:
            return chunk
        most = max(1, min(n, _TANGENT_BUDGET // (_COPIES[engine] * per_position)))
        return -(-n // -(-n // most))  # chunks of equal size: the primal pass is repeated per chunk

    verified = _VERIFIED.setdefault(model.module, set())

    engine, notes, rows, s = "tangent batch", [], [], 0
    bar = _progress(n, "forward", show_progress and n > size(engine), "position")
    with torch.no_grad(), bar:  # forward AD needs no graph
        while s < n:
            k = min(size(engine), n - s)
            T = A0.new_zeros(k, C, n)
            at = torch.arange(k, device=A0.device)
            T[at, :, at + s] = flat[:, s : s + k].T
            T = T.reshape(k, C, h, w).contiguous(memory_format=torch.channels_last)
            if engine == "tangent batch":
                try:
                    block = _tangent_batch(model, x, primal, T)
                    if model.decompose_layer not in verified:
                        # The rules against torch.func, on the chunk's strongest position; once per
                        # network and layer (the rules depend on the code, not on the image).
                        j = int(T.flatten(1).norm(dim=1).argmax())
                        expect = product(T[j : j + 1])
                        gap = float((block[j] - expect).norm() / expect.norm().clamp_min(1e-30))
                        if gap > _agreement(A0.dtype):
                            notes.append(f"the fast tangent pass disagreed with torch.func (relative gap {gap:.2g});"
                                         " used torch.func")
                            raise _NotCovered("disagreement")
                        verified.add(model.decompose_layer)
                    rows.append(block.double())
                    s += k
                    bar.update(k)
                    continue
                except Exception as err:  # noqa: BLE001 - an op without a rule (or a failing one): torch.func
                    log.info("%s: tangent batch not used (%s: %s); torch.func instead", model.name,
                             type(err).__name__, err)
                    engine = "torch.func"
                    continue  # this chunk again, at torch.func's size
            rows.append(batched(T[:, None]).double())
            s += k
            bar.update(k)
    return torch.cat(rows), engine, notes


def _tangent_batch(model: SimilarityModel, x: torch.Tensor, primal: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Jacobian-vector products (B, D) for the tangents T (B, C, h, w) at the layer: the tangent batch
    through the network up to the pooling input, torch.func for the (small) pooling and head."""
    feats = model.run_with_layer_replaced(x, _Tangents(primal.clone(), T), features_only=True)
    if not isinstance(feats, _Tangents):
        raise _NotCovered("features that do not depend on the layer")
    at, tangents = feats.primal, feats.applied()

    def head(t):
        return torch.func.jvp(model.embed_from_features, (at,), (t[None],))[1][0]

    return torch.func.vmap(head)(tangents)


def _backward_products(model: SimilarityModel, x: torch.Tensor, A0: torch.Tensor, *, chunk: int,
                       show_progress: bool) -> torch.Tensor:
    """E (N, D) without bias: one batched vector-Jacobian product per chunk of embedding dimensions."""
    _, C, h, w = A0.shape
    n = h * w
    A = A0.clone().requires_grad_(True)
    with torch.enable_grad():
        g = model.run_with_layer_replaced(x, A.clone())[0]
        eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
        rows = []
        with _progress(g.shape[0], "backward", show_progress and g.shape[0] > chunk, "dimension") as bar:
            for s in range(0, g.shape[0], chunk):
                (grads,) = torch.autograd.grad(g, A, grad_outputs=eye[s : s + chunk],
                                               retain_graph=True, is_grads_batched=True)
                rows.append((grads[:, 0] * A0[0]).sum(1).reshape(-1, n).double())
                bar.update(grads.shape[0])
    return torch.cat(rows).T.contiguous()


# ------------------------------------------------------------------------------------------
# Fast path: a batch of tangents pushed through the network's own forward code.
#
# torch.func's jvp under vmap spends most of its time copying tangents (forward AD re-lays them out
# after nearly every op) and applies batch norm and activation derivatives as separate passes. Here
# the layer's output is replaced by a _Tangents tensor that stands for the primal (batch 1) and
# carries the B tangents of a chunk in its batch dimension: each op computes its primal as usual
# and its tangents by that op's linearisation. Elementwise factors (batch norm in eval is affine,
# activation derivatives, constant products) pile up at batch-1 cost and are applied once, before
# the next op that needs them. An op without a rule raises _NotCovered and the torch.func path
# runs instead; a check against torch.func on one position guards the rules.


class _NotCovered(Exception):
    """An operation the tangent batch has no rule for."""


class _Tangents(torch.Tensor):
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
                raise _NotCovered(getattr(func, "__qualname__", None) or repr(func))
            return rule(func, *args, **(kwargs or {}))

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise _NotCovered(f"{func} reached below the rules")  # the wrapper holds no data of its own


def _layout(t: torch.Tensor) -> torch.memory_format:
    cl = t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def _batch_of(primal: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
    """The tangents of an output whose primal is ``primal``: one per sample, shaped like it."""
    if primal.shape[0] != 1:
        raise _NotCovered("an operation across the batch dimension")
    shape = (tangents.shape[0], *primal.shape[1:])
    if tangents.shape != shape:
        if tangents.ndim != primal.ndim or tangents.shape[0] != shape[0]:
            raise _NotCovered("an operation across the batch dimension")
        tangents = tangents.expand(shape)  # a broadcast against a constant
    return tangents


def _same_op(func, x, *args, **kwargs):
    """Ops linear in x that act on each sample alike (pooling, padding with 0, layout, dtype...)."""
    if not isinstance(x, _Tangents) or any(isinstance(a, _Tangents) for a in (*args, *kwargs.values())):
        raise _NotCovered(f"{getattr(func, '__name__', func)} of several tangent inputs")
    out = func(x.primal, *args, **kwargs)
    return _Tangents(out, _batch_of(out, func(x.applied(), *args, **kwargs)))


def _reduce(func, x, *args, **kwargs):
    """mean / sum over dimensions other than the batch."""
    dims = kwargs.get("dim", args[0] if args else None)
    dims = [dims] if isinstance(dims, int) else dims
    if dims is None or any(d % x.primal.ndim == 0 for d in dims):
        raise _NotCovered("a reduction over the batch dimension")
    return _same_op(func, x, *args, **kwargs)


def _reshape(func, x, *shape, **kwargs):
    out = func(x.primal, *shape, **kwargs)
    if x.primal.shape[0] != 1 or out.shape[0] != 1:
        raise _NotCovered("a reshape across the batch dimension")
    t = x.applied()
    return _Tangents(out, t.reshape(t.shape[0], *out.shape[1:]))


def _identity_unless_training(func, x, *args, **kwargs):
    training = kwargs.get("training", args[1] if len(args) > 1 else True)
    if training:
        raise _NotCovered("dropout in training mode")
    return x


def _pad(func, x, pad, mode="constant", value=None):
    out = func(x.primal, pad, mode, value)
    return _Tangents(out, _batch_of(out, func(x.applied(), pad, mode, None if mode == "constant" else value)))


def _affine_map(func, x, weight, bias=None, *args, **kwargs):
    """conv2d / linear: the tangents go through the weight only."""
    if not isinstance(x, _Tangents) or isinstance(weight, _Tangents) or isinstance(bias, _Tangents):
        raise _NotCovered("a convolution or linear map with tangent weights")
    out = func(x.primal, weight, bias, *args, **kwargs)
    return _Tangents(out, _batch_of(out, func(x.applied(), weight, None, *args, **kwargs)))


def _batch_norm(func, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                eps=1e-5):
    if training or running_var is None or not isinstance(x, _Tangents):
        raise _NotCovered("batch norm with batch statistics")
    out = func(x.primal, running_mean, running_var, weight, bias, training, momentum, eps)
    scale = torch.rsqrt(running_var + eps) * (1 if weight is None else weight)
    scale = scale.reshape(1, -1, *([1] * (x.primal.ndim - 2)))
    return _Tangents(out, x.tangents, scale if x.factor is None else x.factor * scale)


def _elementwise(func, x, *args, **kwargs):
    """A differentiable elementwise function of x (activations, clamp, pow with a constant exponent):
    its slope at the primal joins the pending factor."""
    if not isinstance(x, _Tangents) or any(isinstance(a, _Tangents) for a in (*args, *kwargs.values())):
        raise _NotCovered(f"{getattr(func, '__name__', func)} of several tangent inputs")
    plain, inplace = _IN_PLACE.get(func, (func, False))
    if "inplace" in kwargs:
        inplace = kwargs.pop("inplace")
    elif func in _INPLACE_FLAG and args and isinstance(args[-1], bool):
        inplace, args = args[-1], args[:-1]
    out, slope = torch.func.jvp(lambda a: plain(a, *args, **kwargs), (x.primal,), (torch.ones_like(x.primal),))
    if out.shape != x.primal.shape:
        raise _NotCovered(f"{getattr(func, '__name__', func)} changing the shape")
    factor = slope if x.factor is None else x.factor * slope
    return _result(_Tangents(out, x.tangents, factor), x, inplace)


def _parts(v):
    return (v.primal, v) if isinstance(v, _Tangents) else (v, None)


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
    return _result(_Tangents(out, _batch_of(out, t)), a, inplace)


def _result(result, receiver, inplace):
    """``result``, written into ``receiver`` for in-place forms (the forward code may keep using it)."""
    if not inplace:
        return result
    if not isinstance(receiver, _Tangents):
        raise _NotCovered("an in-place update of a constant by a tangent input")
    receiver.primal, receiver.tangents, receiver.factor = result.primal, result.tangents, result.factor
    return receiver


def _mul(func, a, b):
    plain, inplace = _IN_PLACE.get(func, (func, False))
    (pa, ta), (pb, tb) = _parts(a), _parts(b)
    out = plain(pa, pb)
    divide = plain in (torch.div, torch.Tensor.div, torch.Tensor.__truediv__)
    if divide and tb is not None:
        raise _NotCovered("a division by a tangent input")
    if ta is not None and tb is not None:  # product rule (squeeze-excitation gates)
        return _result(_Tangents(out, _batch_of(out, ta.applied() * pb + pa * tb.applied())), a, inplace)
    x, c = (ta, pb) if ta is not None else (tb, pa)
    if out.shape != x.primal.shape:
        raise _NotCovered("a product that broadcasts the tangent input")
    c = 1 / c if divide else c
    return _result(_Tangents(out, x.tangents, c if x.factor is None else x.factor * c), a, inplace)


def _neg(func, x):
    return _Tangents(func(x.primal), x.tangents, -1 if x.factor is None else -x.factor)


def _max_pool(func, x, *args, **kwargs):
    """max pooling routes each tangent from the position the primal picked (torch's argmax)."""
    if kwargs.pop("return_indices", False):
        raise _NotCovered("max pooling returning indices")
    out, where = func(x.primal, *args, return_indices=True, **kwargs)
    t = x.applied()
    picked = t.flatten(2).gather(2, where.flatten(2).expand(t.shape[0], -1, -1))
    return _Tangents(out, _batch_of(out, picked.reshape(t.shape[0], *out.shape[1:])))


def _cat(func, tensors, dim=0):
    parts = [_parts(v) for v in tensors]
    out = func([p for p, _ in parts], dim)
    if dim % out.ndim == 0:
        raise _NotCovered("a concatenation along the batch dimension")
    batch = next(t.tangents.shape[0] for _, t in parts if t is not None)
    pieces = [t.applied() if t is not None else torch.zeros((batch, *p.shape[1:]), dtype=p.dtype, device=p.device)
              for p, t in parts]
    return _Tangents(out, _batch_of(out, func(pieces, dim)))


def _getitem(func, x, index):
    """Indexing that keeps the batch dimension whole: x[:, ...]."""
    first = index[0] if isinstance(index, tuple) and index else index
    if not (isinstance(first, slice) and first == slice(None)) or not isinstance(index, tuple):
        raise _NotCovered("indexing the batch dimension")
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

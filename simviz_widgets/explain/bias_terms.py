"""Spatial attribution of the bias terms in the any-layer mode (docs/methods.md, "Activation decomposition").

Gradient x input at a layer, ``e_i = J_i A_i``, leaves out what the later layers' biases add: for a
piecewise-linear network (ReLU, max / average pooling, zero padding, affine maps) the embedding is
``g = J A + c`` exactly at the input's activation pattern, c being every later bias carried along
the active paths. Following FullGrad (Srinivas & Fleuret, "Full-Gradient Representation for Neural
Network Visualization", NeurIPS 2019: a bias's gradient is a spatial map), each later bias is split
over the decomposition grid's cells: a module that adds a bias b at output position p gets
``b * (1 + sum_i s_i M_i(p))``, where ``M_i(p)`` is the share of p's area that falls in cell i
(the shares of every p sum to 1), and

    e_i^bias = dg / ds_i  at s = 0,

one Jacobian-vector product per cell (``torch.func.jvp`` under ``vmap``). Scaling every bias by
(1 + t) scales c by (1 + t) at a fixed activation pattern, so ``sum_i e_i^bias = c`` and
``sum_i (e_i + e_i^bias) = g`` to float round-off. Biases without a spatial output (a linear layer
after global pooling, the wrapped head's bias) go evenly to the cells, as mean pooling weighs them.
What a non-piecewise-linear network (swish, sigmoid gates, an L2-normalised output) leaves over is
returned as the remaining residual for the caller to report and spread as before.

A "bias module" is found generically: a module that runs after the layer, holds its own ``bias``
parameter and is affine in its single input (checked numerically on the input it receives:
``m(2x) - m(0) = 2 (m(x) - m(0))``); its bias map is ``m(0)``, which covers Conv2d (with zero padding),
batch norm in eval mode (bias - mean * scale), per-channel affine layers and Linear. Only calls made
after the layer ran count (a weight-tied module may also run before it); a call enclosing the layer is
left in the residual, and an affine module's biased children are inside its m(0), so not counted again.
A network with an op without forward-mode AD gets the bias terms by vector-Jacobian products instead.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch

from ..adapters import SimilarityModel
from .any_layer import gradient_contributions
from .tangent_batch import NotCovered, Tangents, embedding_tangents

log = logging.getLogger("simviz_widgets")

__all__ = ["spatial_contributions", "bias_contributions", "cell_shares"]

# Relative gap allowed in the affinity check m(2x) - m(0) = 2 (m(x) - m(0)): float32 round-off, or
# 16 eps for half precision (each op rounds to its eps: float16 ~1e-3, bfloat16 ~8e-3).
_AFFINE_TOLERANCE = 1e-4


def _affine_tolerance(dtype: torch.dtype) -> float:
    return max(_AFFINE_TOLERANCE, 16 * torch.finfo(dtype).eps)

# Memory for one chunk of cells: about this many copies of the largest later activation per cell.
_BUDGET = 1 << 30
_COPIES = 10
# network -> layers whose tangent batch matched torch.func for the bias terms.
_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cell_shares(cells: int, positions: int, dtype=torch.float64) -> torch.Tensor:
    """(cells, positions): the share of position p's interval [p, p + 1) / positions of the unit
    line that lies in cell i's interval [i, i + 1) / cells; every column sums to 1."""
    # On the CPU explicitly: torch's default device may be another (meta, or MPS without float64).
    i = torch.arange(cells, dtype=torch.float64, device="cpu")[:, None]
    p = torch.arange(positions, dtype=torch.float64, device="cpu")[None, :]
    lo = torch.maximum(i / cells, p / positions)
    hi = torch.minimum((i + 1) / cells, (p + 1) / positions)
    return ((hi - lo).clamp_min(0) * positions).to(dtype)


class _BiasSite:
    """One call of a bias module after the layer: its bias map m(0) and the cells' shares of its
    output positions (n, then the output's shape without batch, 1 on the channel axis), or None for
    an output without a spatial grid (evenly)."""

    def __init__(self, module, bias_map: torch.Tensor, shares: torch.Tensor | None, in_head: bool):
        self.module, self.bias_map, self.shares, self.in_head = module, bias_map, shares, in_head

    def added(self, s: torch.Tensor) -> torch.Tensor:
        """The extra output for the cell scales s (n,) or (k, n): bias map times sum_i s_i M_i."""
        if self.shares is None:
            mean = s.sum(-1) / s.shape[-1]
            return self.bias_map * mean.reshape(*mean.shape, *[1] * (self.bias_map.ndim - 1))
        return self.bias_map * torch.tensordot(s, self.shares, 1)


def _is_affine(m, x: torch.Tensor, out: torch.Tensor, zero_out: torch.Tensor) -> bool:
    twice = m(2 * x)
    if not isinstance(twice, torch.Tensor) or twice.shape != out.shape:
        return False
    expect = 2 * (out.double() - zero_out.double())  # the norms in float64: float16 sums overflow
    gap = (twice.double() - zero_out.double() - expect).norm() / expect.norm().clamp_min(1e-30)
    return bool(gap <= _affine_tolerance(out.dtype))


def _grid_axes(m, bias: torch.Tensor, bias_map: torch.Tensor) -> tuple[int, int] | None:
    """The grid axes of a 4-D output: (2, 3) for (B, C, H, W), (1, 2) for channels-last (B, H, W, C),
    None when the layout is unclear. A Linear acts on the last axis (NHWC MLPs as in ConvNeXt
    blocks); conv / norm layers on axis 1; otherwise the axis with the bias's length, then the
    axes along which the bias map is constant."""
    if isinstance(m, torch.nn.Linear):
        return 1, 2
    if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._NormBase)):
        return 2, 3
    first, last = bias_map.shape[1] == bias.numel(), bias_map.shape[3] == bias.numel()
    if first != last:
        return (2, 3) if first else (1, 2)
    nchw = bool((bias_map == bias_map[:, :, :1, :1]).all())  # a per-channel bias: constant over the grid
    nhwc = bool((bias_map == bias_map[:, :1, :1, :]).all())
    if nchw != nhwc:
        return (2, 3) if nchw else (1, 2)
    return None


def _modules(model: SimilarityModel) -> list:
    found = [m for m in model.module.modules() if m is not model.module]
    if model.head is not None and model.head_weight is None:  # a generic head runs as a module
        found += [m for m in model.head.modules() if all(m is not k for k in found)]
    return found


def _find_sites(model: SimilarityModel, x: torch.Tensor) -> tuple[torch.Tensor, list[_BiasSite], int, list[str]]:
    """One plain forward pass: the layer's output A0 (1, C, h, w), the bias modules' calls after the
    layer in order (a call inside an affine module's call is part of that one's m(0)), the largest
    later output (elements) and notes on biases left in the residual or spread evenly."""
    layer = model._decompose_module
    owner, state = threading.get_ident(), {"A": None, "busy": False, "largest": 0}
    sites, skipped, unclear, opened = [], [], [], []  # opened: per open call (first site index, after layer)
    names = {id(m): name for name, m in model.module.named_modules()}

    def enter(m, inputs):
        if threading.get_ident() == owner and not state["busy"]:
            opened.append((len(sites), state["A"] is not None))

    def record(m, inputs, output):
        if threading.get_ident() != owner or state["busy"]:
            return
        bias = m._parameters.get("bias")
        start, began_after = opened.pop() if bias is not None else (0, False)
        if m is layer and state["A"] is None:
            # A copy: an in-place op after the layer (ReLU(inplace=True)) would change the output.
            state["A"] = output.detach().clone()
            return
        if state["A"] is None or not isinstance(output, torch.Tensor):
            return
        h, w = state["A"].shape[2:]
        state["largest"] = max(state["largest"], output.numel() // max(1, output.shape[0]))
        if bias is None:
            return
        name = names.get(id(m), type(m).__name__)
        if not began_after:  # the call encloses the layer: its m(0) would hold earlier biases too
            skipped.append(name)
            return
        state["busy"] = True  # the checks below call m again
        try:
            single = len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and inputs[0].shape[0] == 1
            zero_out = m(torch.zeros_like(inputs[0])) if single else None
            if not (single and _is_affine(m, inputs[0], output, zero_out)):
                skipped.append(name)
                return
            shares, axes = None, (_grid_axes(m, bias, zero_out) if output.ndim == 4 else None)
            if axes is not None:
                size = [output.shape[axes[0]], output.shape[axes[1]]]
                rows, cols = cell_shares(h, size[0]), cell_shares(w, size[1])
                shape = [h * w, *output.shape[1:]]
                shape[1 if axes == (2, 3) else 3] = 1  # the channel axis: broadcast over it
                shares = torch.einsum("ip,jq->ijpq", rows, cols).reshape(shape)
                shares = shares.to(device=output.device, dtype=output.dtype)
            elif output.ndim == 4:
                unclear.append(name)
            del sites[start:]  # its biased children's calls are inside m(0)
            sites.append(_BiasSite(m, zero_out.detach(), shares, id(m) not in names))
        finally:
            state["busy"] = False

    modules = _modules(model)
    handles = [m.register_forward_hook(record) for m in modules]
    handles += [m.register_forward_pre_hook(enter) for m in modules if m._parameters.get("bias") is not None]
    try:
        with torch.no_grad():
            model.embed_from_features(model.features(x.to(device=model.device, dtype=model.dtype)))
    finally:
        for handle in handles:
            handle.remove()
    notes = []
    if skipped:
        notes.append("biases of non-affine layers left in the residual: " + ", ".join(sorted(set(skipped))[:5]))
    if unclear:
        notes.append("biases of 4-D outputs whose grid axes are unclear (channels first or last) split evenly: "
                     + ", ".join(sorted(set(unclear))[:5]))
    return state["A"], sites, state["largest"], notes


def spatial_contributions(model: SimilarityModel, x: torch.Tensor, *, show_progress: bool, mode: str = "auto",
                          chunk: int | None = None) -> dict:
    """:func:`~.any_layer.gradient_contributions` with the later biases split over the cells:
    ``E`` = e_i + e_i^bias, then any remaining residual spread evenly (rows sum to g);
    ``residual_ratio`` is what remained, ``first_order_ratio`` the plain |g - sum_i e_i| / |g|."""
    out = gradient_contributions(model, x, bias=False, show_progress=show_progress, mode=mode, chunk=chunk)
    try:
        E_bias, notes = bias_contributions(model, x, out["g"].shape[0], show_progress=show_progress, chunk=chunk)
    except Exception as err:  # noqa: BLE001 - neither AD mode ran: the even spread, said so
        log.info("%s: bias terms failed (%s: %s)", model.name, type(err).__name__, err)
        E_bias = torch.zeros_like(out["E"])
        notes = [f"the later biases could not be split over the cells ({type(err).__name__}: "
                 f"{str(err).strip()[:200]}); spread evenly as with bias_split='even'"]
    E, g = out["E"] + E_bias.to(out["E"].device), out["g"]
    residual = g - E.sum(0)
    ratio = float(residual.norm() / g.norm().clamp_min(1e-12))
    out["E"] = E + residual / E.shape[0]
    out["first_order_ratio"], out["residual_ratio"] = out["residual_ratio"], ratio
    out["notes"][0] += f"; with the later biases split over the cells {ratio:.3g}, that rest spread evenly"
    out["notes"][1:1] = notes
    return out


def bias_contributions(model: SimilarityModel, x: torch.Tensor, dim: int, *, show_progress: bool,
                       chunk: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """``E_bias`` (N, D) float64 — row i is dg/ds_i, cell i's share of every later bias, the wrapped
    head's bias evenly — and notes; ``dim`` = D."""
    A0, sites, largest, site_notes = _find_sites(model, x)
    _, _, h, w = A0.shape
    n = h * w
    notes = [f"the biases of {len(sites)} later layer calls split over the {h} x {w} cells by area (FullGrad-like)"]
    E = torch.zeros(n, dim, dtype=torch.float64, device=A0.device)
    if sites:
        try:
            E = _forward_rows(model, x, A0, sites, largest, show_progress=show_progress, chunk=chunk)
        except Exception as err:  # noqa: BLE001 - an op without forward AD / vmap: vector-Jacobian products
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            log.info("%s: bias terms in backward mode (%s: %s)", model.name, type(err).__name__, reason)
            E = _reverse_rows(model, x, A0, sites, dim, show_progress=show_progress)
            notes.append(f"bias terms by backward mode: forward-mode AD is not available ({type(err).__name__}: "
                         f"{reason})")
    head_bias = model.head_bias if model.head_weight is not None else None
    if head_bias is not None and not model.output_normalized:
        E = E + head_bias.double().to(E.device) / n  # after mean pooling: every cell alike
        notes[0] += "; the head's bias evenly"
    return E, notes + site_notes


def _forward_rows(model, x, A0, sites, largest, *, show_progress, chunk) -> torch.Tensor:
    """(N, D): one Jacobian-vector product per cell, by the tangent batch (torch.func fallback)."""
    from tqdm.auto import tqdm

    n = A0.shape[2] * A0.shape[3]
    eye = torch.eye(n, dtype=A0.dtype, device=A0.device)
    size = chunk or max(1, min(n, _BUDGET // (_COPIES * max(largest, 1) * A0.element_size())))
    size = -(-n // -(-n // size))  # chunks of equal size
    fast = all(not site.in_head for site in sites)
    verified = _VERIFIED.setdefault(model.module, set())
    rows = []
    with torch.no_grad(), tqdm(total=n, desc="bias terms", unit="cell", leave=False,
                               disable=not (show_progress and n > size)) as bar:
        for s in range(0, n, size):
            cells = eye[s : s + size]
            block = None
            if fast:
                try:
                    block = _tangent_batch(model, x, A0, sites, cells)
                    if model.decompose_layer not in verified:  # the rules against torch.func, once
                        j = int(block.norm(dim=1).argmax())
                        expect = torch.func.vmap(_product(model, x, A0, sites))(cells[j : j + 1])[0]
                        gap = float((block[j] - expect).norm() / expect.norm().clamp_min(1e-30))
                        if gap > max(1e-4, 16 * torch.finfo(A0.dtype).eps):
                            raise NotCovered(f"tangent batch and torch.func differ by {gap:.2g}")
                        verified.add(model.decompose_layer)
                except Exception as err:  # noqa: BLE001 - an op without a rule: torch.func from here on
                    log.info("%s: bias terms without the tangent batch (%s: %s)", model.name, type(err).__name__, err)
                    fast, block = False, None
            if block is None:
                block = torch.func.vmap(_product(model, x, A0, sites))(cells)
            rows.append(block.double())
            bar.update(cells.shape[0])
    return torch.cat(rows)


def _reverse_rows(model, x, A0, sites, dim, *, show_progress, chunk: int = 128) -> torch.Tensor:
    """(N, D) by vector-Jacobian products, a chunk of embedding dimensions per backward pass, for
    networks with an op without forward-mode AD (as any_layer's backward mode)."""
    from tqdm.auto import tqdm

    s = A0.new_zeros(A0.shape[2] * A0.shape[3], requires_grad=True)
    rows = []
    with torch.enable_grad():
        handles = _hooked(model, sites, lambda site, output: output + site.added(s))
        try:
            g = model.run_with_layer_replaced(x, A0.clone())[0]
        finally:
            for handle in handles:
                handle.remove()
        eye = torch.eye(dim, dtype=g.dtype, device=g.device)
        with tqdm(total=dim, desc="bias terms", unit="dim", leave=False, disable=not show_progress) as bar:
            for k in range(0, dim, chunk):
                (grads,) = torch.autograd.grad(g, s, eye[k : k + chunk], retain_graph=True, is_grads_batched=True,
                                               allow_unused=True, materialize_grads=True)
                rows.append(grads.double())
                bar.update(grads.shape[0])
    return torch.cat(rows).T.contiguous()


def _hooked(model: SimilarityModel, sites: list[_BiasSite], add):
    """Hooks calling ``add(site, output)`` on the sites' calls in the order they were found: only
    calls after the decompose layer's first call (a weight-tied module may run before it too, as
    _find_sites skips), and not calls inside another site's call (they are in its bias map)."""
    owner, calls, layer = threading.get_ident(), iter(sites), model._decompose_module
    ids, state, opened = {id(site.module) for site in sites}, {"after": False}, []

    def enter(m, inputs):
        if threading.get_ident() == owner:
            opened.append(state["after"] and id(m) in ids)

    def hook(m, inputs, output):
        if threading.get_ident() != owner:
            return None
        counted = opened.pop()
        if m is layer and not state["after"]:
            state["after"] = True
            return None
        if not counted or any(opened):
            return None
        site = next(calls, None)
        if site is None or site.module is not m:
            raise RuntimeError("the bias modules ran in another order than when they were found")
        return add(site, output)

    modules = {id(m): m for m in [layer, *(site.module for site in sites)]}.values()
    return [m.register_forward_pre_hook(enter) for m in modules] + [m.register_forward_hook(hook) for m in modules]


def _product(model: SimilarityModel, x: torch.Tensor, A0: torch.Tensor, sites: list[_BiasSite]):
    """cell scales' tangent (n,) -> dg along it, by torch.func (any op with forward AD)."""

    def embed(s):
        handles = _hooked(model, sites, lambda site, output: output + site.added(s))
        try:
            return model.run_with_layer_replaced(x, A0.clone())[0]
        finally:
            for handle in handles:
                handle.remove()

    zero = A0.new_zeros(A0.shape[2] * A0.shape[3])
    return lambda tangent: torch.func.jvp(embed, (zero,), (tangent,))[1]


def _tangent_batch(model: SimilarityModel, x: torch.Tensor, A0: torch.Tensor, sites: list[_BiasSite],
                   cells: torch.Tensor) -> torch.Tensor:
    """The same products (k, D) for the one-hot cell scales ``cells`` (k, n) through the network's own
    forward code (any_layer's tangent batch): zero tangents at the layer, each site adding its bias
    map times the cells' shares."""
    k = cells.shape[0]

    def add(site, output):
        if not isinstance(output, Tangents):
            raise NotCovered("a bias module that does not depend on the layer")
        return Tangents(output.primal, output.applied() + site.added(cells))

    handles = _hooked(model, sites, add)
    try:
        start = Tangents(A0.clone(), A0.new_zeros(k, *A0.shape[1:]))
        feats = model.run_with_layer_replaced(x, start, features_only=True)
    finally:
        for handle in handles:
            handle.remove()
    return embedding_tangents(model, feats)

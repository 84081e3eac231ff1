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
batch norm in eval mode (bias - mean * scale), per-channel affine layers and Linear.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch

from ..adapters import SimilarityModel
from .any_layer import _NotCovered, _Tangents, gradient_contributions

log = logging.getLogger("simviz_widgets")

__all__ = ["spatial_contributions", "bias_contributions", "cell_shares"]

# Relative gap allowed in the affinity check m(2x) - m(0) = 2 (m(x) - m(0)) (float32 round-off).
_AFFINE_TOLERANCE = 1e-4
# Memory for one chunk of cells: about this many copies of the largest later activation per cell.
_BUDGET = 1 << 30
_COPIES = 10
# network -> layers whose tangent batch matched torch.func for the bias terms.
_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cell_shares(cells: int, positions: int, dtype=torch.float64) -> torch.Tensor:
    """(cells, positions): the share of position p's interval [p, p + 1) / positions of the unit
    line that lies in cell i's interval [i, i + 1) / cells; every column sums to 1."""
    i = torch.arange(cells, dtype=torch.float64)[:, None]
    p = torch.arange(positions, dtype=torch.float64)[None, :]
    lo = torch.maximum(i / cells, p / positions)
    hi = torch.minimum((i + 1) / cells, (p + 1) / positions)
    return ((hi - lo).clamp_min(0) * positions).to(dtype)


class _BiasSite:
    """One call of a bias module after the layer: its bias map m(0) and the cells' shares of its
    output positions (n, ho, wo), or None for an output without a spatial grid (evenly)."""

    def __init__(self, module, bias_map: torch.Tensor, shares: torch.Tensor | None, in_head: bool):
        self.module, self.bias_map, self.shares, self.in_head = module, bias_map, shares, in_head

    def added(self, s: torch.Tensor) -> torch.Tensor:
        """The extra output for the cell scales s (n,): bias map times sum_i s_i M_i."""
        if self.shares is None:
            return self.bias_map * (s.sum() / s.shape[0])
        return self.bias_map * torch.einsum("n,npq->pq", s, self.shares)


def _is_affine(m, x: torch.Tensor, out: torch.Tensor, zero_out: torch.Tensor) -> bool:
    twice = m(2 * x)
    if not isinstance(twice, torch.Tensor) or twice.shape != out.shape:
        return False
    expect = 2 * (out - zero_out)
    gap = (twice - zero_out - expect).norm() / expect.norm().clamp_min(1e-30)
    return bool(gap <= _AFFINE_TOLERANCE)


def _modules(model: SimilarityModel) -> list:
    found = [m for m in model.module.modules() if m is not model.module]
    if model.head is not None and model.head_weight is None:  # a generic head runs as a module
        found += [m for m in model.head.modules() if all(m is not k for k in found)]
    return found


def _find_sites(model: SimilarityModel, x: torch.Tensor) -> tuple[torch.Tensor, list[_BiasSite], int, list[str]]:
    """One plain forward pass: the layer's output A0 (1, C, h, w), the bias modules' calls after the
    layer in order, the largest later output (elements) and the names of modules with a bias that is
    not an affine map's (left in the residual)."""
    layer = model._decompose_module
    owner, state = threading.get_ident(), {"A": None, "busy": False, "largest": 0}
    sites, skipped = [], []
    names = {id(m): name for name, m in model.module.named_modules()}

    def record(m, inputs, output):
        if threading.get_ident() != owner or state["busy"]:
            return
        if m is layer and state["A"] is None:
            # A copy: an in-place op after the layer (ReLU(inplace=True)) would change the output.
            state["A"] = output.detach().clone()
            return
        if state["A"] is None or not isinstance(output, torch.Tensor):
            return
        h, w = state["A"].shape[2:]
        state["largest"] = max(state["largest"], output.numel() // max(1, output.shape[0]))
        bias = m._parameters.get("bias")
        if bias is None:
            return
        state["busy"] = True  # the checks below call m again
        try:
            single = len(inputs) == 1 and isinstance(inputs[0], torch.Tensor) and inputs[0].shape[0] == 1
            zero_out = m(torch.zeros_like(inputs[0])) if single else None
            if single and _is_affine(m, inputs[0], output, zero_out):
                shares = None
                if output.ndim == 4:
                    rows, cols = cell_shares(h, output.shape[2]), cell_shares(w, output.shape[3])
                    shares = torch.einsum("ip,jq->ijpq", rows, cols).reshape(h * w, *output.shape[2:])
                    shares = shares.to(device=output.device, dtype=output.dtype)
                sites.append(_BiasSite(m, zero_out.detach(), shares, id(m) not in names))
            else:
                skipped.append(names.get(id(m), type(m).__name__))
        finally:
            state["busy"] = False

    handles = [m.register_forward_hook(record) for m in _modules(model)]
    try:
        with torch.no_grad():
            model.embed_from_features(model.features(x.to(device=model.device, dtype=model.dtype)))
    finally:
        for handle in handles:
            handle.remove()
    return state["A"], sites, state["largest"], skipped


def spatial_contributions(model: SimilarityModel, x: torch.Tensor, *, show_progress: bool, mode: str = "auto",
                          chunk: int | None = None) -> dict:
    """:func:`~.any_layer.gradient_contributions` with the later biases split over the cells:
    ``E`` = e_i + e_i^bias, then any remaining residual spread evenly (rows sum to g);
    ``residual_ratio`` is what remained, ``first_order_ratio`` the plain |g - sum_i e_i| / |g|."""
    out = gradient_contributions(model, x, bias=False, show_progress=show_progress, mode=mode, chunk=chunk)
    E_bias, notes = bias_contributions(model, x, out["g"].shape[0], show_progress=show_progress, chunk=chunk)
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
    from tqdm.auto import tqdm

    A0, sites, largest, skipped = _find_sites(model, x)
    _, _, h, w = A0.shape
    n = h * w
    eye = torch.eye(n, dtype=A0.dtype, device=A0.device)
    size = chunk or max(1, min(n, _BUDGET // (_COPIES * max(largest, 1) * A0.element_size())))
    size = -(-n // -(-n // size))  # chunks of equal size
    fast = all(not site.in_head for site in sites)
    verified = _VERIFIED.setdefault(model.module, set())
    rows = [torch.zeros(0, dim, dtype=torch.float64, device=A0.device)]
    with torch.no_grad(), tqdm(total=n, desc="bias terms", unit="cell", leave=False,
                               disable=not (show_progress and n > size)) as bar:
        for s in range(0, n if sites else 0, size):
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
                            raise _NotCovered(f"tangent batch and torch.func differ by {gap:.2g}")
                        verified.add(model.decompose_layer)
                except Exception as err:  # noqa: BLE001 - an op without a rule: torch.func from here on
                    log.info("%s: bias terms without the tangent batch (%s: %s)", model.name, type(err).__name__, err)
                    fast, block = False, None
            if block is None:
                block = torch.func.vmap(_product(model, x, A0, sites))(cells)
            rows.append(block.double())
            bar.update(cells.shape[0])
    E = torch.cat(rows) if sites else torch.zeros(n, dim, dtype=torch.float64, device=A0.device)
    notes = [f"the biases of {len(sites)} later layer calls split over the {h} x {w} cells by area (FullGrad-like)"]
    head_bias = model.head_bias if model.head_weight is not None else None
    if head_bias is not None and not model.output_normalized:
        E = E + head_bias.double().to(E.device) / n  # after mean pooling: every cell alike
        notes[0] += "; the head's bias evenly"
    if skipped:
        notes.append("biases of non-affine layers left in the residual: " + ", ".join(sorted(set(skipped))[:5]))
    return E, notes


def _hooked(sites: list[_BiasSite], add):
    """Forward hooks calling ``add(site, output)`` on the sites, in the order they were found."""
    owner, calls = threading.get_ident(), iter(sites)

    def hook(m, inputs, output):
        if threading.get_ident() != owner:
            return None
        site = next(calls, None)
        if site is None or site.module is not m:
            raise RuntimeError("the bias modules ran in another order than when they were found")
        return add(site, output)

    return [m.register_forward_hook(hook) for m in {id(site.module): site.module for site in sites}.values()]


def _product(model: SimilarityModel, x: torch.Tensor, A0: torch.Tensor, sites: list[_BiasSite]):
    """cell scales' tangent (n,) -> dg along it, by torch.func (any op with forward AD)."""

    def embed(s):
        handles = _hooked(sites, lambda site, output: output + site.added(s))
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
        if not isinstance(output, _Tangents):
            raise _NotCovered("a bias module that does not depend on the layer")
        if site.shares is None:
            extra = (site.bias_map * (cells.sum(1) / cells.shape[1]).reshape(k, *[1] * (output.ndim - 1)))
        else:
            extra = site.bias_map * torch.einsum("kn,npq->kpq", cells, site.shares)[:, None]
        return _Tangents(output.primal, output.applied() + extra)

    handles = _hooked(sites, add)
    try:
        start = _Tangents(A0.clone(), A0.new_zeros(k, *A0.shape[1:]))
        feats = model.run_with_layer_replaced(x, start, features_only=True)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(feats, _Tangents):
        raise _NotCovered("features that do not depend on the layer")
    at, tangents = feats.primal, feats.applied()

    def head(t):
        return torch.func.jvp(model.embed_from_features, (at,), (t[None],))[1][0]

    return torch.func.vmap(head)(tangents)

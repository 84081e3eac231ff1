"""Any-layer mode of the activation decomposition (docs/methods.md, "Activation decomposition").

A model wrapped with ``layer=`` is decomposed at that layer's output A (1, C, h, w) with gradient x
input per position: ``e_i = J_i A_i``, J_i = dg/dA_i. Two ways give the same vectors (to float32
round-off):

* ``mode="forward"``: ``e_i = J (A * delta_i)`` is a directional derivative, so one Jacobian-vector
  product per *position* (tangent = that position's activation, zero elsewhere), a chunk of
  positions per pass; the cost grows with the number of positions N. The tangents go through the
  network's own forward code as one batch (``Tangents``, explain/tangent_batch.py), or through
  ``torch.func.jvp`` under ``torch.func.vmap`` where an operation has no rule there.
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

from ..adapters import SimilarityModel
from ..checks import check_choice
from .tangent_batch import NotCovered, Tangents, embedding_tangents

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
                            raise NotCovered("disagreement")
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
    return embedding_tangents(model, model.run_with_layer_replaced(x, Tangents(primal.clone(), T),
                                                                   features_only=True))


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

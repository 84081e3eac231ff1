"""Which layers of a wrapped model give which grid, and the same model decomposed at another layer.

``grid_layers(model)``: the named modules whose output is a feature map (B, C, rows, cols) at the
model's input size (``preprocess.input_size``, 224 x 224 when free), in forward order (the order
their forward calls start: a block before the layers inside it). Listed: modules that run exactly
once before the pooling input is read (a module called twice has no single output to decompose),
with a grid at least as large as the pooling input's in both directions (this drops 1 x 1 maps
such as squeeze-excitation internals). ``at_layer`` re-wraps the model at one of them (the torch
module is shared, not copied); ``at_resolution(n)`` picks the deepest stage output with an n x n grid.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from ..checks import check_instance, check_int
from .errors import ModelAdapterError, adapter_check
from .tokens import TokenGrid, TokenView, exact_layer

__all__ = ["grid_layers", "at_layer", "at_resolution"]

# ``model`` below is a SimilarityModel; it is not imported: similarity_model.py imports this module.


def grid_layers(model) -> dict[str, tuple[int, int]]:
    """name -> (rows, cols) of every module listed in the module docstring, in forward order."""
    return dict(_grids(model)[0])


def _grids(model) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
    """(grid_layers, the pooling input's grid), from one probe pass cached on the model."""
    if getattr(model, "_grid_cache", None) is None:
        model._grid_cache = _record_grids(model)
    return model._grid_cache


def _record_grids(model) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
    named = {m: n for n, m in model.module.named_modules() if n}
    if isinstance(model.module, TokenView):  # a transformer's view: other 4-D outputs are attention or NHWC tokens
        named = {m: n for m, n in named.items() if isinstance(m, TokenGrid)}
    owner = threading.get_ident()
    calls: dict[nn.Module, int] = {}
    grids: dict[nn.Module, tuple[int, int] | None] = {}

    def started(m, inputs):
        if threading.get_ident() == owner:
            calls[m] = calls.get(m, 0) + 1  # dicts keep insertion order: the order calls start

    def finished(m, inputs, output):
        if threading.get_ident() == owner and m not in grids:
            is_map = isinstance(output, torch.Tensor) and output.ndim == 4
            grids[m] = tuple(output.shape[-2:]) if is_map else None

    handles = []
    for m in named:
        handles += [m.register_forward_pre_hook(started), m.register_forward_hook(finished)]
    try:
        with torch.no_grad():
            # Stops where pooling reads its input: the modules still running then (the ones
            # containing the pooling) never finish and are left out, as is the head.
            pooled_grid = tuple(model.features(model._probe_input(1)).shape[-2:])
    finally:
        for handle in handles:
            handle.remove()
    layers = {
        named[m]: grids[m] for m, count in calls.items()
        if count == 1 and grids.get(m) is not None
        and grids[m][0] >= pooled_grid[0] and grids[m][1] >= pooled_grid[1]
    }
    return layers, pooled_grid


def at_layer(model, layer: str | nn.Module | None):
    """``model`` decomposed at ``layer`` (a name, a submodule, or None for the pooling input: exact
    mode); the same torch module, pooling, head, metric and preprocessing (nothing is copied)."""
    if layer is not None:
        adapter_check(check_instance, layer, "layer", (str, nn.Module), "str, nn.Module or None")
    # A class-token transformer's default is a token grid; None here means its pooling input (tokens.py).
    layer = layer if layer is not None else exact_layer(model.module)
    new = type(model).wrap(model.module, layer=layer, pooling=model.pooling, head=model.head,
                           metric=model.metric, preprocess=model.preprocess, name=model.name)
    # As in rewrap(): passing pooling and head skips the output matching that learns this.
    new.output_normalized = model.output_normalized
    if hasattr(model, "_simviz_fast_copy"):
        new._simviz_fast_copy = model._simviz_fast_copy
    carry_choices(model, new)
    return new


def carry_choices(model, new) -> None:
    """The user's choices set on ``model`` itself (not its class) that a copy or another layer of it
    keeps: ``bias_split`` (explain/decomposition.py), else background jobs' copies would use another."""
    if "bias_split" in vars(model):
        new.bias_split = model.bias_split


def at_resolution(model, n: int):
    """``model`` decomposed at an n x n grid: the pooling input (exact mode) when that grid is n x n,
    else the deepest of the outermost modules with that grid (a stage's output, say ``blocks.4``,
    rather than a layer inside the next stage's first block)."""
    n = adapter_check(check_int, n, "n", minimum=1)
    layers, pooled = _grids(model)
    if pooled == (n, n):
        return at_layer(model, None)
    square = [name for name, grid in layers.items() if grid == (n, n)]
    if not square:
        sizes = sorted({grid for grid in layers.values()}, reverse=True)
        shown = ", ".join(str(r) if r == c else f"{r}x{c}" for r, c in sizes) or "none"
        size = model.preprocess.input_size or (224, 224)
        raise ModelAdapterError(
            f"n={n!r}: no layer of {model.name} outputs a {n}x{n} grid at its input size "
            f"{size[0]}x{size[1]}; available resolutions: {shown} (see model.grid_layers())"
        )
    depth = min(name.count(".") for name in square)
    return at_layer(model, [name for name in square if name.count(".") == depth][-1])

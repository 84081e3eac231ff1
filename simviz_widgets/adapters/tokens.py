"""Vision transformers as ``F -> pool -> head``: a view of the network whose patch tokens are 4-D grids.

The adapter reads a feature map (B, C, h, w) at a module (the input of global pooling, or with
``layer=`` any module's output). A vision transformer's tokens are (B, N, C) sequences, so
``token_view(module)`` recognises the families below and returns a thin ``nn.Module`` view that
holds the user's network (as ``view.net``: shared, never copied or changed) and replays its forward
pass step by step, routing the patch tokens through named grid modules whose output is a
(B, C, rows, cols) map (an identity there: the numbers are the network's own):

* ``tokens.k``: the patch tokens after step k of [patch embedding, block 1, block 2, ...]
  (Swin: stage modules, patch merging included). Prefix tokens (class, distillation, register
  tokens) are not grid positions: they pass by the grid unchanged.
* ``features``: the pooling input. For a **mean- or max-pooled** readout (timm ``global_pool='avg'``
  or ``'max'``, every Swin) it is the final normalised patch-token grid, followed by a global pooling
  module and the network's own head modules, so the decomposition is exact as for a CNN (a
  LayerNorm in the head, timm's ``fc_norm``, is an affine map at the observed input:
  ``adapters/frozen_norm.py``). For a **token readout** (class token, distilled DeiT's two tokens,
  attention pooling) no grid of tokens is pooled: ``features`` is the model's output itself as a 1 x 1
  map and the default layer is a token grid, decomposed with gradient x input (any-layer mode,
  ``explain/any_layer.py``).

Which token grid a token readout is decomposed at: the last block's *input* (``tokens.{depth-1}``),
not its output. Every operation after the last block acts on each token alone (LayerNorm, the
head), so the class token's embedding does not depend on the patch tokens of the last block's
output at all (their gradients are zero); within the last block the class token attends to the
patch tokens, so that is the deepest grid whose tokens reach the embedding. Attention pooling reads
every token after the last block: there the default is the last block's output (``tokens.{depth}``).

Derivatives: when a grid's output is replaced to differentiate the rest of the network (the
any-layer mode, gradient methods), the rest of that pass runs with LayerNorm scales and attention
weights held at their observed values (``conservative.py``: plain gradient x input vanishes at a
pre-norm block's input); ``view.conservative = False`` turns this off.

``embed()`` equals the user's network's output: the view is checked against it on a probe input
when it is built, and an unsupported variant is an error. Model sizes: a ViT takes one input size
(its position embedding): the view carries a ``pretrained_cfg`` (timm's own, or one made from
torchvision's ``image_size``) that gives the preprocessing its input size.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

import torch
from torch import nn

from .conservative import conservative
from .errors import ModelAdapterError
from .pooling import pooling_from_module

__all__ = ["token_view", "TokenView", "TokenGrid", "FlatAvgPool", "FlatMaxPool", "SUPPORTED"]

SUPPORTED = ("torchvision VisionTransformer (vit_b_16...)", "torchvision SwinTransformer (swin_t...)",
             "timm VisionTransformer and subclasses (ViT, DeiT, distilled DeiT...)",
             "timm SwinTransformer (swin_tiny_patch4_window7_224...)")


class TokenGrid(nn.Identity):
    """A named point where patch tokens are a (B, C, rows, cols) map (the identity)."""


class FlatAvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling to (B, C): the head after it sees vectors, as the network's does."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        return super().forward(x).flatten(1)


class FlatMaxPool(nn.AdaptiveMaxPool2d):
    """Global max pooling to (B, C)."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        return super().forward(x).flatten(1)


def _grid_of(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) patch tokens, row-major over ``grid`` -> (B, C, rows, cols)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _tokens_of(grid: torch.Tensor) -> torch.Tensor:
    """(B, C, rows, cols) -> (B, N, C), row-major (the inverse of _grid_of)."""
    return grid.flatten(2).transpose(1, 2)


class TokenView(nn.Module):
    """The user's transformer ``net`` replayed with its patch tokens passing through grid modules.

    ``readout``: 'avg' | 'max' (the patch-token grid is pooled: exact) or 'token' / 'tokens' (a
    readout that is not a pooling of the grid; decomposed at ``default_layer``)."""

    family = ""
    #: derivatives with LayerNorm scales and attention weights held (conservative.py); False: plain
    conservative = True

    def __init__(self, net: nn.Module, steps: int, readout: str, input_size: tuple[int, int],
                 pretrained_cfg: dict):
        super().__init__()
        self.net = net
        self.readout = readout
        # After the last step the patch tokens reach a class-token readout no more (see module doc).
        n_grids = steps - 1 if readout == "token" else steps
        self.tokens = nn.ModuleList(TokenGrid() for _ in range(n_grids))
        self.features = TokenGrid()
        self.pool = FlatMaxPool() if readout == "max" else FlatAvgPool()
        self.default_layer = None if readout in ("avg", "max") else f"tokens.{n_grids - 1}"
        self.input_size = input_size
        self.pretrained_cfg = pretrained_cfg
        self.training = net.training  # this flag only: the shared modules keep theirs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with ExitStack() as stack:  # holds the derivative rules once a grid's output is replaced
            return self._replay(x, stack)

    def _replay(self, x: torch.Tensor, stack: ExitStack) -> torch.Tensor:
        raise NotImplementedError

    def _grid(self, grid: TokenGrid, value: torch.Tensor, stack: ExitStack) -> torch.Tensor:
        """``grid(value)``. A grid returns its input unless a hook replaced its output: then
        derivatives are being taken (explain/any_layer.py, run_with_layer_replaced) and the rest of
        the pass runs under the conservative rules (conservative.py) when ``self.conservative``."""
        out = grid(value)
        if out is not value and self.conservative and not stack._exit_callbacks:
            stack.enter_context(conservative())
        return out

    def _through(self, k: int, x: torch.Tensor, prefix: int, grid: tuple[int, int], stack: ExitStack) -> torch.Tensor:
        """Sequence tokens (B, prefix + N, C) through grid ``tokens.k`` (when it exists)."""
        if k >= len(self.tokens):
            return x
        patches = self._grid(self.tokens[k], _grid_of(x[:, prefix:], grid), stack)
        return torch.cat([x[:, :prefix], _tokens_of(patches)], dim=1)

    def _through_nhwc(self, k: int, x: torch.Tensor, stack: ExitStack) -> torch.Tensor:
        """Swin's (B, H, W, C) tokens through grid ``tokens.k``."""
        return self._grid(self.tokens[k], x.permute(0, 3, 1, 2), stack).permute(0, 2, 3, 1)

    def _pooled(self, feats: torch.Tensor, stack: ExitStack) -> torch.Tensor:
        return self.pool(self._grid(self.features, feats, stack))

    def _readout(self, out: torch.Tensor, stack: ExitStack) -> torch.Tensor:
        """A token readout's embedding (B, D) as a 1 x 1 feature map, 'pooled' back to (B, D)."""
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelAdapterError(f"{type(self.net).__name__} returns {shape}; expected one embedding (B, D)")
        return self._pooled(out[:, :, None, None], stack)

    @property
    def derivative_note(self) -> str | None:
        """What the explanations' notes say about derivatives through this view."""
        if not self.conservative:
            return None
        return ("transformer: LayerNorm scales and attention weights held at their observed values in the "
                "derivatives (conservative propagation, Ali et al. 2022; docs/transformers.md)")

    def extra_repr(self) -> str:
        return f"family={self.family!r}, readout={self.readout!r}, input_size={self.input_size}"


class _TimmViT(TokenView):
    family = "timm VisionTransformer"

    def _replay(self, x, stack):
        m = self.net
        grid = _patch_grid(m.patch_embed, x)
        prefix = m.num_prefix_tokens
        t = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        for k, block in enumerate(m.blocks):
            t = block(self._through(k, t, prefix, grid, stack))
        t = m.norm(self._through(len(m.blocks), t, prefix, grid, stack))
        if self.readout in ("avg", "max"):
            pooled = self._pooled(_grid_of(t[:, prefix:], grid), stack)
            return m.head(m.head_drop(m.fc_norm(pooled)))
        return self._readout(m.forward_head(t), stack)


class _TorchvisionViT(TokenView):
    family = "torchvision VisionTransformer"

    def _replay(self, x, stack):
        m = self.net
        grid = (x.shape[2] // m.patch_size, x.shape[3] // m.patch_size)
        t = m._process_input(x)
        t = torch.cat([m.class_token.expand(t.shape[0], -1, -1), t], dim=1)
        encoder = m.encoder
        t = encoder.dropout(t + encoder.pos_embedding)
        for k, layer in enumerate(encoder.layers):
            t = layer(self._through(k, t, 1, grid, stack))
        t = encoder.ln(t)  # per token: the patch tokens after the last layer do not reach t[:, 0]
        return self._readout(m.heads(t[:, 0]), stack)


class _TimmSwin(TokenView):
    family = "timm SwinTransformer"

    def _replay(self, x, stack):
        m = self.net
        t = self._through_nhwc(0, m.patch_embed(x), stack)
        for k, stage in enumerate(m.layers):
            t = self._through_nhwc(k + 1, stage(t), stack)
        t = m.norm(t)
        head = m.head
        pooled = self._pooled(t.permute(0, 3, 1, 2), stack)
        return head.flatten(head.fc(head.drop(pooled)))


class _TorchvisionSwin(TokenView):
    family = "torchvision SwinTransformer"

    def _replay(self, x, stack):
        m = self.net
        t = x
        for k, step in enumerate(m.features):
            t = self._through_nhwc(k, step(t), stack)
        return m.head(self._pooled(m.norm(t).permute(0, 3, 1, 2), stack))


def _patch_grid(patch_embed: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(rows, cols) of timm's patch grid for input x."""
    if hasattr(patch_embed, "dynamic_feat_size"):
        return tuple(patch_embed.dynamic_feat_size(tuple(x.shape[2:])))
    ph, pw = patch_embed.patch_size
    return x.shape[2] // ph, x.shape[3] // pw


def _imported(module_name: str, class_name: str):
    """A class from an already imported module, else None: a network cannot be an instance of a
    class whose module was never imported (keeps ``import simviz_widgets`` free of timm's cost)."""
    mod = sys.modules.get(module_name)
    return getattr(mod, class_name, None) if mod is not None else None


def _timm_cfg(net: nn.Module, size: tuple[int, int], interpolation: str) -> dict:
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    cfg["input_size"] = (3, *size)  # the network's own size wins (a config may describe another)
    cfg.setdefault("interpolation", interpolation)
    return cfg


def _build(net: nn.Module) -> TokenView | None:
    """The view of ``net`` if its class is one of SUPPORTED, else None."""
    timm_vit = _imported("timm.models.vision_transformer", "VisionTransformer")
    timm_swin = _imported("timm.models.swin_transformer", "SwinTransformer")
    tv_vit = _imported("torchvision.models.vision_transformer", "VisionTransformer")
    tv_swin = _imported("torchvision.models.swin_transformer", "SwinTransformer")
    if timm_vit is not None and isinstance(net, timm_vit):
        size = tuple(net.patch_embed.img_size)
        pooled = (getattr(net, "attn_pool", None) is None and not getattr(net, "pool_include_prefix", False)
                  and net.global_pool in ("avg", "max") and type(net).forward_head is timm_vit.forward_head)
        if pooled:
            readout = net.global_pool
        else:  # class (and distillation) tokens alone, or every token after the last block
            readout = "token" if net.global_pool == "token" and getattr(net, "attn_pool", None) is None else "tokens"
        return _TimmViT(net, len(net.blocks) + 1, readout, size, _timm_cfg(net, size, "bicubic"))
    if tv_vit is not None and isinstance(net, tv_vit):
        size = (net.image_size, net.image_size)
        return _TorchvisionViT(net, len(net.encoder.layers) + 1, "token", size,
                               _timm_cfg(net, size, "bilinear"))
    if timm_swin is not None and isinstance(net, timm_swin):
        pool = pooling_from_module(net.head.global_pool)
        if pool is None or pool.kind not in ("avg", "max"):
            raise ModelAdapterError(
                f"{type(net).__name__} pools with {net.head.global_pool!r}; the Swin adapter needs "
                "global_pool='avg' or 'max'"
            )
        size = tuple(net.patch_embed.img_size)
        return _TimmSwin(net, len(net.layers) + 1, pool.kind, size, _timm_cfg(net, size, "bicubic"))
    if tv_swin is not None and isinstance(net, tv_swin):
        # torchvision's Swin pads to any size; 224 is the size its ImageNet weights were trained at.
        return _TorchvisionSwin(net, len(net.features), "avg", (224, 224), _timm_cfg(net, (224, 224), "bicubic"))
    return None


def _looks_like_transformer(net: nn.Module) -> bool:
    """Attention modules and no pooling or flatten module: discovery would find no feature map."""
    attention = any(isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention")
                    for m in net.modules())
    pools = any(isinstance(m, nn.Flatten) or pooling_from_module(m) is not None for m in net.modules())
    return attention and not pools


def token_view(net: nn.Module, name: str) -> nn.Module | None:
    """A :class:`TokenView` of ``net`` for the supported transformer families (``net`` itself when
    it already is one), None for other networks; an error for a transformer of another family or a
    view that does not reproduce ``net``'s output."""
    if isinstance(net, TokenView):
        return net
    try:
        view = _build(net)
    except (AttributeError, TypeError) as err:
        raise ModelAdapterError(
            f"{name} ({type(net).__name__}) is a variant of a supported transformer family that the "
            f"token adapter does not know ({type(err).__name__}: {err}); {_WHAT_TO_PASS}"
        ) from err
    if view is None:
        if _looks_like_transformer(net):
            raise ModelAdapterError(
                f"{name} ({type(net).__name__}) looks like a vision transformer of a family simviz_widgets "
                f"does not recognise (supported: {'; '.join(SUPPORTED)}). {_WHAT_TO_PASS}"
            )
        return None
    _verify_replay(view, name)
    return view


_WHAT_TO_PASS = (
    "Wrap a module whose forward turns the patch tokens into a 4-D map (B, C, rows, cols) and pools it "
    "with nn.AdaptiveAvgPool2d(1) before the head, or that passes them through a module with 4-D output "
    "and give it as layer= (see docs/transformers.md)"
)


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Equal to float32 round-off (float16 / bfloat16: a few units of the output's precision)."""
    if theirs.dtype in (torch.float32, torch.float64):
        return bool(torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5))
    diff = (ours.double() - theirs.double()).abs().max()
    return bool(diff <= 8 * torch.finfo(theirs.dtype).eps * theirs.double().abs().max())


def _verify_replay(view: TokenView, name: str) -> None:
    """The view must compute the network's own output (else a variant the replay does not follow)."""
    first = next(view.net.parameters(), torch.zeros(()))
    x = torch.randn(1, 3, *view.input_size, generator=torch.Generator().manual_seed(0), device="cpu")
    x = x.to(device=first.device, dtype=first.dtype)
    was = [(m, m.training) for m in view.net.modules()]
    try:
        for m, _ in was:  # dropout off for the comparison only; wrap() itself asks about train mode
            m.training = False
        with torch.no_grad():
            ours, theirs = view(x), view.net(x)
    except Exception as err:  # noqa: BLE001 - any failure of the replay is an unsupported variant
        raise ModelAdapterError(
            f"{name}: the token adapter ({view.family}) failed on a probe input {tuple(x.shape)} "
            f"({type(err).__name__}: {err}); {_WHAT_TO_PASS}"
        ) from err
    finally:
        for m, flag in was:
            m.training = flag
    if not isinstance(theirs, torch.Tensor) or theirs.shape != ours.shape or not _close(ours, theirs):
        raise ModelAdapterError(
            f"{name}: the token adapter ({view.family}) does not reproduce the network's output (an "
            f"unsupported variant); {_WHAT_TO_PASS}"
        )


def exact_layer(module: nn.Module) -> str | None:
    """The layer to pass to ``wrap`` for exact mode (the pooling input): 'features' for a view (whose
    ``layer=None`` default may be a token grid), None (the default) for other networks."""
    return "features" if isinstance(module, TokenView) else None

"""``SimilarityModel``: any torch embedding network seen as feature map -> pooling -> head -> metric.

``SimilarityModel.wrap(module)`` runs one probe forward pass with hooks to find

* the feature map ``F`` (B, C, h, w): the input of the model's global pooling (for torchvision and timm
  models this is the last conv block's output), or the input of a flatten feeding a Linear;
* the pooling ('avg' | 'max' | 'gem', or 'flatten' for heads over C*h*w);
* the head: the modules that run after pooling (identity, Linear, BatchNorm1d, Linear+BatchNorm1d —
  folded into one exact affine map — or anything else, linearised at the observed input);

and then checks that ``head(pool(F))`` reproduces the module's own output on the probe. If it cannot,
it says what to pass instead. Every choice is logged.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
>>> model = SimilarityModel.wrap(net, preprocess=PreprocessConfig(input_size=(32, 32), resize_short=None))
>>> model.pooling.kind, model.head_kind, model.feature_layer
('avg', 'linear', '1')
>>> x = torch.randn(2, 3, 32, 32)
>>> bool(torch.allclose(model.embed_tensor(x), net(x), atol=1e-5))
True
"""

from __future__ import annotations

import copy
import difflib
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..images import ImageLike, PreparedImage, PreprocessConfig, prepare_image

__all__ = ["SimilarityModel", "Pooling", "ModelAdapterError", "METRICS", "POOLINGS"]

log = logging.getLogger("simviz_widgets")

METRICS = ("cosine", "dot", "euclidean")
POOLINGS = ("avg", "max", "gem", "flatten")
_NO_OP_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten, nn.AlphaDropout)


class ModelAdapterError(ValueError):
    """The model cannot be seen as feature map -> pooling -> head as configured."""


class _StopForward(Exception):
    """Raised from a hook once the wanted tensor is captured, to skip the rest of the network."""


# ------------------------------------------------------------------------------------------
# Pooling


@dataclass(frozen=True)
class Pooling:
    """Global pooling as a per-position weighting: ``p[c] = sum_i a(c, i) A_i[c]``."""

    kind: str = "avg"
    p: float = 3.0  # GeM power
    eps: float = 1e-6  # GeM clamp, as in the usual GeM layers

    def __post_init__(self):
        if self.kind not in POOLINGS:
            raise ModelAdapterError(f"pooling {self.kind!r} is not known; expected one of {POOLINGS}")
        if self.kind == "gem" and not self.p > 0:
            raise ModelAdapterError(f"GeM power must be positive, got {self.p}")

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


def _pooling_from_module(m: nn.Module) -> Pooling | None:
    """Recognise a global pooling module (torch, timm, or a GeM layer with a ``p``)."""
    if isinstance(m, nn.AdaptiveAvgPool2d) and _is_global(m.output_size):
        return Pooling("avg")
    if isinstance(m, nn.AdaptiveMaxPool2d) and _is_global(m.output_size):
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


def _is_global(size) -> bool:
    if isinstance(size, int):
        return size == 1
    return all(s == 1 for s in size)


# ------------------------------------------------------------------------------------------
# Head


class _RecordedHead(nn.Module):
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


def _essential(modules: Iterable[nn.Module]) -> list[nn.Module]:
    return [m for m in modules if not isinstance(m, _NO_OP_TYPES)]


def _head_layers(head: nn.Module) -> list[nn.Module]:
    if isinstance(head, _RecordedHead):
        return _essential(head.layers)
    if isinstance(head, nn.Sequential):
        return _essential(head)
    return _essential([head])


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
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


def _fold_exact_head(layers: list[nn.Module], in_dim: int) -> tuple[str, torch.Tensor | None, torch.Tensor | None]:
    """(kind, W, b) when ``layers`` is an affine chain (Linear / BatchNorm1d), else ('generic', None, None)."""
    if not layers:
        return "identity", None, None
    if not all(isinstance(m, (nn.Linear, nn.BatchNorm1d)) for m in layers):
        return "generic", None, None
    dtype = next(iter(layers[0].parameters()), torch.zeros(())).dtype
    W = torch.eye(in_dim, dtype=dtype)
    b = torch.zeros(in_dim, dtype=dtype)
    for m in layers:
        if isinstance(m, nn.Linear):
            if m.in_features != W.shape[0]:
                return "generic", None, None
            W = m.weight.detach() @ W
            b = m.weight.detach() @ b + (m.bias.detach() if m.bias is not None else 0.0)
        else:
            s, t = _bn_affine(m)
            if s.shape[0] != W.shape[0]:
                return "generic", None, None
            W = s[:, None] * W
            b = s * b + t
    kind = "linear" if any(isinstance(m, nn.Linear) for m in layers) else "batchnorm"
    return kind, W.contiguous(), b.contiguous()


# ------------------------------------------------------------------------------------------
# Model


def _describe_module(m: nn.Module) -> str:
    text = repr(m).replace("\n", " ")
    return text if len(text) < 90 else text[:87] + "..."


class SimilarityModel:
    """A torch embedding model seen as ``F -> pool -> head -> metric``. Build with :meth:`wrap`."""

    def __init__(self):  # use SimilarityModel.wrap
        self.module: nn.Module
        self.metric: str
        self.preprocess: PreprocessConfig
        self.pooling: Pooling
        self.head: nn.Module | None = None
        self.head_kind: str = "identity"
        self.head_weight: torch.Tensor | None = None
        self.head_bias: torch.Tensor | None = None
        self.feature_layer: str = ""
        self.decompose_layer: str | None = None  # any-layer mode when set
        self.output_normalized = False
        self.name: str = ""
        self._feature_point: tuple[nn.Module, str] | None = None
        self._decompose_module: nn.Module | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def wrap(
        cls,
        module: nn.Module,
        *,
        layer: str | nn.Module | None = None,
        pooling: str | Pooling | None = None,
        head: str | nn.Module | None = None,
        metric: str = "cosine",
        preprocess: PreprocessConfig | dict | None = None,
        gem_p: float = 3.0,
        name: str | None = None,
    ) -> "SimilarityModel":
        """Wrap ``module``.

        ``layer``: module or dotted name whose output to decompose; None = the input of global pooling
        (exact decomposition). A layer further down the network uses per-position gradient x input.
        ``pooling``: 'avg' | 'max' | 'gem' | 'flatten' | None (read from the model).
        ``head``: None (the modules after pooling), 'identity', or an ``nn.Module`` mapping pooled
        features to the embedding. ``metric``: 'cosine' | 'dot' | 'euclidean' (similarity =
        -squared distance). ``preprocess``: PreprocessConfig (default: timm's config if present, else
        ImageNet mean/std, short side 256, centre crop 224).
        """
        if not isinstance(module, nn.Module):
            raise ModelAdapterError(
                f"model must be a torch.nn.Module, got {type(module).__name__}"
            )
        if metric not in METRICS:
            raise ModelAdapterError(f"metric {metric!r} is not known; expected one of {METRICS}")
        self = cls()
        self.module = module
        self.metric = metric
        self.name = name or type(module).__name__
        if not any(isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Conv1d)) for m in module.modules()):
            raise ModelAdapterError(
                f"{self.name} has no Conv2d layer; simviz_widgets explains convolutional feature "
                "maps (B, C, h, w). For other models, wrap a module whose intermediate output is 4-D."
            )
        if module.training:
            warnings.warn(
                f"{self.name} was in train mode; switched to eval mode (dropout and batch-norm "
                "statistics must be frozen for explanations to match the model's scores)",
                stacklevel=2,
            )
            module.eval()

        if preprocess is None:
            preprocess = PreprocessConfig.from_timm(module) or PreprocessConfig()
        elif isinstance(preprocess, dict):
            preprocess = PreprocessConfig(**preprocess)
        elif not isinstance(preprocess, PreprocessConfig):
            raise ModelAdapterError(
                f"preprocess must be a PreprocessConfig or dict, got {type(preprocess).__name__}"
            )
        self.preprocess = preprocess

        if isinstance(pooling, str):
            pooling = Pooling(pooling, p=gem_p)
        elif pooling is not None and not isinstance(pooling, Pooling):
            raise ModelAdapterError(
                f"pooling must be one of {POOLINGS} or a Pooling, got {pooling!r}"
            )
        if isinstance(head, str):
            if head != "identity":
                raise ModelAdapterError(f"head {head!r} is not known; expected 'identity' or an nn.Module")
            head = nn.Identity()
        elif head is not None and not isinstance(head, nn.Module):
            raise ModelAdapterError(f"head must be an nn.Module or 'identity', got {type(head).__name__}")

        self._discover(pooling, head)
        if layer is not None:
            self._set_decompose_layer(layer)
        return self

    def _resolve_layer(self, layer: str | nn.Module) -> tuple[str, nn.Module]:
        named = dict(self.module.named_modules())
        if isinstance(layer, nn.Module):
            for n, m in named.items():
                if m is layer:
                    return n, m
            raise ModelAdapterError("layer module is not part of the model")
        if not isinstance(layer, str) or layer not in named or layer == "":
            convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
            close = difflib.get_close_matches(str(layer), list(named), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ModelAdapterError(
                f"layer {layer!r} is not a module of {self.name}.{hint} Conv layers include: "
                f"{convs[-5:]} (see model.named_modules())."
            )
        return layer, named[layer]

    def _probe_input(self, batch: int = 2) -> torch.Tensor:
        size = self.preprocess.input_size or (224, 224)
        gen = torch.Generator().manual_seed(0)
        return torch.randn(batch, 3, *size, generator=gen).to(self.dtype)

    def _discover(self, pooling: Pooling | None, head: nn.Module | None) -> None:
        module = self.module
        names = {m: n for n, m in module.named_modules()}
        order: list[tuple[nn.Module, tuple, object]] = []

        def record(m, inputs, output):
            order.append((m, inputs, output))

        handles = [m.register_forward_hook(record) for m in module.modules() if m is not module]
        x = self._probe_input()
        try:
            with torch.no_grad():
                out = module(x)
        except Exception as err:  # the model cannot even run on an input of the configured size
            raise ModelAdapterError(
                f"{self.name} failed on a probe input of shape {tuple(x.shape)} "
                f"(preprocess input_size={self.preprocess.input_size}): {err}"
            ) from err
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, torch.Tensor):
            raise ModelAdapterError(
                f"{self.name} returns {type(out).__name__}; expected one embedding tensor (B, D). "
                "Wrap the part of the model that returns the embedding."
            )
        if out.ndim != 2:
            raise ModelAdapterError(
                f"{self.name} returns a tensor of shape {tuple(out.shape)}; expected (B, D), one "
                "1-D embedding per image. Pass head= to choose how features become an embedding."
            )

        # Find the global pooling: the last recognised pooling module that ran.
        pool_index, model_pool = None, None
        for k, (m, _, _) in enumerate(order):
            pooling_found = _pooling_from_module(m)
            if pooling_found is not None:
                pool_index, model_pool = k, pooling_found
        if pool_index is not None:
            pool_module, pool_inputs, pool_output = order[pool_index]
            feats = pool_inputs[0]
            self._feature_point = (pool_module, "input")
            self.feature_layer = self._producer_name(order[:pool_index], feats, names) or (
                names[pool_module] + ":input"
            )
            pooled_shape = tuple(pool_output.shape)
            after = [m for (m, _, _) in order[pool_index + 1 :] if not list(m.children())]
        else:
            # No global pooling: a non-global adaptive pool (VGG) or a flatten feeding a Linear.
            found = None
            for k, (m, inputs, output) in enumerate(order):
                if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and output.ndim == 4:
                    found = (k, m, "output", output)
                elif isinstance(m, nn.Flatten) and inputs[0].ndim == 4:
                    found = (k, m, "input", inputs[0])
            if found is None:
                if pooling is None:
                    raise ModelAdapterError(
                        f"could not find global pooling or a flatten in {self.name}; pass pooling= "
                        "and layer= (the module whose 4-D output is pooled)"
                    )
                raise ModelAdapterError(
                    f"could not find where {self.name} pools its feature map; pass layer= as well"
                )
            k, m, where, feats = found
            self._feature_point = (m, where)
            self.feature_layer = names[m] if where == "output" else (
                self._producer_name(order[:k], feats, names) or names[m] + ":input"
            )
            model_pool = Pooling("flatten")
            pooled_shape = (feats.shape[0], feats[0].numel())
            after = [mm for (mm, _, _) in order[k + 1 :] if not list(mm.children())]
        if feats.ndim != 4:
            raise ModelAdapterError(
                f"the feature map feeding pooling has shape {tuple(feats.shape)}; expected (B, C, h, w)"
            )

        self.pooling = pooling or model_pool
        head_given = head is not None
        if head is None:
            head = _RecordedHead(_essential(after), pooled_shape)
        self.head = head
        in_dim = self.pooling(feats).shape[1]
        kind, W, b = _fold_exact_head(_head_layers(head), in_dim)
        self.head_kind, self.head_weight, self.head_bias = kind, W, b

        with torch.no_grad():
            try:
                ours = self._head_forward(self.pooling(feats))
            except Exception as err:
                raise ModelAdapterError(
                    f"the head {_describe_module(head)} does not accept pooled features of shape "
                    f"{tuple(self.pooling(feats).shape)}: {err}"
                ) from err
        if ours.ndim != 2:
            raise ModelAdapterError(
                f"the head's output has shape {tuple(ours.shape)}; expected (B, D), one 1-D "
                "embedding per image"
            )
        log.info(
            "%s: features at %r %s, pooling=%s, head=%s (%s), metric=%s",
            self.name, self.feature_layer, tuple(feats.shape[1:]), self.pooling.kind,
            self.head_kind, "given" if head_given else "found after pooling", self.metric,
        )
        if head_given or pooling is not None:
            return  # the user chose another embedding than the model's output: nothing to compare
        if ours.shape == out.shape and torch.allclose(ours, out, rtol=1e-4, atol=1e-5):
            return
        if ours.shape == out.shape and torch.allclose(F.normalize(ours, dim=1), out, rtol=1e-4, atol=1e-5):
            self.output_normalized = True
            log.info("%s L2-normalises its output; the embedding is normalised the same way", self.name)
            return
        err = (ours - out).abs().max().item() if ours.shape == out.shape else float("nan")
        raise ModelAdapterError(
            f"could not reproduce {self.name}'s output from pooling ({self.pooling.kind}) and the "
            f"modules after it (shapes {tuple(ours.shape)} vs {tuple(out.shape)}, max diff {err:.3g}); "
            "its forward does work outside modules. Pass pooling= and head= explicitly."
        )

    @staticmethod
    def _producer_name(order, tensor, names) -> str | None:
        """Outermost module whose output is ``tensor`` (for logging the layer the user knows)."""
        best = None
        for m, _, output in order:
            if output is tensor:
                n = names.get(m)
                if n is not None and (best is None or len(n.split(".")) <= len(best.split("."))):
                    best = n
        return best

    def _set_decompose_layer(self, layer: str | nn.Module) -> None:
        name, mod = self._resolve_layer(layer)
        x = self._probe_input(1)
        out = self._capture(mod, "output", x, allow_missing=True)
        if out is None:
            raise ModelAdapterError(f"layer {name!r} did not run in {self.name}'s forward pass")
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ModelAdapterError(
                f"layer {name!r} outputs {shape}; expected a feature map (B, C, h, w)"
            )
        feats = self.features(x)
        if out.shape == feats.shape and torch.equal(out, feats):
            self.feature_layer = name  # same tensor as the pooling input: exact mode
            return
        self.decompose_layer = name
        self._decompose_module = mod
        log.info("%s: decomposing layer %r %s with gradient x input", self.name, name, tuple(out.shape[1:]))

    # -- forward pieces ----------------------------------------------------------------
    def _capture(self, mod: nn.Module, where: str, x: torch.Tensor, *, allow_missing=False):
        captured = {}
        # Hooks live on the shared module, so another thread's forward pass runs them too: each
        # hook acts only in the thread that registered it (else threads steal each other's tensors).
        owner = threading.get_ident()

        def pre_hook(m, inputs):
            if threading.get_ident() == owner:
                captured["t"] = inputs[0]
                raise _StopForward

        def post_hook(m, inputs, output):
            if threading.get_ident() == owner:
                captured["t"] = output
                raise _StopForward

        handle = mod.register_forward_pre_hook(pre_hook) if where == "input" else mod.register_forward_hook(post_hook)
        try:
            self.module(x)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if "t" not in captured and not allow_missing:
            raise ModelAdapterError("the feature layer did not run during the forward pass")
        return captured.get("t")

    def check_tensor(self, x: torch.Tensor, name: str = "input") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ModelAdapterError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ModelAdapterError(f"{name} has shape {tuple(x.shape)}; expected (B, 3, H, W)")
        if not x.is_floating_point():
            raise ModelAdapterError(f"{name} has dtype {x.dtype}; expected a float tensor")
        if not torch.isfinite(x).all():
            raise ModelAdapterError(f"{name} contains NaN or infinite values")
        return x

    @property
    def dtype(self) -> torch.dtype:
        for p in self.module.parameters():
            return p.dtype
        return torch.float32

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map F (B, C, h, w) feeding pooling, for a normalised batch x."""
        mod, where = self._feature_point
        return self._capture(mod, where, x.to(self.dtype))

    def _head_forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.head_weight is not None:
            return pooled @ self.head_weight.T + self.head_bias
        if self.head_kind == "identity":
            return pooled
        return self.head(pooled)

    def embed_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        g = self._head_forward(self.pooling(feats))
        return F.normalize(g, dim=1) if self.output_normalized else g

    def embed_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) of a normalised batch x (B, 3, H, W)."""
        self.check_tensor(x)
        return self.embed_from_features(self.features(x))

    def prepare(self, image: ImageLike, *, name: str = "image") -> PreparedImage:
        return prepare_image(image, self.preprocess, name=name)

    def embed(self, images) -> torch.Tensor:
        """Embeddings (B, D) of one image or a list of images (paths, PIL, numpy, tensors)."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ModelAdapterError("images is an empty list; expected at least one image")
            prepared = [self.prepare(im, name=f"images[{k}]") for k, im in enumerate(images)]
        else:
            prepared = [self.prepare(images, name="image")]
        shapes = {p.tensor.shape for p in prepared}
        with torch.no_grad():
            if len(shapes) == 1:
                return self.embed_tensor(torch.cat([p.tensor for p in prepared]))
            return torch.cat([self.embed_tensor(p.tensor) for p in prepared])

    def score_embeddings(self, ga: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
        """The metric as a similarity (higher = more alike); row-wise for (B, D) inputs."""
        if self.metric == "cosine":
            return F.cosine_similarity(ga, gb, dim=-1, eps=1e-12)
        if self.metric == "dot":
            return (ga * gb).sum(-1)
        return -((ga - gb) ** 2).sum(-1)

    def similarity(self, a: ImageLike, b: ImageLike) -> float:
        """The model's similarity of two images (cosine, dot, or -squared Euclidean distance)."""
        ga = self.embed(a)
        gb = self.embed(b)
        return float(self.score_embeddings(ga, gb)[0])

    # -- helpers used by explain/ ------------------------------------------------------
    def head_affine(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, b) of the head at ``pooled`` (1, P): exact for affine heads, the Jacobian and the
        offset h(p) - J p for others (so W p + b == h(p) exactly at the observed input)."""
        if self.head_weight is not None:
            return self.head_weight, self.head_bias
        if self.head_kind == "identity":
            n = pooled.shape[1]
            return torch.eye(n, dtype=pooled.dtype), torch.zeros(n, dtype=pooled.dtype)
        p = pooled[0].detach()
        J = torch.func.jacrev(lambda v: self.head(v[None])[0])(p)
        with torch.no_grad():
            b = self.head(p[None])[0] - J @ p
        return J.detach(), b.detach()

    def run_with_layer_replaced(self, x: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
        """Embedding when the decompose layer's output is replaced by ``replacement`` (for
        gradients with respect to that layer)."""
        if self._decompose_module is None:
            raise ModelAdapterError("no decompose layer is set")

        owner = threading.get_ident()

        def swap(m, inputs, output):
            return replacement if threading.get_ident() == owner else None

        handle = self._decompose_module.register_forward_hook(swap)
        x = x.to(self.dtype)
        try:
            feats = self.features(x)
        finally:
            handle.remove()
        return self.embed_from_features(feats)

    def decompose_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._capture(self._decompose_module, "output", x.to(self.dtype))

    def copy(self, *, channels_last: bool = False, transform=None) -> "SimilarityModel":
        """An independent copy (module and head deep-copied together, wrapped identically): what a
        background job runs, so it never shares a module with the kernel's thread. Raises
        :class:`ModelAdapterError` if the module cannot be copied; it never falls back to this
        model. ``channels_last``: conv weights in channels-last layout (same embeddings to ~1e-5,
        2-5x faster on CPU for depthwise-conv networks). ``transform(module, head)`` may edit the
        copies before wrapping (e.g. randomise weights)."""
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last is {channels_last!r}; expected True or False")
        module, head = self.copy_parts()
        if channels_last:
            module.to(memory_format=torch.channels_last)
        if transform is not None:
            transform(module, head)
        new = self.rewrap(module, head)
        new._simviz_fast_copy = channels_last
        return new

    def copy_parts(self) -> tuple[nn.Module, nn.Module | None]:
        """Deep copies of (module, head), made with one memo: a head made of the module's own
        layers stays shared in the copy. A clear error if the module cannot be copied."""
        memo: dict = {}
        try:
            return copy.deepcopy(self.module, memo), copy.deepcopy(self.head, memo)
        except Exception as error:  # noqa: BLE001 - any deepcopy failure gets one clear message
            raise ModelAdapterError(
                f"model {self.name!r} cannot be copied for a background job ({type(error).__name__}: {error}); "
                "make its module deep-copyable (copy.deepcopy) or run slow methods with explain() directly"
            ) from error

    def rewrap(self, module: nn.Module, head: nn.Module | None) -> "SimilarityModel":
        """Wrap ``module`` / ``head`` (copies of this model's) with this model's layer, pooling,
        metric and preprocessing."""
        new = SimilarityModel.wrap(module, layer=self.decompose_layer, pooling=self.pooling, head=head,
                                   metric=self.metric, preprocess=self.preprocess, name=self.name)
        # Passing pooling and head explicitly skips output matching, which is where wrap() learns
        # that the network L2-normalises its output: carry it over.
        new.output_normalized = self.output_normalized
        return new

    def describe(self) -> dict:
        return {
            "model": self.name,
            "layer": self.decompose_layer or self.feature_layer,
            "mode": "gradient x input" if self.decompose_layer else "exact",
            "pooling": self.pooling.kind + (f"(p={self.pooling.p:g})" if self.pooling.kind == "gem" else ""),
            "head": self.head_kind,
            "metric": self.metric,
            "output_normalized": self.output_normalized,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return "SimilarityModel(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"

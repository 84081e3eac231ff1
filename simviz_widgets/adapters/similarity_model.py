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
import logging
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_bool, check_choice, check_float, check_instance, check_str
from ..images import ImageLike, PreparedImage, PreprocessConfig, prepare_image
from .discovery import (
    StopForward,
    capture,
    find_feature_point,
    module_device,
    outputs_match,
    probe_input,
    record_forward,
    resolve_layer,
    tolerance_text,
)
from .errors import ModelAdapterError, ModelAdapterTypeError, OutputMismatchError, adapter_check
from .frozen_norm import frozen_norm_affine
from .head import NO_OP_TYPES, RecordedHead, bn_affine, describe_module, essential, fold_exact_head, head_layers
from .layers import at_layer, at_resolution, carry_choices, grid_layers
from .pooling import METRICS, POOLINGS, Pooling, is_global_size, pooling_from_module
from .scripted import is_script_module, python_view
from .tokens import TokenView, exact_layer, token_view

__all__ = ["SimilarityModel", "Pooling", "ModelAdapterError", "METRICS", "POOLINGS"]

log = logging.getLogger("simviz_widgets")

# This module's former private helpers now live in pooling.py, head.py and discovery.py; the old
# names stay importable from here.
_NO_OP_TYPES, _StopForward, _describe_module = NO_OP_TYPES, StopForward, describe_module
_pooling_from_module, _is_global = pooling_from_module, is_global_size
_RecordedHead, _essential, _head_layers, _bn_affine, _fold_exact_head = (
    RecordedHead, essential, head_layers, bn_affine, fold_exact_head)


class SimilarityModel:
    """A torch embedding model seen as ``F -> pool -> head -> metric``. Build with :meth:`wrap`."""

    bias_split: str = "even"  # any-layer mode: 'even' or 'spatial' (explain/bias_terms.py)

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
        # bias_split (class attribute below; set it on a model to choose): how the any-layer mode
        # shares out the later layers' biases, explain/decomposition.py.
        self.output_normalized = False
        self.name: str = ""
        self._feature_point: tuple[nn.Module, str] | None = None
        self._decompose_module: nn.Module | None = None
        self._grid_cache = None  # (grid_layers, pooling grid), see layers.py

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
        adapter_check(check_instance, module, "model", nn.Module, "torch.nn.Module")
        metric = adapter_check(check_choice, metric, "metric", METRICS)
        gem_p = adapter_check(check_float, gem_p, "gem_p", above=0.0)
        if name is not None:
            adapter_check(check_str, name, "name")
        if layer is not None:
            adapter_check(check_instance, layer, "layer", (str, nn.Module), "str or nn.Module")
            if isinstance(layer, str):
                adapter_check(check_str, layer, "layer")
        self = cls()
        self.module = module
        self.metric = metric
        # A ScriptModule's class is RecursiveScriptModule; original_name is the scripted class's name.
        self.name = name or (module.original_name if is_script_module(module) else type(module).__name__)
        if is_script_module(module):
            # Hooks cannot see inside compiled code: wrap the script's Python view (scripted.py).
            probe = probe_input(_check_preprocess(preprocess, module), torch.float32, 1)
            self.module = module = python_view(module, probe, label=f"the TorchScript module {self.name!r}")
        # Vision transformers: a view whose patch tokens pass through 4-D grid modules (tokens.py).
        self.module = module = token_view(module, self.name) or module
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

        self.preprocess = _check_preprocess(preprocess, module)

        if isinstance(pooling, str):
            pooling = Pooling(adapter_check(check_choice, pooling, "pooling", POOLINGS), p=gem_p)
        elif pooling is not None and not isinstance(pooling, Pooling):
            raise ModelAdapterTypeError(
                f"pooling={pooling!r} must be one of {list(POOLINGS)}, a Pooling or None "
                f"(got {type(pooling).__name__})"
            )
        if isinstance(head, str):
            adapter_check(check_choice, head, "head", ("identity",))
            head = nn.Identity()
        elif head is not None and not isinstance(head, nn.Module):
            raise ModelAdapterTypeError(f"head must be an nn.Module or 'identity' (got {type(head).__name__})")

        self._discover(pooling, head)
        if layer is None:  # a transformer's class-token readout: a token grid (tokens.py)
            layer = module.default_layer if isinstance(module, TokenView) else None
        if layer is not None:
            self._set_decompose_layer(layer)
        return self

    def _probe_input(self, batch: int = 2) -> torch.Tensor:
        return probe_input(self.preprocess, self.dtype, batch, device=self.device)

    def _discover(self, pooling: Pooling | None, head: nn.Module | None) -> None:
        """Find the feature map, pooling and head from one probe pass (discovery.py), fold the head,
        and check that head(pool(F)) reproduces the module's output."""
        names = {m: n for n, m in self.module.named_modules()}
        order, out = record_forward(self.module, self._probe_input(), self.name, self.preprocess)
        found = find_feature_point(order, names, self.name, pooling_given=pooling is not None)
        self._feature_point = found.point
        self.feature_layer = found.layer
        feats, model_pool = found.features, found.pooling

        self.pooling = pooling or model_pool
        head_given = head is not None
        if head is None:
            head = RecordedHead(found.after, found.pooled_shape)
        self.head = head
        in_dim = self.pooling(feats).shape[1]
        kind, W, b = fold_exact_head(head_layers(head), in_dim)
        self.head_kind, self.head_weight, self.head_bias = kind, W, b

        with torch.no_grad():
            try:
                ours = self._head_forward(self.pooling(feats))
            except Exception as err:
                raise ModelAdapterError(
                    f"the head {describe_module(head)} does not accept pooled features of shape "
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
        # Tolerance: the rounding of the output's dtype (float16 / bfloat16 too), discovery.py.
        if outputs_match(ours, out):
            return self._output_check_in_float32(out)
        if outputs_match(F.normalize(ours, dim=1), out):
            self.output_normalized = True
            log.info("%s L2-normalises its output; the embedding is normalised the same way", self.name)
            return self._output_check_in_float32(out)
        err = (ours - out).abs().max().item() if ours.shape == out.shape else float("nan")
        raise OutputMismatchError(
            f"could not reproduce {self.name}'s output from pooling ({self.pooling.kind}) and the "
            f"modules after it (shapes {tuple(ours.shape)} vs {tuple(out.shape)}, max diff {err:.3g}, "
            f"tolerance {tolerance_text(out)}); "
            "its forward does work outside modules. Pass pooling= and head= explicitly."
        )

    def _output_check_in_float32(self, out: torch.Tensor) -> None:
        """For a half-precision model, repeat the output check on a float32 copy with float32's
        tolerance: bfloat16's rounding (6 % of the output's scale) would otherwise hide a forward
        that scales its output by a few percent outside modules. A copy that cannot be made keeps
        the half-precision check (logged)."""
        if not (out.dtype.is_floating_point and torch.finfo(out.dtype).bits < 32):
            return
        try:
            module32 = copy.deepcopy(self.module).float()
        except Exception as err:  # noqa: BLE001 - e.g. compiled parts that cannot be copied
            log.info("%s: no float32 copy for the output check (%s); checked at %s rounding", self.name, err, out.dtype)
            return
        try:
            SimilarityModel.wrap(module32, metric=self.metric, preprocess=self.preprocess, name=self.name)
        except OutputMismatchError as err:
            raise OutputMismatchError(f"{err} (checked on a float32 copy of the {out.dtype} model)") from None
        except Exception as err:  # noqa: BLE001 - a copy that cannot run in float32 (casts its input...)
            log.info("%s: the float32 copy does not run (%s); checked at %s rounding", self.name, err, out.dtype)

    def _set_decompose_layer(self, layer: str | nn.Module) -> None:
        name, mod = resolve_layer(self.module, layer, self.name)
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
        return capture(self.module, mod, where, x, allow_missing=allow_missing)

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

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters: inputs are moved there (:meth:`features`)."""
        return module_device(self.module)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map F (B, C, h, w) feeding pooling, for a normalised batch x."""
        mod, where = self._feature_point
        return self._capture(mod, where, x.to(device=self.device, dtype=self.dtype))

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
            return (torch.eye(n, dtype=pooled.dtype, device=pooled.device),
                    torch.zeros(n, dtype=pooled.dtype, device=pooled.device))
        frozen = frozen_norm_affine(self.head, pooled)  # a LayerNorm head: its scale held (frozen_norm.py)
        if frozen is not None:
            return frozen
        p = pooled[0].detach()
        J = torch.func.jacrev(lambda v: self.head(v[None])[0])(p)
        with torch.no_grad():
            b = self.head(p[None])[0] - J @ p
        return J.detach(), b.detach()

    def run_with_layer_replaced(self, x: torch.Tensor, replacement: torch.Tensor, *,
                                features_only: bool = False) -> torch.Tensor:
        """Embedding (or, with ``features_only``, the pooling input) when the decompose layer's
        output is replaced by ``replacement`` (for derivatives with respect to that layer)."""
        if self._decompose_module is None:
            raise ModelAdapterError("no decompose layer is set")

        owner = threading.get_ident()

        def swap(m, inputs, output):
            return replacement if threading.get_ident() == owner else None

        handle = self._decompose_module.register_forward_hook(swap)
        x = x.to(device=self.device, dtype=self.dtype)
        try:
            feats = self.features(x)
        finally:
            handle.remove()
        return feats if features_only else self.embed_from_features(feats)

    def decompose_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._capture(self._decompose_module, "output", x.to(device=self.device, dtype=self.dtype))

    def copy(self, *, channels_last: bool = False, transform=None) -> "SimilarityModel":
        """An independent copy (module and head deep-copied together, wrapped identically): what a
        background job runs, so it never shares a module with the kernel's thread. Raises
        :class:`ModelAdapterError` if the module cannot be copied; it never falls back to this
        model. ``channels_last``: conv weights in channels-last layout (same embeddings to ~1e-5,
        2-5x faster on CPU for depthwise-conv networks). ``transform(module, head)`` may edit the
        copies before wrapping (e.g. randomise weights)."""
        channels_last = check_bool(channels_last, "channels_last")
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
        new = SimilarityModel.wrap(module, layer=self.decompose_layer or exact_layer(module),  # tokens.py
                                   pooling=self.pooling, head=head,
                                   metric=self.metric, preprocess=self.preprocess, name=self.name)
        # Passing pooling and head explicitly skips output matching, which is where wrap() learns
        # that the network L2-normalises its output: carry it over.
        new.output_normalized = self.output_normalized
        carry_choices(self, new)
        return new

    # -- other layers (layers.py) ------------------------------------------------------
    def grid_layers(self) -> dict[str, tuple[int, int]]:
        """name -> (rows, cols) of the modules whose output is a feature map at the input size, in
        forward order, from the first layers down to the pooling input (see adapters/layers.py)."""
        return grid_layers(self)

    def at_layer(self, layer: str | nn.Module | None) -> "SimilarityModel":
        """This model decomposed at ``layer`` (None: the pooling input, exact mode); shares the module."""
        return at_layer(self, layer)

    def at_resolution(self, n: int) -> "SimilarityModel":
        """This model decomposed at the deepest stage output with an n x n grid (the pooling input's
        grid gives exact mode); an error lists the available resolutions."""
        return at_resolution(self, n)

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


def _check_preprocess(preprocess, module: nn.Module) -> PreprocessConfig:
    """A PreprocessConfig from None (timm's config of ``module`` if it has one, else the defaults),
    a dict of its fields, or a PreprocessConfig; the config's own refusals as the adapters' errors."""
    if preprocess is None:
        return PreprocessConfig.from_timm(module) or PreprocessConfig()
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    if not isinstance(preprocess, dict):
        raise ModelAdapterTypeError(
            f"preprocess must be a PreprocessConfig or dict (got {type(preprocess).__name__})"
        )
    fields = list(PreprocessConfig.__dataclass_fields__)
    unknown = [k for k in preprocess if k not in fields]
    if unknown:
        raise ModelAdapterError(
            f"preprocess={preprocess!r} has unknown field(s) {unknown}; PreprocessConfig takes {fields}"
        )
    return adapter_check(lambda value, name: PreprocessConfig(**value), preprocess, "preprocess")

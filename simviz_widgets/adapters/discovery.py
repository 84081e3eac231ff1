"""Finding the parts of a network: one probe forward pass with hooks records every module that ran;
the feature map is the input of the last global pooling (or of a flatten feeding the head), and the
head is what ran after it. Also the thread-safe capture of one module's input or output.
"""

from __future__ import annotations

import difflib
import threading
from dataclasses import dataclass

import torch
from torch import nn

from ..images import PreprocessConfig
from .errors import ModelAdapterError
from .head import essential
from .pooling import Pooling, pooling_from_module

__all__ = ["StopForward", "capture", "resolve_layer", "probe_input", "record_forward", "producer_name",
           "FeaturePoint", "find_feature_point", "HALF_TOLERANCE", "outputs_match", "tolerance_text",
           "module_device"]


class StopForward(Exception):
    """Raised from a hook once the wanted tensor is captured, to skip the rest of the network."""


def capture(module: nn.Module, point: nn.Module, where: str, x: torch.Tensor, *, allow_missing: bool = False):
    """Run ``module`` on ``x`` up to ``point`` and return that module's input (``where='input'``) or
    output (``'output'``); the rest of the network is skipped. None if ``point`` did not run and
    ``allow_missing``, else an error."""
    captured = {}
    # Hooks live on the shared module, so another thread's forward pass runs them too: each
    # hook acts only in the thread that registered it (else threads steal each other's tensors).
    owner = threading.get_ident()

    def pre_hook(m, inputs):
        if threading.get_ident() == owner:
            captured["t"] = inputs[0]
            raise StopForward

    def post_hook(m, inputs, output):
        if threading.get_ident() == owner:
            captured["t"] = output
            raise StopForward

    handle = point.register_forward_pre_hook(pre_hook) if where == "input" else point.register_forward_hook(post_hook)
    try:
        module(x)
    except StopForward:
        pass
    finally:
        handle.remove()
    if "t" not in captured and not allow_missing:
        raise ModelAdapterError("the feature layer did not run during the forward pass")
    return captured.get("t")


def resolve_layer(module: nn.Module, layer: str | nn.Module, model_name: str) -> tuple[str, nn.Module]:
    """(dotted name, module) of ``layer`` (a name or a submodule of ``module``); an unknown name is
    an error suggesting close names and listing the last conv layers."""
    named = dict(module.named_modules())
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
            f"layer {layer!r} is not a module of {model_name}.{hint} Conv layers include: "
            f"{convs[-5:]} (see model.named_modules())."
        )
    return layer, named[layer]


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (else first buffer; the CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def probe_input(preprocess: PreprocessConfig, dtype: torch.dtype, batch: int = 2,
                device: torch.device | str | None = None) -> torch.Tensor:
    """A seeded random batch at the configured input size (224 x 224 when the size is free), on
    ``device``. Drawn on the CPU (a CPU generator), so the probe is the same on every device."""
    size = preprocess.input_size or (224, 224)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, *size, generator=gen, device="cpu").to(device=device, dtype=dtype)


# The output check: head(pool(F)) recomputed from the feature map must give the module's output.
# float32 / float64 models: within rtol 1e-4, atol 1e-5 (the folded head rounds differently from
# the module's layers, ~1e-7 relative). Half-precision models (float16, bfloat16) round every sum to
# 11 or 8 significant bits, so the same recomputation differs by a few units in the last place: each
# output is a sum of terms no larger than the outputs themselves, and its rounding error scales with
# the largest of them, not with its own (possibly cancelled) value. Measured: at most 1.7 eps x
# max|output| (resnet18 and 19 pooling / head combinations of TinyEmbeddingNet, both dtypes), so
# HALF_TOLERANCE eps x max|output| leaves a 4x margin while any work the forward does outside modules
# that changes the output by more than 0.8% (float16) or 6% (bfloat16) of its scale is still caught.
HALF_TOLERANCE = 8


def _is_half(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point and torch.finfo(dtype).bits < 32


def outputs_match(ours: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether ``ours`` reproduces the module's output ``out`` to the rounding of ``out``'s dtype."""
    if ours.shape != out.shape:
        return False
    if not _is_half(out.dtype):
        return bool(torch.allclose(ours, out.to(ours.dtype), rtol=1e-4, atol=1e-5))
    diff = (ours.double() - out.double()).abs().max()
    return bool(diff <= HALF_TOLERANCE * torch.finfo(out.dtype).eps * out.double().abs().max())


def tolerance_text(out: torch.Tensor) -> str:
    """The output check's tolerance in words, for error messages."""
    if not _is_half(out.dtype):
        return "rtol 1e-4, atol 1e-5"
    name = str(out.dtype).replace("torch.", "")
    factor = HALF_TOLERANCE * torch.finfo(out.dtype).eps
    return f"{HALF_TOLERANCE} {name} eps x max|output| = {factor:.3g} x max|output|"


def record_forward(module: nn.Module, x: torch.Tensor, model_name: str,
                   preprocess: PreprocessConfig) -> tuple[list[tuple[nn.Module, tuple, object]], torch.Tensor]:
    """Run ``module`` on ``x`` recording (module, inputs, output) of every submodule in the order
    they ran; returns the record and the output, checked to be one embedding per image (B, D)."""
    order: list[tuple[nn.Module, tuple, object]] = []

    def record(m, inputs, output):
        order.append((m, inputs, output))

    handles = [m.register_forward_hook(record) for m in module.modules() if m is not module]
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as err:  # the model cannot even run on an input of the configured size
        raise ModelAdapterError(
            f"{model_name} failed on a probe input of shape {tuple(x.shape)} "
            f"(preprocess input_size={preprocess.input_size}): {err}"
        ) from err
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, torch.Tensor):
        raise ModelAdapterError(
            f"{model_name} returns {type(out).__name__}; expected one embedding tensor (B, D). "
            "Wrap the part of the model that returns the embedding."
        )
    if out.ndim != 2:
        raise ModelAdapterError(
            f"{model_name} returns a tensor of shape {tuple(out.shape)}; expected (B, D), one "
            "1-D embedding per image. Pass head= to choose how features become an embedding."
        )
    if out.is_floating_point() and not bool(torch.isfinite(out).all()):
        dtype = str(out.dtype).replace("torch.", "")
        hint = (f" ({dtype} overflows above {torch.finfo(out.dtype).max:.6g}: run the model in float32"
                + (" or bfloat16)" if out.dtype == torch.float16 else ")")) if _is_half(out.dtype) else ""
        raise ModelAdapterError(
            f"{model_name}'s output on a probe input of shape {tuple(x.shape)} is not finite (NaN or "
            f"infinite) in {dtype}{hint}; its output cannot be checked against its layers"
        )
    return order, out


def producer_name(order, tensor, names) -> str | None:
    """Outermost module whose output is ``tensor`` (for logging the layer the user knows)."""
    best = None
    for m, _, output in order:
        if output is tensor:
            n = names.get(m)
            if n is not None and (best is None or len(n.split(".")) <= len(best.split("."))):
                best = n
    return best


@dataclass
class FeaturePoint:
    """Where the feature map is read and what follows it, found from a recorded forward pass."""

    point: tuple[nn.Module, str]  # (module, 'input' | 'output') to capture
    layer: str  # the name the user knows it by
    features: torch.Tensor  # (B, C, h, w) on the probe
    pooling: Pooling  # the model's own pooling
    pooled_shape: tuple[int, ...]  # shape of the pooling's output (B, ...)
    after: list[nn.Module]  # leaf modules that ran after pooling, no-ops removed: the head


def find_feature_point(order, names: dict, model_name: str, *, pooling_given: bool) -> FeaturePoint:
    """The feature map feeding the last recognised global pooling, else (VGG, flattened heads) the
    output of a non-global adaptive pool or the input of a flatten; an error saying what to pass
    when neither ran."""
    pool_index, model_pool = None, None
    for k, (m, _, _) in enumerate(order):
        pooling_found = pooling_from_module(m)
        if pooling_found is not None:
            pool_index, model_pool = k, pooling_found
    if pool_index is not None:
        pool_module, pool_inputs, pool_output = order[pool_index]
        feats = pool_inputs[0]
        layer = producer_name(order[:pool_index], feats, names) or (names[pool_module] + ":input")
        found = FeaturePoint((pool_module, "input"), layer, feats, model_pool, tuple(pool_output.shape),
                             [m for (m, _, _) in order[pool_index + 1 :] if not list(m.children())])
    else:
        # No global pooling: a non-global adaptive pool (VGG) or a flatten feeding a Linear.
        hit = None
        for k, (m, inputs, output) in enumerate(order):
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and output.ndim == 4:
                hit = (k, m, "output", output)
            elif isinstance(m, nn.Flatten) and inputs[0].ndim == 4:
                hit = (k, m, "input", inputs[0])
        if hit is None:
            if not pooling_given:
                raise ModelAdapterError(
                    f"could not find global pooling or a flatten in {model_name}; pass pooling= "
                    "and layer= (the module whose 4-D output is pooled)"
                )
            raise ModelAdapterError(
                f"could not find where {model_name} pools its feature map; pass layer= as well"
            )
        k, m, where, feats = hit
        layer = names[m] if where == "output" else (producer_name(order[:k], feats, names) or names[m] + ":input")
        found = FeaturePoint((m, where), layer, feats, Pooling("flatten"), (feats.shape[0], feats[0].numel()),
                             [mm for (mm, _, _) in order[k + 1 :] if not list(mm.children())])
    if found.features.ndim != 4:
        raise ModelAdapterError(
            f"the feature map feeding pooling has shape {tuple(found.features.shape)}; expected (B, C, h, w)"
        )
    found.after = essential(found.after)
    return found

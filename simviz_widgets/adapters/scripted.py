"""A TorchScript module as Python modules that hooks can see, so :meth:`SimilarityModel.wrap` can
find its feature map, pooling and head.

Torch refuses forward hooks on a ScriptModule (and hooks on Python modules would not run inside
compiled code), so a loaded ``.pt`` cannot be wrapped directly. :func:`python_view` rebuilds it
from its own parts: children run in order (with the ``Flatten`` a forward applies before a
Linear), containers whose children chain become Python containers, torch.nn layers become the same
Python layers sharing the weights (each checked against the script), a compiled global pooling
becomes ``AdaptiveAvgPool2d(1)`` + ``Flatten``, and anything else stays compiled in a
:class:`CompiledBlock`. The view must reproduce the script's output on a probe, else
:class:`ModelAdapterError` says what to do instead. The steps, what is supported and what is not:
docs/models.md, "TorchScript files".
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from .errors import ModelAdapterError

__all__ = ["CompiledBlock", "python_view", "is_script_module"]

log = logging.getLogger("simviz_widgets")

RTOL, ATOL = 1e-5, 1e-6  # the same aten ops run on both sides: agreement to float rounding
# Settings of traced torch.nn layers: (aten op in the layer's graph, {setting: argument position}).
_TRACED_ARGS = {
    "Conv2d": ("aten::_convolution", {"stride": 3, "padding": 4, "dilation": 5, "groups": 8}),
    "BatchNorm2d": ("aten::batch_norm", {"momentum": 6, "eps": 7}),
    "BatchNorm1d": ("aten::batch_norm", {"momentum": 6, "eps": 7}),
    "MaxPool2d": ("aten::max_pool2d", {"kernel_size": 1, "stride": 2, "padding": 3, "dilation": 4,
                                       "ceil_mode": 5}),
    "AvgPool2d": ("aten::avg_pool2d", {"kernel_size": 1, "stride": 2, "padding": 3, "ceil_mode": 4,
                                       "count_include_pad": 5, "divisor_override": 6}),
    "Flatten": ("aten::flatten", {"start_dim": 1, "end_dim": 2}),
    "GELU": ("aten::gelu", {"approximate": 1}),
    "LeakyReLU": ("aten::leaky_relu", {"negative_slope": 1}),
}
_NO_OPS = ("Dropout", "Dropout2d", "Identity")


def is_script_module(module) -> bool:
    return isinstance(module, torch.jit.ScriptModule)


class CompiledBlock(nn.Module):
    """A part of a TorchScript module run as compiled code. The script module is held outside
    ``modules()`` (torch raises on hooks registered on it): hooks, layer lists and sanity checks
    see this block as one layer; ``parameters()`` does not list its weights. ``train()`` and
    device / dtype moves reach it; ``copy.deepcopy`` copies it."""

    def __init__(self, scripted: torch.jit.ScriptModule, kind: str):
        super().__init__()
        object.__setattr__(self, "compiled", scripted)  # not registered as a submodule, on purpose
        self.kind = kind

    def forward(self, *args):
        return self.compiled(*args)

    def train(self, mode: bool = True):
        super().train(mode)
        self.compiled.train(mode)
        return self

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.compiled._apply(fn)
        return self

    def extra_repr(self) -> str:
        count = sum(p.numel() for p in self.compiled.parameters())
        return f"TorchScript {self.kind}, {count} weights inside"


class _Chain(nn.Module):
    """Named parts run one after another (names as in the script, so ``layer=`` names match)."""

    def __init__(self, parts: list[tuple[str, nn.Module]], kind: str, *, normalize: bool = False):
        super().__init__()
        for name, part in parts:
            self.add_module(name, part)
        self.kind = kind
        # F.normalize in the script's forward: applied here, outside any module, so that wrap()
        # sees it as the model L2-normalising its output (not as a head to linearise).
        self.normalize = normalize

    def forward(self, x):
        for part in self.children():
            x = part(x)
        return F.normalize(x, dim=1) if self.normalize else x

    def extra_repr(self) -> str:
        return f"Python view of TorchScript {self.kind}" + (", L2-normalised output" if self.normalize else "")


def _kind(scripted) -> str:
    return getattr(scripted, "original_name", type(scripted).__name__)


def _is_torch_nn(scripted) -> bool:
    """Whether the script module was made from a torch.nn class (not a user class of that name)."""
    try:
        qualified = scripted._c._type().qualified_name()
    except (AttributeError, RuntimeError):
        return False
    return ".torch.nn.modules." in qualified


def _same(a, b) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and (torch.equal(a, b) or torch.allclose(a, b, rtol=RTOL, atol=ATOL)))  # equal: the fast, usual case


def _traced_settings(scripted, kind: str) -> dict:
    """Settings of a traced layer, read from the constant arguments of its one aten call."""
    if kind not in _TRACED_ARGS:
        return {}
    op, positions = _TRACED_ARGS[kind]
    try:
        nodes = [n for n in scripted.graph.nodes() if n.kind() == op]
    except (AttributeError, RuntimeError):
        return {}
    if len(nodes) != 1:
        return {}
    args = list(nodes[0].inputs())
    out = {}
    for name, k in positions.items():
        if k >= len(args):
            continue
        producer = args[k].node()
        if producer.kind() == "prim::Constant":
            out[name] = args[k].toIValue()
        elif producer.kind() == "prim::ListConstruct":
            items = [v.toIValue() if v.node().kind() == "prim::Constant" else None for v in producer.inputs()]
            if None not in items:
                out[name] = tuple(items)
    return out


def _setting(scripted, name: str, traced: dict):
    """A layer setting: the scripted module's constant if it has it, else the traced graph's."""
    try:
        return getattr(scripted, name)
    except AttributeError:
        return traced.get(name)


def _tensor(scripted, name: str):
    try:
        value = getattr(scripted, name)
    except AttributeError:
        return None
    return value if isinstance(value, torch.Tensor) else None


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach(), requires_grad=t.requires_grad)  # shares the script's storage


def _rebuild_layer(scripted, x: torch.Tensor, y) -> nn.Module | None:
    """The torch.nn layer the script module was made from, sharing its weights, or None; checked
    to reproduce ``y`` from ``x``."""
    kind = _kind(scripted)
    if not _is_torch_nn(scripted) or list(scripted.children()):
        return None
    traced = _traced_settings(scripted, kind)

    def setting(name, default=None):
        value = _setting(scripted, name, traced)
        return default if value is None else value

    weight, bias = _tensor(scripted, "weight"), _tensor(scripted, "bias")
    try:
        if kind == "Conv2d" and weight is not None and weight.ndim == 4:
            groups = int(setting("groups", 1))
            # skip_init: no random initialisation of weights replaced right after
            layer = skip_init(nn.Conv2d, weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                              stride=setting("stride", 1), padding=setting("padding", 0),
                              dilation=setting("dilation", 1), groups=groups, bias=bias is not None,
                              padding_mode=setting("padding_mode", "zeros"))
        elif kind == "Linear" and weight is not None and weight.ndim == 2:
            layer = skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None)
        elif kind in ("BatchNorm2d", "BatchNorm1d"):
            mean, var = _tensor(scripted, "running_mean"), _tensor(scripted, "running_var")
            if mean is None or var is None:
                return None
            cls = nn.BatchNorm2d if kind == "BatchNorm2d" else nn.BatchNorm1d
            layer = cls(mean.shape[0], eps=float(setting("eps", 1e-5)), momentum=setting("momentum", 0.1),
                        affine=weight is not None)
            layer.running_mean, layer.running_var = mean.detach(), var.detach()
            counted = _tensor(scripted, "num_batches_tracked")
            if counted is not None:
                layer.num_batches_tracked = counted.detach()
        elif kind in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d") and isinstance(y, torch.Tensor) and y.ndim == 4:
            size = tuple(y.shape[-2:])  # an adaptive pool's output grid is its output_size
            layer = getattr(nn, kind)(1 if size == (1, 1) else size)
        elif weight is None and bias is None and not list(scripted.parameters()) and hasattr(nn, kind):
            layer = _parameterless(getattr(nn, kind), scripted, traced)
        else:
            return None
    except (TypeError, ValueError, RuntimeError):
        return None
    if weight is not None:
        layer.weight = _param(weight)
    if bias is not None:
        layer.bias = _param(bias)
    layer.train(scripted.training)
    with torch.no_grad():
        try:
            ours = layer(x)
        except Exception:  # noqa: BLE001 - a wrong guess of settings: keep the compiled layer
            return None
    return layer if _same(ours, y) else None


def _parameterless(cls, scripted, traced: dict) -> nn.Module:
    """An activation, pooling, flatten or dropout layer with the script's settings (defaults where
    the script does not keep them; the caller checks the result)."""
    kwargs = {}
    for name in list(inspect.signature(cls.__init__).parameters)[1:]:
        if name in ("inplace", "device", "dtype", "args", "kwargs"):
            continue  # inplace=False: the same values, and no hook sees a tensor changed later
        value = _setting(scripted, name, traced)
        if value is not None:
            kwargs[name] = value
    return cls(**kwargs)


def _pools_globally(x, y) -> str | None:
    """'avg' or 'max' when ``y`` is ``x`` (B, C, h, w) averaged or max-pooled to (B, C) or (B, C, 1, 1)."""
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and isinstance(y, torch.Tensor)):
        return None
    if y.shape not in (x.shape[:2], (*x.shape[:2], 1, 1)):
        return None
    for kind, pooled in (("avg", x.mean(dim=(2, 3))), ("max", x.amax(dim=(2, 3)))):
        if _same(pooled.reshape(y.shape), y):
            return kind
    return None


def _first_layer_kind(scripted) -> str:
    """The class of the first layer that computes something (Dropout / Identity skipped)."""
    children = list(scripted.children())
    if not children:
        return _kind(scripted)
    for child in children:
        kind = _first_layer_kind(child)
        if kind not in _NO_OPS:
            return kind
    return "Identity"


def _flat_input_size(scripted) -> int | None:
    """in_features of a child whose first computing layer is a Linear, else None."""
    if _first_layer_kind(scripted) != "Linear":
        return None
    node = scripted
    while list(node.children()):
        node = next(c for c in node.children() if _first_layer_kind(c) not in _NO_OPS)
    weight = _tensor(node, "weight")
    return int(weight.shape[1]) if weight is not None and weight.ndim == 2 else None


def _convert(scripted, x):
    """(Python module, output on ``x``) for one script module."""
    kind = _kind(scripted)
    if kind == "Identity" and _is_torch_nn(scripted):
        return nn.Identity(), x  # traced, an unused input leaves it a forward without arguments
    if kind == "Sequential" and _is_torch_nn(scripted):
        parts, y = _convert_children(scripted, x, flatten_gaps=False)  # its forward is this chain
        return nn.Sequential(OrderedDict(parts)), y
    with torch.no_grad():
        y = scripted(x)
    if list(scripted.children()):
        # A container whose forward is its children in order (Sequential and its subclasses,
        # torchvision's Conv2dNormActivation): rebuilt part by part. Others stay compiled.
        try:
            parts, out = _convert_children(scripted, x, flatten_gaps=True)
        except Exception:  # noqa: BLE001 - children that do not chain: a residual block, a branch
            parts, out = None, None
        if parts is not None and _same(out, y):
            return _Chain(parts, kind), y
    layer = _rebuild_layer(scripted, x, y)
    if layer is not None:
        return layer, y
    pool = _pools_globally(x, y)
    if pool is not None:
        first = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        return (nn.Sequential(first, nn.Flatten()) if y.ndim == 2 else first), y
    return CompiledBlock(scripted, kind), y


def _convert_children(scripted, x, *, flatten_gaps: bool):
    parts: list[tuple[str, nn.Module]] = []
    names = {name for name, _ in scripted.named_children()}
    for name, child in scripted.named_children():
        in_features = _flat_input_size(child) if flatten_gaps else None
        if in_features is not None and isinstance(x, torch.Tensor) and x.ndim == 4:
            gap: list[nn.Module] = [nn.Flatten()]
            if in_features == x.shape[1] and x.shape[2:].numel() > 1:
                gap.insert(0, nn.AdaptiveAvgPool2d(1))  # F.adaptive_avg_pool2d in the forward
            for layer in gap:
                label = _free_name("pool" if isinstance(layer, nn.AdaptiveAvgPool2d) else "flatten", names)
                names.add(label)
                parts.append((label, layer))
                x = layer(x)
        module, x = _convert(child, x)
        parts.append((name, module))
    return parts, x


def _free_name(base: str, taken: set) -> str:
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    return name


def python_view(scripted: torch.jit.ScriptModule, probe: torch.Tensor, *,
                label: str = "the TorchScript module") -> nn.Module:
    """A Python module computing what ``scripted`` computes, made of its own parts (see the module
    docstring), checked on ``probe`` (B, 3, H, W). ``scripted`` is switched to eval mode."""
    if not is_script_module(scripted):
        raise ModelAdapterError(f"{label} is a {type(scripted).__name__}, not a TorchScript module")
    if scripted.training:
        warnings.warn(f"{label} was in train mode; switched to eval mode (dropout and batch-norm statistics "
                      "must be frozen for explanations to match the model's scores)", stacklevel=3)
    scripted.eval()
    # The probe follows the script's parameters (a half-precision or GPU script).
    first = next((p for p in scripted.parameters() if p.is_floating_point()), None)
    if first is not None:
        probe = probe.to(device=first.device, dtype=first.dtype)
    # The conversion calls each compiled part a few times on one shape: the profiling executor's
    # optimisation passes would cost more than they save.
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return _checked_view(scripted, probe, label)


def _checked_view(scripted, probe: torch.Tensor, label: str) -> nn.Module:
    try:
        expected = scripted(probe)
    except Exception as err:  # noqa: BLE001 - the script's own failure, reported with the input shape
        raise ModelAdapterError(f"{label} failed on a probe input of shape {tuple(probe.shape)}: "
                                f"{(str(err).strip().splitlines() or [''])[-1][:300]}") from None
    if not (isinstance(expected, torch.Tensor) and expected.ndim == 2):
        what = tuple(expected.shape) if isinstance(expected, torch.Tensor) else type(expected).__name__
        raise ModelAdapterError(f"{label} returns {what}; expected one embedding per image (B, D)")
    kind = _kind(scripted)
    try:
        parts, out = _convert_children(scripted, probe, flatten_gaps=True)  # a Sequential is a chain too
        if _same_shape(out, expected[..., None, None]):  # torch.flatten after the last child (SqueezeNet)
            parts.append((_free_name("flatten", {n for n, _ in parts}), nn.Flatten()))
            out = out.flatten(1)
        view = _Chain(parts, kind)
    except Exception as err:  # noqa: BLE001 - a child that cannot run on its predecessor's output
        raise _not_a_chain(label, kind, f"running its children in order fails ({type(err).__name__}: "
                           f"{(str(err).strip().splitlines() or [''])[-1][:200]})") from None
    if not _same(out, expected) and _same_shape(out, expected) and _same(F.normalize(out, dim=1), expected):
        view.normalize = True  # the forward L2-normalises the last child's output (embedding nets)
        out = F.normalize(out, dim=1)
    if not _same(out, expected):
        diff = (out - expected).abs().max().item() if _same_shape(out, expected) else None
        got = f"max difference {diff:.3g}" if diff is not None else f"shape {_shape(out)} vs {tuple(expected.shape)}"
        raise _not_a_chain(label, kind, f"running its children in order does not give its output ({got})")
    view.eval()
    compiled = [n for n, m in view.named_modules() if isinstance(m, CompiledBlock)]
    log.info("%s: Python view of %d parts; compiled blocks: %s", label, len(parts), compiled or "none")
    return view


def _same_shape(a, b) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def _not_a_chain(label: str, kind: str, why: str) -> ModelAdapterError:
    return ModelAdapterError(
        f"{label} ({kind}) cannot be explained: its forward is not its children run in order — {why}. "
        "Hooks cannot reach inside compiled code; save a state dict instead "
        "(torch.save(net.state_dict(), 'w.pth')) and load it with 'timm:NAME' or 'torchvision:NAME' "
        "and weights='w.pth', or wrap the Python module with SimilarityModel.wrap(net)"
    )

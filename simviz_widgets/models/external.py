"""Your own model: a timm or torchvision architecture with your weights, or a TorchScript file.

``load("timm:resnet50", weights="w.pth")``, ``load("torchvision:resnet18", weights="w.pth")`` build
the architecture offline (timm ``create_model(name, pretrained=False)``, torchvision
``get_model(name, weights=None)``) and load a state dict with ``torch.load(weights_only=True)``.
``load("model.pt")`` loads a TorchScript file (``torch.jit.save`` of a scripted or traced
network) through a Python view hooks can see (:mod:`simviz_widgets.adapters.scripted`). What is
supported and how mismatches are reported: docs/models.md.
"""

from __future__ import annotations

import difflib
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..adapters import SimilarityModel
from ..adapters.discovery import probe_input
from ..adapters.errors import ModelAdapterError
from ..adapters.scripted import CompiledBlock, python_view
from ..adapters.weights import (
    is_torchscript_file,
    load_state_dict_checked,
    load_weights_file,
    strip_prefixes,
    unwrap_state_dict,
)
from ..checks import InputError, InputTypeError, check_path, check_str
from ..images import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

__all__ = ["ARCHITECTURE_SOURCES", "MODEL_FORMS", "is_external", "load_external", "load_architecture",
           "load_torchscript"]

log = logging.getLogger("simviz_widgets")

ARCHITECTURE_SOURCES = ("timm", "torchvision")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ptl", ".jit", ".torchscript")
#: The forms ``load`` takes besides registered names (``simviz models`` prints them).
MODEL_FORMS = {
    "timm:NAME": "any timm architecture, weights=FILE (--weights FILE) a state dict; random weights without",
    "torchvision:NAME": "any torchvision architecture, weights=FILE likewise",
    "PATH.pt": "a TorchScript file (torch.jit.save of a scripted or traced network)",
}
STATE_DICT = "a state dict saved with torch.save(net.state_dict(), path), or a checkpoint holding one"


def is_external(name) -> bool:
    """Whether ``name`` is one of the forms of MODEL_FORMS rather than a registered name: a
    ``SOURCE:ARCH`` string, a path object, or a string that is a file or looks like a torch file."""
    if isinstance(name, os.PathLike):
        return True
    if not isinstance(name, str):
        return False
    source, sep, _ = name.partition(":")
    if sep and source in ARCHITECTURE_SOURCES:
        return True
    return os.path.isfile(name) or name.lower().endswith(TORCHSCRIPT_SUFFIXES) or "/" in name or "\\" in name


def load_external(name, **options) -> SimilarityModel:
    """:func:`load_architecture` for ``SOURCE:ARCH``, else :func:`load_torchscript`."""
    if isinstance(name, str):
        source, sep, arch = name.partition(":")
        if sep and source in ARCHITECTURE_SOURCES:
            return load_architecture(source, arch, **options)
    return load_torchscript(name, **options)


# -- timm: / torchvision: --------------------------------------------------------------------


def _build(source: str, arch: str, num_classes: int | None = None) -> nn.Module:
    """The architecture with random weights (never downloads); an unknown name lists close names."""
    extra = {} if num_classes is None else {"num_classes": num_classes}
    if source == "timm":
        import timm

        if not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            raise InputError(f"timm has no architecture {arch!r}" + (f"; close names: {close}" if close else "")
                             + " (timm.list_models() lists them)")
        return timm.create_model(arch, pretrained=False, **extra)
    import torchvision

    names = torchvision.models.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=3)
        raise InputError(f"torchvision has no architecture {arch!r}" + (f"; close names: {close}" if close else "")
                         + " (torchvision.models.list_models() lists them)")
    return torchvision.models.get_model(arch, weights=None, **extra)


def _classifier(source: str, net: nn.Module) -> str | None:
    """Name of the final Linear classifier: timm's ``pretrained_cfg['classifier']``, for
    torchvision the last Linear with the 1000 ImageNet outputs the architecture is built with."""
    if source == "timm":
        name = (getattr(net, "pretrained_cfg", None) or {}).get("classifier")
        if isinstance(name, str):
            try:
                return name if isinstance(net.get_submodule(name), nn.Linear) else None
            except AttributeError:
                return None
        return None
    linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    return linears[-1] if linears else None


def _fit_classifier(source: str, arch: str, net: nn.Module, state: dict) -> tuple[nn.Module, list[str]]:
    """The architecture rebuilt for the file's classifier: another number of classes
    (``num_classes=N``), or none at all (a file saved without it: the classifier becomes Identity)."""
    name = _classifier(source, net)
    if name is None:
        return net, []
    weight = state.get(f"{name}.weight")
    outputs = net.get_submodule(name).out_features
    if isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.shape[0] != outputs:
        n = int(weight.shape[0])
        return _build(source, arch, n), [f"built with num_classes={n} for the file's classifier {name!r}"]
    own = set(net.state_dict())
    if weight is None and f"{name}.bias" not in state and len(own & set(state)) > 0:
        if source == "timm":
            net.reset_classifier(0)
        else:
            parent, _, leaf = name.rpartition(".")
            setattr(net.get_submodule(parent) if parent else net, leaf, nn.Identity())
        return net, [f"the file has no classifier {name!r}: replaced it by Identity "
                     "(the pooled features are the output)"]
    return net, []


def _torchvision_preprocess(arch: str) -> PreprocessConfig:
    """torchvision's evaluation transform for ``arch`` (read from its weights' metadata, nothing is
    downloaded): resize short side, centre crop, ImageNet mean / std; 256 -> 224 bilinear if none."""
    crop, resize, interpolation = 224, 256, "bilinear"
    try:
        from torchvision.models import get_model_weights

        keywords = getattr(get_model_weights(arch).DEFAULT.transforms, "keywords", {})
        crop = int(keywords.get("crop_size", crop))
        resize = int(keywords.get("resize_size", round(crop * 256 / 224)))
        mode = keywords.get("interpolation")
        interpolation = getattr(mode, "value", interpolation) if mode is not None else interpolation
    except (ValueError, KeyError, AttributeError, TypeError):
        pass
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bilinear"
    return PreprocessConfig(input_size=(crop, crop), resize_short=resize, interpolation=interpolation,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD)


def load_architecture(source: str, arch: str, *, weights=None, layer=None, metric: str = "cosine", pooling=None,
                      head=None, preprocess=None) -> SimilarityModel:
    """``source`` ('timm' | 'torchvision') architecture ``arch`` with the state dict in ``weights``
    (random weights, with a warning, when None), wrapped with ``layer`` / ``metric`` / ``pooling`` /
    ``head`` / ``preprocess`` as :meth:`SimilarityModel.wrap` takes them. ``preprocess`` defaults to
    timm's ``pretrained_cfg`` of ``arch`` or torchvision's evaluation transform."""
    label = f"{source}:{arch}"
    check_str(arch, f"architecture name in {label!r}")
    net = _build(source, arch)
    if weights is None:
        warnings.warn(f"{label} has random weights (no weights file given): its explanations show what an "
                      "untrained network responds to, not what a trained one learnt", stacklevel=4)
    else:
        blob, where = load_weights_file(weights, "weights file", STATE_DICT, name="weights")
        state, notes = unwrap_state_dict(blob, where)
        state, stripped = strip_prefixes(state, set(net.state_dict()))
        net, fitted = _fit_classifier(source, arch, net, state)
        load_state_dict_checked(net, state, where, label)
        for note in notes + stripped + fitted:
            log.info("%s: %s", where, note)
    net.eval()
    if preprocess is None and source == "torchvision":
        preprocess = _torchvision_preprocess(arch)
    return SimilarityModel.wrap(net, layer=layer, metric=metric, pooling=pooling, head=head,
                                preprocess=preprocess, name=label)


# -- TorchScript files -----------------------------------------------------------------------


def _preprocess_config(preprocess) -> PreprocessConfig:
    if preprocess is None:
        return PreprocessConfig()
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    if isinstance(preprocess, dict):
        fields = set(PreprocessConfig.__dataclass_fields__)
        unknown = sorted(set(preprocess) - fields)
        if unknown:
            raise InputError(f"preprocess has unknown field(s) {unknown}; PreprocessConfig takes {sorted(fields)}")
        return PreprocessConfig(**preprocess)
    raise InputTypeError(f"preprocess must be a PreprocessConfig, a dict or None (got {type(preprocess).__name__})")


def load_torchscript(path, *, weights=None, layer=None, metric: str = "cosine", pooling=None, head=None,
                     preprocess=None) -> SimilarityModel:
    """The TorchScript network saved at ``path``, loaded with ``torch.jit.load(map_location='cpu')``
    and wrapped through its Python view (:func:`~simviz_widgets.adapters.scripted.python_view`).
    ``preprocess`` defaults to ImageNet mean / std, short side 256, centre crop 224: pass the
    network's own. A state-dict file is refused with what to do instead."""
    path = check_path(path, "model")
    where = f"model file {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist; a model is a registered name (see list_models()), "
                                "'timm:NAME', 'torchvision:NAME' or a TorchScript file")
    if weights is not None:
        raise InputError(f"weights= is for 'timm:NAME' / 'torchvision:NAME'; the TorchScript {where} holds its own")
    if not is_torchscript_file(path):
        raise InputError(f"{where} is not a TorchScript file (torch.jit.save); if it is a state dict, load it "
                         f"into its architecture: load('timm:NAME', weights={str(path)!r}) or "
                         f"'torchvision:NAME' (command line: --model timm:NAME --weights {path})")
    cfg = _preprocess_config(preprocess)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks torch.jit as deprecated
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001 - a damaged archive
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise InputError(f"{where} could not be loaded by torch.jit.load "
                             f"({type(err).__name__}: {reason})") from None
    view = python_view(scripted, probe_input(cfg, torch.float32, 1), label=f"the TorchScript {where}")
    if not any(isinstance(m, nn.Conv2d) for m in view.modules()):
        blocks = [n for n, m in view.named_modules() if isinstance(m, CompiledBlock)]
        raise ModelAdapterError(f"the TorchScript {where} has no Conv2d layer outside compiled blocks {blocks}; "
                                "save a state dict and load it with 'timm:NAME' / 'torchvision:NAME' instead")
    return SimilarityModel.wrap(view, layer=layer, metric=metric, pooling=pooling, head=head, preprocess=cfg,
                                name=Path(path).name)

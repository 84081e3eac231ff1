"""A tiny registry of ready-made similarity models, in the spirit of timm's ``create_model``."""

from __future__ import annotations

import difflib
from typing import Callable

__all__ = ["register_model", "list_models", "load", "model_info"]

_MODELS: dict[str, tuple[Callable, str]] = {}


def register_model(name: str, description: str):
    """Decorator: ``@register_model("efficientnet_lite0", "ImageNet EfficientNet-Lite0 ...")``."""

    def deco(fn):
        _MODELS[name] = (fn, description)
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_info() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_MODELS.items())}


def load(name: str = "efficientnet_lite0", **kwargs):
    """Build a ready :class:`~simviz_widgets.adapters.SimilarityModel` by name (no network)."""
    try:
        fn, _ = _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"model {name!r} is not registered; known models: {list_models()}.{hint}") from None
    return fn(**kwargs)

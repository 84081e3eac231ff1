"""Ready-made similarity models by name, in the spirit of timm's ``create_model`` (the package's
one registry design, :mod:`simviz_widgets.registry`)."""

from __future__ import annotations

from ..registry import REGISTRIES

__all__ = ["register_model", "list_models", "load", "model_info"]

_MODELS = REGISTRIES["model"]


def register_model(name: str, description: str):
    """Decorator: ``@register_model("efficientnet_lite0", "ImageNet EfficientNet-Lite0 ...")``; a
    name already taken by another builder is an error."""
    return _MODELS.decorator(name, description)


def list_models() -> list[str]:
    return _MODELS.names()


def model_info() -> dict[str, str]:
    return _MODELS.describe()


def load(name: str = "efficientnet_lite0", **kwargs):
    """Build a ready :class:`~simviz_widgets.adapters.SimilarityModel` by name (no network)."""
    return _MODELS.get(name)(**kwargs)

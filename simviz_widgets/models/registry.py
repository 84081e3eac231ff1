"""Ready-made similarity models by name, in the spirit of timm's ``create_model`` (the package's
one registry design, :mod:`simviz_widgets.registry`)."""

from __future__ import annotations

from ..checks import InputError
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


def load(name="efficientnet_lite0", **kwargs):
    """A ready :class:`~simviz_widgets.adapters.SimilarityModel` (no network) from

    * a registered name (``list_models()``), ``kwargs`` going to its builder;
    * ``"timm:ARCH"`` or ``"torchvision:ARCH"``: the architecture with ``weights=`` a state-dict
      file (random weights, with a warning, without);
    * a TorchScript file (a path, or a string naming a file): ``torch.jit.load``.

    The last two take ``layer``, ``metric``, ``pooling``, ``head`` and ``preprocess`` as
    :meth:`SimilarityModel.wrap` does (see models/external.py and docs/models.md)."""
    if isinstance(name, str) and name in _MODELS.names():
        return _MODELS.get(name)(**kwargs)
    from . import external

    if external.is_external(name):
        return external.load_external(name, **kwargs)
    try:
        builder = _MODELS.get(name)
    except InputError as err:
        raise InputError(f"{err} (also accepted: 'timm:NAME', 'torchvision:NAME' with weights=FILE, or a "
                         "TorchScript file path)") from None
    return builder(**kwargs)

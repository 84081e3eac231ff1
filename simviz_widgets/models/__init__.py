"""Ready-made similarity models (no network): ``load(name)``, ``list_models()``."""

from . import (  # noqa: F401  (register the models)
    efficientnet,
    face_resnet,  # noqa: F401  (registers "face_resnet")
    synthetic,  # noqa: F401  (registers "synthetic_scenes")
    tiny,
)
from .efficientnet import imagenet_categories, imagenet_top_k, rename_lite0_keys
from .registry import list_models, load, model_info, register_model
from .tiny import GeM, MeanColorNet, TinyEmbeddingNet

__all__ = [
    "load", "list_models", "model_info", "register_model", "imagenet_categories", "imagenet_top_k",
    "rename_lite0_keys", "TinyEmbeddingNet", "MeanColorNet", "GeM",
]

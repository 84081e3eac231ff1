"""Shared-content map (docs/methods.md, "Shared-content map").

Where the score relies on content that also appears in the other image: the feature-occlusion
drop (what the score relies on, at the decomposed grid) times the correspondence at a finer layer
of the same forward pass (whether this place has a counterpart in the other image).
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F

from ..adapters import SimilarityModel
from ..adapters.discovery import resolve_layer
from ..checks import InputError, Option, check_str
from ..images import PreparedImage
from .base import Explainer, PairExplanation, register_method
from .decomposition import position_contributions
from .feature_occlusion import occlusion_explanation

__all__ = ["SharedContent", "correspondence_maps"]


#: module -> {(input shape, feature layer, decompose layer): the 'auto' layer's name, or None}. The
#: first call hooks every module to choose; later calls hook that one module only.
_AUTO_LAYER: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def _layer_option(value, name):
    return "auto" if value == "auto" else check_str(value, name)


class _Recorder:
    """Forward hooks that keep module outputs while position_contributions runs (the same forward
    pass: nothing is recomputed). ``only``: one module (by name), else every module, keeping per
    spatial size the last 4-D output, so the finest-but-deepest layer can be chosen afterwards."""

    def __init__(self, root: torch.nn.Module, only: str | None):
        self.outputs: dict[tuple[int, int], tuple[int, str, torch.Tensor]] = {}
        self.count = 0
        owner = threading.get_ident()  # hooks live on a shared module: act in this thread only
        modules = [(only, dict(root.named_modules())[only])] if only else \
            [(n, m) for n, m in root.named_modules() if n]

        def hook(name):
            def record(module, inputs, output):
                if threading.get_ident() == owner and isinstance(output, torch.Tensor) and output.ndim == 4:
                    self.count += 1
                    self.outputs[tuple(output.shape[2:])] = (self.count, name, output.detach())
            return record

        self.handles = [m.register_forward_hook(hook(n)) for n, m in modules]

    def remove(self):
        for h in self.handles:
            h.remove()

    def last(self) -> torch.Tensor | None:
        """The output recorded last (None if the module gave no 4-D output)."""
        return max(self.outputs.values(), key=lambda v: v[0])[2] if self.outputs else None

    def deepest_at_least(self, grid: tuple[int, int], factor: int = 2) -> tuple[str, torch.Tensor] | None:
        """The last recorded output whose grid is at least ``factor`` times ``grid`` on both axes."""
        fine = [v for size, v in self.outputs.items() if size[0] >= factor * grid[0] and size[1] >= factor * grid[1]]
        if not fine:
            return None
        _, name, out = max(fine, key=lambda v: v[0])
        return name, out


def correspondence_maps(fq: torch.Tensor, fr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For features (C, H, W) of both images: each position's best cosine to any position of the
    other image, after subtracting each image's mean feature (what every position shares — a
    non-negative activation's common offset — would otherwise match everywhere)."""
    flat = [f.double().flatten(1).T for f in (fq, fr)]  # (N, C)
    unit = [F.normalize(x - x.mean(0), dim=1, eps=1e-12) for x in flat]
    cos = unit[0] @ unit[1].T
    return cos.max(1).values.reshape(fq.shape[1:]), cos.max(0).values.reshape(fr.shape[1:])


@register_method("shared_content")
class SharedContent(Explainer):
    """Shared-content map: the feature-occlusion drop weighted by cross-image correspondence.

    ``map_X(u) = max(0, max_v cos(F^X_u - mean F^X, F^Y_v - mean F^Y)) * r_X(u)`` over the positions
    u of a finer layer L of the same forward pass, where ``r_X`` is the feature-occlusion map
    (method ``'feature_occlusion'``, ``radius``) clipped at 0, divided by its maximum and resampled
    bilinearly (half-pixel centres) from the decomposed grid to L's grid. Likewise for the
    reference. Values in [0, 1]: high where removing the region lowers the score *and* the content
    there has a close counterpart in the other image.

    ``layer='auto'``: L is the last module (in execution order) whose output has at least twice
    the decomposed grid's rows and columns (EfficientNet-Lite0: the 14 x 14, 672-channel expansion of
    ``blocks.5.0``); when there is none, the embedding contributions e_i at the decomposed grid are
    matched instead. A module name chooses L (it must run before the explained feature map).

    Paper: none — a heuristic product of two maps, derived for the shared-object pointing task
    (docs/methods.md, "Shared-content map"): the decomposition's 7 x 7 cells are too coarse and
    mixed to tell a one-cell object from its neighbours; mid-level features of the same pass still
    resolve it, and match the same object across backgrounds. Not a decomposition: the maps do not
    sum to the score. The correspondence factor depends on the layers up to L only (not on the
    layers after it), which the sanity check shows. ``relevance=False`` keeps the correspondence
    alone (where the pair shares content, whether or not the score relies on it).
    """

    paper = ("none (heuristic): feature occlusion (Zeiler, Fergus, ECCV 2014) on the decomposition of "
             "Zhu, Yang, Chen (arXiv 1909.12977), times mid-level cross-image correspondence")
    options = {
        "radius": Option.integer(1, "feature-occlusion neighbourhood: cells within this many rows and "
                                 "columns (1 = 3x3)", minimum=0),
        "layer": Option.custom("auto", "'auto' (the deepest layer at >= 2x the grid) or a module name",
                               _layer_option),
        "relevance": Option.flag(True, "weight by the feature-occlusion drop; False = correspondence alone"),
        "show_progress": Option.flag(True, "progress bar for the any-layer mode"),
    }

    def compute(self, model: SimilarityModel, query: PreparedImage, reference: PreparedImage) -> PairExplanation:
        progress, layer = self.config["show_progress"], self.config["layer"]
        if layer != "auto":
            layer, _ = resolve_layer(model.module, layer, model.name)
        key = (tuple(query.tensor.shape), model.feature_layer, model.decompose_layer)
        chosen = _AUTO_LAYER.get(model.module, {})
        if layer == "auto" and key in chosen and tuple(reference.tensor.shape) == key[0]:
            layer = chosen[key]
        contributions, features = [], []
        for image in (query, reference):
            # The query's pass picks L ('auto'); the reference's pass hooks L alone.
            recorder = None if layer is None else _Recorder(model.module, None if layer == "auto" else layer)
            try:
                contributions.append(position_contributions(model, image.tensor, bias=False, show_progress=progress))
            finally:
                if recorder is not None:
                    recorder.remove()
            if layer == "auto":
                layer, feats = recorder.deepest_at_least(contributions[-1]["grid"]) or (None, None)
                _AUTO_LAYER.setdefault(model.module, {})[key] = layer
            else:
                feats = None if recorder is None else recorder.last()
                if recorder is not None and feats is None:
                    raise InputError(f"shared_content: layer {layer!r} gave no 4-D feature map before the "
                                     f"explained feature map {model.feature_layer!r}; choose an earlier layer")
            features.append(feats)

        exp = occlusion_explanation(self.name, model, query, reference, contributions[0], contributions[1],
                                    self.config["radius"])
        if layer is None:
            # No finer layer ran: match the embedding contributions at the decomposed grid.
            features = [c["E"].T.reshape(1, -1, *c["grid"]) for c in contributions]
            exp.info["notes"].append("no layer at >= 2x the grid: the embedding contributions are matched")
        # Computed where the features are (the model's device); combined with the maps on the CPU.
        correspondence = [c.cpu() for c in correspondence_maps(features[0][0], features[1][0])]
        maps = []
        for occluded, corr in zip((exp.query_map, exp.reference_map), correspondence):
            weight = torch.ones_like(corr)
            if self.config["relevance"]:
                r = torch.from_numpy(occluded).double().clamp_min(0)
                r = r / r.max() if r.max() > 0 else r
                weight = F.interpolate(r[None, None], size=tuple(corr.shape), mode="bilinear",
                                       align_corners=False)[0, 0]
            maps.append((corr.clamp_min(0) * weight).float().numpy())
        exp.info.update({
            "correspondence_layer": layer or model.feature_layer,
            "correspondence_grid": tuple(correspondence[0].shape),
            "relevance": self.config["relevance"],
            "occlusion_maps": {"query": exp.query_map, "reference": exp.reference_map},
            "exact": False,
        })
        exp.info["notes"].append("a product of two maps (relevance x correspondence), not a decomposition: "
                                 "the maps do not sum to the score")
        exp.info["cost"] += f"; one {tuple(correspondence[0].shape)} x {tuple(correspondence[1].shape)} cosine table"
        exp.query_map, exp.reference_map = maps
        exp.signed = False
        return exp

"""Attribute predictor on a frozen similarity backbone (SANE, METHODS.md §7).

Plummer, Vasileva, Petsiuk, Saenko, Forsyth, "Why do These Match? Explaining the Behavior of Image
Similarity Models", ECCV 2020 (arXiv 1905.10797).

A ``kernel_size`` x ``kernel_size`` conv on the similarity model's feature map F (B, C, h, w) gives one
activation map (logits, (h, w)) per attribute; the attribute's confidence is ``sigmoid(pool(map))``
with ``pooling`` 'mean' (the paper's) or 'max'. Training objective (the paper's):

    BCE(confidence logits, labels) + saliency_weight * mean_images min_{a true} |softmax(map_a) - s|_2

where ``s`` is the image's saliency distribution for its match (the positive part of the
decomposition map against its partner, normalised: :func:`saliency_distribution`) and the minimum
runs over the attributes the image truly has (the match is explained by *one* of them).
The backbone stays frozen: features are computed once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..adapters import SimilarityModel
from .data import AttributeData
from .saliency import decomposition_maps_from_features, saliency_distribution

__all__ = ["AttributePredictor", "fit_attribute_predictor", "image_batch", "saliency_distance"]

POOLINGS = ("mean", "max")


class AttributePredictor(nn.Module):
    """Per attribute: an activation map on the backbone's grid and a confidence.

    ``prior`` (K,) is the explanation-suitability prior (see :mod:`.concepts`), saved with the
    weights; 0.5 for every attribute until one is fitted (``has_prior`` False).
    """

    def __init__(self, names, in_channels: int, *, kernel_size: int = 1, pooling: str = "mean"):
        super().__init__()
        names = tuple(str(n) for n in names)
        if not names:
            raise ValueError("names is empty; expected at least one attribute name")
        if len(set(names)) != len(names):
            raise ValueError(f"attribute names must be unique, got {names}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not known; expected one of {POOLINGS}")
        if kernel_size not in (1, 3):
            raise ValueError(f"kernel_size is {kernel_size!r}; expected 1 or 3")
        self.names = names
        self.pooling = pooling
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(in_channels, len(names), kernel_size, padding=kernel_size // 2)
        self.register_buffer("prior", torch.full((len(names),), 0.5))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))

    @property
    def has_prior(self) -> bool:
        return bool(self.prior_fitted)

    def set_prior(self, prior) -> None:
        prior = torch.as_tensor(np.asarray(prior, dtype=np.float32))
        if prior.shape != (len(self.names),) or not torch.isfinite(prior).all():
            raise ValueError(f"prior must be {len(self.names)} finite values, one per attribute")
        self.prior.copy_(prior)
        self.prior_fitted.fill_(True)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, C, h, w) -> (maps (B, K, h, w) logits, confidence logits (B, K))."""
        maps = self.conv(feats)
        pooled = maps.mean(dim=(2, 3)) if self.pooling == "mean" else maps.amax(dim=(2, 3))
        return maps, pooled

    def predict(self, model: SimilarityModel, images) -> dict:
        """Confidences (B, K) in [0, 1] and activation maps (B, K, h, w) (sigmoid of the logits),
        float32 numpy, for images (a list of anything ``model.prepare`` accepts, or one image)."""
        x = image_batch(model, images if isinstance(images, (list, tuple)) else [images])
        with torch.no_grad():
            maps, conf = self(model.features(x))
        return {"confidence": torch.sigmoid(conf).numpy(), "maps": torch.sigmoid(maps).numpy()}

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Weights and configuration in one file (loadable with ``torch.load(weights_only=True)``)."""
        torch.save({
            "state_dict": self.state_dict(),
            "names": list(self.names),
            "in_channels": int(self.conv.in_channels),
            "kernel_size": int(self.kernel_size),
            "pooling": self.pooling,
        }, Path(path))

    @classmethod
    def load(cls, path) -> "AttributePredictor":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"attribute predictor file {str(path)!r} does not exist")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or "state_dict" not in blob or "names" not in blob:
            raise ValueError(f"{str(path)!r} is not an attribute predictor saved with AttributePredictor.save")
        out = cls(blob["names"], blob["in_channels"], kernel_size=blob["kernel_size"], pooling=blob["pooling"])
        out.load_state_dict(blob["state_dict"])
        return out.eval()

    def extra_repr(self) -> str:
        return f"attributes={list(self.names)}, pooling={self.pooling!r}, prior={'fitted' if self.has_prior else 'none'}"


def image_batch(model: SimilarityModel, images) -> torch.Tensor:
    """Prepare and stack images (all must prepare to the same size)."""
    tensors = [model.prepare(im, name=f"images[{k}]").tensor for k, im in enumerate(images)]
    if not tensors:
        raise ValueError("images is empty; expected at least one image")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"images prepare to different sizes {sorted(shapes)}; give the model a fixed input_size")
    return torch.cat(tensors)


def saliency_distance(maps: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """|softmax(map_a) - s|_2 per image and attribute: maps (B, K, h, w), saliency distribution (B, N)
    -> (B, K)."""
    soft = torch.softmax(maps.flatten(2), dim=2)
    return (soft - saliency[:, None, :]).norm(dim=2)


def _features(model, x, chunk=256):
    with torch.no_grad():
        return torch.cat([model.features(x[s : s + chunk]) for s in range(0, len(x), chunk)])


def _saliency(model, feats, images, partners, method="decomposition", options=None, show_progress=False,
              chunk=256):
    if method == "decomposition" and not options:
        try:  # from the features already computed: no forward pass at all
            out = []
            for s in range(0, len(feats), chunk):  # chunks bound the float64 contribution tensors
                idx = torch.arange(s, min(s + chunk, len(feats)))
                qmap, _ = decomposition_maps_from_features(model, feats[idx], feats[partners[idx]])
                out.append(qmap)
            return saliency_distribution(torch.cat(out))
        except ValueError:
            pass  # not an exact case: one explain() per image below
    from tqdm.auto import tqdm

    from ..explain import explain

    grid = tuple(feats.shape[2:])
    maps = []
    for i in tqdm(range(len(images)), desc=f"saliency ({method})", disable=not show_progress, leave=False):
        j = int(partners[i])
        exp = explain(model, images[i], images[j], method=method, **(options or {}))
        m = torch.as_tensor(exp.query_map)[None, None]
        if tuple(m.shape[2:]) != grid:
            m = torch.nn.functional.interpolate(m, size=grid, mode="bilinear", align_corners=False)
        maps.append(m[:, 0])
    return saliency_distribution(torch.cat(maps))


def fit_attribute_predictor(model: SimilarityModel, data: AttributeData, *, saliency_weight: float = 0.005,
                            epochs: int = 30, batch: int = 128, lr: float = 0.02, kernel_size: int = 1,
                            pooling: str = "mean", saliency: str = "decomposition",
                            saliency_options: dict | None = None, seed: int = 0, show_progress: bool = True,
                            return_log: bool = False):
    """Train an :class:`AttributePredictor` on ``data`` with the model frozen (see the module doc).

    The saliency of each image is its ``saliency`` map against its partner: 'decomposition' (the
    default: exact and cheap, batched) or any registered method name such as 'rise' (one
    :func:`~simviz_widgets.explain` per image with ``saliency_options``; RISE is slow on CPU). Returns the predictor in eval mode (and a log dict with ``return_log``:
    per-epoch classification loss and mean saliency distance over the true attributes' minimum).
    """
    from tqdm.auto import tqdm

    if not isinstance(data, AttributeData):
        raise TypeError(f"data is {type(data).__name__}; expected AttributeData")
    if not (np.isfinite(saliency_weight) and saliency_weight >= 0):
        raise ValueError(f"saliency_weight is {saliency_weight!r}; expected a number >= 0")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs is {epochs!r}; expected a positive integer")
    from ..explain import get_method

    if not isinstance(saliency, str):
        raise TypeError(f"saliency is {type(saliency).__name__}; expected a method name such as 'decomposition' or 'rise'")
    get_method(saliency)  # a clear error naming the known methods, before any work
    x = image_batch(model, data.images)
    feats = _features(model, x)
    partners = torch.as_tensor(data.partners, dtype=torch.long)
    sal = _saliency(model, feats, data.images, partners, saliency, saliency_options, show_progress)
    labels = torch.as_tensor(data.labels, dtype=torch.float32)
    true_mask = torch.as_tensor(data.labels, dtype=torch.bool)

    torch.manual_seed(seed)
    predictor = AttributePredictor(data.names, feats.shape[1], kernel_size=kernel_size, pooling=pooling)
    opt = torch.optim.Adam(predictor.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    log = {"bce": [], "saliency_distance": []}
    n = len(feats)
    predictor.train()
    for _ in tqdm(range(epochs), desc="attribute predictor", disable=not show_progress, leave=False):
        order = torch.randperm(n, generator=gen)
        bce_sum = dist_sum = 0.0
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            maps, conf = predictor(feats[idx])
            bce = nn.functional.binary_cross_entropy_with_logits(conf, labels[idx])
            dist = saliency_distance(maps, sal[idx]).masked_fill(~true_mask[idx], float("inf"))
            best = dist.min(dim=1).values
            best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
            loss = bce + saliency_weight * best.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            bce_sum += float(bce.detach()) * len(idx)
            dist_sum += float(best.detach().sum())
        log["bce"].append(bce_sum / n)
        log["saliency_distance"].append(dist_sum / n)
    predictor.eval()
    return (predictor, log) if return_log else predictor

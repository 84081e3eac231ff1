"""A small metric-learning model trained on the synthetic attribute scenes (datasets.synthetic).

``SceneEmbeddingNet``: four 3x3 conv(-BatchNorm)-ReLU layers (strides 2, 2, 2, 1: 64 px -> 8 x 8 grid, 64
channels, receptive field 31 px, larger than the largest object), global average pooling and a
Linear head to 32 dimensions. Wrapped as a SimilarityModel it is conv backbone -> avg pool -> linear
head, so the activation decomposition is exact.

``train_scene_model`` trains it with a pairwise contrastive loss: pairs sharing exactly one
attribute value (``scene_pairs``) are positives, pairs sharing none (``negative_pairs``) are
negatives, and ``BCE(sigmoid(alpha * cos + beta), positive)`` with learnt ``alpha``, ``beta``
(the sigmoid form of the contrastive loss) pulls positives together and pushes negatives apart.
The model learns that *any* shared value (colour, shape, texture or size) makes two scenes alike, so
explanations of its matches have a known answer: the shared attribute.

``load("synthetic_scenes", weights=path)`` loads saved weights (``torch.load(weights_only=True)``);
without ``weights`` it trains a model from the seed (about ``steps`` optimiser steps; the default is
a full model in well under two minutes on two CPU cores).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..adapters import SimilarityModel
from ..adapters.weights import load_weights_file
from ..checks import InputError, check_array, check_bool, check_float, check_int
from ..images import PreprocessConfig
from .registry import register_model

__all__ = ["SceneEmbeddingNet", "SCENE_PREPROCESS", "train_scene_model", "scene_batch", "synthetic_scenes"]

# Scenes are 64 px already: no resize, no crop; RGB/255 centred on the grey background.
SCENE_PREPROCESS = PreprocessConfig(input_size=(64, 64), resize_short=None, interpolation="bilinear",
                                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class SceneEmbeddingNet(nn.Module):
    """conv-ReLU x4 -> global average pooling -> Linear (see the module docstring)."""

    def __init__(self, *, width: int = 64, dim: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        w = width
        self.backbone = nn.Sequential(
            nn.Conv2d(3, w // 4, 3, stride=2, padding=1), nn.BatchNorm2d(w // 4), nn.ReLU(),
            nn.Conv2d(w // 4, w // 2, 3, stride=2, padding=1), nn.BatchNorm2d(w // 2), nn.ReLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=1, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(w, dim)
        self.width, self.dim = width, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.flatten(self.pool(self.backbone(x))))


def scene_batch(images) -> torch.Tensor:
    """uint8 (B, H, W, 3) scenes (or a list of them) -> the normalised tensor the model expects."""
    arr = check_array(images, "images", shape=(None, None, None, 3), dtype=np.uint8,
                      expected="uint8 (B, H, W, 3) scenes")
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(SCENE_PREPROCESS.mean).view(1, 3, 1, 1)
    std = torch.tensor(SCENE_PREPROCESS.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def train_scene_model(*, steps: int = 1200, batch: int = 32, pairs: int = 3000, seed: int = 0, lr: float = 1e-2,
                      width: int = 48, dim: int = 32, proxy_weight: float = 1.0,
                      show_progress: bool = True) -> tuple[SceneEmbeddingNet, dict]:
    """Train :class:`SceneEmbeddingNet` on synthetic scenes with the sigmoid contrastive loss.

    ``pairs`` positive and ``pairs`` negative pairs are drawn once (seeded) and sampled ``batch`` of
    each per step. ``proxy_weight`` adds a multi-label proxy loss (one learnt proxy per attribute
    value; BCE of the scaled cosine to each proxy against the image's values, as in proxy-based
    metric learning): the pairwise loss alone learns too slowly for a two-minute budget. Returns
    (the trained net in eval mode, a log dict with the loss curve, the held-out pair accuracy and
    the seconds taken).
    """
    from tqdm.auto import tqdm

    from ..datasets.synthetic import negative_pairs, scene_pairs

    steps, batch, pairs = (check_int(v, label, minimum=1) for label, v in (("steps", steps), ("batch", batch),
                                                                         ("pairs", pairs)))
    seed, lr = check_int(seed, "seed", minimum=0), check_float(lr, "lr", above=0.0)
    width, dim = check_int(width, "width", minimum=4), check_int(dim, "dim", minimum=1)
    proxy_weight = check_float(proxy_weight, "proxy_weight", minimum=0.0)
    show_progress = check_bool(show_progress, "show_progress")
    start = time.perf_counter()
    pos = scene_pairs(pairs, seed=seed)
    neg = negative_pairs(pairs, seed=seed + 1)
    xq = scene_batch(np.stack([p.query.image for p in pos + neg]))
    xr = scene_batch(np.stack([p.reference.image for p in pos + neg]))
    lq = torch.as_tensor(np.stack([p.query.labels for p in pos + neg]), dtype=torch.float32)
    lr_ = torch.as_tensor(np.stack([p.reference.labels for p in pos + neg]), dtype=torch.float32)
    target = torch.cat([torch.ones(pairs), torch.zeros(pairs)])

    net = SceneEmbeddingNet(width=width, dim=dim, seed=seed)
    alpha = nn.Parameter(torch.tensor(5.0))
    beta = nn.Parameter(torch.tensor(-2.5))
    proxies = nn.Parameter(torch.randn(lq.shape[1], dim) / dim**0.5)
    proxy_scale = nn.Parameter(torch.tensor([8.0, -4.0]))
    opt = torch.optim.Adam(list(net.parameters()) + [alpha, beta, proxies, proxy_scale], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    net.train()
    bar = tqdm(range(steps), desc="training synthetic_scenes", disable=not show_progress, leave=False)
    for _ in bar:
        idx = torch.cat([torch.randint(0, pairs, (batch,), generator=gen),
                         torch.randint(pairs, 2 * pairs, (batch,), generator=gen)])
        g = net(torch.cat([xq[idx], xr[idx]]))
        ga, gb = g.chunk(2)
        cos = nn.functional.cosine_similarity(ga, gb, dim=1)
        loss = nn.functional.binary_cross_entropy_with_logits(alpha * cos + beta, target[idx])
        if proxy_weight > 0:
            to_proxy = nn.functional.normalize(g, dim=1) @ nn.functional.normalize(proxies, dim=1).T
            labels = torch.cat([lq[idx], lr_[idx]])
            loss = loss + proxy_weight * nn.functional.binary_cross_entropy_with_logits(
                proxy_scale[0] * to_proxy + proxy_scale[1], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.eval()

    held_pos = scene_pairs(200, seed=seed + 1000)
    held_neg = negative_pairs(200, seed=seed + 1001)
    with torch.no_grad():
        def cosines(ps):
            a = net(scene_batch(np.stack([p.query.image for p in ps])))
            b = net(scene_batch(np.stack([p.reference.image for p in ps])))
            return nn.functional.cosine_similarity(a, b, dim=1)

        cp, cn = cosines(held_pos), cosines(held_neg)
    threshold = float((-beta / alpha).detach())
    accuracy = float(((cp > threshold).float().mean() + (cn <= threshold).float().mean()) / 2)
    log = {
        "losses": losses,
        "seconds": time.perf_counter() - start,
        "held_out_pair_accuracy": accuracy,
        "threshold": threshold,
        "mean_cos_positive": float(cp.mean()),
        "mean_cos_negative": float(cn.mean()),
        "steps": steps,
        "seed": seed,
    }
    return net, log


@register_model("synthetic_scenes", "5-conv metric model trained on the synthetic attribute scenes (64 px, 8x8 grid)")
def synthetic_scenes(*, weights: str | Path | None = None, steps: int = 1200, seed: int = 0, width: int = 48,
                     dim: int = 32, show_progress: bool = True) -> SimilarityModel:
    """The synthetic-scenes model: from ``weights`` (a state dict saved with ``torch.save``) or
    trained now from ``seed`` for ``steps`` steps."""
    if weights is not None:
        state, where = load_weights_file(weights, "weights file",
                                         "a state dict saved with torch.save(net.state_dict())", name="weights")
        head = state.get("head.weight") if isinstance(state, dict) else None
        if not isinstance(head, torch.Tensor) or head.ndim != 2:
            raise InputError(f"{where} is not a SceneEmbeddingNet state dict (no 2-D 'head.weight')")
        bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not torch.isfinite(v).all()]
        if bad:
            raise InputError(f"{where}: {bad} have NaN or infinite values")
        net = SceneEmbeddingNet(width=head.shape[1], dim=head.shape[0])
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError) as err:  # missing or unexpected keys, shapes that disagree
            raise InputError(f"{where} does not fit a SceneEmbeddingNet: {str(err).splitlines()[0]}") from None
        net.eval()
    else:
        net, _ = train_scene_model(steps=steps, seed=seed, width=width, dim=dim, show_progress=show_progress)
    return SimilarityModel.wrap(net, metric="cosine", preprocess=SCENE_PREPROCESS, name="synthetic_scenes")

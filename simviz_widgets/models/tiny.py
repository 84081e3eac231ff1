"""Small models with seeded or hand-set weights: fast tests, known answers."""

from __future__ import annotations

import torch
from torch import nn

from ..adapters import SimilarityModel
from ..checks import check_choice, check_int
from ..images import PreprocessConfig
from .registry import register_model

__all__ = ["TinyEmbeddingNet", "tiny_test", "mean_color"]

TINY_PREPROCESS = PreprocessConfig(input_size=(64, 64), resize_short=64, interpolation="bilinear")


class TinyEmbeddingNet(nn.Module):
    """conv-ReLU x3 (stride 2 each: 64 px -> 8 x 8 grid), a pooling, and a head.

    ``pooling``: 'avg' | 'max' | 'gem' | 'flatten'; ``head``: 'identity' | 'linear' |
    'linear_nobias' | 'bn' | 'linear_bn' | 'mlp' | 'flat_linear'. Weights are seeded.
    """

    def __init__(self, pooling: str = "avg", head: str = "linear", *, channels: int = 16, dim: int = 12,
                 grid: int = 8, seed: int = 0):
        super().__init__()
        check_choice(pooling, "pooling", ("avg", "max", "gem", "flatten"))
        check_choice(head, "head", ("identity", "linear", "linear_nobias", "bn", "linear_bn", "mlp", "flat_linear"))
        channels, dim = check_int(channels, "channels", minimum=1), check_int(dim, "dim", minimum=1)
        grid, seed = check_int(grid, "grid", minimum=1), check_int(seed, "seed", minimum=0)
        gen = torch.Generator().manual_seed(seed)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        if pooling == "avg":
            self.pool = nn.AdaptiveAvgPool2d(1)
        elif pooling == "max":
            self.pool = nn.AdaptiveMaxPool2d(1)
        elif pooling == "gem":
            self.pool = GeM(p=3.0)
        elif pooling == "flatten":
            self.pool = nn.Identity()
        else:
            raise ValueError(f"pooling {pooling!r} not known")
        self.flatten = nn.Flatten()
        in_dim = channels * grid * grid if pooling == "flatten" else channels
        heads = {
            "identity": lambda: nn.Identity(),
            "linear": lambda: nn.Linear(in_dim, dim),
            "linear_nobias": lambda: nn.Linear(in_dim, dim, bias=False),
            "bn": lambda: nn.BatchNorm1d(in_dim),
            "linear_bn": lambda: nn.Sequential(nn.Linear(in_dim, dim), nn.BatchNorm1d(dim)),
            "mlp": lambda: nn.Sequential(nn.Linear(in_dim, 24), nn.ReLU(), nn.Linear(24, dim)),
            "flat_linear": lambda: nn.Linear(in_dim, dim),
        }
        if head not in heads:
            raise ValueError(f"head {head!r} not known")
        self.head = heads[head]()
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p.ndim > 1 else 0.1))
        if isinstance(self.pool, GeM):  # the seeded fill above must not overwrite the GeM power
            with torch.no_grad():
                self.pool.p.fill_(3.0)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        self.eval()

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.backbone(x))))


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al.), as metric-learning code defines it."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([p]))
        self.eps = eps

    def forward(self, x):
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3), keepdim=True).pow(1.0 / self.p)


class MeanColorNet(nn.Module):
    """A hand-set model with known answers: a 4x4/stride-4 conv whose output at each cell is the
    cell's mean RGB, average pooling, identity head. Its embedding is the image's mean colour."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 4, stride=4, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(3):
                self.conv.weight[c, c] = 1.0 / 16.0
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.eval()

    def forward(self, x):
        return self.flatten(self.pool(self.conv(x)))


@register_model("tiny_test", "3-conv net with seeded weights, 8x8 grid at 64 px (fast tests)")
def tiny_test(*, pooling: str = "avg", head: str = "linear", metric: str = "cosine", seed: int = 0,
              layer=None) -> SimilarityModel:
    net = TinyEmbeddingNet(pooling=pooling, head=head, seed=seed)
    return SimilarityModel.wrap(net, metric=metric, preprocess=TINY_PREPROCESS, layer=layer, name="tiny_test")


@register_model("mean_color", "hand-set: embedding = mean RGB over 4x4 cells (known answers)")
def mean_color(*, metric: str = "dot", size: int = 32) -> SimilarityModel:
    size = check_int(size, "size", minimum=4)
    cfg = PreprocessConfig(input_size=(size, size), resize_short=None, interpolation="bilinear",
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return SimilarityModel.wrap(MeanColorNet(), metric=metric, preprocess=cfg, name="mean_color")

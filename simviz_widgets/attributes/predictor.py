"""Attribute predictor on a frozen similarity backbone (SANE; docs/methods.md, "Attribute predictor").

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

import numpy as np
import torch
from torch import nn

from ..adapters import SimilarityModel
from ..adapters.weights import load_weights_file
from ..checks import (
    InputError,
    SimvizError,
    check_array,
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_keys,
    check_names,
    check_path,
    check_str,
)
from .data import AttributeData
from .saliency import decomposition_maps_from_features, saliency_distribution

__all__ = ["AttributePredictor", "fit_attribute_predictor", "image_batch", "saliency_distance"]

POOLINGS = ("mean", "max")
KERNEL_SIZES = (1, 3)
#: What :meth:`AttributePredictor.save` writes (and :meth:`~AttributePredictor.load` needs).
SAVED_KEYS = ("state_dict", "names", "in_channels", "kernel_size", "pooling")


class AttributePredictor(nn.Module):
    """Per attribute: an activation map on the backbone's grid and a confidence.

    ``prior`` (K,) is the explanation-suitability prior (see :mod:`.concepts`), saved with the
    weights; 0.5 for every attribute until one is fitted (``has_prior`` False). ``device``: where the
    weights are made (None: torch's default device). The predictor runs where its weights are: the
    backbone's features are moved to its device and dtype (:meth:`predict`), the predictor never.
    """

    def __init__(self, names, in_channels: int, *, kernel_size: int = 1, pooling: str = "mean", device=None):
        super().__init__()
        names = tuple(check_names(names, "names"))  # distinct non-empty strings ('ab' is refused)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        kernel_size = check_choice(check_int(kernel_size, "kernel_size"), "kernel_size", KERNEL_SIZES)
        pooling = check_choice(pooling, "pooling", POOLINGS)
        self.names = names
        self.pooling = pooling
        self.kernel_size = kernel_size
        if device is not None:
            device = torch.device(check_instance(device, "device", (str, torch.device), "torch.device or device name"))
        self.conv = nn.Conv2d(in_channels, len(names), kernel_size, padding=kernel_size // 2, device=device)
        self.register_buffer("prior", torch.full((len(names),), 0.5, device=device))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool, device=device))

    @property
    def has_prior(self) -> bool:
        return bool(self.prior_fitted)

    def set_prior(self, prior) -> None:
        """The explanation-suitability prior: one value in [0, 1] per attribute (copied)."""
        prior = check_array(prior, "prior", shape=(len(self.names),), kinds="iuf", finite=True,
                            expected=f"{len(self.names)} values, one per attribute")
        if not np.all((prior >= 0) & (prior <= 1)):
            raise InputError(f"prior has values outside [0, 1]: {prior.tolist()}; expected fractions")
        self.prior.copy_(torch.as_tensor(np.asarray(prior, dtype=np.float32), device=self.prior.device))
        self.prior_fitted.fill_(True)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, C, h, w) -> (maps (B, K, h, w) logits, confidence logits (B, K))."""
        maps = self.conv(feats)
        pooled = maps.mean(dim=(2, 3)) if self.pooling == "mean" else maps.amax(dim=(2, 3))
        return maps, pooled

    def predict(self, model: SimilarityModel, images) -> dict:
        """Confidences (B, K) in [0, 1] and activation maps (B, K, h, w) (sigmoid of the logits),
        float32 CPU numpy, for images (a list of anything ``model.prepare`` accepts, or one image).
        The features are computed on the model's device and moved to the predictor's device and
        dtype (a half model's features meet a float32 predictor in float32); the predictor stays put."""
        check_instance(model, "model", SimilarityModel)
        x = image_batch(model, images if isinstance(images, (list, tuple)) else [images])
        with torch.no_grad():
            maps, conf = self(self.take(_features(model, x)))
        return {"confidence": torch.sigmoid(conf).float().cpu().numpy(),
                "maps": torch.sigmoid(maps).float().cpu().numpy()}

    def take(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` on this predictor's device and in its dtype (a copy where either differs)."""
        weight = self.conv.weight
        return feats.to(device=weight.device, dtype=weight.dtype)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Weights and configuration in one file (loadable with ``torch.load(weights_only=True)``).
        Weights with NaN or infinite values (a diverged training) are refused, never written. The
        file holds CPU tensors whatever the predictor's device (it loads on any machine)."""
        path = check_path(path, "path")
        if not path.parent.is_dir():
            raise InputError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
        bad = [k for k, v in self.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise InputError(f"cannot save the attribute predictor to {str(path)!r}: {bad} have NaN or "
                             "infinite values (did training diverge?)")
        torch.save({
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "names": list(self.names),
            "in_channels": int(self.conv.in_channels),
            "kernel_size": int(self.kernel_size),
            "pooling": self.pooling,
        }, path)

    @classmethod
    def load(cls, path) -> "AttributePredictor":
        """A predictor written by :meth:`save`. Anything else — an empty or corrupt file, missing
        entries, names that are not distinct strings, weights of the wrong shape or with NaN —
        is an InputError naming the file and what is wrong. The predictor is made on the CPU, where
        the file is read (move it with ``.to()`` if you like; it runs where its weights are)."""
        blob, where = load_weights_file(path, "attribute predictor file",
                                        "a file written by AttributePredictor.save")
        if not isinstance(blob, dict) or any(k not in blob for k in SAVED_KEYS):
            have = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
            raise InputError(f"{where} is not an attribute predictor saved with AttributePredictor.save: it "
                             f"holds {have}; expected a dict with {list(SAVED_KEYS)}")
        try:
            out = cls(blob["names"], blob["in_channels"], kernel_size=blob["kernel_size"], pooling=blob["pooling"],
                      device="cpu")
            expected = out.state_dict()
            state = check_keys(blob["state_dict"], "state_dict", expected, required=tuple(expected))
            for key, value in state.items():
                check_instance(value, f"state_dict[{key!r}]", torch.Tensor)
                if tuple(value.shape) != tuple(expected[key].shape):
                    raise InputError(f"state_dict[{key!r}] has shape {tuple(value.shape)}; expected "
                                     f"{tuple(expected[key].shape)} for {len(out.names)} attributes on "
                                     f"{out.conv.in_channels} channels")
                if value.is_floating_point() and not torch.isfinite(value).all():
                    raise InputError(f"state_dict[{key!r}] has NaN or infinite values")
            if not ((state["prior"] >= 0) & (state["prior"] <= 1)).all():
                raise InputError("the prior has values outside [0, 1]")
            out.load_state_dict(state)
        except SimvizError as err:
            raise type(err)(f"{where}: {err}") from None
        return out.eval()

    def extra_repr(self) -> str:
        prior = "fitted" if self.has_prior else "none"
        return f"attributes={list(self.names)}, pooling={self.pooling!r}, prior={prior}"


def image_batch(model: SimilarityModel, images) -> torch.Tensor:
    """Prepare and stack images (all must prepare to the same size)."""
    tensors = [model.prepare(im, name=f"images[{k}]").tensor for k, im in enumerate(images)]
    if not tensors:
        raise InputError("images is empty; expected at least one image")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise InputError(f"images prepare to different sizes {sorted(shapes)}; give the model a fixed input_size")
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
    """Saliency distributions (B, h*w) float32 on the features' device."""
    if method == "decomposition" and not options:
        try:  # from the features already computed: no forward pass at all
            out = []
            for s in range(0, len(feats), chunk):  # chunks bound the float64 contribution tensors
                idx = torch.arange(s, min(s + chunk, len(feats)), device=feats.device)
                qmap, _ = decomposition_maps_from_features(model, feats[idx], feats[partners[idx]])
                out.append(qmap)
            return saliency_distribution(torch.cat(out)).float()
        except ValueError:
            pass  # not an exact case: one explain() per image below
    from tqdm.auto import tqdm

    from ..explain import explain

    grid = tuple(feats.shape[2:])
    maps = []
    for i in tqdm(range(len(images)), desc=f"saliency ({method})", disable=not show_progress, leave=False):
        j = int(partners[i])
        exp = explain(model, images[i], images[j], method=method, **(options or {}))
        m = torch.as_tensor(exp.query_map, dtype=torch.float32, device="cpu")[None, None]  # maps: CPU numpy
        if tuple(m.shape[2:]) != grid:
            m = torch.nn.functional.interpolate(m, size=grid, mode="bilinear", align_corners=False)
        maps.append(m[:, 0])
    return saliency_distribution(torch.cat(maps)).to(feats.device)


def fit_attribute_predictor(model: SimilarityModel, data: AttributeData, *, saliency_weight: float = 0.005,
                            epochs: int = 30, batch: int = 128, lr: float = 0.02, kernel_size: int = 1,
                            pooling: str = "mean", saliency: str = "decomposition",
                            saliency_options: dict | None = None, seed: int = 0, show_progress: bool = True,
                            return_log: bool = False):
    """Train an :class:`AttributePredictor` on ``data`` with the model frozen (see the module doc).

    The saliency of each image is its ``saliency`` map against its partner: 'decomposition' (the
    default: exact and cheap, batched) or any registered method name such as 'rise' (one
    :func:`~simviz_widgets.explain` per image with ``saliency_options``; RISE is slow on CPU).
    Returns the predictor in eval mode (and a log dict with ``return_log``:
    per-epoch classification loss and mean saliency distance over the true attributes' minimum).

    Device and dtype: the features stay on the model's device and the predictor is trained there,
    in float32 (a half model's features are upcast), and returned there (``.to('cpu')`` it if you
    like: it runs wherever its weights are, and :meth:`AttributePredictor.save` writes CPU tensors).
    Its initial weights are drawn on the CPU from ``seed``, the same on every device.
    """
    from tqdm.auto import tqdm

    from ..explain import get_method

    # Every argument is checked before any work (the saliency of every image can take minutes).
    check_instance(model, "model", SimilarityModel)
    check_instance(data, "data", AttributeData)
    saliency_weight = check_float(saliency_weight, "saliency_weight", minimum=0.0)
    epochs, batch = check_int(epochs, "epochs", minimum=1), check_int(batch, "batch", minimum=1)
    lr = check_float(lr, "lr", above=0.0)
    kernel_size = check_choice(check_int(kernel_size, "kernel_size"), "kernel_size", KERNEL_SIZES)
    pooling = check_choice(pooling, "pooling", POOLINGS)
    seed = check_int(seed, "seed", minimum=0)
    show_progress, return_log = check_bool(show_progress, "show_progress"), check_bool(return_log, "return_log")
    get_method(check_str(saliency, "saliency"))  # a clear error naming the known methods
    if saliency_options is not None:
        check_instance(saliency_options, "saliency_options", dict, "dict of the method's options")
    x = image_batch(model, data.images)
    feats = _features(model, x)
    # The head trains where the features are (the model's device): the features of every image are
    # the large tensor and the head is one small conv, so moving the head costs nothing and a GPU
    # trains it at once, where copying the features to the host would cost a transfer and CPU time.
    # float32 whatever the model's dtype: Adam's steps (lr x a normalised gradient) fall below a
    # float16 weight's rounding.
    device = feats.device
    partners = torch.as_tensor(data.partners, dtype=torch.long, device=device)
    sal = _saliency(model, feats, data.images, partners, saliency, saliency_options, show_progress)
    feats = feats.float()
    labels = torch.as_tensor(data.labels, dtype=torch.float32, device=device)
    true_mask = torch.as_tensor(data.labels, dtype=torch.bool, device=device)

    torch.manual_seed(seed)
    predictor = AttributePredictor(data.names, feats.shape[1], kernel_size=kernel_size, pooling=pooling,
                                   device="cpu").to(device)  # ours, so moved; the same draw on every device
    opt = torch.optim.Adam(predictor.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    log = {"bce": [], "saliency_distance": []}
    n = len(feats)
    predictor.train()
    for _ in tqdm(range(epochs), desc="attribute predictor", disable=not show_progress, leave=False):
        order = torch.randperm(n, generator=gen, device="cpu").to(device)  # the CPU generator's draw
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

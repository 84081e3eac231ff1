"""Deletion and insertion curves (the SANE protocol; docs/methods.md, "Deletion and insertion").

For fractions ``t = 0, 0.01, ..., 1`` (101 steps) keep (insertion) or remove (deletion) the
``k = max(round(P t), 1)`` most salient pixels of the query, ranked by the query map upsampled
bilinearly to the display size; every other pixel (insertion) / every removed pixel (deletion) is
set to a background. The score of each perturbed query is its similarity to the *unperturbed*
reference embedding. Each pair's curve is min-max normalised, curves are averaged over pairs, and
the area under the mean curve (trapezoid rule) is reported x100.

Backgrounds: ``"grey"`` — 0.5 grey in pixel space (RGB 127.5), i.e. ``(0.5 - mean) / std`` after the
model's normalisation; ``"blur"`` — a Gaussian-blurred copy of the query (``blur_sigma`` pixels).

Reading: a faithful map makes the deletion curve fall early (low AUC, lower is better) and the
insertion curve rise early (high AUC, higher is better). Because the trapezoid rule is linear, the
AUC of the mean curve equals the mean of the per-pair AUCs, so the metrics report per-pair AUCs and
their mean is the protocol's number. A pair whose curve is flat (max == min) has no normalised curve:
its AUC is NaN and it is left out of means.

Pixel ranking ties (a plateau in the map) are broken in row-major order (stable sort).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import (
    InputError,
    Option,
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
    check_sequence,
)
from ..explain.base import PairExplanation
from ..explain.perturbation import at_least_float32
from .metrics import EvalContext, Metric, pixel_map, register_metric

__all__ = [
    "PerturbationCurve",
    "CurveSummary",
    "perturbation_curve",
    "deletion_curve",
    "insertion_curve",
    "average_curves",
    "pixel_counts",
    "display_to_tensor",
    "reference_embedding",
    "background_tensor",
    "Deletion",
    "Insertion",
    "MODES",
    "BACKGROUNDS",
]

MODES = ("deletion", "insertion")
BACKGROUNDS = ("grey", "blur")
SCORES = ("model", "cosine")


def pixel_counts(n_pixels: int, steps: int = 101) -> np.ndarray:
    """``k = max(round(P t), 1)`` for ``steps`` fractions t evenly spaced in [0, 1] (int64)."""
    n_pixels = check_int(n_pixels, "n_pixels", minimum=1)
    fractions = np.linspace(0.0, 1.0, check_int(steps, "steps", minimum=2))
    return np.maximum(np.round(n_pixels * fractions), 1).astype(np.int64)


def display_to_tensor(display: np.ndarray, preprocess) -> torch.Tensor:
    """A display image (H, W, 3) uint8 -> the model's normalised input (3, H, W) float32.

    The same arithmetic as ``prepare_image`` without resizing: the display *is* the model's crop.
    """
    x = torch.from_numpy(np.asarray(display, dtype=np.float32)).permute(2, 0, 1) * preprocess.scale
    mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return ((x - mean) / std).contiguous()


def background_tensor(display: np.ndarray, preprocess, background: str = "grey",
                      blur_sigma: float = 5.0) -> torch.Tensor:
    """The replacement image (3, H, W) in the model's normalised space."""
    check_choice(background, "background", BACKGROUNDS)
    if background == "grey":
        grey = np.full(np.asarray(display).shape, 127.5, dtype=np.float32)
        return display_to_tensor(grey, preprocess)
    if background == "blur":
        from scipy.ndimage import gaussian_filter

        blur_sigma = check_float(blur_sigma, "blur_sigma", above=0.0)
        blurred = gaussian_filter(np.asarray(display, dtype=np.float32), sigma=(blur_sigma, blur_sigma, 0))
        return display_to_tensor(blurred, preprocess)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


@dataclass
class PerturbationCurve:
    """One pair's curve. ``scores``: raw similarity per step; ``counts``: pixels kept (insertion)
    or removed (deletion) per step; ``fractions``: t."""

    mode: str
    fractions: np.ndarray
    counts: np.ndarray
    scores: np.ndarray
    background: str

    @property
    def normalized(self) -> np.ndarray:
        """Min-max normalised scores in [0, 1]; all NaN when the curve is flat (a range below
        float32 rounding, 1e-6 relative)."""
        lo, hi = float(np.min(self.scores)), float(np.max(self.scores))
        if not hi - lo > 1e-6 * max(1.0, abs(hi), abs(lo)):
            return np.full_like(self.scores, np.nan, dtype=np.float64)
        return (self.scores - lo) / (hi - lo)

    @property
    def auc(self) -> float:
        """Area under the normalised curve x100 (NaN for a flat curve)."""
        y = self.normalized
        return float("nan") if np.isnan(y).any() else 100.0 * _trapezoid(y, self.fractions)

    @property
    def higher_is_better(self) -> bool:
        return self.mode == "insertion"

    def __repr__(self) -> str:
        return (f"PerturbationCurve(mode={self.mode!r}, steps={len(self.fractions)}, "
                f"background={self.background!r}, auc={self.auc:.2f})")


@dataclass
class CurveSummary:
    """Curves of many pairs: the mean normalised curve and its AUC x100 (flat curves left out)."""

    mode: str
    fractions: np.ndarray
    mean_curve: np.ndarray
    auc: float
    n_pairs: int
    n_flat: int

    def plot(self, ax=None, **kwargs):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 3))
        arrow = "higher" if self.mode == "insertion" else "lower"
        ax.plot(self.fractions, self.mean_curve, label=kwargs.pop("label", f"AUC {self.auc:.1f}"), **kwargs)
        ax.set_xlabel("fraction of pixels " + ("inserted" if self.mode == "insertion" else "deleted"))
        ax.set_ylabel("normalised similarity")
        ax.set_title(f"{self.mode} ({arrow} AUC is better)")
        ax.legend()
        return ax


def average_curves(curves) -> CurveSummary:
    """Average the min-max normalised curves of several pairs; AUC of the mean curve x100."""
    curves = check_sequence(curves, "curves", lambda c, name: check_instance(c, name, PerturbationCurve))
    modes = {c.mode for c in curves}
    if len(modes) != 1:
        raise InputError(f"curves mix modes {sorted(modes)}; average deletion and insertion separately")
    fractions = curves[0].fractions
    if any(len(c.fractions) != len(fractions) or not np.allclose(c.fractions, fractions) for c in curves):
        raise InputError("curves have different fractions; compute them with the same steps")
    normalized = [c.normalized for c in curves]
    valid = [y for y in normalized if not np.isnan(y).any()]
    if valid:
        mean = np.mean(valid, axis=0)
        auc = 100.0 * _trapezoid(mean, fractions)
    else:
        mean, auc = np.full(len(fractions), np.nan), float("nan")
    return CurveSummary(curves[0].mode, fractions, mean, auc, len(curves), len(curves) - len(valid))


def _check_sizes(model, explanation: PairExplanation) -> None:
    """The explanation's images are the model's input size (it was computed with this model)."""
    expected = model.preprocess.input_size
    for label, size in (("query", explanation.query_size), ("reference", explanation.reference_size)):
        if expected is not None and tuple(size) != tuple(expected):
            raise InputError(
                f"the explanation's {label} image is {size[0]}x{size[1]} but the model's input is "
                f"{expected[0]}x{expected[1]}; evaluate an explanation computed with this model"
            )


def _score(model, embeddings: torch.Tensor, reference: torch.Tensor, score: str) -> torch.Tensor:
    # Half-precision embeddings are scored in float32: the curve's steps are finer than they resolve.
    embeddings, reference = at_least_float32(embeddings), at_least_float32(reference)
    if score == "cosine":
        return F.cosine_similarity(embeddings, reference, dim=-1, eps=1e-12)
    return model.score_embeddings(embeddings, reference.expand_as(embeddings))


def reference_embedding(model, explanation: PairExplanation) -> torch.Tensor:
    """The unperturbed reference's embedding (1, D), from the explanation's display image."""
    x = display_to_tensor(explanation.reference, model.preprocess)[None]
    with torch.no_grad():
        return model.embed_tensor(x)


def perturbation_curve(model, explanation: PairExplanation, *, mode: str = "deletion",
                       background: str = "grey", blur_sigma: float = 5.0, steps: int = 101,
                       batch_size: int = 32, score: str = "model", reference=None, fast: bool = True,
                       show_progress: bool = True) -> PerturbationCurve:
    """Deletion or insertion curve of one explanation's query map.

    ``model``: the SimilarityModel the explanation was computed with. ``score``: ``"model"`` (the
    model's metric; cosine for the default model) or ``"cosine"``. ``reference``: a precomputed
    reference embedding (1, D) to skip one forward pass. ``fast``: run the forward passes on a
    channels-last copy of the model (same numbers to ~1e-5; never modifies ``model``).
    Forward passes run in batches of ``batch_size``; ``steps`` images in all.
    """
    from tqdm.auto import tqdm

    from ..adapters import SimilarityModel

    check_instance(model, "model", SimilarityModel)
    check_instance(explanation, "explanation", PairExplanation)
    check_choice(mode, "mode", MODES)
    check_choice(background, "background", BACKGROUNDS)
    check_choice(score, "score", SCORES)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    blur_sigma = check_float(blur_sigma, "blur_sigma", above=0.0)
    fast, show_progress = check_bool(fast, "fast"), check_bool(show_progress, "show_progress")
    _check_sizes(model, explanation)
    if fast:
        from ..adapters.copies import fast_inference_copy

        model = fast_inference_copy(model)
    H, W = explanation.query_size
    n_pixels = H * W
    counts = pixel_counts(n_pixels, steps)
    saliency = pixel_map(explanation, "query").ravel()
    order = np.argsort(-saliency, kind="stable")  # most salient first; ties in row-major order
    rank = np.empty(n_pixels, dtype=np.int64)
    rank[order] = np.arange(n_pixels)
    # The perturbed images are made on the model's device (one transfer of each piece, not of each batch).
    device = model.device
    rank_image = torch.from_numpy(rank.reshape(1, H, W)).to(device)

    image = display_to_tensor(explanation.query, model.preprocess).to(device)
    fill = background_tensor(explanation.query, model.preprocess, background, blur_sigma).to(device)
    if reference is None:
        reference = reference_embedding(model, explanation)
    reference = reference.to(model.dtype)
    channels_last = getattr(model, "_simviz_fast_copy", False)

    scores = np.empty(len(counts), dtype=np.float64)
    starts = range(0, len(counts), int(batch_size))
    bar = tqdm(starts, desc=mode, unit="batch", leave=False, disable=not show_progress)
    with torch.no_grad():
        for start in bar:
            ks = torch.from_numpy(counts[start:start + int(batch_size)]).to(device)
            chosen = (rank_image < ks.view(-1, 1, 1)).unsqueeze(1)  # (B, 1, H, W): the top-k pixels
            if mode == "insertion":
                x = torch.where(chosen, image, fill)
            else:
                x = torch.where(chosen, fill, image)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            emb = model.embed_tensor(x.to(model.dtype))
            scores[start:start + len(ks)] = _score(model, emb, reference, score).double().cpu().numpy()
    return PerturbationCurve(mode, np.linspace(0.0, 1.0, len(counts)), counts, scores, background)


def deletion_curve(model, explanation: PairExplanation, **options) -> PerturbationCurve:
    """:func:`perturbation_curve` with ``mode="deletion"`` (lower AUC is better)."""
    return perturbation_curve(model, explanation, mode="deletion", **options)


def insertion_curve(model, explanation: PairExplanation, **options) -> PerturbationCurve:
    """:func:`perturbation_curve` with ``mode="insertion"`` (higher AUC is better)."""
    return perturbation_curve(model, explanation, mode="insertion", **options)


class _PerturbationMetric(Metric):
    category = "faithfulness"
    needs = frozenset({"model"})
    unit = "AUC x100"
    mode = "deletion"
    options = {
        "background": Option.choice("grey", "'grey' (0.5 in pixel space) or 'blur' (Gaussian-blurred query)",
                                    BACKGROUNDS),
        "blur_sigma": Option.number(5.0, "blur width in pixels for background='blur'", above=0.0),
        "steps": Option.integer(101, "number of fractions t in [0, 1] (the protocol uses 101)", minimum=2),
        "batch_size": Option.integer(32, "images per forward pass", minimum=1),
        "score": Option.choice("model", "'model' (the model's metric) or 'cosine'", SCORES),
    }

    def curve(self, explanation: PairExplanation, context: EvalContext) -> PerturbationCurve:
        model = context.model
        fast = context.cache.get("fast_model")
        run_on = fast if fast is not None else model
        key = ("reference_embedding", id(run_on))
        if key not in context.cache:
            context.cache[key] = reference_embedding(run_on, explanation)
        return perturbation_curve(
            run_on, explanation, mode=self.mode, reference=context.cache[key], fast=False,
            show_progress=False, **self.config,
        )

    def evaluate(self, explanation: PairExplanation, context: EvalContext) -> float:
        return self.curve(explanation, context).auc


@register_metric("deletion")
class Deletion(_PerturbationMetric):
    """Deletion AUC x100 (SANE protocol): remove the most salient query pixels first; lower is better."""

    higher_is_better = False
    mode = "deletion"
    description = "similarity falls fast when the most salient query pixels are removed"


@register_metric("insertion")
class Insertion(_PerturbationMetric):
    """Insertion AUC x100 (SANE protocol): insert the most salient query pixels first; higher is better."""

    higher_is_better = True
    mode = "insertion"
    description = "similarity rises fast when the most salient query pixels are inserted"

"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

Cascading randomisation from the top down: the layers that shape the embedding are re-drawn one
after the other, starting at the head (the layer nearest the output), and the method's map is
recomputed after each step. A map that explains *the model* must change as the model is destroyed:
its Spearman rank correlation with the original map falls. A map that stays put (an edge detector,
a centre bias) does not depend on what the model learnt.

The user's model is never modified: the wrapped module and its head are deep-copied (once) and the
copy is randomised cumulatively and re-wrapped with the same layer, pooling, head, metric and
preprocessing after each step (the head's folded affine map must be recomputed).

Randomisation (``randomization``): ``"gaussian"`` (default) replaces every parameter tensor of the
layer with Gaussian noise of the same mean and standard deviation — it keeps activations at their
trained scale, so deep networks do not collapse to constant features; ``"reset"`` calls the layer's
own ``reset_parameters()`` (the default initialiser, as Quantus does). Both are seeded.

Layers: every module with its own parameters that the forward pass runs before the pooled feature,
plus the head's, in execution order (:func:`randomizable_layers`); ``max_steps`` groups them into at
most that many contiguous groups (useful for deep networks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..adapters.copies import copy_parts, wrap_like
from ..checks import (
    InputError,
    InputTypeError,
    Option,
    check_bool,
    check_choice,
    check_instance,
    check_int,
    check_names,
)
from ..explain.base import Explainer, PairExplanation, get_method
from ..images import PreparedImage
from .metrics import EvalContext, Metric, register_metric

__all__ = [
    "SanityResult",
    "sanity_randomization",
    "randomizable_layers",
    "SanityRandomization",
    "prepared_from_display",
    "RANDOMIZATIONS",
]

RANDOMIZATIONS = ("gaussian", "reset")
MAP_SIDES = ("query", "reference", "both")


def _has_own_parameters(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def _named_layers(module: nn.Module, head: nn.Module) -> dict[str, nn.Module]:
    """Name -> module for every module with its own parameters; head modules that are not part of
    ``module`` are named ``head.<name>``."""
    named: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, m in module.named_modules():
        if _has_own_parameters(m) and id(m) not in seen:
            named[name or "module"] = m
            seen.add(id(m))
    for name, m in head.named_modules():
        if _has_own_parameters(m) and id(m) not in seen:
            named["head" + ("." + name if name else "")] = m
            seen.add(id(m))
    return named


def randomizable_layers(model) -> list[str]:
    """Names of the layers (modules with parameters) that shape the embedding, in execution order
    (input first); the head's layers come last."""
    named = _named_layers(model.module, model.head)
    by_id = {id(m): n for n, m in named.items()}
    order: list[str] = []

    def record(m, inputs, output):
        n = by_id.get(id(m))
        if n is not None and n not in order:
            order.append(n)

    handles = [m.register_forward_hook(record) for m in named.values()]
    try:
        with torch.no_grad():
            model.features(model._probe_input(1))
    finally:
        for h in handles:
            h.remove()
    head_ids = {id(m) for m in model.head.modules()}
    for n, m in named.items():
        if id(m) in head_ids and n not in order:
            order.append(n)
    return order


def _randomize(m: nn.Module, how: str, generator: torch.Generator, seed: int) -> None:
    with torch.no_grad():
        if how == "reset":
            if not hasattr(m, "reset_parameters"):
                raise InputError(
                    f"layer {type(m).__name__} has no reset_parameters(); use randomization='gaussian'"
                )
            # reset_parameters draws on the parameters' device: fork that RNG too (a CUDA model's).
            cuda = sorted({p.device.index or 0 for p in m.parameters() if p.device.type == "cuda"})
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                m.reset_parameters()
            return
        for p in m.parameters(recurse=False):
            flat = p.detach().double().flatten()
            mean = float(flat.mean())
            std = float(flat.std()) if flat.numel() > 1 else abs(mean)
            # Drawn on the generator's device (the CPU: the same noise on every device), then moved.
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float64, device=generator.device)
            p.copy_((mean + std * noise).to(device=p.device, dtype=p.dtype))


def prepared_from_display(display: np.ndarray, preprocess, name: str) -> PreparedImage:
    """A PreparedImage for an image that already *is* the model's crop (no resize, no crop)."""
    from .perturbation_curves import display_to_tensor

    display = np.ascontiguousarray(display, dtype=np.uint8)
    return PreparedImage(
        tensor=display_to_tensor(display, preprocess)[None],
        display=display,
        source_size=(display.shape[0], display.shape[1]),
        name=name,
    )


def _spearman(a: np.ndarray, b: np.ndarray, absolute: bool) -> float:
    from scipy.stats import spearmanr

    a = np.abs(a) if absolute else a
    b = np.abs(b) if absolute else b
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # rank correlation with a constant map is undefined
    return float(spearmanr(a, b).statistic)


def _side_values(exp: PairExplanation, side: str) -> np.ndarray:
    if side == "query":
        return exp.query_map.ravel()
    if side == "reference":
        return exp.reference_map.ravel()
    return np.concatenate([exp.query_map.ravel(), exp.reference_map.ravel()])


@dataclass
class SanityResult:
    """``steps[k]``: layers randomised at step k (cumulative: step k randomises steps[0..k]);
    ``correlations[k]``: Spearman rank correlation of the map after step k with the original map.
    ``maps[k]``: the query map after step k (``original_map`` before any)."""

    method: str
    steps: list[list[str]]
    correlations: np.ndarray
    original_map: np.ndarray
    maps: list[np.ndarray] = field(repr=False)
    side: str = "query"
    absolute: bool = False

    @property
    def labels(self) -> list[str]:
        return [g[0] if len(g) == 1 else f"{g[0]} .. {g[-1]}" for g in self.steps]

    @property
    def mean_correlation(self) -> float:
        return float(np.nanmean(self.correlations)) if np.isfinite(self.correlations).any() else float("nan")

    def plot(self, ax=None, **kwargs):
        """Correlation vs cascade step (original = 1 on the left)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 0.5 * len(self.steps) + 2), 3))
        x = np.arange(len(self.steps) + 1)
        ax.plot(x, np.r_[1.0, self.correlations], marker="o", label=kwargs.pop("label", self.method), **kwargs)
        ax.set_xticks(x, ["original"] + self.labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("Spearman vs original")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_title("cascading randomisation, top down (a faithful map falls)")
        ax.legend()
        return ax


def _explainer(method, options: dict) -> Explainer:
    if isinstance(method, Explainer):
        if options:
            raise InputError("pass options to the Explainer when building it, or a method name with options")
        return method
    if isinstance(method, type) and issubclass(method, Explainer):
        return method(**options)
    if isinstance(method, str):
        return get_method(method)(**options)
    raise InputTypeError(f"method must be a method name, an Explainer class or instance; got {type(method).__name__}")


def sanity_randomization(model, query, reference, method="decomposition", *, layers=None,
                         max_steps: int | None = None, randomization: str = "gaussian", seed: int = 0,
                         side: str = "query", absolute: bool = False, method_options: dict | None = None,
                         show_progress: bool = True) -> SanityResult:
    """Cascading randomisation test for one pair.

    ``method``: a registered name (options in ``method_options``), an Explainer class or instance.
    ``layers``: names to randomise, top first (default: :func:`randomizable_layers` reversed).
    ``side``: which map to correlate ('query', 'reference' or 'both' concatenated). ``absolute``:
    correlate absolute values (Adebayo et al. report both). Returns a :class:`SanityResult`.
    """
    from tqdm.auto import tqdm

    from ..adapters import SimilarityModel

    check_instance(model, "model", SimilarityModel)
    check_choice(randomization, "randomization", RANDOMIZATIONS)
    check_choice(side, "side", MAP_SIDES)
    seed = check_int(seed, "seed", minimum=0)
    absolute, show_progress = check_bool(absolute, "absolute"), check_bool(show_progress, "show_progress")
    max_steps = None if max_steps is None else check_int(max_steps, "max_steps", minimum=1)
    if method_options is not None:
        check_instance(method_options, "method_options", dict, "dict of the method's options")
    explainer = _explainer(method, dict(method_options or {}))
    q = model.prepare(query, name="query")
    r = model.prepare(reference, name="reference")

    available = randomizable_layers(model)
    if layers is None:
        top_down = available[::-1]
    else:
        layers = check_names(layers, "layers")
        unknown = [n for n in layers if n not in available]
        if unknown:
            raise InputError(
                f"layers {unknown} are not layers with parameters that shape the embedding; "
                f"choose from {available}"
            )
        top_down = list(layers)
    if not top_down:
        raise InputError("the model has no layers with parameters to randomise")
    if max_steps is not None:
        groups = [list(g) for g in np.array_split(np.array(top_down, dtype=object), min(max_steps, len(top_down)))]
    else:
        groups = [[n] for n in top_down]

    original = explainer(model, q, r)
    reference_values = _side_values(original, side)
    module, head = copy_parts(model)
    named = _named_layers(module, head)
    generator = torch.Generator().manual_seed(seed)
    correlations, maps = [], []
    bar = tqdm(groups, desc=f"randomising ({explainer.name})", unit="step", leave=False, disable=not show_progress)
    for k, group in enumerate(bar):
        for j, name in enumerate(group):
            _randomize(named[name], randomization, generator, seed=seed * 1000 + 100 * k + j)
        randomized = wrap_like(model, module, head)
        exp = explainer(randomized, q, r)
        correlations.append(_spearman(reference_values, _side_values(exp, side), absolute))
        maps.append(exp.query_map)
    return SanityResult(
        method=explainer.name,
        steps=groups,
        correlations=np.asarray(correlations, dtype=np.float64),
        original_map=original.query_map,
        maps=maps,
        side=side,
        absolute=absolute,
    )


@register_metric("sanity_randomization")
class SanityRandomization(Metric):
    """Mean Spearman correlation over a top-down cascading randomisation (Adebayo et al. 2018):
    lower is better (the map depends on the model's weights). Re-runs ``explanation.method`` with the
    pair's method options after each of ``max_steps`` steps."""

    category = "robustness/sanity"
    higher_is_better = False
    needs = frozenset({"model"})
    description = "maps decorrelate as the model's layers are randomised"
    unit = "Spearman"
    options = {
        "max_steps": Option.integer(4, "randomisation steps (layers grouped top-down)", minimum=1),
        "randomization": Option.choice("gaussian", "'gaussian' (trained mean/std) or 'reset' (default initialiser)",
                                       RANDOMIZATIONS),
        "seed": Option.integer(0, "random seed", minimum=0),
        "side": Option.choice("query", "'query', 'reference' or 'both'", MAP_SIDES),
        "absolute": Option.flag(False, "correlate absolute values"),
    }

    def evaluate(self, explanation: PairExplanation, context: EvalContext) -> float:
        model = context.model
        q = prepared_from_display(explanation.query, model.preprocess, "query")
        r = prepared_from_display(explanation.reference, model.preprocess, "reference")
        options = dict(context.method_options)
        method_cls = get_method(explanation.method)
        if "show_progress" in method_cls.options:
            options.setdefault("show_progress", False)
        result = sanity_randomization(
            model, q, r, explanation.method, method_options=options, show_progress=False, **self.config,
        )
        return result.mean_correlation

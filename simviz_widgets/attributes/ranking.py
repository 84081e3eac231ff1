"""Which attribute explains a match: SANE's ranking (docs/methods.md, "Attribute ranking").

For a pair (query X, reference Y) each attribute a gets three components in [0, 1]:

* ``confidence``: with ``sides="both"`` (the default) the geometric mean of the predictor's
  confidences that X has a and that Y has a (an attribute that explains a match should be on both
  images; on the synthetic scenes this lifts top-1 from about 0.1 to about 0.7); ``sides="query"``
  is the paper's, X's confidence alone;
* ``agreement``: how well a's activation map matches the pair's saliency distribution ``s`` on X
  (positive part of the saliency map, normalised; ``sides="both"`` averages X's and Y's):
  ``agreement="l2"`` (the paper's): ``1 - |softmax(map_a) - s|_2 / sqrt(2)`` (``sqrt(2)`` is the
  largest distance between two distributions, so 1 = same place); ``agreement="mass"``:
  ``sum_i softmax(map_a)_i s_i / max_i s_i``, the saliency that a's map puts its weight on (1 = all
  of it on the most salient cell). Measured on the synthetic scenes (benchmarks/README.md), "l2"
  ranks an *absent* attribute high, because its flat map has a near-uniform softmax close to a
  spread-out saliency; "mass" does not;
* ``prior``: the explanation-suitability prior of a (:mod:`.concepts`), stored in the predictor
  (0.5 for every attribute if none was fitted).

``score = sum_k weights[k] * component_k``; weights are options (default 1 each).

Devices: the features are computed on the model's device and moved to the predictor's (and its
dtype); the components are computed on the CPU from the predictor's outputs (K values, K small maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..adapters import SimilarityModel
from ..checks import InputError, InputTypeError, check_choice, check_float, check_instance, check_int, check_keys
from ..explain import PairExplanation, explain
from .predictor import AttributePredictor
from .saliency import saliency_distribution

__all__ = ["explain_attributes", "AttributeScore", "AttributeRanking", "COMPONENTS", "DEFAULT_WEIGHTS",
           "rank_components"]

COMPONENTS = ("confidence", "agreement", "prior")
DEFAULT_WEIGHTS = {"confidence": 1.0, "agreement": 1.0, "prior": 1.0}
SIDES = ("query", "both")
AGREEMENTS = ("l2", "mass")


@dataclass(frozen=True, eq=False)
class AttributeScore:
    """One ranked attribute: ``score`` = weighted sum of ``components``; activation maps (h, w)
    float32 in [0, 1] (sigmoid of the predictor's logits) on both images."""

    attribute: str
    score: float
    components: dict
    weighted: dict
    query_map: np.ndarray
    reference_map: np.ndarray

    def to_explanation(self, base: PairExplanation) -> PairExplanation:
        """The attribute's maps as a PairExplanation over ``base``'s pair (keeps ``base``'s
        point-to-point part when the grids agree, so hovering still works in a viewer)."""
        same_grid = (base.point_to_point is not None
                     and base.point_to_point.query_grid == self.query_map.shape
                     and base.point_to_point.reference_grid == self.reference_map.shape)
        return PairExplanation(
            method=f"attribute:{self.attribute}", score=base.score, query=base.query, reference=base.reference,
            query_map=self.query_map, reference_map=self.reference_map, signed=False, metric=base.metric,
            point_to_point=base.point_to_point if same_grid else None,
            info={"attribute": self.attribute, "components": dict(self.components), "base_method": base.method},
        )


class AttributeRanking(list):
    """A list of :class:`AttributeScore`, best first, with the pair's ``explanation`` (the saliency
    used), the ``weights`` and ``sides``."""

    def __init__(self, items, *, explanation: PairExplanation, weights: dict, sides: str):
        super().__init__(items)
        self.explanation = explanation
        self.weights = dict(weights)
        self.sides = sides

    @property
    def attributes(self) -> list[str]:
        return [s.attribute for s in self]

    def get(self, attribute: str) -> AttributeScore:
        for s in self:
            if s.attribute == attribute:
                return s
        raise KeyError(f"attribute {attribute!r} is not in the ranking; known: {self.attributes}")

    def __repr__(self) -> str:
        rows = ", ".join(f"{s.attribute}={s.score:.3f}" for s in self[:5])
        more = ", ..." if len(self) > 5 else ""
        return f"AttributeRanking([{rows}{more}], sides={self.sides!r})"


def _to_grid(saliency: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(saliency, np.float32), device="cpu")[None, None]
    if tuple(t.shape[2:]) != tuple(grid):
        t = torch.nn.functional.interpolate(t, size=grid, mode="bilinear", align_corners=False)
    return t[:, 0]


def _agreement(maps, saliency, kind: str) -> np.ndarray:
    # Arrays (numpy, or tensors from anywhere): the components are computed on the CPU.
    soft = torch.softmax(torch.as_tensor(maps, dtype=torch.float64, device="cpu").flatten(1), dim=1)  # (K, N)
    s = saliency_distribution(_to_grid(saliency, tuple(maps.shape[1:])))[0].double()  # (N,)
    if kind == "l2":
        return 1.0 - (soft - s).norm(dim=1).numpy() / math.sqrt(2.0)
    return (soft @ s).numpy() / float(s.max())


def rank_components(confidence_q, confidence_r, maps_q, maps_r, saliency_q, saliency_r, prior, *,
                    sides: str = "both", agreement: str = "mass") -> dict:
    """The three components (K,) from predictor outputs and saliency maps (pure arrays, for
    batched evaluation): confidences (K,) in [0, 1], logit maps (K, h, w), saliency maps (h', w');
    numpy arrays (or CPU tensors)."""
    check_choice(sides, "sides", SIDES)
    check_choice(agreement, "agreement", AGREEMENTS)
    agree = _agreement(maps_q, saliency_q, agreement)
    conf = np.asarray(confidence_q, np.float64)
    if sides == "both":
        agree = 0.5 * (agree + _agreement(maps_r, saliency_r, agreement))
        conf = np.sqrt(conf * np.asarray(confidence_r, np.float64))
    return {"confidence": conf, "agreement": np.asarray(agree, np.float64),
            "prior": np.asarray(prior, np.float64)}


def explain_attributes(model: SimilarityModel, predictor: AttributePredictor, query, reference, *,
                       weights: dict | None = None, sides: str = "both", agreement: str = "mass",
                       saliency="decomposition",
                       top: int | None = None, **saliency_options) -> AttributeRanking:
    """Rank the predictor's attributes by how well each explains why ``model`` matches the pair.

    ``saliency``: an explanation method name (default 'decomposition': exact and one forward pass per
    image; 'rise' and others work too, with ``saliency_options``) or a ready PairExplanation of this
    pair. Returns an :class:`AttributeRanking`, best first (``top`` keeps the first ``top``).
    The predictor runs where its weights are (the features are moved to it; it is never moved); maps
    and scores come back on the CPU (numpy float32 maps, Python floats).
    """
    check_instance(model, "model", SimilarityModel)
    check_instance(predictor, "predictor", AttributePredictor)
    check_choice(sides, "sides", SIDES)
    check_choice(agreement, "agreement", AGREEMENTS)
    top = None if top is None else check_int(top, "top", minimum=1)
    given = check_keys({} if weights is None else weights, "weights", COMPONENTS)
    w = {**DEFAULT_WEIGHTS, **{k: check_float(v, f"weights[{k!r}]") for k, v in given.items()}}
    if not isinstance(saliency, (str, PairExplanation)):
        raise InputTypeError(f"saliency is a {type(saliency).__name__}; expected a method name or a PairExplanation")
    q = model.prepare(query, name="query")
    r = model.prepare(reference, name="reference")
    with torch.no_grad():
        feats = model.features(torch.cat([q.tensor, r.tensor]))
    if feats.shape[1] != predictor.conv.in_channels:
        raise InputError(
            f"the predictor expects {predictor.conv.in_channels} feature channels; {model.name} gives "
            f"{feats.shape[1]} (was it trained on this model?)"
        )
    with torch.no_grad():
        maps, conf = predictor(predictor.take(feats))
    maps = maps.float().cpu()  # (2, K, h, w): small; everything below is CPU numpy
    conf = torch.sigmoid(conf).float().cpu().numpy()
    if isinstance(saliency, PairExplanation):
        if saliency_options:
            raise InputError(f"options {sorted(saliency_options)} are for a saliency method; saliency is a ready "
                             "PairExplanation, so leave them out")
        base = saliency
    else:
        base = explain(model, q, r, method=saliency, **saliency_options)
    comps = rank_components(conf[0], conf[1], maps[0].numpy(), maps[1].numpy(), base.query_map,
                            base.reference_map, predictor.prior.float().cpu().numpy(), sides=sides,
                            agreement=agreement)
    total = sum(w[k] * comps[k] for k in COMPONENTS)
    activation = torch.sigmoid(maps).numpy().astype(np.float32)
    order = np.argsort(-total, kind="stable")
    if top is not None:
        order = order[:top]
    items = [
        AttributeScore(
            attribute=predictor.names[k], score=float(total[k]),
            components={c: float(comps[c][k]) for c in COMPONENTS},
            weighted={c: float(w[c] * comps[c][k]) for c in COMPONENTS},
            query_map=activation[0, k], reference_map=activation[1, k],
        )
        for k in order
    ]
    return AttributeRanking(items, explanation=base, weights=w, sides=sides)

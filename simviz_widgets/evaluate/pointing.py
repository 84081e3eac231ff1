"""Localisation against a ground-truth mask: the pointing game and its energy-based variant.

Maps are first brought to the display pixels (bilinear, half-pixel centres); masks are bool (H, W)
in the same display pixels.

* :func:`pointing_game` (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016):
  a hit when the map's maximum lies inside the mask, or within ``tolerance`` pixels of it
  (Euclidean). Upsampled maps often peak on a small plateau (e.g. the 2 x 2 pixels around a cell
  centre): the score is the fraction of tied maximum pixels that hit, so a constant map scores the
  mask's area fraction (chance), never a free hit.
* :func:`energy_pointing` (Wang et al., "Score-CAM", 2020): the fraction of the map's positive mass
  inside the mask; chance is the mask's area fraction for a uniform map.

>>> import numpy as np
>>> from simviz_widgets.explain import PairExplanation
>>> image = np.zeros((8, 8, 3), np.uint8)
>>> m = np.zeros((8, 8), np.float32); m[1, 6] = 1.0
>>> exp = PairExplanation("hand", 0.0, image, image, m, m, signed=False)
>>> mask = np.zeros((8, 8), bool); mask[0:3, 5:8] = True
>>> pointing_game(exp, mask), energy_pointing(exp, mask)
(1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

from ..checks import InputError, Option, check_choice, check_float, check_instance
from ..explain.base import PairExplanation
from .metrics import EvalContext, Metric, check_display_mask, pixel_map, register_metric

__all__ = ["pointing_game", "energy_pointing", "PointingGame", "EnergyPointing", "SIDES"]

SIDES = ("query", "reference", "both")


def _side_mask(explanation: PairExplanation, mask, side: str) -> np.ndarray:
    check_instance(explanation, "explanation", PairExplanation)
    side = check_choice(side, "side", SIDES[:2])
    return check_display_mask(mask, explanation.size(side), f"{side} mask")


def pointing_game(explanation: PairExplanation, mask, *, side: str = "query", tolerance: float = 0.0) -> float:
    """1.0 when the ``side`` map's maximum is inside ``mask`` (within ``tolerance`` pixels), else 0.0;
    fractional when the maximum is a plateau that straddles the mask's border."""
    tolerance = check_float(tolerance, "tolerance", minimum=0.0)
    mask = _side_mask(explanation, mask, side)
    values = pixel_map(explanation, side)
    peak = float(values.max())
    # Bilinear weights make a plateau's pixels differ in the last bits: compare with a small slack.
    at_peak = values >= peak - 1e-6 * max(1.0, abs(peak))
    if tolerance > 0:
        from scipy.ndimage import distance_transform_edt

        near = distance_transform_edt(~mask) <= tolerance
    else:
        near = mask
    return float(near[at_peak].mean())


def energy_pointing(explanation: PairExplanation, mask, *, side: str = "query") -> float:
    """Fraction of the ``side`` map's positive mass inside ``mask`` (NaN if the map has none)."""
    mask = _side_mask(explanation, mask, side)
    positive = np.maximum(pixel_map(explanation, side).astype(np.float64), 0.0)
    total = positive.sum()
    if not total > 0:
        return float("nan")
    return float(positive[mask].sum() / total)


class _MaskMetric(Metric):
    category = "localisation"
    needs = frozenset({"mask"})
    higher_is_better = True

    def _sides(self, explanation: PairExplanation, context: EvalContext) -> list[tuple[str, np.ndarray]]:
        side = self.config["side"]
        masks = {"query": context.query_mask, "reference": context.reference_mask}
        if side != "both":
            if masks[side] is None:
                raise InputError(f"metric {self.name!r} with side={side!r} needs a {side} mask")
            return [(side, masks[side])]
        # An all-zero map is "not computed" (RISE and the sliding window explain the query only
        # unless both=True): score the sides that have a map, not chance on an empty one.
        maps = {"query": explanation.query_map, "reference": explanation.reference_map}
        return [(s, m) for s, m in masks.items() if m is not None and np.any(maps[s])]

    def score_side(self, explanation, mask, side) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def evaluate(self, explanation: PairExplanation, context: EvalContext) -> float:
        values = [self.score_side(explanation, mask, side) for side, mask in self._sides(explanation, context)]
        values = [v for v in values if np.isfinite(v)]
        return float(np.mean(values)) if values else float("nan")


@register_metric("pointing_game")
class PointingGame(_MaskMetric):
    """Hit rate of the map's maximum in the ground-truth mask; ``side='both'`` averages the query
    and reference hits (over the sides with a mask and a map that is not all zeros)."""

    description = "the map's maximum lies on the ground-truth region"
    unit = "hit rate"
    options = {
        "tolerance": Option.number(0.0, "hit distance from the mask, in display pixels", minimum=0.0),
        "side": Option.choice("both", "'query', 'reference' or 'both' (mean over the sides with a mask)", SIDES),
    }

    def score_side(self, explanation, mask, side) -> float:
        return pointing_game(explanation, mask, side=side, tolerance=self.config["tolerance"])


@register_metric("energy_pointing")
class EnergyPointing(_MaskMetric):
    """Fraction of positive map mass inside the ground-truth mask."""

    description = "share of the map's positive mass on the ground-truth region"
    unit = "fraction"
    options = {"side": Option.choice("both", "'query', 'reference' or 'both' (mean over the sides with a mask)",
                                     SIDES)}

    def score_side(self, explanation, mask, side) -> float:
        return energy_pointing(explanation, mask, side=side)

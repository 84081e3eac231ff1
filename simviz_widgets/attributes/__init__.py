"""Attribute explanations (SANE; docs/methods.md, "Attribute explanations"): which attribute explains
a match, with its maps.

* :class:`AttributePredictor` / :func:`fit_attribute_predictor`: a small head on the frozen
  similarity backbone (confidence and activation map per attribute), trained with the
  classification loss plus the saliency-matching term.
* :func:`fit_concept_vectors`: concept activation vectors and the explanation-suitability prior.
* :func:`explain_attributes`: the ranked list for a pair.
* :func:`synthetic_attribute_data` / :func:`attributes_from_folders`: labelled data with known
  answers, or the user's own labelled folders.
"""

from .concepts import ConceptVectors, fit_concept_vectors
from .data import AttributeData, attributes_from_folders, synthetic_attribute_data
from .predictor import AttributePredictor, fit_attribute_predictor, saliency_distance
from .ranking import COMPONENTS, DEFAULT_WEIGHTS, AttributeRanking, AttributeScore, explain_attributes, rank_components
from .saliency import decomposition_maps, decomposition_maps_from_features, saliency_distribution

__all__ = [
    "AttributePredictor", "fit_attribute_predictor", "saliency_distance",
    "ConceptVectors", "fit_concept_vectors",
    "AttributeData", "attributes_from_folders", "synthetic_attribute_data",
    "explain_attributes", "AttributeScore", "AttributeRanking", "COMPONENTS", "DEFAULT_WEIGHTS", "rank_components",
    "decomposition_maps", "decomposition_maps_from_features", "saliency_distribution",
]

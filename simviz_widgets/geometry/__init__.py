"""Cross-view geometry from explanations: point matches from the point-to-point part, the transform
they imply (scikit-image RANSAC), and a classical keypoint matcher to compare with.

>>> import simviz_widgets as sv
>>> from simviz_widgets.datasets import load_photo
>>> model = sv.load_model("tiny_test")
>>> cat = load_photo("chelsea")
>>> matches = sv.correspondences(sv.explain(model, cat, cat))
>>> bool((matches.query_points == matches.reference_points).all())
True
"""

from .classical import orb_matches
from .fit import GEOMETRY_KINDS, GeometryFit, HorizontalDisparity, fit_geometry
from .matches import REFINEMENTS, Matches, cell_centres, correspondences, match_points
from .pairs import match_pair

__all__ = [
    "Matches", "correspondences", "match_points", "REFINEMENTS", "cell_centres", "GeometryFit", "fit_geometry",
    "GEOMETRY_KINDS", "HorizontalDisparity", "orb_matches", "match_pair",
]

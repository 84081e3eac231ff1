"""simviz_widgets: see why a deep similarity model finds two images alike.

>>> import simviz_widgets as sv
>>> model = sv.load_model("tiny_test")
>>> exp = sv.explain(model, "chelsea", "chelsea:mirror")  # doctest: +SKIP
"""

from .adapters import SimilarityModel
from .explain import PairExplanation, explain, list_methods, register_method
from .images import PreprocessConfig
from .models import list_models
from .models import load as load_model

__version__ = "0.1.0"

__all__ = [
    "SimilarityModel", "PairExplanation", "PreprocessConfig", "explain", "list_methods",
    "register_method", "load_model", "list_models", "__version__",
]

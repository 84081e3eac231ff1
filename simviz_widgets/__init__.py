"""simviz_widgets: see why a deep similarity model finds two images alike.

>>> import simviz_widgets as sv
>>> from simviz_widgets.datasets import load_photo
>>> model = sv.load_model("tiny_test")
>>> cat = load_photo("chelsea")
>>> exp = sv.explain(model, cat, cat[:, ::-1])
>>> exp.query_map.shape, bool(abs(exp.point_to_point.matrix().sum() - exp.score) < 1e-6)
((8, 8), True)
"""

from .adapters import SimilarityModel
from .checks import InputError, InputTypeError, SimvizError
from .explain import PairExplanation, explain, list_methods, register_method
from .images import PreprocessConfig
from .models import list_models
from .models import load as load_model

__version__ = "0.1.0"

# Subpackages not imported above (widgets pulls in ipywidgets/ipycanvas/bqplot; the command line and
# scripts need none of it) load on first attribute access, so `sv.widgets.PairExplorer` works
# after `import simviz_widgets as sv`.
_LAZY_SUBPACKAGES = ("widgets", "datasets", "render", "evaluate", "attributes", "cli", "registry", "checks",
                     "geometry", "retrieval")
# Functions of lazy subpackages offered at the top level: sv.correspondences(explanation), ...
_LAZY_FUNCTIONS = {"correspondences": "geometry", "fit_geometry": "geometry", "orb_matches": "geometry",
                   "match_pair": "geometry"}


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_FUNCTIONS:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_FUNCTIONS[name]}", __name__), name)
    raise AttributeError(f"module 'simviz_widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES) | set(_LAZY_FUNCTIONS))

__all__ = [
    "SimilarityModel", "PairExplanation", "PreprocessConfig", "explain", "list_methods",
    "register_method", "load_model", "list_models", "SimvizError", "InputError", "InputTypeError",
    "registry", "checks", "__version__",
]

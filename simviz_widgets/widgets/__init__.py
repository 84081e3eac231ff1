"""Jupyter widgets: the pair viewer, the overall-map, method-comparison and attribute panels, and
the explorer composing them.

They share one :class:`HoverState` (hovered point, pins). Widgets know explanations and
renderings, never torch: the model runs only when a pair, model or method is set.
"""

from .attribute_panel import AttributePanel
from .comparison import MethodComparisonPanel
from .crossview import CrossViewExplorer
from .crossview_state import CrossViewState
from .explorer import PairExplorer
from .overall_panel import OverallPanel
from .pair_viewer import PairViewer
from .retrieval import RetrievalExplorer
from .session import WidgetClosedError
from .similarity_matrix import SimilarityMatrix
from .state import PIN_COLOURS, HoverState, Pin

__all__ = ["PairViewer", "OverallPanel", "PairExplorer", "HoverState", "Pin", "PIN_COLOURS", "WidgetClosedError"]
__all__ += ["MethodComparisonPanel", "AttributePanel"]
__all__ += ["CrossViewExplorer", "CrossViewState"]
__all__ += ["RetrievalExplorer"]
__all__ += ["SimilarityMatrix"]

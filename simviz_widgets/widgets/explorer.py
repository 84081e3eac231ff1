"""``PairExplorer``: the pair viewer with its overall-map panel (and, on request, the
method-comparison panel and the attribute panel), sharing one hover/pin state."""

from __future__ import annotations

import ipywidgets as widgets
import traitlets

from ..checks import InputTypeError, check_instance, check_int
from ..explain.base import PairExplanation
from ._canvas import DEFAULT_ALPHA, MIN_SIZE
from .attribute_panel import AttributePanel
from .comparison import MethodComparisonPanel
from .overall_panel import OverallPanel
from .pair_viewer import PairViewer
from .session import check_open
from .state import HoverState

__all__ = ["PairExplorer"]


class PairExplorer(widgets.VBox):
    """A :class:`PairViewer` above an :class:`OverallPanel`; hovering or pinning in the viewer is
    mirrored in the panel, and the panel follows the viewer's pair, method, colormap and opacity.

    Arguments as :class:`PairViewer`; ``panel_size``: display size of the panel's maps.
    ``comparison``: True (or a dict of :meth:`MethodComparisonPanel.for_viewer` options, e.g.
    ``{"methods": [...], "method_options": {...}}``) adds the method-comparison panel below;
    clicking a method there shows it in the viewer and the overall panel.
    ``attributes``: an AttributePredictor trained on the model (or a dict with ``predictor`` and
    :meth:`AttributePanel.for_viewer` options such as ``weights``, ``sides``) adds the attribute
    panel beside the viewer; clicking an attribute shows its maps in the viewer and overall panel.
    """

    _closed = True  # until composed: close() (also called by ipywidgets on __del__) has nothing to free

    def __init__(self, model=None, query=None, reference=None, *, method: str = "decomposition",
                 explanation: PairExplanation | None = None, cmap: str | None = None, alpha: float = DEFAULT_ALPHA,
                 size: int = 320, reading: str = "contribution", panel_size: int = 200,
                 comparison: bool | dict = False, attributes=None, hover: str = "browser"):
        comparison = self._check_comparison(comparison)
        attributes = self._check_attributes(attributes)
        panel_size = check_int(panel_size, "panel_size", minimum=MIN_SIZE)  # before any model runs
        viewer = PairViewer(model, query, reference, method=method, explanation=explanation, cmap=cmap, alpha=alpha,
                            size=size, reading=reading, state=HoverState(), hover=hover)
        made = [viewer]
        try:
            self._compose(viewer, panel_size, comparison, attributes, made)
        except BaseException:
            for widget in reversed(made):  # nothing half-built keeps running (the viewer's job, panels' work)
                widget.close()
            raise

    @classmethod
    def from_explanation(cls, explanation: PairExplanation, *, model=None, cmap: str | None = None,
                         alpha: float = DEFAULT_ALPHA, size: int = 320, reading: str = "contribution",
                         panel_size: int = 200, comparison: bool | dict = False,
                         attributes=None, hover: str = "browser") -> "PairExplorer":
        """An explorer of an existing explanation (no model runs unless ``model`` is given)."""
        return cls(model, explanation=explanation, cmap=cmap, alpha=alpha, size=size, reading=reading,
                   panel_size=panel_size, comparison=comparison, attributes=attributes, hover=hover)

    @staticmethod
    def _check_comparison(comparison) -> dict | None:
        """False/None: no panel; True: one with the defaults; a dict: one with these options."""
        check_instance(comparison, "comparison", (bool, dict, type(None)), "True, False or a dict of "
                       "comparison-panel options")
        return None if comparison is None or comparison is False else {} if comparison is True else dict(comparison)

    @staticmethod
    def _check_attributes(attributes) -> dict | None:
        """None: no panel; an AttributePredictor, or a dict of its ``predictor`` and panel options."""
        from ..attributes import AttributePredictor

        if attributes is None or isinstance(attributes, AttributePredictor):
            return None if attributes is None else {"predictor": attributes}
        if not (isinstance(attributes, dict) and isinstance(attributes.get("predictor"), AttributePredictor)):
            raise InputTypeError(f"attributes is {type(attributes).__name__}; expected an AttributePredictor "
                                 "or a dict with 'predictor' and attribute-panel options")
        return dict(attributes)

    def _compose(self, viewer: PairViewer, panel_size: int, comparison: dict | None, attributes: dict | None,
                 made: list) -> None:
        self.viewer = viewer
        self.state = viewer.state
        self.panel = OverallPanel(viewer.explanation, state=viewer.state, cmap=viewer.cmap,
                                  alpha=viewer.alpha, size=panel_size)
        made.append(self.panel)
        self.comparison = None
        if comparison is not None:
            self.comparison = MethodComparisonPanel.for_viewer(viewer, **comparison)
            made.append(self.comparison)
        self._links = [traitlets.dlink((viewer, name), (self.panel, name))
                       for name in ("explanation", "cmap", "alpha")]
        if self.comparison is not None:
            self._links += [traitlets.dlink((viewer, name), (self.comparison, name)) for name in ("cmap", "alpha")]
        self.attributes = None
        top_row = viewer
        if attributes is not None:
            options = dict(attributes)
            self.attributes = AttributePanel.for_viewer(viewer, options.pop("predictor"), **options)
            made.append(self.attributes)
            top_row = widgets.HBox([viewer, self.attributes])
        children = [top_row, self.panel] + ([self.comparison] if self.comparison is not None else [])
        super().__init__(children=children)
        self.add_class("simviz-pair-explorer")
        self._closed = False

    @property
    def explanation(self) -> PairExplanation:
        return self.viewer.explanation

    def set_pair(self, query, reference) -> None:
        check_open(self._closed, "PairExplorer")
        self.viewer.set_pair(query, reference)

    def set_model(self, model) -> None:
        check_open(self._closed, "PairExplorer")
        self.viewer.set_model(model)

    def set_explanation(self, explanation: PairExplanation) -> None:
        check_open(self._closed, "PairExplorer")
        self.viewer.set_explanation(explanation)

    def close(self) -> None:
        """Close the viewer and every panel (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        for link in self._links:
            link.unlink()
        self.viewer.close()
        self.panel.close()
        if self.comparison is not None:
            self.comparison.close()
        if self.attributes is not None:
            self.attributes.close()
        super().close()

    def to_figure(self, **kwargs):
        return self.viewer.to_figure(**kwargs)

    def to_html(self, path=None):
        """The viewer's standalone page (see PairViewer.to_html)."""
        return self.viewer.to_html(path)

    def _ipython_display_(self):
        # The widget, then the viewer's static fallback, which the viewer's CSS hides wherever the
        # explorer (and so the viewer inside it) renders; see viewer_export.py.
        from IPython.display import display

        display(super()._repr_mimebundle_() or {}, raw=True)
        display({"text/html": self.viewer.static_fallback_html(), "text/plain": repr(self)}, raw=True)

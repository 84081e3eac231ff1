"""``PairExplorer``: the pair viewer with its overall-map panel, sharing one hover/pin state."""

from __future__ import annotations

import base64

import ipywidgets as widgets
import traitlets

from ..explain.base import PairExplanation
from .overall_panel import OverallPanel
from .pair_viewer import PairViewer
from .state import HoverState

__all__ = ["PairExplorer"]


class PairExplorer(widgets.VBox):
    """A :class:`PairViewer` above an :class:`OverallPanel`; hovering or pinning in the viewer is
    mirrored in the panel, and the panel follows the viewer's pair, method, colormap and opacity.

    Arguments as :class:`PairViewer`; ``panel_size``: display size of the panel's maps.
    """

    def __init__(self, model, query, reference, *, method: str = "decomposition", cmap: str | None = None,
                 alpha: float = 0.5, size: int = 320, reading: str = "contribution", panel_size: int = 200):
        viewer = PairViewer(model, query, reference, method=method, cmap=cmap, alpha=alpha, size=size,
                            reading=reading, state=HoverState())
        self._compose(viewer, panel_size)

    @classmethod
    def from_explanation(cls, explanation: PairExplanation, *, model=None, cmap: str | None = None,
                         alpha: float = 0.5, size: int = 320, reading: str = "contribution",
                         panel_size: int = 200) -> "PairExplorer":
        viewer = PairViewer.from_explanation(explanation, model=model, cmap=cmap, alpha=alpha, size=size,
                                             reading=reading, state=HoverState())
        explorer = cls.__new__(cls)
        explorer._compose(viewer, panel_size)
        return explorer

    def _compose(self, viewer: PairViewer, panel_size: int) -> None:
        self.viewer = viewer
        self.state = viewer.state
        self.panel = OverallPanel(viewer.explanation, state=viewer.state, cmap=viewer.cmap,
                                  alpha=viewer.alpha, size=panel_size)
        self._closed = False
        self._links = [traitlets.dlink((viewer, name), (self.panel, name))
                       for name in ("explanation", "cmap", "alpha")]
        super().__init__(children=[viewer, self.panel])
        self.add_class("simviz-pair-explorer")

    @property
    def explanation(self) -> PairExplanation:
        return self.viewer.explanation

    def set_pair(self, query, reference) -> None:
        self.viewer.set_pair(query, reference)

    def set_model(self, model) -> None:
        self.viewer.set_model(model)

    def set_explanation(self, explanation: PairExplanation) -> None:
        self.viewer.set_explanation(explanation)

    def close(self) -> None:
        if getattr(self, "_closed", True):  # already closed (ipywidgets also closes on __del__)
            return
        self._closed = True
        for link in self._links:
            link.unlink()
        self.viewer.close()
        self.panel.close()
        super().close()

    def to_figure(self, **kwargs):
        return self.viewer.to_figure(**kwargs)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = base64.b64encode(self.viewer._static_png()).decode("ascii")
        return bundle

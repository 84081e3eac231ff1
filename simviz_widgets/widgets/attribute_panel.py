"""Attribute panel: a bqplot horizontal bar chart of the attributes that explain a match (SANE).

One bar per attribute (best at the top), stacked by weighted score component (confidence,
agreement with the saliency map, prior). Clicking a bar selects the attribute: its activation maps
are overlaid on a :class:`~simviz_widgets.widgets.PairViewer` (when one is given) and every
``on_select`` callback gets the :class:`~simviz_widgets.attributes.AttributeScore` (None when the
selection is cleared; clicking the selected bar again clears it).

The viewer has no hook for "overlay these two maps" yet, so the panel shows an attribute by handing
the viewer an explanation whose overall maps are the attribute's maps and whose point-to-point part
is the pair's own (hovering keeps working), and restores the pair's explanation on clearing.

The panel knows rankings (duck-typed: a list of scores with ``attribute``, ``weighted``,
``components``, ``to_explanation`` and the list's ``explanation``), never torch.
:meth:`AttributePanel.for_viewer` binds it to a viewer with a model: the ranking is computed for the
viewer's pair with the viewer's current explanation as the saliency, and is recomputed whenever the
viewer shows another pair, model or method.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import traitlets
from bqplot import Axis, Bars, Figure, LinearScale, OrdinalScale

__all__ = ["AttributePanel", "COMPONENT_COLOURS"]

COMPONENTS = ("confidence", "agreement", "prior")
# matplotlib's tab10 blue, orange, green: distinct for the three stacked parts.
COMPONENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


def _check_ranking(ranking):
    if not isinstance(ranking, list) or not hasattr(ranking, "explanation"):
        raise TypeError(
            f"ranking is {type(ranking).__name__}; expected the AttributeRanking returned by explain_attributes"
        )
    if len(ranking) == 0:
        raise ValueError("ranking is empty; expected at least one attribute")
    for k, item in enumerate(ranking):
        missing = [a for a in ("attribute", "weighted", "components", "to_explanation") if not hasattr(item, a)]
        if missing:
            raise TypeError(f"ranking[{k}] lacks {missing}; expected AttributeScore items")
    return ranking


class AttributePanel(widgets.VBox):
    """Ranked attributes of one pair, clickable. ``viewer``: a PairViewer to overlay maps on.
    ``top``: how many attributes to show (None: all). Observable trait: ``selected`` (name or None)."""

    selected = traitlets.Unicode(None, allow_none=True)

    def __init__(self, ranking, *, viewer=None, top: int | None = 8, width: int = 360, on_select=None):
        if top is not None and (not isinstance(top, int) or top < 1):
            raise ValueError(f"top is {top!r}; expected a positive integer or None")
        if viewer is not None and not hasattr(viewer, "set_explanation"):
            raise TypeError(f"viewer is {type(viewer).__name__}; expected a PairViewer (with set_explanation)")
        self._top = top
        self._viewer = viewer
        self._rank = None  # set by for_viewer: explanation -> ranking
        self._showing_attribute = False
        self._callbacks = []
        if on_select is not None:
            self.on_select(on_select)
        self._y_scale = OrdinalScale(reverse=True)
        self._x_scale = LinearScale(min=0.0)
        self.bars = Bars(
            x=[], y=[], scales={"x": self._y_scale, "y": self._x_scale}, orientation="horizontal",
            type="stacked", colors=list(COMPONENT_COLOURS), labels=list(COMPONENTS), display_legend=True,
            color_mode="group",
        )
        self.bars.on_element_click(self._on_bar_click)
        axes = [Axis(scale=self._y_scale, side="left", label=""),
                Axis(scale=self._x_scale, label="weighted score", tick_format=".2f")]
        self.figure = Figure(marks=[self.bars], axes=axes, title="Which attribute explains the match?",
                             fig_margin={"top": 40, "bottom": 40, "left": 80, "right": 10},
                             legend_location="bottom-right",
                             layout=widgets.Layout(width=f"{int(width)}px", height="320px"))
        self.detail = widgets.HTML()
        super().__init__([self.figure, self.detail])
        self.set_ranking(ranking)

    @classmethod
    def for_viewer(cls, viewer, predictor, *, top: int | None = 8, width: int = 360, on_select=None,
                   **ranking_options) -> "AttributePanel":
        """A panel on ``viewer``'s model and pair. ``predictor``: an AttributePredictor trained on
        that model; ``ranking_options`` go to :func:`~simviz_widgets.attributes.explain_attributes`
        (``weights``, ``sides``). The viewer's explanation is the saliency of the ranking, so
        switching the viewer's method re-ranks with that method's maps."""
        from ..attributes import AttributePredictor, explain_attributes
        from .pair_viewer import check_viewer_with_model

        check_viewer_with_model(viewer, "the attribute panel runs the predictor on the model's features")
        if not isinstance(predictor, AttributePredictor):
            raise TypeError(f"predictor is {type(predictor).__name__}; expected an AttributePredictor")
        for bad in ("saliency", "top"):
            if bad in ranking_options:
                raise TypeError(f"{bad}= is set by the panel (the viewer's explanation / top=); leave it out")

        def rank(explanation):
            query, reference = viewer.inputs
            return explain_attributes(viewer.model, predictor, query, reference, saliency=explanation,
                                      **ranking_options)

        panel = cls(rank(viewer.explanation), viewer=viewer, top=top, width=width, on_select=on_select)
        panel._rank = rank
        viewer.observe(panel._on_viewer_explanation, "explanation")
        return panel

    # -- public -----------------------------------------------------------------------------
    @property
    def ranking(self):
        return self._ranking

    @property
    def shown(self) -> list:
        """The attribute scores shown, best first."""
        return list(self._ranking[: self._top] if self._top else self._ranking)

    def on_select(self, callback, remove: bool = False) -> None:
        """``callback(score_or_None)`` after each selection change."""
        if not callable(callback):
            raise TypeError(f"callback is {type(callback).__name__}; expected a callable")
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def set_ranking(self, ranking) -> None:
        """Show another pair's ranking (clears the selection)."""
        self._ranking = _check_ranking(ranking)
        shown = self.shown
        names = [s.attribute for s in shown]
        values = np.array([[s.weighted[c] for s in shown] for c in COMPONENTS], dtype=float)
        with self.bars.hold_sync():
            self.bars.x = names
            self.bars.y = values
        self._x_scale.max = float(max(values.sum(0).max(), 1e-6))
        self.selected = None
        self._apply_selection()

    def select(self, attribute: str | None) -> None:
        """Select ``attribute`` by name (None clears)."""
        if attribute is not None and attribute not in [s.attribute for s in self.shown]:
            raise ValueError(
                f"attribute {attribute!r} is not shown; shown: {[s.attribute for s in self.shown]}"
            )
        self.selected = attribute
        self._apply_selection()

    def clear_selection(self) -> None:
        self.select(None)

    def selected_score(self):
        return None if self.selected is None else next(s for s in self.shown if s.attribute == self.selected)

    # -- events -----------------------------------------------------------------------------
    def _on_bar_click(self, _bars, event) -> None:
        index = event.get("data", {}).get("index")
        shown = self.shown
        if index is None or not 0 <= int(index) < len(shown):
            return
        name = shown[int(index)].attribute
        self.select(None if name == self.selected else name)

    def _apply_selection(self) -> None:
        score = self.selected_score()
        shown = self.shown
        self.bars.selected = None if score is None else [shown.index(score)]
        self.bars.opacities = [1.0] * len(shown) if score is None else [
            1.0 if s is score else 0.35 for s in shown]
        if self._viewer is not None:
            base = self._ranking.explanation
            target = base if score is None else score.to_explanation(base)
            if self._viewer.explanation is not target:
                # Our own change must not look like "the viewer moved to another explanation".
                self._showing_attribute = True
                try:
                    self._viewer.set_explanation(target)
                finally:
                    self._showing_attribute = False
        self.detail.value = self._detail_html(score)
        for callback in list(self._callbacks):
            callback(score)

    def _on_viewer_explanation(self, change) -> None:
        exp = change["new"]
        if self._showing_attribute or exp is None or self._rank is None or exp is self._ranking.explanation:
            return
        # Another pair, model or method in the viewer: rank again with its explanation as saliency.
        self.set_ranking(self._rank(exp))

    def close(self) -> None:
        if self._rank is not None and self._viewer is not None:
            try:
                self._viewer.unobserve(self._on_viewer_explanation, "explanation")
            except ValueError:
                pass
            self._rank = None
        super().close()

    def _detail_html(self, score) -> str:
        if score is None:
            return "<i>click an attribute to see where it is on both images</i>"
        parts = ", ".join(f"{c} {score.components[c]:.2f}" for c in COMPONENTS)
        return f"<b>{html.escape(score.attribute)}</b>: score {score.score:.3f} ({parts})"

    # -- static form --------------------------------------------------------------------------
    def to_figure(self):
        """A matplotlib figure of the same stacked bars."""
        import matplotlib.pyplot as plt

        shown = self.shown
        fig, ax = plt.subplots(figsize=(4, 0.3 * len(shown) + 1))
        left = np.zeros(len(shown))
        rows = np.arange(len(shown))[::-1]
        for c, colour in zip(COMPONENTS, COMPONENT_COLOURS):
            vals = np.array([s.weighted[c] for s in shown])
            ax.barh(rows, vals, left=left, color=colour, label=c)
            left += vals
        ax.set_yticks(rows, [s.attribute for s in shown])
        ax.set_xlabel("weighted score")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        return fig

"""Attribute panel: a bqplot horizontal bar chart of the attributes that explain a match (SANE).

One bar per attribute (best at the top, names on the vertical axis), stacked by weighted score
component (confidence, agreement with the saliency map, prior), each component one colour in every
row, explained by an HTML legend above the plot. Clicking a bar selects the attribute: its row stays
in full colour and is marked on the axis while the other rows fade, its activation maps
are overlaid on a :class:`~simviz_widgets.widgets.PairViewer` (when one is given) and every
``on_select`` callback gets the :class:`~simviz_widgets.attributes.AttributeScore` (None when the
selection is cleared; clicking the selected bar again clears it).

The viewer has no hook for "overlay these two maps" yet, so the panel shows an attribute by handing
the viewer an explanation whose overall maps are the attribute's maps and whose point-to-point part
is the pair's own (hovering keeps working), and restores the pair's explanation on clearing.

The panel reads an :class:`~simviz_widgets.attributes.AttributeRanking` (scores with ``attribute``,
``weighted``, ``components``, ``to_explanation`` and the list's ``explanation``) and runs no model.
:meth:`AttributePanel.for_viewer` binds it to a viewer with a model: the ranking is computed for the
viewer's pair with the viewer's current explanation as the saliency, and is recomputed whenever the
viewer shows another pair, model or method (synchronously, in the viewer's own callback: one
forward pass of the pair through the model and the predictor, no thread).

What is drawn (bar matrix, row opacities, legend entries, ticks, margins) comes from the plain
functions of :mod:`._charts`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import traitlets
from bqplot import Axis, Bars, Figure, LinearScale, OrdinalScale

from ..attributes.ranking import AttributeRanking
from ..checks import InputError, InputTypeError, check_bool, check_callable, check_choice, check_instance, check_int
from ._charts import (
    COMPONENT_COLOURS,
    COMPONENTS,
    bar_data,
    category_margin,
    close_figure,
    legend_entries,
    legend_html,
    nice_ticks,
    row_opacities,
    shorten,
    stacked_range,
    text_width,
)
from .session import check_open

__all__ = ["AttributePanel", "COMPONENT_COLOURS", "COMPONENTS"]

TITLE = "Which attribute explains the match?"
ROW_PX = 26  # one bar per row, names at 12 px: labels never touch
TICK_FONT_PX = 12
SELECTED_MARK = "\u25b8 "  # before the selected attribute's name on the axis
DIM = 0.25  # opacity of the rows that are not selected


class AttributePanel(widgets.VBox):
    """Ranked attributes of one pair, clickable. ``viewer``: a PairViewer to overlay maps on.
    ``top``: how many attributes to show (None: all). ``width``: the panel's width in pixels.
    Observable trait: ``selected`` (name or None).

    Layout, top to bottom: the title (HTML, wraps at the panel's width), the legend (HTML, class
    ``simviz-attribute-legend``, one swatch per component), the bars (one row per attribute, names
    on the vertical axis, each component one colour in every row), the selected attribute's numbers.
    """

    _closed = True  # until built: close() (also called by ipywidgets on __del__) has nothing to free

    selected = traitlets.Unicode(None, allow_none=True)

    def __init__(self, ranking, *, viewer=None, top: int | None = 8, width: int = 360, on_select=None):
        top = None if top is None else check_int(top, "top", minimum=1)
        if viewer is not None and not hasattr(viewer, "set_explanation"):
            raise InputTypeError(f"viewer is a {type(viewer).__name__}; expected a PairViewer (with set_explanation)")
        width = check_int(width, "width", minimum=160)
        self._top = top
        self._width = width
        self._viewer = viewer
        self._rank = None  # set by for_viewer: explanation -> ranking
        self._showing_attribute = False
        self._callbacks = []
        if on_select is not None:
            self._callbacks.append(check_callable(on_select, "on_select"))
        self._name_scale = OrdinalScale(reverse=True)  # best at the top
        self._value_scale = LinearScale(min=0.0, max=1.0)
        self.bars = Bars(
            x=[], y=[], scales={"x": self._name_scale, "y": self._value_scale}, orientation="horizontal",
            type="stacked", colors=[COMPONENT_COLOURS[c] for c in COMPONENTS], labels=list(COMPONENTS),
            color_mode="element",  # colour by component (position in the stack), not by row
            opacity_mode="group",  # opacity by row: the selected row stands out
            display_legend=False, padding=0.3, stroke="white", stroke_width=0.5,
        )
        self.bars.on_element_click(self._on_bar_click)
        self.name_axis = Axis(scale=self._name_scale, side="left", grid_lines="none",
                              tick_style={"font-size": f"{TICK_FONT_PX}px"})
        self.value_axis = Axis(scale=self._value_scale, label="weighted score (sum of the parts)",
                               tick_format=".2~f", grid_lines="dashed", label_offset="32px",
                               tick_style={"font-size": f"{TICK_FONT_PX}px"})
        self.figure = Figure(marks=[self.bars], axes=[self.name_axis, self.value_axis], title="",
                             fig_margin={"top": 8, "bottom": 44, "left": 80, "right": 18},
                             layout=widgets.Layout(width=f"{width}px", height="260px"))
        self.header = widgets.HTML(
            f'<div style="font-weight:bold;font-size:13px;line-height:18px;white-space:normal">'
            f"{html.escape(TITLE)}</div>",
            layout=widgets.Layout(width=f"{width}px"))
        self.legend = widgets.HTML(legend_html(legend_entries()), layout=widgets.Layout(width=f"{width}px"))
        self.detail = widgets.HTML(layout=widgets.Layout(width=f"{width}px"))
        super().__init__([self.header, self.legend, self.figure, self.detail])
        self.add_class("simviz-attribute-panel")
        self._closed = False
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
        check_instance(predictor, "predictor", AttributePredictor)
        for bad in ("saliency", "top"):
            if bad in ranking_options:
                raise InputTypeError(f"{bad}= is set by the panel (the viewer's explanation / top=); leave it out")

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
        """``callback(score_or_None)`` after each selection change (``remove=True``: no longer)."""
        check_open(self._closed, "AttributePanel")
        check_callable(callback, "callback")
        if check_bool(remove, "remove"):
            if callback not in self._callbacks:
                raise InputError(f"callback {callback!r} is not registered with on_select")
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def set_ranking(self, ranking) -> None:
        """Show another pair's ranking (clears the selection)."""
        check_open(self._closed, "AttributePanel")
        check_instance(ranking, "ranking", AttributeRanking, "ranking of attributes (an AttributeRanking "
                       "from explain_attributes)")
        if len(ranking) == 0:
            raise InputError("ranking is empty; expected at least one attribute")
        self._ranking = ranking
        names, values = bar_data(self.shown)
        ticks = nice_ticks(*stacked_range(values), 4)
        # Names as long as the margin allows (at most 45% of the width), the full name in the detail.
        room = int(0.45 * self._width)
        fit = max(4, int((room - 14) / text_width("m", TICK_FONT_PX)) - len(SELECTED_MARK))
        self._labels = {name: shorten(name, fit) for name in names}
        with self.bars.hold_sync():
            self.bars.x = names
            self.bars.y = values
        self._value_scale.min, self._value_scale.max = ticks[0], ticks[-1]
        self.value_axis.tick_values = ticks
        margin = category_margin([SELECTED_MARK + label for label in self._labels.values()],
                                 TICK_FONT_PX, maximum=room)
        self.figure.fig_margin = {**self.figure.fig_margin, "left": margin}
        self.figure.layout.height = f"{max(120, ROW_PX * len(names) + 52)}px"
        self.selected = None
        self._apply_selection()

    def select(self, attribute: str | None) -> None:
        """Select ``attribute`` by name, one of the attributes shown (None clears)."""
        check_open(self._closed, "AttributePanel")
        if attribute is not None:
            check_choice(attribute, "attribute", [s.attribute for s in self.shown])
        self.selected = attribute
        self._apply_selection()

    def clear_selection(self) -> None:
        self.select(None)

    def selected_score(self):
        return None if self.selected is None else next(s for s in self.shown if s.attribute == self.selected)

    # -- events -----------------------------------------------------------------------------
    @traitlets.validate("selected")
    def _validate_selected(self, proposal):
        check_open(self._closed, "AttributePanel")
        return proposal["value"]

    def _on_bar_click(self, _bars, event) -> None:
        if self._closed:
            return
        index = event.get("data", {}).get("index")
        shown = self.shown
        if index is None or not 0 <= int(index) < len(shown):
            return
        name = shown[int(index)].attribute
        self.select(None if name == self.selected else name)

    def _apply_selection(self) -> None:
        score = self.selected_score()
        shown = self.shown
        index = None if score is None else shown.index(score)
        with self.bars.hold_sync():
            self.bars.selected = None if index is None else [index]
            self.bars.opacities = row_opacities(len(shown), index, DIM)
        self.name_axis.tick_labels = {
            s.attribute: (SELECTED_MARK if k == index else "") + self._labels[s.attribute]
            for k, s in enumerate(shown)
        }
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
        """Close the panel and everything in it (bars, axes, scales), and stop following the viewer."""
        if self._closed:
            return
        self._closed = True
        if self._rank is not None and self._viewer is not None:
            try:
                self._viewer.unobserve(self._on_viewer_explanation, "explanation")
            except ValueError:
                pass
            self._rank = None
        close_figure(self.figure)
        for child in self.children:
            child.close()
        super().close()

    def _detail_html(self, score) -> str:
        if score is None:
            return "<i>click an attribute to see where it is on both images</i>"
        parts = ", ".join(f"{c} {score.components[c]:.2f}" for c in COMPONENTS)
        return f"<b>{html.escape(score.attribute)}</b>: score {score.score:.3f} ({parts})"

    # -- static form --------------------------------------------------------------------------
    def to_figure(self):
        """A matplotlib figure of the same bars: one colour per component, legend above the
        plot, the selected row (if any) in full colour and the others faded."""
        import matplotlib.pyplot as plt
        import numpy as np

        shown = self.shown
        names, values = bar_data(shown)
        index = None if self.selected is None else names.index(self.selected)
        alphas = row_opacities(len(names), index, DIM)
        fig, ax = plt.subplots(figsize=(4.2, 0.32 * len(names) + 1.4))
        rows = np.arange(len(names))[::-1]
        left = np.zeros(len(names))
        for k, component in enumerate(COMPONENTS):
            colours = [(*_rgb(COMPONENT_COLOURS[component]), a) for a in alphas]
            ax.barh(rows, values[k], left=left, color=colours, label=component, height=0.7)
            left += values[k]
        ax.set_yticks(rows, [(SELECTED_MARK if k == index else "") + n for k, n in enumerate(names)])
        ax.set_xlabel("weighted score (sum of the parts)")
        fig.suptitle(TITLE, x=0.02, ha="left", fontsize=11)
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for _, colour in legend_entries()]
        ax.legend(handles, list(COMPONENTS), loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(COMPONENTS),
                  frameon=False, fontsize="small", borderaxespad=0.2, handlelength=1.0)
        fig.tight_layout()
        return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[k:k + 2], 16) / 255.0 for k in (1, 3, 5))

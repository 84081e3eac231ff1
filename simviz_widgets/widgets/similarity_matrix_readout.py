"""The similarity matrix's readout: the hovered (or selected) pair beside the matrix, its two images
large enough to recognise, their names, the score and the reference's rank for that query.

The images are ``ipywidgets.Image`` widgets (binary PNG, sent only when they change: moving the
mouse along a row re-sends the column image only), not data URIs re-sent with every hover.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..retrieval.labels import score_text
from ._canvas import close_tree
from .similarity_matrix_state import SimilarityMatrixState

__all__ = ["PairReadout", "PREVIEW_PX", "READOUT_PX"]

PREVIEW_PX = 96  # each image of the pair
READOUT_PX = 230  # the readout's width
ROLES = ("query (row)", "reference (column)")


class PairReadout(widgets.VBox):
    """What the pair under the mouse is. ``preview(index)``: the PNG of gallery image ``index``."""

    def __init__(self, preview):
        self._preview = preview
        self.head = widgets.HTML()
        self.images = [widgets.Image(format="png", layout=widgets.Layout(
            width=f"{PREVIEW_PX}px", height=f"{PREVIEW_PX}px", border="1px solid #999")) for _ in ROLES]
        self.labels = [widgets.HTML(layout=widgets.Layout(width=f"{PREVIEW_PX + 6}px")) for _ in ROLES]
        self.pair_box = widgets.HBox(
            [widgets.VBox([image, label], layout=widgets.Layout(align_items="center", width=f"{PREVIEW_PX + 8}px"))
             for image, label in zip(self.images, self.labels)], layout=widgets.Layout(display="none"))
        self.score = widgets.HTML()
        super().__init__([self.head, self.pair_box, self.score],
                         layout=widgets.Layout(width=f"{READOUT_PX}px", min_height="260px", padding="0 0 0 8px"))
        self.add_class("simviz-matrix-readout")

    def show(self, state: SimilarityMatrixState) -> None:
        """The hovered pair, else the selected one, else a hint."""
        pair = state.hovered or state.selected
        if pair is None:
            self.head.value = ("<div style='font-size:12px;line-height:16px;color:#555'>Hover a cell: the pair "
                               "and its score show here.</div>")
            self.pair_box.layout.display = "none"
            self.score.value = ""
            return
        query, reference = pair
        what = "hovered" if state.hovered is not None else "selected"
        self.head.value = f"<div style='font-size:12px;color:#555'>{what} pair</div>"
        for image, label, index, role in zip(self.images, self.labels, pair, ROLES):
            image.value = self._preview(index)  # unchanged bytes: nothing is sent
            label.value = (f"<div style='text-align:center;line-height:15px'><div style='font-size:11px;color:#555'>"
                           f"{role}</div><div style='font-size:12px;overflow-wrap:anywhere'>"
                           f"{html.escape(state.names[index])}</div></div>")
        self.pair_box.layout.display = None
        rank = ("the same image" if query == reference else
                f"rank {state.rank_of(query, reference)} of {state.n - 1} for this query (1 = most alike)")
        self.score.value = (f"<div style='font-size:13px;line-height:18px'><b>"
                            f"{html.escape(score_text(state.score(query, reference), state.metric))}</b></div>"
                            f"<div style='font-size:12px;line-height:16px;color:#555'>{html.escape(rank)}</div>")

    @property
    def text(self) -> str:
        """Everything the readout says, as one string (tests and logs)."""
        return " ".join([self.head.value, *(label.value for label in self.labels), self.score.value])

    def close(self) -> None:
        for child in self.children:
            close_tree(child)
        super().close()

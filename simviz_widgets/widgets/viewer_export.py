"""The pair viewer without a kernel: a figure, a PNG, a standalone HTML page, and what a notebook
shows where the widget cannot render.

A displayed viewer writes two outputs: the widget, and a static fallback — the standalone page
(live hover, both readings, colormaps, pins; nothing fetched) in an ``<iframe srcdoc>`` over the
PNG. While the widget renders (live kernel, or saved widget state) a CSS rule the widget carries
hides the fallback (``:has()``: the hover layers carry the class it names once they have drawn);
where it does not (a notebook saved without widget state, nbconvert
HTML without network, any front-end without the widget extension) the fallback is what a reader
sees. JupyterLab's sanitiser drops iframes from untrusted (reopened) outputs but keeps the PNG.
"""

from __future__ import annotations

from ..checks import check_path
from ..web.export import DISPLAY_POINT_BYTES, page_title
from ..web.page import iframe_html, page_size, standalone_html
from ..web.payload import explanation_payload

__all__ = ["ViewerExports", "FALLBACK_CLASS", "LIVE_CLASS"]

FALLBACK_CLASS = "simviz-fallback"
LIVE_CLASS = "simviz-live"


class ViewerExports:
    """Static forms of a :class:`~simviz_widgets.widgets.pair_viewer.PairViewer` (a mixin: it reads
    the viewer's explanation, look, pins and drawing)."""

    def look(self) -> dict:
        """What the page needs besides the explanation: opacity, colormap, reading, toggles, and the
        pins with their best matches (display pixels)."""
        matches = self.drawing.matches
        pins = [{"source": p.source, "row": p.row, "col": p.col, "colour": p.colour, "match": matches.get(p)}
                for p in self.state.pins]
        return {"alpha": self.alpha, "cmap": self.cmap, "reading": self.reading, "show_overall": self.show_overall,
                "show_peak": self.show_peak, "pins": pins}

    def to_figure(self, **kwargs):
        """A matplotlib figure of the explanation, with the query pins as its points."""
        query_pins = [(p.row, p.col) for p in self.state.pins if p.source == "query"]
        options = {"points": query_pins or None, "cmap": self.cmap, "alpha": self.alpha, "reading": self.reading}
        options.update(kwargs)
        return self.explanation.to_figure(**options)

    def to_png(self) -> bytes:
        """Both photos with their overall maps and pins as one PNG."""
        return self.drawing.static_png()

    def page_payload(self, *, binary: str = "base64", max_point_bytes: int | None = None) -> dict:
        """The explanation on show as js/ reads it, with this viewer's look and pins."""
        look = self.look()
        return explanation_payload(self.explanation, size=self._size, cmap=look["cmap"], alpha=look["alpha"],
                                   reading=look["reading"], pins=look["pins"], show_overall=look["show_overall"],
                                   show_peak=look["show_peak"], binary=binary, max_point_bytes=max_point_bytes)

    def to_html(self, path=None):
        """The viewer as one self-contained HTML page (images, maps, point-to-point data and js/
        inlined; hover, readings, colormaps and pins work offline, from a double-click).
        Returns the page, or writes it to ``path`` and returns that Path."""
        path = None if path is None else check_path(path, "path")  # checked before any work
        page = standalone_html(self.page_payload(), title=page_title(self.explanation))
        if path is None:
            return page
        path.write_text(page, encoding="utf-8")
        return path

    def static_fallback_html(self) -> str:
        """The notebook fallback: the page in an iframe over the PNG, hidden while the widget renders."""
        payload = self.page_payload(max_point_bytes=DISPLAY_POINT_BYTES)  # stored in the notebook
        frame = iframe_html(standalone_html(payload, title=page_title(self.explanation)),
                            fallback_png=self.to_png(), size=page_size(payload))
        return f'<div class="{FALLBACK_CLASS} {FALLBACK_CLASS}-{self.model_id}">{frame}</div>'

    def live_css(self) -> str:
        """Hides this viewer's fallback output wherever the widget itself renders."""
        return (f"body:has(.{LIVE_CLASS}-{self.model_id}) .{FALLBACK_CLASS}-{self.model_id} "
                "{ display: none !important; }")

    def _ipython_display_(self):
        from IPython.display import display

        bundle = super()._repr_mimebundle_() or {}
        display(bundle, raw=True)
        display({"text/html": self.static_fallback_html(), "text/plain": repr(self)}, raw=True)

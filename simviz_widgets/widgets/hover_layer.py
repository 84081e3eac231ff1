"""Hover rendered in the browser: the pair viewer's point maps drawn by js/, not by the kernel.

When an explanation has a point-to-point part, its payload (simviz_widgets/web/payload.py: photos,
maps, the matrices of D; 10-30 KB of numbers for the default model) goes to the browser once, as
binary buffers of one :class:`HoverData` model. Over each image's ipycanvas canvas sits a
:class:`HoverLayer` (an anywidget whose ES module is js/pair_view.js): it paints every hover itself,
within a frame, on any Jupyter server; the two layers of a viewer talk through the shared data
model in the page. The kernel still hears the hovered point, throttled in the browser to
``throttle_ms``, so ``viewer.hovered``, the status line, the colour bar and panels follow.

:class:`BrowserHover` is the viewer's side of it: it builds the widgets, sends the payload and the
look (opacity, colormap, reading, pins), says when the browser path is on (a point-to-point part
and ``hover="browser"``), and drops messages about an explanation no longer shown (generation).
"""

from __future__ import annotations

from functools import partial

import anywidget
import ipywidgets as widgets
import traitlets

from ..explain.base import SIDES
from ..web.assets import bundle
from ..web.payload import MAX_POINT_BYTES, explanation_payload, point_nbytes
from ._canvas import HOVER_MODES

__all__ = ["HoverData", "HoverLayer", "BrowserHover", "HOVER_MODES", "HOVER_LAYER_CLASS"]

HOVER_LAYER_CLASS = "simviz-hover-layer"
LAYER_CSS = (
    ".simviz-event-pad { position: relative; }\n"
    f".simviz-event-pad > .{HOVER_LAYER_CLASS} {{ position: absolute; top: 0; left: 0; width: 100%; height: 100%;"
    " margin: 0; padding: 0; z-index: 1; }"
)


class HoverData(widgets.Widget):
    """A viewer's payload and look, shared by its two hover layers (a model without a view).

    ``payload``: :func:`~simviz_widgets.web.payload.explanation_payload` with binary fields as bytes
    (sent as binary buffers, not JSON lists). ``look``: alpha, cmap, reading, show_overall,
    show_peak and pins (each with its best match), small and re-sent on every change."""

    payload = traitlets.Dict().tag(sync=True)
    look = traitlets.Dict().tag(sync=True)


class HoverLayer(anywidget.AnyWidget):
    """The browser-side hover surface over one image (see the module docstring)."""

    side = traitlets.Unicode("query").tag(sync=True)
    data = traitlets.Instance(HoverData).tag(sync=True, **widgets.widget_serialization)
    #: how often (at most) the browser tells the kernel the hovered point, in ms
    throttle_ms = traitlets.Int(100).tag(sync=True)
    #: a class the layer puts on itself once it has drawn: it hides the viewer's static fallback
    #: (viewer_export.py), so a layer that cannot render leaves the fallback in view
    live_class = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        # The module is read per instance: a developer editing js/ sees it in the next viewer.
        super().__init__(_esm=bundle(), **kwargs)
        self.add_class(HOVER_LAYER_CLASS)


class BrowserHover:
    """The viewer's browser hover layers: ``layers[side]`` go into the event pads; ``receive(side,
    event)`` gets each throttled hover the browser reports (for the current explanation only);
    ``on_ready()`` is called when a layer says it has the current explanation and draws hovers.

    The payload goes to the layers in both modes (without a kernel they paint the photos and maps
    themselves); its point-to-point part only in "browser" mode. The kernel stops drawing hovers
    only once a layer reports ready for the current generation, so where the layer cannot run
    (no anywidget front-end) hover stays on the kernel path."""

    def __init__(self, logic, *, mode: str, size: int, receive, on_ready, live_class: str = ""):
        self.logic = logic
        self.mode = mode
        self.size = size
        self.generation = 0
        self.ready_generation = -1
        self.data = HoverData()
        self.layers = {side: HoverLayer(side=side, data=self.data, live_class=live_class) for side in SIDES}
        self._receive, self._on_ready = receive, on_ready
        for side, layer in self.layers.items():
            layer.on_msg(partial(self._on_message, side))

    @property
    def wanted(self) -> bool:
        """Whether the browser should draw hovers: "browser" mode and a point-to-point part small
        enough to send (MAX_POINT_BYTES; larger grids stay on the kernel path)."""
        exp = self.logic.explanation
        return (self.mode == "browser" and exp.point_to_point is not None
                and point_nbytes(exp.point_to_point) <= MAX_POINT_BYTES)

    @property
    def active(self) -> bool:
        """Whether the browser draws hovers now (wanted, and a layer has the current explanation)."""
        return self.wanted and self.ready_generation == self.generation

    def set_explanation(self, look: dict) -> None:
        """Send the new explanation (a new generation: older hover reports are dropped)."""
        self.generation += 1
        self._send(look)

    def _send(self, look: dict) -> None:
        payload = explanation_payload(self.logic.explanation, size=self.size, cmap=look["cmap"],
                                      alpha=look["alpha"], reading=look["reading"], generation=self.generation,
                                      binary="bytes", point=self.wanted)
        with self.data.hold_sync():
            self.data.payload = payload
            self.data.look = look

    def set_look(self, look: dict) -> None:
        if look["cmap"] and look["cmap"] not in self.data.payload.get("luts", {}):
            self._send(look)  # a colormap outside the menu: the page needs its LUT
        elif self.data.look != look:
            self.data.look = look

    def _on_message(self, side: str, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or content.get("generation") != self.generation:
            return  # about an explanation no longer shown (or not a message of ours)
        if content.get("type") == "ready":
            if self.ready_generation != self.generation:
                self.ready_generation = self.generation
                self._on_ready()
        elif self.active:
            self._receive(side, content)

    def close(self) -> None:
        for layer in self.layers.values():
            layer.close()
        self.data.close()

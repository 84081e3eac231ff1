"""The pair viewer's controls: method and colormap menus, opacity, overall-map toggle, reading,
clear pins. :class:`ViewerControls` builds them and keeps the menus in step with the session
(quietly: a menu set from the session never reads as the user's choice)."""

from __future__ import annotations

from contextlib import contextmanager

import ipywidgets as widgets

from ..explain import list_methods
from ..explain.base import READINGS
from ..web.scales import CMAP_CHOICES

__all__ = ["ViewerControls", "DEFAULT_CMAP_LABEL", "CMAP_CHOICES"]

DEFAULT_CMAP_LABEL = "default"


class ViewerControls:
    """The control widgets; ``syncing`` is True while they are set from the session."""

    def __init__(self, *, method: str, has_model: bool, cmap: str | None, alpha: float, reading: str):
        self.syncing = False
        self.method_dropdown = widgets.Dropdown(options=menu_options(method, method), value=method,
                                                description="method", disabled=not has_model,
                                                layout=widgets.Layout(width="220px"))
        cmap_options = [DEFAULT_CMAP_LABEL, *CMAP_CHOICES] + ([cmap] if cmap and cmap not in CMAP_CHOICES else [])
        self.cmap_dropdown = widgets.Dropdown(options=cmap_options, value=cmap or DEFAULT_CMAP_LABEL,
                                              description="colormap", layout=widgets.Layout(width="200px"))
        self.opacity_slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                                  layout=widgets.Layout(width="260px"))
        self.overall_toggle = widgets.ToggleButton(value=True, description="overall map", icon="map",
                                                   tooltip="show each image's overall map while not hovering the other")
        self.reading_toggle = widgets.ToggleButtons(
            options=list(READINGS), value=reading, style={"button_width": "130px"},
            tooltips=["D(point, cell): what each pair of positions adds to the score",
                      "cosine of the positions' contributions: where the thing at the point is"])
        self.clear_pins_button = widgets.Button(description="clear pins", icon="times")
        self.box = widgets.VBox([
            widgets.HBox([self.method_dropdown, self.cmap_dropdown, self.opacity_slider]),
            widgets.HBox([self.overall_toggle, self.reading_toggle, self.clear_pins_button]),
        ])

    @contextmanager
    def quietly(self):
        self.syncing = True
        try:
            yield
        finally:
            self.syncing = False

    def show_method(self, chosen: str, shown: str, has_model: bool) -> None:
        """The menu names ``chosen`` (``shown``: the explanation's method, listed even when it is
        not a registered one, e.g. an attribute's maps)."""
        with self.quietly():
            options = menu_options(shown, chosen)
            if options != tuple(self.method_dropdown.options):
                self.method_dropdown.options = options
            self.method_dropdown.value = chosen
            self.method_dropdown.disabled = not has_model

    def show_readings(self, available: bool) -> None:
        """The reading buttons only where the explanation has point maps to read."""
        self.reading_toggle.disabled = not available

    def show_cmap(self, cmap: str | None) -> None:
        label = DEFAULT_CMAP_LABEL if cmap is None else cmap
        with self.quietly():
            if label not in self.cmap_dropdown.options:  # any matplotlib name joins the menu
                self.cmap_dropdown.options = (*self.cmap_dropdown.options, label)
            self.cmap_dropdown.value = label


def menu_options(shown: str, chosen: str) -> tuple[str, ...]:
    """Registered methods, plus the shown and chosen ones if they are not (only while in use)."""
    options = tuple(list_methods())
    for name in (shown, chosen):
        if name not in options:
            options = (*options, name)
    return options

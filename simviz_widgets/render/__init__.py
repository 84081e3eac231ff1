"""Pure array -> array rendering: colormaps (matplotlib's, as 256-entry LUTs), bilinear upsampling
of maps, overlays on photos, and the static explanation figure. Imports numpy and matplotlib only.
"""

from .colormap import (
    NORMALIZE_MODES,
    SIGNED_CMAP,
    UNSIGNED_CMAP,
    colormap_lut,
    default_cmap,
    map_to_rgba,
    normalize_map,
)
from .figure import cell_centre_pixels, default_points, explanation_figure
from .overlay import overlay
from .resize import upsample_bilinear

__all__ = [
    "colormap_lut",
    "normalize_map",
    "map_to_rgba",
    "default_cmap",
    "NORMALIZE_MODES",
    "SIGNED_CMAP",
    "UNSIGNED_CMAP",
    "upsample_bilinear",
    "overlay",
    "explanation_figure",
    "default_points",
    "cell_centre_pixels",
]

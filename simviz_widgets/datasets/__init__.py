"""Sample photos from installed packages and views of them with known geometry (no network).

Imports numpy, PIL, scikit-image and scikit-learn only (matplotlib's bundled grace_hopper.jpg is
read lazily through ``matplotlib.cbook``).
"""

from .photos import UnknownPhotoError, default_pair, list_photos, load_photo, stereo_motorcycle
from .views import VIEW_KINDS, View, views

__all__ = [
    "list_photos",
    "load_photo",
    "stereo_motorcycle",
    "default_pair",
    "views",
    "View",
    "VIEW_KINDS",
    "UnknownPhotoError",
]

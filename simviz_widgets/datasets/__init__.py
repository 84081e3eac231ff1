"""Sample photos from installed packages and views of them with known geometry (no network).

Imports numpy, PIL, scikit-image and scikit-learn only (matplotlib's bundled grace_hopper.jpg is
read lazily through ``matplotlib.cbook``).
"""

from .composites import (
    COMPOSITE_BACKGROUNDS,
    SHARED_OBJECTS,
    SharedObjectPair,
    background_crop,
    paste_object,
    shared_object_pairs,
)
from .faces import FaceDataMissingError, crop_face, face_data_dir, list_faces, load_face
from .photos import UnknownPhotoError, default_pair, list_photos, load_photo, stereo_motorcycle
from .synthetic import (
    ATTRIBUTE_GROUPS,
    SYNTHETIC_ATTRIBUTES,
    SceneImage,
    SceneObject,
    ScenePair,
    negative_pairs,
    random_scenes,
    render_scene,
    scene_pairs,
)
from .views import VIEW_KINDS, View, views

__all__ = [
    "list_faces",
    "load_face",
    "crop_face",
    "face_data_dir",
    "FaceDataMissingError",
    "list_photos",
    "load_photo",
    "stereo_motorcycle",
    "default_pair",
    "views",
    "View",
    "VIEW_KINDS",
    "UnknownPhotoError",
    "shared_object_pairs",
    "SharedObjectPair",
    "SHARED_OBJECTS",
    "COMPOSITE_BACKGROUNDS",
    "paste_object",
    "background_crop",
    "ATTRIBUTE_GROUPS",
    "SYNTHETIC_ATTRIBUTES",
    "SceneImage",
    "SceneObject",
    "ScenePair",
    "scene_pairs",
    "negative_pairs",
    "random_scenes",
    "render_scene",
]

"""Bundled demo galleries (nothing downloaded): the photos and their views, synthetic scenes with
known objects and attributes, and the face photos (installed by scripts/install_face_data.sh)."""

from __future__ import annotations

from ..checks import check_choice, check_int
from ..datasets import list_photos, load_photo, random_scenes, views
from .gallery import Gallery

__all__ = ["DEMO_GALLERIES", "demo_items", "demo_gallery"]

DEMO_GALLERIES = ("photos", "scenes", "faces")
# Views with known geometry of each photo: a query photo should find its own views first.
_PHOTO_VIEWS = (("mirror", {}), ("crop_scale", {"fraction": 0.7}), ("rotation", {"angle": 15.0}),
                ("color", {"seed": 1}))


def demo_items(name: str, *, count: int = 48, seed: int = 0) -> tuple[list, list[str], list]:
    """(images, names, labels) of demo gallery ``name``. Labels: the photo a view comes from; a
    scene's objects as ("colour shape texture size", ...); a face's person."""
    name = check_choice(name, "demo gallery", DEMO_GALLERIES)
    images, names, labels = [], [], []
    if name == "photos":
        for photo in list_photos():
            image = load_photo(photo)
            images.append(image), names.append(photo), labels.append(photo)
            for kind, params in _PHOTO_VIEWS:
                images.append(views(image, kind, **params).image)
                names.append(f"{photo} ({kind})")
                labels.append(photo)
    elif name == "scenes":
        count = check_int(count, "count", minimum=2)
        for k, scene in enumerate(random_scenes(count, seed=check_int(seed, "seed", minimum=0), size=96)):
            images.append(scene.image)
            objects = tuple(" ".join(o.attributes) for o in scene.objects)
            names.append(f"scene {k}: " + " + ".join(" ".join(o.attributes[:2]) for o in scene.objects))
            labels.append(objects)
    else:
        from ..datasets import list_faces, load_face

        for face, info in list_faces().items():
            for k in range(len(info["boxes"])):  # every measured face of a group photo
                images.append(load_face(face, crop=True, face=k))
                names.append(face if len(info["boxes"]) == 1 else f"{face} (face {k + 1})")
                labels.append(info["person"])
    return images, names, labels


def demo_gallery(name: str, model, *, count: int = 48, seed: int = 0, show_progress: bool = True,
                 cache=None) -> Gallery:
    """Demo gallery ``name``: 'photos' (every bundled photo and four views of it: mirror, crop,
    rotation, colour), 'scenes' (``count`` synthetic scenes of two objects each, labels naming them)
    or 'faces' (every measured face of the face photos, cropped; needs scripts/install_face_data.sh),
    embedded by ``model``."""
    images, names, labels = demo_items(name, count=count, seed=seed)
    return Gallery.build(model, images, names=names, labels=labels, show_progress=show_progress, cache=cache)

"""Labelled images for attribute training: from the synthetic scenes, or from the user's folders.

An :class:`AttributeData` is a list of RGB images, a multi-hot label matrix over ``names`` and, per
image, a *partner*: another image it is matched with (the saliency term of the training objective
needs the saliency of a match). For synthetic pairs the partner is the other image of the pair; for
user folders it is another image of the same folder (the two share that attribute).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import (
    InputError,
    check_array,
    check_instance,
    check_int,
    check_mask,
    check_names,
    check_path,
    check_sequence,
)
from ..images import to_rgb_uint8

__all__ = ["AttributeData", "synthetic_attribute_data", "attributes_from_folders", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, eq=False)
class AttributeData:
    """``images``: list of uint8 (H, W, 3); ``labels``: bool (B, K); ``names``: K attribute names;
    ``partners``: int (B,) index of each image's matched partner; ``sources``: where each came from."""

    images: list
    labels: np.ndarray
    names: tuple[str, ...]
    partners: np.ndarray
    sources: tuple[str, ...] = ()

    def __post_init__(self):
        # Checked and stored as arrays / tuples (new objects where a conversion happens: the caller's
        # lists and arrays are never modified).
        images = check_sequence(self.images, "images", empty=True)
        n = len(images)
        names = tuple(check_names(self.names, "names"))
        labels = check_mask(self.labels, "labels", (n, len(names)), note=" (images x attributes)") if n else \
            np.zeros((0, len(names)), bool)
        partners = check_array(self.partners, "partners", shape=(n,), kinds="iu", empty=True,
                               expected=f"({n},): one partner index per image")
        if n and (partners.min() < 0 or partners.max() >= n):
            raise InputError(f"partners must be {n} indices into the images (0 .. {n - 1})")
        for field_name, value in (("images", images), ("names", names), ("labels", labels), ("partners", partners)):
            object.__setattr__(self, field_name, value)

    def __len__(self) -> int:
        return len(self.images)


def synthetic_attribute_data(pairs) -> AttributeData:
    """Both images of each :class:`~simviz_widgets.datasets.synthetic.ScenePair`, each other's partner."""
    from ..datasets.synthetic import SYNTHETIC_ATTRIBUTES, ScenePair

    pairs = check_sequence(pairs, "pairs", lambda p, label: check_instance(p, label, ScenePair))
    images, labels, partners, sources = [], [], [], []
    for k, p in enumerate(pairs):
        images += [p.query.image, p.reference.image]
        labels += [p.query.labels, p.reference.labels]
        partners += [2 * k + 1, 2 * k]
        sources += [f"pair {p.index} query", f"pair {p.index} reference"]
    return AttributeData(images, np.stack(labels), SYNTHETIC_ATTRIBUTES, np.asarray(partners), tuple(sources))


def attributes_from_folders(root, *, min_images: int = 2, max_images: int | None = None) -> AttributeData:
    """User-defined attributes: ``root/<attribute name>/<image files>``, one folder per attribute.

    An image carries the attribute of its folder (the same file name in several folders carries
    all of them). At least two attribute folders are needed (the others are the negatives) and
    ``min_images`` images in each; a few dozen per attribute train a usable probe.
    """
    root = check_path(root, "root")
    min_images = check_int(min_images, "min_images", minimum=1)
    if max_images is not None and check_int(max_images, "max_images", minimum=1) < min_images:
        raise InputError(f"max_images={max_images} is below min_images={min_images}; no folder could qualify")
    if not root.is_dir():
        raise FileNotFoundError(f"attribute folder {str(root)!r} does not exist or is not a directory")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(folders) < 2:
        raise InputError(
            f"{str(root)!r} has {len(folders)} attribute folder(s); expected at least two "
            "(root/<attribute>/<images>), so each attribute has negatives"
        )
    names = tuple(d.name for d in folders)
    by_file: dict[str, int] = {}
    images, label_rows, sources, members = [], [], [], {}
    for a, folder in enumerate(folders):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if max_images is not None:
            files = files[:max_images]
        if len(files) < min_images:
            raise InputError(
                f"attribute folder {str(folder)!r} has {len(files)} image(s); expected at least {min_images} "
                f"(files ending in {', '.join(IMAGE_SUFFIXES)})"
            )
        members[a] = []
        for f in files:
            key = f.name
            if key not in by_file:
                from PIL import Image

                try:
                    with Image.open(f) as im:
                        rgb = to_rgb_uint8(im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy(),
                                           name=str(f))
                except OSError as err:
                    raise InputError(f"image {str(f)!r} could not be read: {err}") from err
                by_file[key] = len(images)
                images.append(rgb)
                label_rows.append(np.zeros(len(names), bool))
                sources.append(str(f))
            label_rows[by_file[key]][a] = True
            members[a].append(by_file[key])
    partners = np.arange(len(images))
    for a, idx in members.items():
        for k, i in enumerate(idx):
            if partners[i] == i:
                partners[i] = idx[(k + 1) % len(idx)]
    return AttributeData(images, np.stack(label_rows), names, partners, tuple(sources))

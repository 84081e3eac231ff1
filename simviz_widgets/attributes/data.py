"""Labelled images for attribute training: from the synthetic scenes, or from the user's folders.

An :class:`AttributeData` is a list of RGB images, a multi-hot label matrix over ``names`` and, per
image, a *partner*: another image it is matched with (the saliency term of the training objective
needs the saliency of a match). For synthetic pairs the partner is the other image of the pair; for
user folders it is another image of the same folder (the two share that attribute).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        n = len(self.images)
        if self.labels.shape != (n, len(self.names)):
            raise ValueError(f"labels have shape {self.labels.shape}; expected ({n}, {len(self.names)})")
        if self.partners.shape != (n,) or (n and (self.partners.min() < 0 or self.partners.max() >= n)):
            raise ValueError(f"partners must be {n} indices into the images")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"attribute names must be unique, got {self.names}")

    def __len__(self) -> int:
        return len(self.images)


def synthetic_attribute_data(pairs) -> AttributeData:
    """Both images of each :class:`~simviz_widgets.datasets.synthetic.ScenePair`, each other's partner."""
    from ..datasets.synthetic import SYNTHETIC_ATTRIBUTES

    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty; expected at least one ScenePair")
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
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"attribute folder {str(root)!r} does not exist or is not a directory")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(folders) < 2:
        raise ValueError(
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
            raise ValueError(
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
                    raise ValueError(f"image {str(f)!r} could not be read: {err}") from err
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

"""Does a region query find the images that contain the region's object? Precision@k on synthetic
scenes with known objects, for the region query (a box or the object's mask), the whole-image query
and the crop-and-embed baseline (the object's square crop embedded as a new image).

A gallery image is relevant to a query object when one of its objects shares the object's colour and
shape ('object'), or one attribute value ('colour', 'shape', 'texture'). Reported with the chance
level: the fraction of relevant gallery images.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..checks import check_bool, check_int
from ..datasets import random_scenes
from .gallery import Gallery
from .regions import display_box

__all__ = ["RELEVANCE", "QUERY_KINDS", "object_box", "region_precision"]

RELEVANCE = {
    "object": lambda o: (o.colour, o.shape),
    "colour": lambda o: o.colour,
    "shape": lambda o: o.shape,
    "texture": lambda o: o.texture,
}
QUERY_KINDS = ("region (mask)", "region (box)", "whole image", "crop and embed")


def object_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a mask's pixels, bottom / right exclusive."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def region_precision(model, *, gallery_size: int = 200, queries: int = 40, k: int = 10, size: int = 96,
                     seed: int = 0, show_progress: bool = True) -> dict:
    """Precision@k of each query kind (:data:`QUERY_KINDS`) under each relevance (:data:`RELEVANCE`),
    averaged over every object of ``queries`` scenes (two objects each) against a gallery of
    ``gallery_size`` other scenes. Returns ``{"precision": {kind: {relevance: p}}, "chance":
    {relevance: p}, "counts": {...}}``."""
    k, seed = check_int(k, "k", minimum=1), check_int(seed, "seed", minimum=0)
    gallery_size, queries = check_int(gallery_size, "gallery_size", minimum=k), check_int(queries, "queries", minimum=1)
    show_progress = check_bool(show_progress, "show_progress")
    stock = random_scenes(gallery_size, seed=seed, size=size)
    gallery = Gallery.build(model, [s.image for s in stock], show_progress=show_progress)
    keys = {name: [{key(o) for o in s.objects} for s in stock] for name, key in RELEVANCE.items()}
    hits = {kind: {name: [] for name in RELEVANCE} for kind in QUERY_KINDS}
    chance = {name: [] for name in RELEVANCE}
    # query scenes from another seed: never in the gallery
    for scene in tqdm(random_scenes(queries, seed=seed + 10_000, size=size), desc="region queries",
                      disable=not show_progress):
        q = gallery.query(scene.image)
        for obj, mask in zip(scene.objects, scene.object_masks):
            if not mask.any():  # fully covered by the other object
                continue
            box = object_box(mask)
            found = {
                "region (mask)": q.search(mask, k=k, coords="source").indices,
                "region (box)": q.search(box, k=k, coords="source").indices,
                "whole image": q.search(k=k).indices,
                "crop and embed": gallery.search(q.crop(display_box(box, q.prepared)), k=k).indices,
            }
            for name, key in RELEVANCE.items():
                relevant = np.array([key(obj) in have for have in keys[name]])
                chance[name].append(relevant.mean())
                for kind, indices in found.items():
                    hits[kind][name].append(relevant[indices].mean())
    return {
        "precision": {kind: {name: float(np.mean(v)) for name, v in per.items()} for kind, per in hits.items()},
        "chance": {name: float(np.mean(v)) for name, v in chance.items()},
        "counts": {"gallery": gallery_size, "query_objects": len(chance["object"]), "k": k},
    }


"""What a gallery is made of: a folder, a list of images or a dataset, as items that know their
name, how to load their picture and a fingerprint that changes when the picture does (the cache
rebuilds an item whose fingerprint changed)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..checks import InputError, InputTypeError
from ..images import PreparedImage, to_rgb_uint8

__all__ = ["Item", "IMAGE_SUFFIXES", "collect_items"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _digest(*parts) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _array_fingerprint(value) -> str:
    """A content hash of an in-memory picture (numpy array, tensor, PIL image, PreparedImage)."""
    if isinstance(value, PreparedImage):
        value = value.display
    if isinstance(value, Image.Image):
        return _digest("pil", value.mode, value.size, value.tobytes())
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.ascontiguousarray(value)
    return _digest("array", arr.dtype.str, arr.shape, arr.tobytes())


@dataclass(frozen=True, eq=False)
class Item:
    """One gallery image: ``reference`` is a file path (str) or an in-memory picture, or None for
    entry ``index`` of ``dataset``; ``name`` is what a result shows."""

    reference: Any
    name: str
    label: Any = None
    dataset: Any = None
    index: int | None = None

    def load(self):
        if self.dataset is not None:
            return _dataset_entry(self.dataset, self.index)[0]
        return self.reference

    def rgb(self) -> np.ndarray:
        return to_rgb_uint8(self.load(), name=f"gallery item {self.name!r}")

    def fingerprint(self) -> str:
        """Changes when the picture does: a file's path, size and modification time; a picture's bytes."""
        ref = self.reference if self.dataset is None else self.load()
        if isinstance(ref, (str, os.PathLike)):  # a dataset entry may be a path too: its file decides
            ref = os.fspath(ref)
            try:
                st = os.stat(ref)
            except OSError as error:
                raise InputError(f"gallery item {self.name!r}: cannot read {ref!r} ({error.strerror})") from None
            return _digest("file", os.path.abspath(ref), st.st_size, st.st_mtime_ns)
        return _array_fingerprint(ref)  # already loaded: a dataset entry is read once here


def _dataset_entry(dataset, index: int):
    entry = dataset[index]
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return entry[0], entry[1]
    return entry, None


def _is_dataset(images) -> bool:
    return hasattr(images, "__getitem__") and hasattr(images, "__len__") and \
        not isinstance(images, (str, bytes, list, tuple, np.ndarray, torch.Tensor, os.PathLike))


def _folder_items(folder: Path) -> list[Item]:
    if not folder.is_dir():
        raise InputError(f"images {str(folder)!r} is not a folder; expected a folder of images, a list or a dataset")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"images folder {str(folder)!r} holds no image file (looked for {', '.join(IMAGE_SUFFIXES)})")
    return [Item(str(p), str(p.relative_to(folder))) for p in paths]


def _name_of(image, k: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).name
    return f"image {k}"


def collect_items(images, names=None, labels=None) -> list[Item]:
    """Items from a folder path, a list of images (paths, arrays, PIL images, tensors) or a dataset
    (``__len__`` and ``__getitem__`` giving an image or an (image, label) pair)."""
    if isinstance(images, (str, os.PathLike)):
        items = _folder_items(Path(images))
    elif isinstance(images, (list, tuple)):
        if not images:
            raise InputError("images is an empty list; expected at least one image")
        items = [Item(os.fspath(im) if isinstance(im, os.PathLike) else im, _name_of(im, k))
                 for k, im in enumerate(images)]
    elif _is_dataset(images):
        if len(images) == 0:
            raise InputError("images is an empty dataset; expected at least one image")
        items = []
        for k in range(len(images)):
            _, label = _dataset_entry(images, k)
            items.append(Item(None, f"item {k}", label, images, k))
    else:
        raise InputTypeError(f"images is a {type(images).__name__}; expected a folder path, a list of images "
                             "or a dataset (__len__ and __getitem__)")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(items):
            raise InputError(f"names has {len(names)} entries; expected one per image ({len(items)})")
        items = [replace(it, name=n) for it, n in zip(items, names)]
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(items):
            raise InputError(f"labels has {len(labels)} entries; expected one per image ({len(items)})")
        items = [replace(it, label=lab) for it, lab in zip(items, labels)]
    return items

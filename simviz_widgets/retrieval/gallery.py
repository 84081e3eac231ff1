"""``Gallery``: embeddings of a folder, a list of images or a dataset, stored once, searched by a
whole query image or by any region of it (docs/retrieval.md).

>>> import simviz_widgets as sv
>>> from simviz_widgets.datasets import random_scenes
>>> from simviz_widgets.retrieval import Gallery
>>> model = sv.load_model("tiny_test")
>>> scenes = [s.image for s in random_scenes(6, seed=1)]
>>> gallery = Gallery.build(model, scenes, show_progress=False)
>>> result = gallery.search(scenes[2], k=3)
>>> int(result.indices[0]), bool(abs(result.scores[0] - 1.0) < 1e-5)
(2, True)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..adapters import SimilarityModel
from ..checks import InputError, check_bool, check_instance, check_int, check_path
from ..explain.base import PairExplanation, explain
from ..images import PreparedImage
from . import cache as cache_files
from .index import NumpyIndex, make_index
from .query import QueryDecomposition, SearchResults
from .sources import Item, collect_items

__all__ = ["Gallery"]


class Gallery:
    """A gallery: ``embeddings`` (N, D) float32 (memory-mapped when large), ``items`` (their image
    references), ``names``, ``labels``; built with :meth:`build` or :meth:`from_embeddings`."""

    def __init__(self, model: SimilarityModel, embeddings: np.ndarray, items: list[Item], *,
                 backend: str = "numpy", cache_info: dict | None = None, **backend_options):
        self.model = model
        self.embeddings = embeddings
        self._items = items
        self._names = [it.name for it in items]  # read per search hit: built once
        self.cache_info = cache_info or {}
        self.exact_index = NumpyIndex(embeddings, model.metric)
        self.use_backend(backend, **backend_options)
        self._prepared = lru_cache(maxsize=64)(self._prepare)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, model: SimilarityModel, images, *, names=None, labels=None, batch_size: int | None = None,
              cache=None, show_progress: bool = True, backend: str = "numpy", **backend_options) -> "Gallery":
        """Embed ``images`` (a folder, a list of images, or a dataset giving images or (image, label))
        in batches (``batch_size``; default 4 on a CPU, 32 on an accelerator). ``cache``: None or
        False (nothing written), True (``$SIMVIZ_CACHE/galleries`` or ~/.cache/simviz_widgets/galleries) or
        a folder; a cached gallery of the same model, weights and
        items is read back, changed items are embedded again (``gallery.cache_info`` says what
        happened). ``backend``: 'numpy' (exact), 'faiss-flat' (exact) or 'faiss-ivf' (approximate;
        ``nlist=``, ``nprobe=``, ``pq=``)."""
        check_instance(model, "model", SimilarityModel)
        # On a CPU small batches are fastest (EfficientNet-Lite0 on 2 cores: 12.7 ms per image at 4,
        # 28 ms at 32; benchmarks/README.md, "Retrieval"); accelerators want large ones.
        batch_size = (4 if model.device.type == "cpu" else 32) if batch_size is None else \
            check_int(batch_size, "batch_size", minimum=1)
        show_progress = check_bool(show_progress, "show_progress")
        items = collect_items(images, names, labels)
        dim = int(model.embed(items[0].load()).shape[1])
        if cache is None or cache is False:
            rows = np.empty((len(items), dim), dtype=np.float32)
            _embed_into(model, items, range(len(items)), rows, batch_size, show_progress)
            return cls(model, rows, items, backend=backend, cache_info={"path": None}, **backend_options)
        folder = cache_files.default_cache_dir() if cache is True else check_path(cache, "cache")
        fingerprints = [it.fingerprint() for it in items]
        references = [it.reference if isinstance(it.reference, str) else it.name for it in items]
        stem = cache_files.cache_stem(model, references)
        weights = cache_files.weights_fingerprint(model)
        old, record = cache_files.read_cache(folder, stem, weights, dim)
        reuse = {} if old is None else {fp: k for k, fp in enumerate(record["fingerprints"])}
        todo = [k for k, fp in enumerate(fingerprints) if fp not in reuse]
        where = {"path": str(folder / f"{stem}.json")}
        if old is not None and not todo and record["fingerprints"] == fingerprints:
            info = dict(where, rows=str(folder / record["rows"]), reused=len(items), embedded=0, reason="up to date")
            return cls(model, cache_files.load_rows(folder / record["rows"]), items, backend=backend,
                       cache_info=info, **backend_options)
        rows, part = cache_files.open_rows(folder, stem, len(items), dim)
        kept = [k for k, fp in enumerate(fingerprints) if fp in reuse]
        for start in range(0, len(kept), 65536):  # in blocks: a gallery beyond memory stays so
            block = kept[start:start + 65536]
            rows[block] = old[[reuse[fingerprints[k]] for k in block]]
        del old
        _embed_into(model, items, todo, rows, batch_size, show_progress)
        reason = record.get("reason") or f"{len(todo)} of {len(items)} items new or changed"
        rows, path = cache_files.commit_cache(folder, stem, rows, part, {
            "weights": weights, "fingerprints": fingerprints, "names": [it.name for it in items],
            "references": references, "model": cache_files.model_identity(model)})
        info = dict(where, rows=str(path), reused=len(items) - len(todo), embedded=len(todo), reason=reason)
        return cls(model, rows, items, backend=backend, cache_info=info, **backend_options)

    @classmethod
    def from_embeddings(cls, model: SimilarityModel, embeddings, items, *, names=None, labels=None,
                        backend: str = "numpy", **backend_options) -> "Gallery":
        """A gallery of embeddings computed elsewhere (by ``model``: they must be its embeddings for
        region queries and explanations to mean anything). ``items``: the images (folder, list or
        dataset, as :meth:`build`), one per row."""
        check_instance(model, "model", SimilarityModel)
        if isinstance(embeddings, torch.Tensor):
            embeddings = embeddings.detach().cpu().numpy()
        if not isinstance(embeddings, np.ndarray) or embeddings.ndim != 2:
            shape = getattr(embeddings, "shape", None)
            raise InputError(f"embeddings has shape {shape}; expected an (N, D) array")
        if not np.issubdtype(embeddings.dtype, np.floating) or not np.isfinite(embeddings).all():
            raise InputError(f"embeddings ({embeddings.dtype}) must be finite floating-point numbers")
        items = collect_items(items, names, labels)
        if len(items) != embeddings.shape[0]:
            raise InputError(f"embeddings has {embeddings.shape[0]} rows and items {len(items)} entries; "
                             "expected one row per item")
        dim = int(model.embed(items[0].load()).shape[1])
        if embeddings.shape[1] != dim:
            raise InputError(f"embeddings have {embeddings.shape[1]} dimensions; model {model.name!r} embeds "
                             f"in {dim}")
        # A float32 copy: the user's array is never modified, and a memory map is kept as it is.
        rows = embeddings if isinstance(embeddings, np.memmap) and embeddings.dtype == np.float32 \
            else np.array(embeddings, dtype=np.float32)
        return cls(model, rows, items, backend=backend, cache_info={"path": None}, **backend_options)

    def use_backend(self, backend: str = "numpy", **options) -> None:
        """Search with 'numpy' (exact), 'faiss-flat' (exact) or 'faiss-ivf' (approximate); scores
        of the full ranking (:meth:`QueryDecomposition.ranking`) stay exact."""
        self.index = self.exact_index if backend == "numpy" and not options else \
            make_index(self.embeddings, self.model.metric, backend, **options)

    # -- items -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"Gallery({len(self)} items, {self.embeddings.shape[1]}-d, model={self.model.name!r}, "
                f"metric={self.model.metric!r}, backend={self.index.name!r})")

    @property
    def items(self) -> list:
        """The image references: file paths, in-memory pictures, or (dataset, index)."""
        return [it.reference if it.dataset is None else (it.dataset, it.index) for it in self._items]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def names_of(self, indices) -> list[str]:
        """Names of the items at ``indices`` (no copy of the whole list)."""
        return [self._names[int(i)] for i in indices]

    @property
    def labels(self) -> list | None:
        labels = [it.label for it in self._items]
        return None if all(lab is None for lab in labels) else labels

    def _index(self, index) -> int:
        if isinstance(index, np.integer):
            index = int(index)
        return check_int(index, "gallery index", minimum=0, maximum=len(self) - 1)

    def _prepare(self, index: int) -> PreparedImage:
        item = self._items[index]
        return self.model.prepare(item.load(), name=f"gallery item {item.name!r}")

    def prepared(self, index: int) -> PreparedImage:
        """Item ``index`` as the model sees it (cached for the last 64 items)."""
        return self._prepared(self._index(index))

    def image(self, index: int) -> np.ndarray:
        """Item ``index`` as given: (H, W, 3) uint8 RGB."""
        return self._items[self._index(index)].rgb()

    def thumbnail(self, index: int, size: int = 96) -> np.ndarray:
        """(size, size, 3) uint8: the model's view of item ``index``, resized."""
        size = check_int(size, "size", minimum=8)
        display = self.prepared(index).display
        return np.asarray(Image.fromarray(display).resize((size, size), Image.Resampling.BILINEAR))

    # -- search ------------------------------------------------------------------------------
    def query(self, image) -> QueryDecomposition:
        """Decompose ``image`` once (one forward pass) for any number of region searches."""
        if isinstance(image, QueryDecomposition):
            if image.gallery is not self:
                raise InputError("query was decomposed for another gallery; pass the image instead")
            return image
        return QueryDecomposition(self, self.model.prepare(image, name="query"))

    def search(self, query, *, region=None, k: int = 10, exclude=(), coords: str = "display") -> SearchResults:
        """Top ``k`` items for ``query`` (an image or :meth:`query`'s result) or one ``region`` of it:
        a (top, left, bottom, right) box or a bool mask in the query's display pixels (``coords=
        'source'``: pixels of the image as given). Scores: docs/retrieval.md, "Scores"."""
        return self.query(query).search(region, k=k, exclude=exclude, coords=coords)

    def explain(self, query, index: int, *, method: str = "decomposition", **options) -> PairExplanation:
        """The explanation of the pair (query, item ``index``) with ``method``."""
        q = self.query(query) if not isinstance(query, QueryDecomposition) else query
        return explain(self.model, q.prepared, self.prepared(index), method=method, **options)

    def similarity_matrix(self) -> np.ndarray:
        """(N, N) float64 scores of every pair with the model's metric (symmetric)."""
        g = np.asarray(self.embeddings, dtype=np.float64)
        if self.model.metric == "cosine":
            norms = np.linalg.norm(g, axis=1)
            g = g * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 1e-12)[:, None]
            return np.clip(g @ g.T, -1.0, 1.0)
        gram = g @ g.T
        if self.model.metric == "dot":
            return gram
        sq = np.diag(gram)
        return np.minimum(2 * gram - sq[:, None] - sq[None, :], 0.0)


def _embed_into(model: SimilarityModel, items: list[Item], todo, rows: np.ndarray, batch_size: int,
                show_progress: bool) -> None:
    """Embed items ``todo`` into ``rows`` in batches (one forward pass per batch of equal sizes)."""
    todo = list(todo)
    with tqdm(total=len(todo), desc="embedding gallery", unit="image", disable=not show_progress or not todo) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            prepared = [model.prepare(items[k].load(), name=f"gallery item {items[k].name!r}") for k in chunk]
            with torch.no_grad():
                shapes = {p.tensor.shape for p in prepared}
                if len(shapes) == 1:
                    g = model.embed_tensor(torch.cat([p.tensor for p in prepared]))
                else:
                    g = torch.cat([model.embed_tensor(p.tensor) for p in prepared])
            rows[chunk] = g.float().cpu().numpy()
            bar.update(len(chunk))

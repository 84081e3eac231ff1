"""Retrieval speed: region re-rank of a 100,000 x 1280 gallery against faiss and against crop-and-embed,
the gallery's memory, and the time to embed a 1,000-image gallery.

Run: .venv/bin/python benchmarks/bench_retrieval.py [--size 100000] [--queries 200] [--cold 20] [--embed 1000]

Default model (EfficientNet-Lite0, 224 px, 7 x 7 x 1280, cosine). The gallery holds random float32
embeddings (speed does not depend on their values) plus the query photo's own embedding at index
size // 2, so the whole-image search has a known answer; its items are one real PNG path repeated
(item references are read only when shown). One query photo (chelsea) is decomposed once; every
region query is a random box of its 224 x 224 display. All ways of answering a box run interleaved
box by box in one process, so machine load hits them alike; faiss indexes are built once with
``gallery.use_backend`` and swapped in per call. Target: region query p95 <= 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time

import numpy as np
import torch
from machine import describe
from PIL import Image

import simviz_widgets as sv
from simviz_widgets.datasets import load_photo, random_scenes
from simviz_widgets.retrieval import Gallery
from simviz_widgets.retrieval.index import top_k

MB = 1024 * 1024


def rss_mb() -> float:
    """Current resident memory (MiB), from /proc/self/status."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(times, q) -> float:
    return float(np.percentile(np.asarray(times) * 1e3, q))


def random_boxes(rng, size, count, smallest=32, largest=160):
    """``count`` (top, left, bottom, right) boxes inside a ``size`` display, sides in [smallest, largest]."""
    rows, cols = size
    boxes = []
    for _ in range(count):
        h, w = rng.integers(smallest, min(largest, rows) + 1), rng.integers(smallest, min(largest, cols) + 1)
        top, left = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
        boxes.append((int(top), int(left), int(top + h), int(left + w)))
    return boxes


def interleaved(methods: dict, inputs, warmup: int = 2) -> tuple[dict, dict]:
    """Run every method on every input, rotating the order per input; (times, outputs) per method."""
    names = list(methods)
    for x in inputs[:warmup]:
        for name in names:
            methods[name](x)
    times = {n: [] for n in names}
    outs = {n: [] for n in names}
    for j, x in enumerate(inputs):
        for name in names[j % len(names):] + names[:j % len(names)]:
            start = time.perf_counter()
            out = methods[name](x)
            times[name].append(time.perf_counter() - start)
            outs[name].append(out)
    return times, outs


def faiss_bytes(index) -> int:
    """Bytes a faiss index holds: the stored vectors (flat) or the inverted lists' codes and ids plus
    the coarse centroids (IVF)."""
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.code_size
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    stored = sum(lists.list_size(i) for i in range(lists.nlist))
    return stored * (ivf.code_size + 8) + ivf.quantizer.ntotal * ivf.d * 4  # flat float32 centroids


def build_gallery(model, photo, size, seed, log):
    """The random gallery (the photo's own embedding planted at size // 2) from file-path items."""
    folder = tempfile.mkdtemp(prefix="bench_retrieval_")
    path = os.path.join(folder, "chelsea.png")
    Image.fromarray(photo).save(path)
    dim = int(model.embed(photo).shape[1])
    emb = np.random.default_rng(seed).standard_normal((size, dim), dtype=np.float32)
    planted = size // 2
    emb[planted] = model.embed(photo)[0].numpy()
    names = [f"random {i}" for i in range(size)]
    names[planted] = "chelsea"
    rss0 = rss_mb()
    start = time.perf_counter()
    gallery = Gallery.from_embeddings(model, emb, [path] * size, names=names)
    log["from_embeddings s"] = time.perf_counter() - start
    log["rss after from_embeddings (MiB)"] = rss_mb()
    log["peak rss during from_embeddings (MiB)"] = peak_rss_mb()
    log["rss before gallery (MiB)"] = rss0
    del emb  # the gallery keeps its own float32 copy
    gc.collect()
    return gallery, planted


def build_backends(gallery, log) -> dict:
    """The three backends' index objects, built once (``use_backend``) and kept to swap per call."""
    indexes = {"numpy": gallery.exact_index}
    for name in ("faiss-flat", "faiss-ivf"):
        before = rss_mb()
        start = time.perf_counter()
        gallery.use_backend(name)
        log[f"{name} build s"] = time.perf_counter() - start
        log[f"{name} rss delta (MiB)"] = rss_mb() - before
        indexes[name] = gallery.index
    gallery.use_backend("numpy")
    return indexes


def region_queries(gallery, q, indexes, boxes):
    """Warm region queries: each backend through ``q.search``, the backend alone, and the exact scores
    and full ranking, box by box."""
    vectors = {}

    def through(name):
        def run(box):
            gallery.index = indexes[name]
            return q.search(region=box, k=10).indices
        return run

    def backend_only(name):
        def run(box):
            return indexes[name].search(vectors[box], 10)[0]
        return run

    for box in boxes:
        vectors[box] = q._vector(q.weights(box))[0]
    methods = {f"q.search, {n}": through(n) for n in indexes}
    methods.update({f"backend top-10 only, {n}": backend_only(n) for n in indexes})
    methods["q.scores (all N, exact)"] = lambda box: top_k(q.scores(region=box), 10)
    methods["q.ranking (all N sorted, exact)"] = lambda box: q.ranking(region=box)[:10]
    times, outs = interleaved(methods, boxes)
    gallery.index = indexes["numpy"]
    return times, outs, vectors


def memory_mapped(model, gallery, photo, boxes) -> list[float]:
    """``q.search`` over the same embeddings saved as .npy and memory-mapped (what a cached gallery over
    256 MiB is): the file is in the page cache after the first query, as in a working session."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp()
    try:
        np.save(f"{folder}/rows.npy", np.asarray(gallery.embeddings))
        mapped = np.load(f"{folder}/rows.npy", mmap_mode="r")
        other = Gallery.from_embeddings(model, mapped, [gallery.items[0]] * len(gallery))
        q = other.query(photo)
        q.search(region=boxes[0], k=10)  # warm the page cache
        times = []
        for box in boxes:
            start = time.perf_counter()
            q.search(region=box, k=10)
            times.append(time.perf_counter() - start)  # seconds, as interleaved() records
        return times
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cold_and_crop(gallery, model, photo, q, boxes):
    """Per box: the cold region query (decomposes the photo first), crop-and-embed through the API
    (``gallery.search(crop)``, which decomposes the crop) and its lower bound (one forward pass of the
    crop, then the numpy top-10)."""
    exact = gallery.exact_index

    def crop_embed_min(box):
        g = model.embed(q.crop(box))[0].double().numpy()
        return exact.search(g / np.linalg.norm(g), 10)[0]  # cosine: the rows are unit vectors

    methods = {
        "cold: gallery.search(photo, region=box)": lambda box: gallery.search(photo, region=box, k=10).indices,
        "crop-and-embed: gallery.search(q.crop(box))": lambda box: gallery.search(q.crop(box), k=10).indices,
        "crop-and-embed: model.embed(crop) + numpy top-10": crop_embed_min,
    }
    return interleaved(methods, boxes, warmup=1)[0]


def thread_counts(indexes, vectors):
    """One faiss query with 1 vs 2 OpenMP threads (the index itself uses 1), and numpy's product with
    1 vs 2 BLAS threads, interleaved over the same vectors."""
    import faiss

    vecs = [np.ascontiguousarray(v[None], dtype=np.float32) for v in vectors]
    saved = faiss.omp_get_max_threads()

    def faiss_with(name, threads):
        def run(v):
            faiss.omp_set_num_threads(threads)
            return indexes[name].index.search(v, 10)[1]
        return run

    methods = {f"{n}, {t} thread{'s' * (t > 1)}": faiss_with(n, t) for n in ("faiss-flat", "faiss-ivf") for t in (1, 2)}
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: only this comparison needs it
        ThreadpoolController = None
    if ThreadpoolController is not None:
        # the product the numpy index computes: the embeddings themselves (norms applied after)
        rows, controller = np.asarray(indexes["numpy"]._embeddings), ThreadpoolController()

        def numpy_with(threads):
            def run(v):
                with controller.limit(limits=threads, user_api="blas"):
                    return top_k(rows @ v[0], 10)
            return run

        methods.update({f"numpy, {t} BLAS thread{'s' * (t > 1)}": numpy_with(t) for t in (1, 2)})
    trows = torch.from_numpy(np.asarray(indexes["numpy"]._embeddings))  # the same memory, no copy
    methods[f"the numpy rows' product in torch ({torch.get_num_threads()} threads)"] = \
        lambda v: top_k(torch.mv(trows, torch.from_numpy(v[0])).numpy(), 10)
    try:
        return interleaved(methods, vecs)[0]
    finally:
        faiss.omp_set_num_threads(saved)


def forward_after_search(model, photo, rows, vectors, repeats=20):
    """A forward pass alone, right after a numpy search (OpenBLAS's worker threads keep spinning after
    the product and take a core from torch's), and right after the same product in torch (one pool)."""
    trows = torch.from_numpy(rows)
    before = {"forward pass alone": lambda v: None,
              "forward pass right after a numpy product (2 BLAS threads)": lambda v: rows @ v,
              "forward pass right after the same product in torch": lambda v: torch.mv(trows, torch.from_numpy(v))}
    times = {n: [] for n in before}
    model.embed(photo)
    for j in range(repeats):
        v = vectors[j % len(vectors)].astype(np.float32)
        for name in list(before)[j % 3:] + list(before)[:j % 3]:
            before[name](v)
            start = time.perf_counter()
            model.embed(photo)
            times[name].append(time.perf_counter() - start)
    return times


def ivf_recall(indexes, vectors, exact_top, nprobes):
    """IVF recall@10 against the exact top-10 and its latency per nprobe (default first)."""
    ivf = indexes["faiss-ivf"]
    default = ivf.index.nprobe
    rows = []
    try:
        for nprobe in [default] + [p for p in nprobes if p != default]:
            ivf.index.nprobe = nprobe
            times, outs = interleaved({"ivf": lambda v: ivf.search(v, 10)[0]}, vectors)
            recall = np.mean([len(set(o.tolist()) & set(e.tolist())) / 10 for o, e in zip(outs["ivf"], exact_top)])
            rows.append((nprobe, nprobe == default, recall, pct(times["ivf"], 50), pct(times["ivf"], 95)))
    finally:
        ivf.index.nprobe = default
    return rows


def embedding_gallery(model, count, batch_size):
    """Embedding ``count`` synthetic scenes: one ``Gallery.build`` of them all, then per batch of
    ``batch_size``, interleaved: its preparation, its one forward pass, and one ``model.embed`` per
    image (the previous way)."""
    images = [s.image for s in random_scenes(count, size=96, seed=3)]
    Gallery.build(model, images[:batch_size], batch_size=batch_size, show_progress=False)  # warm-up
    start = time.perf_counter()
    gallery = Gallery.build(model, images, batch_size=batch_size, show_progress=False)
    out = {"Gallery.build (all at once)": time.perf_counter() - start}
    prep, fwd, one = "preparation (model.prepare)", "forward passes (one per batch)", "one model.embed per image"
    parts = {prep: 0.0, fwd: 0.0, one: 0.0}
    single = []
    for j, i in enumerate(range(0, count, batch_size)):
        chunk = images[i:i + batch_size]
        batch = []

        def prepare():
            batch[:] = [model.prepare(im) for im in chunk]

        def forward():
            with torch.no_grad():
                model.embed_tensor(torch.cat([p.tensor for p in batch]))

        def one_by_one():
            single.append(torch.cat([model.embed(im) for im in chunk]))

        # a batch's preparation precedes its forward pass; one by one goes first on every other batch
        steps = [(prep, prepare), (fwd, forward), (one, one_by_one)]
        for name, fn in (steps[2:] + steps[:2]) if j % 2 else steps:
            start = time.perf_counter()
            fn()
            parts[name] += time.perf_counter() - start
    out.update(parts)
    out["preparation + forward passes"] = parts[prep] + parts[fwd]
    diff = float(np.abs(gallery.embeddings - torch.cat(single).numpy()).max())
    return out, diff


def batch_sizes(model, count=64, sizes=(1, 2, 4, 8, 16, 32), rounds=3):
    """Forward time per image by batch size on the same ``count`` prepared scenes (median of rounds,
    the sizes interleaved within each round)."""
    x = torch.cat([model.prepare(s.image).tensor for s in random_scenes(count, size=96, seed=4)])
    per_image = {b: [] for b in sizes}
    with torch.no_grad():
        model.embed_tensor(x[:sizes[-1]])  # warm-up
        for r in range(rounds):
            for b in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
                start = time.perf_counter()
                for i in range(0, count, b):
                    model.embed_tensor(x[i:i + b])
                per_image[b].append((time.perf_counter() - start) / count)
    return {b: float(np.median(t)) for b, t in per_image.items()}


def print_table(title, header, rows):
    print(f"\n{title}\n| {' | '.join(header)} |\n|{'---|' * len(header)}")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000, help="gallery items (random embeddings)")
    ap.add_argument("--queries", type=int, default=200, help="warm region queries (random boxes)")
    ap.add_argument("--cold", type=int, default=20, help="cold region / crop-and-embed queries")
    ap.add_argument("--embed", type=int, default=1000, help="images embedded for the build timing")
    ap.add_argument("--batch-size", type=int, default=4, help="Gallery.build batch (its default on a CPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("machine at start:", describe(torch), flush=True)

    model = sv.load_model("efficientnet_lite0")
    photo = load_photo("chelsea")
    log: dict = {}
    gallery, planted = build_gallery(model, photo, args.size, args.seed, log)
    indexes = build_backends(gallery, log)
    start = time.perf_counter()
    q = gallery.query(photo)
    log["query decomposition s"] = time.perf_counter() - start
    whole = q.search(k=1)
    assert whole.indices[0] == planted and abs(whole.scores[0] - 1.0) < 1e-5, "whole-image search lost the photo"

    rng = np.random.default_rng(args.seed + 1)
    boxes = random_boxes(rng, q.size, args.queries)
    times, outs, vectors = region_queries(gallery, q, indexes, boxes)
    cold = cold_and_crop(gallery, model, photo, q, boxes[:args.cold])
    exact_top = outs["q.search, numpy"]
    same_flat = sum(np.array_equal(a, b) for a, b in zip(exact_top, outs["q.search, faiss-flat"]))
    threads = thread_counts(indexes, [vectors[b] for b in boxes[:100]])
    after = forward_after_search(model, photo, np.asarray(gallery.embeddings), [vectors[b] for b in boxes])
    times["q.search, numpy, memory-mapped gallery"] = memory_mapped(model, gallery, photo, boxes)
    recall = ivf_recall(indexes, [vectors[b] for b in boxes], exact_top, (64, 256))
    memory = {
        "gallery.embeddings (float32)": gallery.embeddings.nbytes,
        "numpy index (per-row norms, float64)": indexes["numpy"]._sq.nbytes + indexes["numpy"]._inverse_norm.nbytes,
        "faiss-flat index": faiss_bytes(indexes["faiss-flat"].index),
        "faiss-ivf index (IVF lists + centroids)": faiss_bytes(indexes["faiss-ivf"].index),
    }
    embed_times, embed_diff = embedding_gallery(model, args.embed, args.batch_size)
    per_batch = batch_sizes(model)

    n, dim = gallery.embeddings.shape
    print(f"\ngallery: {n:,} x {dim} random float32 (+ the photo at {planted}); from_embeddings "
          f"{log['from_embeddings s']:.1f} s; faiss-flat built in {log['faiss-flat build s']:.1f} s, faiss-ivf "
          f"(nlist {indexes['faiss-ivf'].index.nlist}, nprobe {indexes['faiss-ivf'].index.nprobe}) in "
          f"{log['faiss-ivf build s']:.1f} s; query decomposition {log['query decomposition s'] * 1e3:.0f} ms")
    base = pct(times["q.search, numpy"], 50)
    rows = [(name, f"{pct(t, 50):.2f}", f"{pct(t, 95):.2f}", f"{pct(t, 50) / base:.2f}") for name, t in times.items()]
    rows += [(name, f"{pct(t, 50):.1f}", f"{pct(t, 95):.1f}", f"{pct(t, 50) / base:.2f}") for name, t in cold.items()]
    print_table(f"Region query, k = 10 ({args.queries} warm boxes, {args.cold} cold)",
                ["", "p50 ms", "p95 ms", "× q.search numpy (p50)"], rows)
    print(f"faiss-flat top-10 == numpy top-10 (same indices, same order): {same_flat} / {len(boxes)} boxes")
    print_table("IVF recall@10 against the exact top-10 (through the backend)",
                ["nprobe", "recall@10", "p50 ms", "p95 ms"],
                [(f"{p}{' (default)' if d else ''}", f"{r:.3f}", f"{a:.2f}", f"{b:.2f}") for p, d, r, a, b in recall])
    print_table(f"One query's threads (the raw search, {min(len(boxes), 100)} boxes)", ["", "p50 ms", "p95 ms"],
                [(name, f"{pct(t, 50):.2f}", f"{pct(t, 95):.2f}") for name, t in threads.items()])
    print_table("Forward pass (model.embed of the photo) after a search", ["", "p50 ms", "p95 ms"],
                [(name, f"{pct(t, 50):.1f}", f"{pct(t, 95):.1f}") for name, t in after.items()])
    print_table("Memory", ["", "MiB"], [(name, f"{b / MB:.0f}") for name, b in memory.items()] + [
        ("RSS delta building faiss-flat / faiss-ivf",
         f"{log['faiss-flat rss delta (MiB)']:.0f} / {log['faiss-ivf rss delta (MiB)']:.0f}"),
        ("RSS before the gallery (model loaded)", f"{log['rss before gallery (MiB)']:.0f}"),
        ("peak RSS during from_embeddings", f"{log['peak rss during from_embeddings (MiB)']:.0f}"),
        ("peak RSS of the process (getrusage)", f"{peak_rss_mb():.0f}")])
    single, build = embed_times["one model.embed per image"], "Gallery.build (all at once)"
    print_table(f"Embedding a {args.embed:,}-image gallery (random_scenes, 96 px -> 224 px; batch {args.batch_size})",
                ["", "s", "images/s", "× one by one"],
                [(name, f"{t:.2f}", f"{args.embed / t:.0f}", f"{single / t:.2f}") for name, t in embed_times.items()])
    print(f"max |build - one by one| embedding difference: {embed_diff:.1e}")
    print_table("Forward pass per image by batch size (64 prepared scenes, median of 3)",
                ["batch size", "ms / image", "images/s"],
                [(str(b), f"{t * 1e3:.1f}", f"{1 / t:.0f}") for b, t in per_batch.items()])
    p95 = {name: pct(times[f"q.search, {name}"], 95) for name in indexes}
    print(f"\nsummary: region query p95 {p95['numpy']:.1f} ms numpy / {p95['faiss-flat']:.1f} faiss-flat / "
          f"{p95['faiss-ivf']:.1f} faiss-ivf (target <= 50: {'OK' if p95['numpy'] <= 50 else 'MISSED'} with numpy); "
          f"cold {pct(cold['cold: gallery.search(photo, region=box)'], 50):.0f} ms, crop-and-embed "
          f"{pct(cold['crop-and-embed: gallery.search(q.crop(box))'], 50):.0f} ms (p50); gallery "
          f"{(memory['gallery.embeddings (float32)'] + memory['numpy index (per-row norms, float64)']) / MB:.0f} MiB "
          f"with its numpy index; {args.embed:,} images embedded in {embed_times[build]:.1f} s by Gallery.build "
          f"(batch {args.batch_size}), {single:.1f} s one model.embed at a time")
    print("machine at end:", describe(torch))


if __name__ == "__main__":
    main()

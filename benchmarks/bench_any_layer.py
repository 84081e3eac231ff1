"""Any-layer decomposition: backward mode (one vector-Jacobian product per embedding dimension, the
former path) vs forward mode (one Jacobian-vector product per position, the default), side by side.

Run: .venv/bin/python benchmarks/bench_any_layer.py [--repeats 3] [--old-repeats 1] [--layers blocks.4 blocks.2]

Default model (EfficientNet-Lite0, 224 px, D = 1280) on a bundled photo and its mirror, at blocks.4
(14 x 14) and blocks.2 (28 x 28). Per layer the two modes run interleaved in one process, so machine
load affects them alike (the slow backward path fewer times by default). Reported per pair (both
images): median wall-clock seconds (and CPU seconds of this process, less sensitive to other jobs), the
speed-up, the largest absolute and relative (to max |E|) difference between the two modes'
contribution vectors E, and the residual |g - sum_i e_i| / |g| of each image; plus a whole
``explain()`` with the new default. Targets: 14 x 14 pair <= 2 s, 28 x 28 pair <= 5 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

import torch
from machine import describe

import simviz_widgets as sv
from simviz_widgets.datasets import load_photo
from simviz_widgets.explain.decomposition import _backward_contributions, _gradient_contributions


def machine() -> str:
    return describe(torch)


def pair_contributions(fn, model, tensors):
    start, cpu = time.perf_counter(), time.process_time()
    out = [fn(model, x) for x in tensors]
    return time.perf_counter() - start, time.process_time() - cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed forward runs per layer (median reported)")
    ap.add_argument("--old-repeats", type=int, default=1,
                    help="timed backward runs per layer (the former path: minutes per pair at 28 x 28 on 2 cores)")
    ap.add_argument("--layers", nargs="+", default=["blocks.4", "blocks.2"])
    ap.add_argument("--photo", default="chelsea")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    print("machine at start:", machine(), flush=True)
    base = sv.load_model("efficientnet_lite0")
    photo = load_photo(args.photo)
    images = [photo, photo[:, ::-1].copy()]  # the photo and its mirror

    def forward(model, x):
        return _gradient_contributions(model, x, bias=True, show_progress=False)

    def backward(model, x):
        return _backward_contributions(model, x, bias=True)

    rows = []
    for layer in args.layers:
        model = base.at_layer(layer)
        tensors = [model.prepare(im).tensor for im in images]
        grid = model.decompose_features(tensors[0]).shape[-2:]
        forward(model, tensors[0])  # warm-up (allocator, oneDNN kernels)
        times = {"backward": [], "forward": [], "backward cpu": [], "forward cpu": [], "explain": []}
        outputs = {}
        for rep in range(max(args.repeats, args.old_repeats)):
            modes = [("backward", backward)] if rep < args.old_repeats else []
            modes += [("forward", forward)] if rep < args.repeats else []
            for name, fn in modes:
                seconds, cpu, outputs[name] = pair_contributions(fn, model, tensors)
                times[name].append(seconds)
                times[name + " cpu"].append(cpu)
                print(f"  {layer} {name}: {seconds:.2f} s (CPU {cpu:.2f} s)", flush=True)
            start = time.perf_counter()
            with warnings.catch_warnings():  # the first-order warning: the residual is in the table
                warnings.simplefilter("ignore", UserWarning)
                sv.explain(model, images[0], images[1], show_progress=False)
            times["explain"].append(time.perf_counter() - start)
        assert all(o["mode"] == "forward" for o in outputs["forward"]), "forward mode fell back"
        engine = outputs["forward"][0]["engine"]
        nan = float("nan")  # --old-repeats 0: forward only
        pairs = zip(outputs["forward"], outputs.get("backward", []))
        diff = max((float((f["E"] - b["E"]).abs().max()) for f, b in pairs), default=nan)
        scale = max((float(b["E"].abs().max()) for b in outputs.get("backward", [])), default=nan)
        old = statistics.median(times["backward"]) if times["backward"] else nan
        new = statistics.median(times["forward"])
        rows.append({
            "layer": layer, "engine": engine, "grid": f"{grid[0]}x{grid[1]}", "old": old, "new": new,
            "old_cpu": statistics.median(times["backward cpu"]) if times["backward"] else nan,
            "new_cpu": statistics.median(times["forward cpu"]), "speedup": old / new,
            "explain": statistics.median(times["explain"]), "abs": diff, "rel": diff / scale,
            "residual": " / ".join(f"{o['residual_ratio']:.3f}" for o in outputs["forward"]),
        })

    print()
    print(f"efficientnet_lite0, {args.photo} and its mirror; medians of {args.old_repeats} backward and "
          f"{args.repeats} forward runs, interleaved")
    print("machine at end:", machine())
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print()
    print("| layer | grid | backward s/pair (CPU s) | forward s/pair (CPU s) | speed-up | explain() s/pair "
          "| max abs diff E | max rel diff E | residual ratio (photo / mirror) | forward engine |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['grid']} | {r['old']:.2f} ({r['old_cpu']:.2f}) "
              f"| {r['new']:.2f} ({r['new_cpu']:.2f}) | {r['speedup']:.1f}x "
              f"| {r['explain']:.2f} | {r['abs']:.2g} | {r['rel']:.2g} | {r['residual']} | {r['engine']} |")


if __name__ == "__main__":
    main()

"""Runtime of every explanation method on the default model for one pair, RISE and sliding window
eager vs accelerated (ONNX Runtime), and RISE batched vs a per-mask loop on the same masks.

Run: .venv/bin/python benchmarks/bench_methods.py [--threads 2] [--masks 2000] [--loop-masks 200]
     [--batch-size 16] [--sweep] [--forward] [--compile] [--repeats 1] [--onnx-cache DIR]

* Every method runs once on ``default_pair()`` (chelsea and its mirror) with the default model
  (EfficientNet-Lite0, 224 px, 7 x 7 x 1280 features) and its default options, after one warm-up
  forward pass. RISE uses ``--masks`` masks (default 2000, the method's default).
* RISE batched vs loop: the batched runs are the 2000-mask RISE runs below (default = accelerated,
  and eager). The per-mask loop is the straightforward implementation (one mask, one NCHW eager
  forward pass, one accumulation at a time) on the first ``--loop-masks`` of the same masks (they
  are prefix-stable); its time is scaled to the full count (said so in the output).
* ``--sweep``: time ``--loop-masks`` masks at several batch sizes, with and without channels-last
  input, to choose the default batch size (eager forward passes).
* Accelerator (always): the cost of preparing the ONNX Runtime embedder (cold: export + session +
  verification, in ``--onnx-cache``, by default a fresh temporary directory; from the disk cache; from
  memory), then RISE (``--masks``) and sliding window with ``accelerator='eager'`` and the default
  ``'auto'`` (ONNX Runtime) side by side, ``--repeats`` times alternately, with the max |map
  difference|. Target: RISE 2000 masks <= 10 s on 2 cores, maps equal within 1e-4.
* ``--forward``: time per forward pass (ms per image) of the default model's embedding on 224 x 224
  RISE-masked images: eager (no_grad / inference_mode, NCHW / channels-last input / channels-last
  weights, 1 or 2 threads, batch 1 / 8 / 32) and ONNX Runtime (static exports at batch 1, 4, 8, 16,
  32, a dynamic-batch export, 1 or 2 intra-op threads, spinning on / off, and the adopted
  ``OnnxEmbedder``: single-threaded calls, as many images at a time as threads), interleaved over
  ``--rounds`` rounds of ``--seconds`` each: median and min, ratio to eager, max |difference| to
  eager.
* ``--compile``: ``torch.compile`` (inductor) of the embedding, in two fresh processes sharing one
  ``TORCHINDUCTOR_CACHE_DIR`` (cold, then warm cache): compile time, ms per image, max |difference|.
"""

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import simviz_widgets as sv
from simviz_widgets.adapters import accelerate
from simviz_widgets.datasets import default_pair
from simviz_widgets.explain import get_method, perturbation
from simviz_widgets.explain.perturbation import RiseMasks

METHODS = ["decomposition", "similarity_map", "gradcam", "rgradcam", "similarity_attention", "sfam",
           "sliding_window", "rise"]


def run(model, q, r, method, **options):
    explainer = get_method(method)(**options)
    start = time.perf_counter()
    exp = explainer(model, q, r)
    return time.perf_counter() - start, exp


def per_mask_loop(model, q, r, count):
    """The straightforward implementation: one mask, one forward pass (NCHW), one accumulation at a
    time, on the same masks as the method (RiseMasks with the method's defaults; prefix-stable)."""
    rise = get_method("rise")()
    masks = rise.masks_for(q.tensor.shape[-2:])
    start = time.perf_counter()
    with torch.no_grad():
        gr = model.embed_tensor(r.tensor)
        num = torch.zeros(masks.size, dtype=torch.float64)
        den = torch.zeros(masks.size, dtype=torch.float64)
        scores = []
        for k in range(count):
            m = masks.batch(k, k + 1)
            s = float(torch.cosine_similarity(model.embed_tensor(q.tensor * m), gr, dim=-1, eps=1e-12)[0])
            num += s * m[0, 0].double()
            den += m[0, 0].double()
            scores.append(s)
        _ = num / den
    return time.perf_counter() - start, np.asarray(scores)


def _load():
    return f"load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""


# ------------------------------------------------------------------------------------------
# Per forward pass


def _ort_session(path, threads, spin=True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_runner(session, per_call):
    name = session.get_inputs()[0].name

    def run(batch):
        a = np.ascontiguousarray(batch.numpy())
        return np.concatenate([session.run(None, {name: a[k : k + per_call]})[0]
                               for k in range(0, a.shape[0], per_call)])

    return run


def forward_table(model, q, args, cache: Path):
    """ms per image of each way to run the embedding, interleaved over rounds."""
    size = tuple(q.tensor.shape[-2:])
    images = (q.tensor * RiseMasks(32, size, seed=0).batch(0, 32)).contiguous()
    with torch.no_grad():
        reference = model.embed_tensor(images).numpy()
    fast = model.copy(channels_last=True)
    threads = torch.get_num_threads()

    def eager(m, *, channels_last, inference=True):
        def run(batch):
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode() if inference else torch.no_grad():
                return m.embed_tensor(batch).numpy()
        return run

    configs = [  # (label, batch, function, torch threads)
        ("eager NCHW, no_grad, b8 (baseline)", 8, eager(model, channels_last=False, inference=False), threads),
        ("eager NCHW, inference_mode, b8", 8, eager(model, channels_last=False), threads),
        ("eager channels-last input, b8 (RISE eager)", 8, eager(model, channels_last=True), threads),
        ("eager channels-last input, b1", 1, eager(model, channels_last=True), threads),
        ("eager channels-last input, b32", 32, eager(model, channels_last=True), threads),
        ("eager channels-last input + weights, b8", 8, eager(fast, channels_last=True), threads),
        ("eager channels-last input, b8, 1 thread", 8, eager(model, channels_last=True), 1),
    ]
    print(f"\nexporting ONNX models (static batch 1, 4, 8, 16, 32; dynamic batch) into {cache} ...", flush=True)
    exports = {}
    for b in (1, 4, 8, 16, 32):
        path = cache / f"bench_static_b{b}.onnx"
        t = time.perf_counter()
        accelerate.export_embedding(model, path, size, batch=b)
        exports[b] = (path, time.perf_counter() - t)
    dyn_path = cache / "bench_dynamic.onnx"
    accelerate.export_embedding(model, dyn_path, size, batch=1, dynamic_batch=True)
    print("  export time (s): " + ", ".join(f"b{b} {t:.1f}" for b, (_, t) in exports.items()))
    for b in (1, 4, 8, 16, 32):  # the batch-1 export runs 8 images as 8 calls
        configs.append((f"onnxruntime static b{b}, intra 2", 8 if b == 1 else b,
                        _ort_runner(_ort_session(exports[b][0], threads), b), threads))
    adopted = accelerate.OnnxEmbedder(model, size, required=True)
    single = exports[1][0]
    configs += [
        ("onnxruntime dynamic-batch export, b8", 8, _ort_runner(_ort_session(dyn_path, threads), 8), threads),
        ("onnxruntime static b1, intra 2, no spinning", 8,
         _ort_runner(_ort_session(single, threads, spin=False), 1), threads),
        ("onnxruntime static b1, intra 1", 8, _ort_runner(_ort_session(single, 1), 1), threads),
        (f"onnxruntime static b1, intra 1, {threads} images at a time (adopted)", 8,
         lambda batch: adopted(batch).numpy(), threads),
    ]
    times = {label: [] for label, *_ in configs}
    diffs = {}
    for round_ in range(args.rounds):
        for label, b, fn, n_threads in configs:
            torch.set_num_threads(n_threads)
            batch = images[:b].contiguous()
            out = fn(batch)
            diffs[label] = float(np.abs(out - reference[:b]).max())
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                fn(batch)
                calls += 1
            times[label].append((time.perf_counter() - start) / calls / b * 1e3)
            torch.set_num_threads(threads)
        print(f"  round {round_ + 1}/{args.rounds} done ({_load()})", flush=True)
    base = statistics.median(times[configs[0][0]])
    print(f"\nper forward pass, default model, 224 x 224 RISE-masked images, {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s ({_load()}):")
    print(f"  {'configuration':<62} {'median ms/img':>13} {'min':>7} {'x baseline':>10} {'max|diff|':>10}")
    for label, *_ in configs:
        med = statistics.median(times[label])
        print(f"  {label:<62} {med:13.2f} {min(times[label]):7.2f} {base / med:9.2f}x {diffs[label]:10.1e}")


# ------------------------------------------------------------------------------------------
# torch.compile


def compile_child(masks_seconds: float) -> None:
    """In a fresh process: compile the embedding, time the first call and the steady state."""
    torch.set_num_threads(2)
    model = sv.load_model("efficientnet_lite0")
    q_img, _ = default_pair()
    q = model.prepare(q_img)
    images = (q.tensor * RiseMasks(8, tuple(q.tensor.shape[-2:]), seed=0).batch(0, 8)).contiguous()
    with torch.inference_mode():
        reference = model.embed_tensor(images)
    result = {}
    try:
        compiled = torch.compile(lambda batch: model.embed_tensor(batch))
        start = time.perf_counter()
        with torch.inference_mode():
            out = compiled(images)
        result["first_call_s"] = time.perf_counter() - start
        result["max_diff"] = float((out - reference).abs().max())
        with torch.inference_mode():
            compiled(images)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < masks_seconds:
                compiled(images)
                calls += 1
        result["ms_per_image"] = (time.perf_counter() - start) / calls / 8 * 1e3
    except Exception as err:  # noqa: BLE001 - recorded, not raised
        result["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    print("RESULT " + json.dumps(result), flush=True)


def compile_table(args) -> None:
    cache = tempfile.mkdtemp(prefix="simviz-inductor-")
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
    print(f"\ntorch.compile (inductor) of the embedding, b8, two fresh processes sharing "
          f"TORCHINDUCTOR_CACHE_DIR={cache}:")
    for run in ("cold cache", "warm cache"):
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--compile-child", "--seconds", str(args.seconds * 3)],
                                  env=env, capture_output=True, text=True, timeout=1800)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            result = json.loads(lines[-1][7:]) if lines else {"error": f"exit {proc.returncode}: {proc.stderr[-300:]}"}
        except subprocess.TimeoutExpired:
            result = {"error": "timed out after 1800 s"}
        finally:
            if run == "warm cache":
                shutil.rmtree(cache, ignore_errors=True)
        wall = time.perf_counter() - start
        if "error" in result:
            print(f"  {run}: FAILED after {wall:.1f} s: {result['error']}")
        else:
            print(f"  {run}: compile + first call {result['first_call_s']:.1f} s (process {wall:.1f} s), "
                  f"{result['ms_per_image']:.2f} ms/img, max|diff| {result['max_diff']:.1e} ({_load()})")


# ------------------------------------------------------------------------------------------
# Accelerator: preparation and end-to-end


def accelerator_setup(model, q) -> None:
    """Cost of preparing the ONNX embedder: cold, from the disk cache, from memory (first batch of 8
    included: the verification runs eager torch on it once per session)."""
    size = tuple(q.tensor.shape[-2:])
    images = (q.tensor * RiseMasks(8, size, seed=0).batch(0, 8)).contiguous()
    accelerate.clear_sessions()
    print(f"\nONNX Runtime embedder, cache {accelerate.cache_dir()} ({_load()}):")
    for label in ("cold (export + session + verification)", "disk cache (session + verification)",
                  "memory (weights hash only)"):
        if label.startswith("disk"):
            accelerate.clear_sessions()
        start = time.perf_counter()
        embed = accelerate.OnnxEmbedder(model, size, required=True)
        embed(images)
        print(f"  {label:<42} {time.perf_counter() - start:6.2f} s  [{embed.description}]")


def _map_diff(a, b) -> float:
    return float(max(np.abs(a.query_map - b.query_map).max(), np.abs(a.reference_map - b.reference_map).max()))


def rise_one_image_at_a_time(model, q, r, args, rise_batch) -> float:
    """Accelerated RISE with the alternative ONNX Runtime set-up: one image at a time on all intra-op
    threads (accelerate.PARALLEL_IMAGES = False), session prepared before the timing."""
    accelerate.PARALLEL_IMAGES = False
    accelerate.clear_sessions()
    try:
        run(model, q, r, "rise", masks=8, batch_size=rise_batch, show_progress=False)
        t, _ = run(model, q, r, "rise", masks=args.masks, batch_size=rise_batch, show_progress=False)
    finally:
        accelerate.PARALLEL_IMAGES = True
        accelerate.clear_sessions()
        run(model, q, r, "rise", masks=8, batch_size=rise_batch, show_progress=False)
    return t


def accelerated_vs_eager(model, q, r, args, rise_batch, accelerated_rise=None):
    """RISE and sliding window, eager and accelerated, alternately; returns the RISE times."""
    rows = {}
    for method, opts in (("rise", {"masks": args.masks, "batch_size": rise_batch}), ("sliding_window", {})):
        runs = {"eager": [], "auto": []}
        maps = {}
        for repeat in range(args.repeats):
            for accel in (("eager", "auto") if repeat % 2 == 0 else ("auto", "eager")):
                if method == "rise" and accel == "auto" and repeat == 0 and accelerated_rise is not None:
                    t, exp = accelerated_rise  # the methods table's run
                else:
                    t, exp = run(model, q, r, method, accelerator=accel, show_progress=False, **opts)
                runs[accel].append(t)
                maps[accel] = exp
        rows[method] = (runs, _map_diff(maps["eager"], maps["auto"]), maps["auto"].info.get("forward_passes"))
    print(f"\nRISE ({args.masks} masks, batch_size={rise_batch}) and sliding window (defaults), query only, "
          f"eager vs accelerated, {args.repeats} alternating run(s) each ({_load()}):")
    print(f"  {'method':<16} {'eager s':>9} {'accelerated s':>14} {'speedup':>8} {'max|map diff|':>14}")
    for method, (runs, diff, backend) in rows.items():
        e, a = statistics.median(runs["eager"]), statistics.median(runs["auto"])
        each = "" if args.repeats == 1 else (f"   eager runs {[round(v, 1) for v in runs['eager']]}, "
                                            f"accelerated {[round(v, 1) for v in runs['auto']]}")
        print(f"  {method:<16} {e:9.2f} {a:14.2f} {e / a:7.2f}x {diff:14.1e}{each}")
    print(f"  accelerated forward passes: {rows['rise'][2]}")
    alternative = rise_one_image_at_a_time(model, q, r, args, rise_batch)
    print(f"  rise, accelerated, one image at a time on {torch.get_num_threads()} intra-op threads instead: "
          f"{alternative:.2f} s ({_load()})")
    return rows["rise"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--masks", type=int, default=2000)
    ap.add_argument("--loop-masks", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None, help="RISE batch size (default: the method's)")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--forward", action="store_true", help="per-forward-pass table (eager vs ONNX Runtime)")
    ap.add_argument("--compile", action="store_true", help="torch.compile, cold and warm cache (minutes)")
    ap.add_argument("--rounds", type=int, default=5, help="--forward: interleaved rounds")
    ap.add_argument("--seconds", type=float, default=1.0, help="--forward: seconds per configuration per round")
    ap.add_argument("--repeats", type=int, default=1, help="eager / accelerated runs of RISE and sliding window")
    ap.add_argument("--onnx-cache", default=None, help="ONNX cache directory (default: a fresh temporary one)")
    ap.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_child:
        compile_child(args.seconds)
        return
    torch.set_num_threads(args.threads)
    cache = Path(args.onnx_cache or tempfile.mkdtemp(prefix="simviz-onnx-"))
    os.environ[accelerate.CACHE_ENV] = str(cache)
    if not args.onnx_cache:  # a temporary cache (so the cold row is cold): removed at exit
        atexit.register(shutil.rmtree, cache, ignore_errors=True)

    model = sv.load_model("efficientnet_lite0")
    q_img, r_img = default_pair()
    q, r = model.prepare(q_img, name="query"), model.prepare(r_img, name="reference")
    with torch.no_grad():  # warm-up: first-call allocations out of the timings
        model.embed_tensor(torch.cat([q.tensor, r.tensor]))

    rise_batch = args.batch_size or get_method("rise").options["batch_size"].default
    try:
        import onnxruntime

        ort_version = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort_version = "onnxruntime not installed"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, {ort_version}; default model, default_pair (chelsea vs mirror); "
          f"{_load()}")
    accelerator_setup(model, q)  # first: the cold row is a real export
    if args.forward:
        forward_table(model, q, args, cache)
    if args.compile:
        compile_table(args)
    if args.sweep:
        print(f"\nRISE sweep, eager, {args.loop_masks} masks (ms per mask):")
        for channels_last in (False, True):
            perturbation.CHANNELS_LAST = channels_last
            cells = []
            for b in (1, 4, 8, 16, 32, 64):
                t, _ = run(model, q, r, "rise", masks=args.loop_masks, batch_size=b, show_progress=False,
                           accelerator="eager")
                cells.append(f"b={b}: {t / args.loop_masks * 1e3:.1f}")
            print(f"  channels_last={channels_last!s:<5}  " + "  ".join(cells))
        perturbation.CHANNELS_LAST = True

    print(f"\n{'method':<22} {'options (else defaults)':<34} {'forward passes':>14} {'seconds':>9}")
    results = {}
    for method in METHODS:
        opts = {"show_progress": False} if method in ("rise", "sliding_window") else {}
        if method == "rise":
            opts.update(masks=args.masks, batch_size=rise_batch)
        t, exp = run(model, q, r, method, **opts)
        results[method] = (t, exp)
        passes = exp.info.get("passes_done", 2)
        shown = ", ".join(f"{k}={v}" for k, v in opts.items() if k != "show_progress") or "defaults"
        print(f"{method:<22} {shown:<34} {passes:>14} {t:>9.2f}")

    rise_runs = accelerated_vs_eager(model, q, r, args, rise_batch, accelerated_rise=results["rise"])
    eager_s, accel_s = statistics.median(rise_runs["eager"]), statistics.median(rise_runs["auto"])
    batched_s, batched = results["rise"]
    loop_s, loop_scores = per_mask_loop(model, q, r, args.loop_masks)
    scaled = loop_s * args.masks / args.loop_masks
    same = np.abs(loop_scores - batched.info["query"]["mask_scores"][: args.loop_masks]).max()
    print(f"\nRISE, {args.masks} masks, query only ({_load()}):")
    for label, t in ((f"accelerated (default, batch_size={rise_batch}):", accel_s),
                     (f"eager batched (batch_size={rise_batch}):", eager_s)):
        print(f"  {label:<38} {t:8.2f} s  ({t / args.masks * 1e3:.1f} ms/mask)")
    print(f"  {'eager per-mask loop (one at a time):':<38} {scaled:8.2f} s  "
          f"(timed on the first {args.loop_masks} masks: "
          f"{loop_s:.2f} s, scaled x{args.masks / args.loop_masks:g})")
    print(f"  same masks: max |score difference| accelerated vs loop over the first {args.loop_masks} = {same:.2e}")
    print(f"  accelerated vs eager batched {eager_s / accel_s:.2f}x, vs loop {scaled / accel_s:.2f}x; "
          f"eager batched vs loop {scaled / eager_s:.2f}x")
    if args.masks == 2000:
        print(f"  target accelerated <= 10 s on 2 cores: {'OK' if accel_s <= 10 else 'MISSED'} ({accel_s:.1f} s)")


if __name__ == "__main__":
    main()

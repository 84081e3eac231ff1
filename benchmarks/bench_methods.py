"""Runtime of every explanation method on the default model for one pair, and RISE batched vs a
per-mask loop on the same masks.

Run: .venv/bin/python benchmarks/bench_methods.py [--threads 2] [--masks 2000] [--loop-masks 200]
     [--batch-size 16] [--sweep]

* Every method runs once on ``default_pair()`` (chelsea and its mirror) with the default model
  (EfficientNet-Lite0, 224 px, 7 x 7 x 1280 features) and its default options, after one warm-up
  forward pass. RISE uses ``--masks`` masks (default 2000, the method's default).
* RISE batched vs loop: the batched run is the 2000-mask RISE above. The per-mask loop is the
  straightforward implementation (one mask, one NCHW forward pass, one accumulation at a time) on
  the first ``--loop-masks`` of the same masks (they are prefix-stable); its time is scaled to the
  full count (said so in the output). Targets: >= 3x, batched <= 30 s on 2 cores.
* ``--sweep``: time ``--loop-masks`` masks at several batch sizes, with and without channels-last
  input, to choose the default batch size.
"""

import argparse
import platform
import time

import numpy as np
import torch

import simviz_widgets as sv
from simviz_widgets.datasets import default_pair
from simviz_widgets.explain import get_method, perturbation

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--masks", type=int, default=2000)
    ap.add_argument("--loop-masks", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None, help="RISE batch size (default: the method's)")
    ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = sv.load_model("efficientnet_lite0")
    q_img, r_img = default_pair()
    q, r = model.prepare(q_img, name="query"), model.prepare(r_img, name="reference")
    with torch.no_grad():  # warm-up: first-call allocations out of the timings
        model.embed_tensor(torch.cat([q.tensor, r.tensor]))

    rise_batch = args.batch_size or get_method("rise").options["batch_size"][0]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; default model, default_pair (chelsea vs mirror), one run each")
    if args.sweep:
        print(f"\nRISE sweep, {args.loop_masks} masks (ms per mask):")
        for channels_last in (False, True):
            perturbation.CHANNELS_LAST = channels_last
            cells = []
            for b in (1, 4, 8, 16, 32, 64):
                t, _ = run(model, q, r, "rise", masks=args.loop_masks, batch_size=b, show_progress=False)
                cells.append(f"b={b}: {t / args.loop_masks * 1e3:.1f}")
            print(f"  channels_last={channels_last!s:<5}  " + "  ".join(cells))
        perturbation.CHANNELS_LAST = True

    print(f"\n{'method':<22} {'options':<34} {'forward passes':>14} {'seconds':>9}")
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

    batched_s, batched = results["rise"]
    loop_s, loop_scores = per_mask_loop(model, q, r, args.loop_masks)
    scaled = loop_s * args.masks / args.loop_masks
    same = np.abs(loop_scores - batched.info["query"]["mask_scores"][: args.loop_masks]).max()
    speedup = scaled / batched_s
    print(f"\nRISE, {args.masks} masks, query only:")
    print(f"  batched (batch_size={rise_batch}):        {batched_s:8.2f} s  ({batched_s / args.masks * 1e3:.1f} ms/mask)")
    print(f"  per-mask loop (one at a time): {scaled:8.2f} s  (timed on the first {args.loop_masks} masks: "
          f"{loop_s:.2f} s, scaled x{args.masks / args.loop_masks:g})")
    print(f"  same masks: max |score difference| over the first {args.loop_masks} = {same:.2e}")
    print(f"  speedup {speedup:.2f}x (target >= 3x): {'OK' if speedup >= 3 else 'MISSED'}; "
          f"batched {batched_s:.1f} s (target <= 30 s on 2 cores): {'OK' if batched_s <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()

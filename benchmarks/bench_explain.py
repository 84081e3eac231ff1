"""Cost of the decomposition vs two plain forward passes and vs Grad-CAM on the similarity.

Run: .venv/bin/python benchmarks/bench_explain.py [--repeats 30]

All three work from the same prepared (resized, normalised) tensors of one bundled pair, on the
default model (EfficientNet-Lite0, 224 px, 7 x 7 x 1280 features), in one process, interleaved so
machine load affects them alike. Target: decomposition <= 1.15 x the two forward passes.
"""

import argparse
import platform
import statistics
import time

import torch

import simviz_widgets as sv
from simviz_widgets.datasets import default_pair
from simviz_widgets.explain import get_method


def timed(fn, repeats):
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = sv.load_model("efficientnet_lite0")
    q_img, r_img = default_pair()
    q, r = model.prepare(q_img, name="query"), model.prepare(r_img, name="reference")
    net = model.module
    explainer = get_method("decomposition")(show_progress=False)

    def two_forwards():
        with torch.no_grad():
            net(q.tensor)
            net(r.tensor)

    def decomposition():
        explainer(model, q, r)

    feats_module = model._feature_point[0]

    def gradcam_similarity():
        # Grad-CAM on S for both images: forward with the feature maps kept, one backward of S.
        grabbed = []
        h = feats_module.register_forward_pre_hook(lambda m, inp: grabbed.append(inp[0]))
        try:
            with torch.enable_grad():
                x = torch.cat([q.tensor, r.tensor]).requires_grad_(False)
                net.zero_grad(set_to_none=True)
                gq, gr = net.forward_head(net.forward_features(x), pre_logits=True)
                s = torch.cosine_similarity(gq, gr, dim=0)
                feats = grabbed[0]
                (grad,) = torch.autograd.grad(s, feats)
                weights = grad.mean(dim=(2, 3), keepdim=True)
                torch.relu((weights * feats).sum(1))
        finally:
            h.remove()

    def prepare_pair():
        model.prepare(q_img)
        model.prepare(r_img)

    results = {name: [] for name in ("two forward passes", "decomposition (full point-to-point)",
                                     "Grad-CAM on the similarity", "prepare both images (PIL)")}
    fns = [two_forwards, decomposition, gradcam_similarity, prepare_pair]
    for fn in fns:
        fn()
    for _ in range(args.repeats):  # interleave so drift hits every method alike
        for name, fn in zip(results, fns):
            start = time.perf_counter()
            fn()
            results[name].append(time.perf_counter() - start)

    base = statistics.median(results["two forward passes"])
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, repeats {args.repeats}")
    print(f"{'':<40} {'median ms':>10} {'p90 ms':>8} {'x two forwards':>15}")
    for name, times in results.items():
        med = statistics.median(times)
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{name:<40} {med * 1e3:>10.1f} {p90 * 1e3:>8.1f} {med / base:>15.2f}")
    ratio = statistics.median(results["decomposition (full point-to-point)"]) / base
    print(f"decomposition / two forwards = {ratio:.3f} (target <= 1.15): {'OK' if ratio <= 1.15 else 'MISSED'}")


if __name__ == "__main__":
    main()

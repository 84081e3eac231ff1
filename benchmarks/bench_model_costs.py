"""The cost of one explanation against the model's own cost for the pair, side by side per model.

Run: .venv/bin/python benchmarks/bench_model_costs.py [--repeats 3] [--models vit_cls vit_avg lite0 face]

For each model, interleaved in one process (so machine load affects both alike): the network's own two
forward passes on the pair (one image each, batch 1, ``torch.no_grad``: what scoring the pair costs),
and one ``sv.explain(model, a, b, method="decomposition")`` (the cheapest full explanation: overall
maps, point-to-point D(i, j), preprocessing included). Medians of ``--repeats`` runs after one
warm-up each; the ratio explain / forward pair is printed.

Models (random weights where said; the costs do not depend on the weights):

* ``vit_cls``: torchvision ``vit_b_16()``, 224 px, class token (D = 1000, the classifier's output):
  gradient x input at the last block's input (14 x 14), docs/transformers.md. torchvision
  initialises the head at zero (an all-zero embedding), so its weights are drawn N(0, 0.02).
* ``vit_avg``: timm ``vit_base_patch16_224`` with ``global_pool='avg'`` (random weights): exact
  decomposition of the mean-pooled tokens (fc_norm LayerNorm head held at its scale).
* ``lite0``: the default model (EfficientNet-Lite0, bundled weights): exact.
* ``face``: ``simviz_widgets.models.load("face_resnet")`` (default any-layer mode) when its data is
  installed (scripts/install_face_data.sh); skipped with a note otherwise.

Images: a bundled photo and its mirror (face: two bundled face photos).
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


def machine() -> str:
    return describe(torch)


def vit_cls():
    import torchvision

    net = torchvision.models.vit_b_16()
    torch.nn.init.normal_(net.heads.head.weight, std=0.02, generator=torch.Generator().manual_seed(0))
    return sv.SimilarityModel.wrap(net.eval(), name="vit_b_16 (class token)"), None


def vit_avg():
    import timm

    net = timm.create_model("vit_base_patch16_224", pretrained=False, global_pool="avg")
    return sv.SimilarityModel.wrap(net.eval(), name="vit_base_patch16_224 (avg)"), None


def lite0():
    return sv.load_model("efficientnet_lite0"), None


def face():
    from simviz_widgets.datasets import list_faces, load_face

    model = sv.models.load("face_resnet")
    names = [n for n, v in list_faces().items() if not v.get("partial")][:2]
    return model, [load_face(n) for n in names]


BUILDERS = {"vit_cls": vit_cls, "vit_avg": vit_avg, "lite0": lite0, "face": face}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(model, images, repeats: int) -> dict:
    net = model.module.net if hasattr(model.module, "net") else model.module
    tensors = [model.prepare(im).tensor.to(model.dtype) for im in images]

    def forward_pair():
        with torch.no_grad():
            for x in tensors:
                net(x)

    def explain():
        with warnings.catch_warnings():  # the first-order warning: the residual is in the table
            warnings.simplefilter("ignore", UserWarning)
            result["e"] = sv.explain(model, images[0], images[1], method="decomposition", show_progress=False)

    result = {}
    forward_pair()  # warm-up (allocator, oneDNN kernels)
    explain()
    forward, full = [], []
    for _ in range(repeats):
        forward.append(timed(forward_pair))
        full.append(timed(explain))
    e = result["e"]
    residual = e.info.get("residual_ratio")
    return {
        "model": model.name, "mode": e.info["mode"], "layer": e.info["layer"],
        "grid": "x".join(map(str, e.query_map.shape)), "D": int(e.point_to_point.query_vectors.shape[1]),
        "forward": statistics.median(forward), "explain": statistics.median(full),
        "completeness": e.completeness_error,
        "residual": " / ".join(f"{r:.2f}" for r in residual.values()) if residual else "-",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per model (median reported)")
    ap.add_argument("--models", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    ap.add_argument("--photo", default="chelsea")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("machine at start:", machine(), flush=True)
    photo = load_photo(args.photo)
    pair = [photo, photo[:, ::-1].copy()]  # the photo and its mirror

    rows = []
    for key in args.models:
        try:
            model, images = BUILDERS[key]()
        except Exception as err:  # noqa: BLE001 - a missing data folder (face) skips that model
            print(f"{key}: skipped ({type(err).__name__}: {err})", flush=True)
            continue
        row = measure(model, images or pair, args.repeats)
        rows.append(row)
        print(f"  {row['model']}: forward pair {row['forward']:.3f} s, explain {row['explain']:.3f} s "
              f"({row['explain'] / row['forward']:.1f}x)", flush=True)

    print()
    print(f"medians of {args.repeats} interleaved runs after one warm-up; {args.photo} and its mirror")
    print("machine at end:", machine())
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print()
    print("| model | mode (layer) | grid | D | forward pair s | explain s | explain / forward pair "
          "| completeness error | residual ratio (a / b) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} ({r['layer']}) | {r['grid']} | {r['D']} | {r['forward']:.3f} "
              f"| {r['explain']:.3f} | {r['explain'] / r['forward']:.1f}x | {r['completeness']:.1g} "
              f"| {r['residual']} |")


if __name__ == "__main__":
    main()

"""Quality and cost of explanation methods on real photos with ground truth (shared-object composites).

Run: .venv/bin/python benchmarks/bench_quality.py [--sets default,small] [--pairs 30]
     [--methods decomposition,rise] [--rise-masks 500] [--steps 101] [--timing-pairs 10]
     [--sanity] [--sanity-methods feature_occlusion,shared_content] [--out bench_quality.png]

Each pair is one object (cat face, coffee cup, astronaut's face, rocket, ...) pasted into two
different bundled background photos (simviz_widgets.datasets.shared_object_pairs), so the region
that should explain the similarity is known. Two pair sets:

- ``default``: ``shared_object_pairs(n, seed=S)``, objects 0.3-0.5 of the side (2-3.5 cells of a 7 x 7 grid);
- ``small``: ``shared_object_pairs(n, seed=S + 1, scale=(0.15, 0.25))``, objects of 1-1.75 cells.

Methods: every registered one (list_methods()) by default, plus the baselines registered here, so
that a map that knows nothing, a centre bias, smoothing alone, or copy detection without the model
cannot pass for an explanation: a seeded random map, a centred Gaussian, the decomposition blurred
with a 3 x 3 box, and a model-free pixel-patch matcher; and two ablations of shared_content:
``ablation_correspondence_only`` (without its feature-occlusion weight) and
``ablation_relevance_only`` (the weight alone, on the same finer grid). Per set it reports, with the
default model:

- cost: median seconds per pair and its ratio to two forward passes of the model (a query and a
  reference embedding), both measured in one interleaved timing pass over the first
  ``--timing-pairs`` pairs (per pair: the two forward passes, then every method in turn);
- deletion / insertion AUC x100 (SANE protocol: 101 steps, grey background, cosine to the
  unperturbed reference; per-pair min-max normalised; lower / higher is better; --steps 0 skips);
- pointing game on the query (the map's maximum on the pasted object; chance = object area);
- energy pointing on the query (share of positive map mass on the object);
- correspondence PCK (methods with point-to-point maps; argmax within one cell of the true match);
- with --sanity, the cascading-randomisation sanity metric for --sanity-methods (mean Spearman over
  4 top-down steps, lower is better).

Query-side metrics only: RISE and the sliding window explain the query alone by default.
Prints one markdown table per set, saves a bar-chart figure per set and the tables (.md) next to them.
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

import simviz_widgets as sv
from simviz_widgets.checks import Option
from simviz_widgets.datasets import shared_object_pairs
from simviz_widgets.evaluate import compare
from simviz_widgets.explain import Explainer, PairExplanation, get_method, list_methods, register_method
from simviz_widgets.explain.shared_content import SharedContent

SETS = {"default": {"seed_offset": 0, "scale": (0.3, 0.5)}, "small": {"seed_offset": 1, "scale": (0.15, 0.25)}}


@register_method("baseline_random")
class RandomBaseline(Explainer):
    """Seeded uniform noise at 7 x 7: what a map that knows nothing scores."""

    options = {"seed": Option.integer(0, "random seed", minimum=0)}

    def compute(self, model, query, reference):
        rng = np.random.default_rng(self.config["seed"] + int(query.display.sum()) % 1000)
        return PairExplanation(self.name, float("nan"), query.display, reference.display,
                               rng.random((7, 7)).astype(np.float32), rng.random((7, 7)).astype(np.float32),
                               signed=False)


@register_method("baseline_centre")
class CentreBaseline(Explainer):
    """A fixed centre bias: a Gaussian bump (sigma = a quarter of the side) at the image centre."""

    options = {}

    def compute(self, model, query, reference):
        def bump(size):
            r, c = np.mgrid[0:size[0], 0:size[1]]
            d2 = (r - (size[0] - 1) / 2) ** 2 + (c - (size[1] - 1) / 2) ** 2
            return np.exp(-d2 / (2 * (size[0] / 4) ** 2)).astype(np.float32)

        return PairExplanation(self.name, float("nan"), query.display, reference.display,
                               bump(query.size), bump(reference.size), signed=False)


@register_method("baseline_blurred_decomposition")
class BlurredDecomposition(Explainer):
    """The decomposition's maps blurred with a 3 x 3 box (zeros outside the grid): smoothing alone.

    The pointing game rewards smooth maps on objects wider than a cell; a method must beat this to
    show that it localises better, not just more smoothly."""

    options = {}

    def compute(self, model, query, reference):
        exp = get_method("decomposition")(show_progress=False).compute(model, query, reference)
        blur = [uniform_filter(m.astype(np.float64), size=3, mode="constant") for m in exp.maps.values()]
        return PairExplanation(self.name, exp.score, query.display, reference.display, blur[0], blur[1],
                               signed=True, metric=exp.metric, info=exp.info)


@register_method("baseline_pixel_match")
class PixelMatch(Explainer):
    """Copy detection without the model: each 8 x 8 px patch (its mean colour removed) scored by
    its best normalised cross-correlation with any patch of the other image. The pairs share
    pasted pixels; this says how far matching them, blind to the model, gets."""

    options = {"patch": Option.integer(8, "patch side in display pixels", minimum=1)}

    def compute(self, model, query, reference):
        p = self.config["patch"]

        def patches(image):
            h, w = image.shape[0] // p, image.shape[1] // p
            x = image[:h * p, :w * p].astype(np.float64).reshape(h, p, w, p, 3).transpose(0, 2, 1, 3, 4)
            x = x.reshape(h * w, -1)
            x = x - x.mean(1, keepdims=True)
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), (h, w)

        (a, grid_q), (b, grid_r) = patches(query.display), patches(reference.display)
        ncc = a @ b.T
        return PairExplanation(self.name, float("nan"), query.display, reference.display,
                               ncc.max(1).reshape(grid_q), ncc.max(0).reshape(grid_r), signed=True)


@register_method("ablation_correspondence_only")
class CorrespondenceOnly(SharedContent):
    """shared_content with relevance=False: the mid-level correspondence without the model's
    feature-occlusion weight (how much of shared_content is the score, how much copy detection)."""

    def __init__(self, **options):
        super().__init__(**{"relevance": False, **options})


@register_method("ablation_relevance_only")
class RelevanceOnly(Explainer):
    """shared_content's feature-occlusion weight alone, resampled (bilinear) to the correspondence
    layer's grid like in shared_content: what the finer grid gives without the correspondence."""

    options = {}

    def compute(self, model, query, reference):
        exp = SharedContent(show_progress=False).compute(model, query, reference)
        maps = [F.interpolate(torch.from_numpy(m)[None, None], size=exp.query_map.shape, mode="bilinear",
                              align_corners=False)[0, 0].numpy() for m in exp.info["occlusion_maps"].values()]
        return PairExplanation(self.name, exp.score, query.display, reference.display, maps[0], maps[1],
                               signed=True, metric=exp.metric, info=exp.info)


def method_options(methods, rise_masks):
    options = {}
    for name in methods:
        accepted = get_method(name).options
        for key in ("masks", "n_masks", "num_masks"):
            if key in accepted and rise_masks is not None:
                options.setdefault(name, {})[key] = rise_masks
    return options


def make_pairs(set_name, n, seed, size):
    spec = SETS[set_name]
    return shared_object_pairs(n=n, seed=seed + spec["seed_offset"], scale=spec["scale"], size=size)


def timing_pass(model, pairs, methods, options):
    """Median seconds per pair of each method and of two forward passes, interleaved pair by pair
    so that both see the same machine load."""
    explainers = {}
    for name in methods:
        opts = dict(options.get(name, {}))
        if "show_progress" in get_method(name).options:
            opts["show_progress"] = False
        explainers[name] = get_method(name)(**opts)
    times = {name: [] for name in ["two forward passes", *methods]}
    warm_up = model.prepare(pairs[0].query, name="warm-up")
    for explainer in explainers.values():  # first calls pay one-off costs (allocations, kernel choice)
        explainer(model, warm_up, warm_up)
    for k, p in enumerate(pairs):
        q, r = model.prepare(p.query, name=f"pair {k} query"), model.prepare(p.reference, name=f"pair {k} reference")
        start = time.perf_counter()
        with torch.no_grad():
            model.embed_tensor(q.tensor)
            model.embed_tensor(r.tensor)
        times["two forward passes"].append(time.perf_counter() - start)
        for name, explainer in explainers.items():
            times[name].append(explainer(model, q, r).runtime_s)
    return {name: float(np.median(t)) for name, t in times.items()}


def _cell(row, key):
    mean = row.get(key, float("nan"))
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {row[key + '_std']:.3f}"


def set_table(result, timing, sanity):
    """One markdown table: cost, the metrics of ``result``, and the sanity metric where computed."""
    metrics = [m for m in result.metrics]
    header = ["method", "s / pair", "× 2 fwd"] + [m.label for m in metrics]
    if sanity is not None:
        header.append(sanity.metrics[0].label)
    sanity_rows = {} if sanity is None else {row["method"]: row for row in sanity.table}
    base = timing["two forward passes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in result.table:
        name = row["method"]
        cells = [name, f"{timing[name]:.3f}", f"{timing[name] / base:.2f}"] + [_cell(row, m.name) for m in metrics]
        if sanity is not None:
            srow = sanity_rows.get(name)
            cells.append(_cell(srow, sanity.metrics[0].name) if srow else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="default,small", help="comma-separated pair sets: " + ", ".join(SETS))
    ap.add_argument("--pairs", type=int, default=30, help="pairs per set")
    ap.add_argument("--methods", default=None, help="comma-separated (default: all registered + baselines)")
    ap.add_argument("--rise-masks", type=int, default=500, help="RISE masks per pair (paper: 2000)")
    ap.add_argument("--steps", type=int, default=101, help="deletion/insertion steps (protocol: 101; 0 skips)")
    ap.add_argument("--batch-size", type=int, default=34)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--seed", type=int, default=0, help="default set seed (small: seed + 1)")
    ap.add_argument("--timing-pairs", type=int, default=10, help="pairs per set in the timing pass")
    ap.add_argument("--sanity", action="store_true", help="add the randomisation sanity metric")
    ap.add_argument("--sanity-methods", default="feature_occlusion,shared_content,decomposition,gradcam",
                    help="methods the sanity metric runs on (it re-runs each 5 times per pair)")
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    ap.add_argument("--out", default="bench_quality.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        ap.error(f"unknown set(s) {unknown}; choose from {list(SETS)}")
    methods = list_methods() if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    model = sv.load_model(args.model)
    size = model.preprocess.input_size[0] if model.preprocess.input_size else 224
    options = method_options(methods, args.rise_masks)
    metrics = [("pointing_game", {"side": "query"}), ("energy_pointing", {"side": "query"}),
               ("correspondence_pck", {"tolerance": 1.0})]
    if args.steps > 0:
        perturb = {"steps": args.steps, "batch_size": args.batch_size}
        metrics = [("deletion", perturb), ("insertion", perturb)] + metrics
    sanity_methods = [m for m in args.sanity_methods.split(",") if m.strip() and m.strip() in methods]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = []
    for set_name in sets:
        pairs = make_pairs(set_name, args.pairs, args.seed, size)
        object_share = float(np.mean([p.query_mask.mean() for p in pairs]))
        start = time.perf_counter()
        timing = timing_pass(model, pairs[:args.timing_pairs], methods, options)
        result = compare(model, pairs, methods, metrics, method_options=options, errors="skip")
        sanity = None
        if args.sanity and sanity_methods:
            sanity = compare(model, pairs, sanity_methods, [("sanity_randomization", {"max_steps": 4})],
                             method_options={m: options[m] for m in sanity_methods if m in options},
                             errors="skip", fast=False)
        elapsed = time.perf_counter() - start
        spec = SETS[set_name]
        header = (
            f"### Set `{set_name}`: {args.pairs} pairs (seed {args.seed + spec['seed_offset']}, object scale "
            f"{spec['scale'][0]}-{spec['scale'][1]}, {size} px), model {args.model}\n\n"
            f"{args.steps} deletion/insertion steps, RISE masks {args.rise_masks}; pointing chance (mean object "
            f"area) {object_share:.3f}; two forward passes {1000 * timing['two forward passes']:.1f} ms (median "
            f"of {min(args.timing_pairs, len(pairs))} pairs in the timing pass); "
            f"{platform.processor() or platform.machine()}, {args.threads} threads; {elapsed:.0f} s"
        )
        table = set_table(result, timing, sanity)
        print(header + "\n\n" + table + "\n", flush=True)
        for label, res in (("", result), ("sanity: ", sanity)):
            for method, messages in (res.errors.items() if res is not None else ()):
                print(f"{label}{method} failed on {len(messages)} pair(s), e.g. {messages[0]}")
        report.append(header + "\n\n" + table + "\n")
        fig = result.plot()
        fig.suptitle(f"{args.model}, {args.pairs} shared-object pairs, set {set_name}", fontsize=10)
        fig.tight_layout()
        path = out.with_name(f"{out.stem}_{set_name}{out.suffix}")
        fig.savefig(path, dpi=110)
        print(f"saved {path}")
    out.with_suffix(".md").write_text("\n".join(report))
    print(f"saved {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

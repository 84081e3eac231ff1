"""Quality of every explanation method on real photos with ground truth (shared-object composites).

Run: .venv/bin/python benchmarks/bench_quality.py [--pairs 30] [--methods decomposition,rise]
     [--rise-masks 500] [--steps 101] [--out bench_quality.png] [--sanity]

Each pair is one object (cat face, coffee cup, astronaut's face, rocket, ...) pasted into two
different bundled background photos (simviz_widgets.datasets.shared_object_pairs), so the region
that should explain the similarity is known. For every registered method (list_methods(), plus two
baselines registered here: a seeded random map and a centre bias) it reports, with the default model:

- deletion / insertion AUC x100 (SANE protocol: 101 steps, grey background, cosine to the
  unperturbed reference; per-pair min-max normalised; lower / higher is better);
- pointing game on the query (the map's maximum on the pasted object; chance = object area);
- energy pointing on the query (share of positive map mass on the object);
- correspondence PCK (methods with point-to-point maps; argmax within one cell of the true match);
- optionally (--sanity) the cascading-randomisation sanity metric (mean Spearman, lower is better).

Query-side metrics only: RISE and the sliding window explain the query alone by default.
Prints a markdown table, saves the bar-chart figure and the table next to it.
"""

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

import simviz_widgets as sv
from simviz_widgets.datasets import shared_object_pairs
from simviz_widgets.evaluate import compare
from simviz_widgets.explain import Explainer, PairExplanation, get_method, list_methods, register_method


@register_method("baseline_random")
class RandomBaseline(Explainer):
    """Seeded uniform noise at 7 x 7: what a map that knows nothing scores."""

    options = {"seed": (0, "random seed")}

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


def method_options(methods, rise_masks):
    options = {}
    for name in methods:
        accepted = get_method(name).options
        for key in ("masks", "n_masks", "num_masks"):
            if key in accepted and rise_masks is not None:
                options.setdefault(name, {})[key] = rise_masks
    return options


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--methods", default=None, help="comma-separated (default: all registered + baselines)")
    ap.add_argument("--rise-masks", type=int, default=500, help="RISE masks per pair (paper: 2000)")
    ap.add_argument("--steps", type=int, default=101, help="deletion/insertion steps (protocol: 101)")
    ap.add_argument("--batch-size", type=int, default=34)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sanity", action="store_true", help="add the randomisation sanity metric (slow)")
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    ap.add_argument("--out", default="bench_quality.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    methods = list_methods() if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    model = sv.load_model(args.model)
    size = model.preprocess.input_size[0] if model.preprocess.input_size else 224
    pairs = shared_object_pairs(n=args.pairs, seed=args.seed, size=size)
    perturb = {"steps": args.steps, "batch_size": args.batch_size}
    metrics = [
        ("deletion", perturb),
        ("insertion", perturb),
        ("pointing_game", {"side": "query"}),
        ("energy_pointing", {"side": "query"}),
        ("correspondence_pck", {"tolerance": 1.0}),
    ]
    if args.sanity:
        metrics.append(("sanity_randomization", {"max_steps": 4}))
    object_share = float(np.mean([p.query_mask.mean() for p in pairs]))

    start = time.perf_counter()
    result = compare(model, pairs, methods, metrics, method_options=method_options(methods, args.rise_masks),
                     errors="skip")
    elapsed = time.perf_counter() - start

    table = result.to_markdown()
    header = (
        f"{args.pairs} shared-object pairs (seed {args.seed}, {size} px), model {args.model}, "
        f"{args.steps} deletion/insertion steps, RISE masks {args.rise_masks}; "
        f"pointing chance (mean object area) {object_share:.3f}; "
        f"{platform.processor() or platform.machine()}, {args.threads} threads; total {elapsed:.0f} s"
    )
    print(header)
    print()
    print(table)
    for method, messages in result.errors.items():
        print(f"\n{method} failed on {len(messages)} pair(s), e.g. {messages[0]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = result.plot()
    fig.suptitle(f"{args.model}, {args.pairs} shared-object pairs", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    out.with_suffix(".md").write_text(header + "\n\n" + table + "\n")
    print(f"\nsaved {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

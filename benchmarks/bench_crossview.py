"""Cross-view correspondences and geometry against ground truth, deep matches beside ORB + RANSAC.

Run: .venv/bin/python benchmarks/bench_crossview.py [--grids 7,14,28] [--parts views,stereo,brain]
     [--photos chelsea,coffee,...] [--seed 0]

Default model (efficientnet_lite0); the 14 x 14 and 28 x 28 grids use the decomposition's any-layer
mode at an earlier block (``model.at_resolution(n)``). Both images go through the model's
preprocessing (short side 256, centre crop 224) and everything is measured in those display crops.

(a) views: each bundled photo against a rotated (10-45 deg), cropped + rescaled (crop 0.6-0.9 of
    each side) and perspective view: mutual-nearest-neighbour correspondences, soft-argmax
    refinement, then RANSAC (similarity for rotation and crop, homography for perspective). Median
    rotation error (deg), scale error (relative) and corner error of the fitted transform (mean
    distance of the four warped corners from the truth, as a fraction of the image side).
(b) stereo: scikit-image's Motorcycle pair with dense ground-truth disparity. PCK at 0.05 and 0.1 of
    the image side of the best match of the query points of a fixed 14 x 14 lattice (the argmax of
    each point's correspondence map), without and with sub-cell refinement.
(c) brain: the Insight Toolkit's brain slices (shift, rotation, scale in the file names).
(d) every part also through scikit-image's ORB + RANSAC on the same display crops.
Targets: median rotation error <= 3 deg, scale error <= 5 %, corner error <= 5 %, stereo PCK@0.05 >= 0.75.
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import torch

import simviz_widgets as sv
from simviz_widgets.datasets.known_pairs import brain_slices, stereo_pair, view_pairs
from simviz_widgets.evaluate import display_mapping
from simviz_widgets.geometry import cell_centres, fit_geometry, match_points, orb_matches

FIT_KIND = {"rotation": "similarity", "crop_scale": "similarity", "perspective": "homography",
            "brain": "similarity"}


def models_by_grid(grids):
    base = sv.load_model("efficientnet_lite0")
    return {n: base if n == 7 else base.at_resolution(n) for n in sorted(set(grids) | {7})}


class Explanations:
    """Each pair explained once per grid (the any-layer grids cost seconds)."""

    def __init__(self, models):
        self.models, self.cache, self.seconds = models, {}, {}

    def get(self, pair, n):
        key = (pair.name, n)
        if key not in self.cache:
            model = self.models[n]
            q, r = model.prepare(pair.query), model.prepare(pair.reference)
            start = time.perf_counter()
            exp = sv.explain(model, q, r, show_progress=False)
            self.seconds[key] = time.perf_counter() - start
            self.cache[key] = (exp, display_mapping(q, r, pair.mapping))
        return self.cache[key]


def matchers(grids):
    """(label, grid, use the 7 x 7 grid as coarse level) for every deep matcher, then ORB."""
    out = [(f"deep {n}x{n}", n, False) for n in grids]
    out += [(f"deep {n}x{n} + 7x7", n, True) for n in grids if n != 7]
    return out + [("ORB + RANSAC", None, False)]


def deep_matches(explanations, pair, grid, multiscale):
    exp, mapping = explanations.get(pair, grid)
    coarse = explanations.get(pair, 7)[0] if multiscale else None
    seconds = explanations.seconds[(pair.name, grid)] + (explanations.seconds[(pair.name, 7)] if multiscale else 0)
    return exp, mapping, coarse, seconds


def fit_errors(fit, pair, mapping):
    """(rotation error deg, relative scale error, corner error) of a fit; NaN where undefined."""
    if fit.transform is None:
        return float("nan"), float("nan"), float("nan")
    rot = abs((fit.rotation_deg - pair.rotation_deg + 180) % 360 - 180) if np.isfinite(pair.rotation_deg) else np.nan
    scale = abs(fit.scale / pair.scale - 1) if np.isfinite(pair.scale) else np.nan
    return rot, scale, fit.corner_error(mapping)


def median(values):
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return f"{np.median(v):.3g}" if len(v) else "-"


def geometry_table(title, pairs, explanations, grids, fit_kind_of):
    print(f"\n### {title}\n")
    print("| matcher | family | pairs | median rotation err (deg) | median scale err | median corner err "
          "| reliable | s/pair |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    families = sorted({p.kind for p in pairs}, key=[p.kind for p in pairs].index)
    for label, grid, multiscale in matchers(grids):
        for family in families:
            rows, seconds = [], []
            for pair in (p for p in pairs if p.kind == family):
                if grid is None:
                    exp, mapping = explanations.get(pair, 7)
                    start = time.perf_counter()
                    matches = orb_matches(exp.query, exp.reference)
                    took = 0.0
                else:
                    exp, mapping, coarse, took = deep_matches(explanations, pair, grid, multiscale)
                    start = time.perf_counter()
                    matches = sv.correspondences(exp, coarse=coarse)
                fit = fit_geometry(matches, kind=fit_kind_of(pair))
                seconds.append(took + time.perf_counter() - start)
                rows.append((*fit_errors(fit, pair, mapping), float(fit.reliable)))
            rot, scale, corner, reliable = zip(*rows)
            print(f"| {label} | {family} | {len(rows)} | {median(rot)} | {median(scale)} | {median(corner)} | "
                  f"{np.mean(reliable):.2f} | {np.mean(seconds):.2f} |")


def stereo_table(explanations, grids):
    pair = stereo_pair()
    print("\n### Stereo (Motorcycle), PCK of the best match of a 14 x 14 lattice of query points\n")
    print("| matcher | refinement | points | PCK@0.05 | PCK@0.1 | disparity-fit inliers | s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, grid, multiscale in matchers(grids):
        if grid is None:
            exp, mapping = explanations.get(pair, 7)
            orb = orb_matches(exp.query, exp.reference)
            _, valid = orb.errors(mapping)
            pck = orb.pck(mapping)
            fit = fit_geometry(orb, kind="disparity")
            print(f"| ORB (its own keypoints) | - | {valid.sum()} | {pck[0.05]:.3f} | {pck[0.1]:.3f} | "
                  f"{fit.inlier_ratio:.2f} | - |")
            continue
        exp, mapping, coarse, took = deep_matches(explanations, pair, grid, multiscale)
        lattice = cell_centres((14, 14), exp.query_size)
        for refine in ("none", "soft_argmax"):
            m = match_points(exp, lattice[:, 0], lattice[:, 1], refine=refine, coarse=coarse)
            _, valid = m.errors(mapping)
            pck = m.pck(mapping)
            fit = fit_geometry(sv.correspondences(exp, refine=refine, coarse=coarse), kind="disparity")
            print(f"| {label} | {refine} | {valid.sum()} | {pck[0.05]:.3f} | {pck[0.1]:.3f} | "
                  f"{fit.inlier_ratio:.2f} | {took:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grids", default="7,14,28")
    ap.add_argument("--parts", default="views,stereo,brain")
    ap.add_argument("--photos", default="chelsea,coffee,astronaut,rocket,horse,china,motorcycle_left")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=min(2, torch.get_num_threads()))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # The any-layer grids warn that gradient x input is first order; the matches need only where
    # each position's vector points, and the tables measure that directly.
    warnings.filterwarnings("ignore", message=".*first-order.*")
    grids = [int(g) for g in args.grids.split(",")]
    parts = args.parts.split(",")
    explanations = Explanations(models_by_grid(grids))
    print(f"efficientnet_lite0, grids {grids}; {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}")
    start = time.perf_counter()
    if "views" in parts:
        pairs = view_pairs(tuple(args.photos.split(",")), seed=args.seed)
        geometry_table(f"Views of {len(pairs) // 3} photos (seed {args.seed})", pairs, explanations, grids,
                       lambda p: FIT_KIND[p.kind])
    if "stereo" in parts:
        stereo_table(explanations, grids)
    if "brain" in parts:
        geometry_table("Brain slices (Insight Toolkit examples)", brain_slices(), explanations, grids,
                       lambda p: "similarity")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

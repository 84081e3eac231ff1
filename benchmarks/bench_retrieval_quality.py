"""Precision@10 of region queries on synthetic scenes with known objects (issue 14's quality table).

For every object of the query scenes (two objects each, never in the gallery): the region query
(the object's mask, or its bounding box), the whole-image query and the crop-and-embed baseline (the
object's square crop embedded as a new image), each ranking the same gallery of scenes with the
default model. Relevant: a gallery image with an object of the same colour and shape ("object"), or
the same colour / shape / texture. Chance = the fraction of relevant gallery images.

    .venv/bin/python benchmarks/bench_retrieval_quality.py [--gallery 400] [--queries 100] [--model NAME]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from machine import describe

import simviz_widgets as sv
from simviz_widgets.retrieval.quality import QUERY_KINDS, RELEVANCE, region_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=400)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    model = sv.load_model(args.model)
    start = time.perf_counter()
    result = region_precision(model, gallery_size=args.gallery, queries=args.queries)
    counts = result["counts"]
    print(f"precision@{counts['k']}, model {args.model}, gallery {counts['gallery']} scenes, "
          f"{counts['query_objects']} query objects ({time.perf_counter() - start:.0f} s)")
    print("| query | " + " | ".join(RELEVANCE) + " |")
    print("|---|" + "---|" * len(RELEVANCE))
    for kind in QUERY_KINDS:
        print(f"| {kind} | " + " | ".join(f"{result['precision'][kind][n]:.3f}" for n in RELEVANCE) + " |")
    print("| chance | " + " | ".join(f"{result['chance'][n]:.3f}" for n in RELEVANCE) + " |")
    print(describe(torch))


if __name__ == "__main__":
    main()

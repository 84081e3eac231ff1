"""Face descriptor distances on every pair of the face photos (docs/faces.md).

Run: .venv/bin/python benchmarks/bench_faces.py [--out faces.png] [--align]
(after `bash scripts/install_face_data.sh`)

Model: ``face_resnet`` (dlib's ResNet face descriptor, face-api's weights), exact mode (the
distances do not depend on the decomposition layer). Faces: every face of ``list_faces()`` (the
five photos of Barack Obama, one of Joe Biden, 20 faces in the six face-api demo group photos),
cut with ``load_face(name, crop=True, face=k)`` — face-api's crop of the box built from the
hand-measured landmarks; ``--align`` first levels the eyes (dlib's own pipeline rotates, face-api
does not).

Printed: the distance table of the named people, the whole matrix, and per kind of pair the count,
minimum, median, maximum and how many fall on the wrong side of dlib's threshold 0.6:
same person (Obama x Obama; with or without the partial faces), different people (named people with
each other and with the demo faces; two faces of one group photo). Demo faces of different group
photos are not counted: who they are is not known. With ``--out`` the matrix is also drawn, with
the face crops along the axes.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time

import numpy as np
import torch

import simviz_widgets as sv
from simviz_widgets.datasets.faces import list_faces, load_face

THRESHOLD = 0.6  # dlib's: same person below


def faces(align: bool):
    """(label, photo name, person, partial, crop) for every measured face."""
    out = []
    for name, d in list_faces().items():
        for k in range(len(d["boxes"])):
            label = name if len(d["boxes"]) == 1 else f"{name}[{k}]"
            out.append((label, name, d["person"], d["partial"], load_face(name, crop=True, face=k, align=align)))
    return out


def kind(a, b) -> str | None:
    """The kind of pair, or None when it is not known whether the two faces are one person."""
    (_, photo_a, who_a, part_a, _), (_, photo_b, who_b, part_b, _) = a, b
    if who_a != "unknown" and who_a == who_b:
        return "same person, partial" if part_a or part_b else "same person, whole faces"
    if who_a != "unknown" and who_b != "unknown":
        return "different people, named"
    if who_a != "unknown" or who_b != "unknown":
        return "different people, named vs demo"
    if photo_a == photo_b:
        return "different people, one group photo"
    return None


def summary(pairs: dict[str, list[float]]) -> list[str]:
    lines = [f"{'pairs':38} {'n':>4} {'min':>6} {'median':>6} {'max':>6}  wrong side of {THRESHOLD}"]
    for name, values in pairs.items():
        v = np.array(values)
        wrong = int((v > THRESHOLD).sum()) if name.startswith("same") else int((v <= THRESHOLD).sum())
        lines.append(f"{name:38} {len(v):4d} {v.min():6.3f} {np.median(v):6.3f} {v.max():6.3f}  {wrong}")
    return lines


def draw(path: str, labels, crops, D: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    n = len(labels)
    fig, ax = plt.subplots(figsize=(13, 12))
    im = ax.imshow(D, cmap="viridis_r", vmin=0, vmax=1.0)
    for i, j in itertools.product(range(n), range(n)):
        if i != j:
            ax.text(j, i, f"{D[i, j]:.2f}"[1:], ha="center", va="center", fontsize=5.5,
                    color="white" if D[i, j] < THRESHOLD else "black",
                    fontweight="bold" if D[i, j] < THRESHOLD else "normal")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.tick_params(axis="x", pad=26)
    ax.tick_params(axis="y", pad=26)
    for k, crop in enumerate(crops):
        thumb = OffsetImage(crop[::5, ::5], zoom=0.62)  # 30 px
        ax.add_artist(AnnotationBbox(thumb, (k, n - 0.5), xybox=(0, -12), xycoords="data",
                                     boxcoords="offset points", frameon=False, annotation_clip=False))
        ax.add_artist(AnnotationBbox(thumb, (-0.5, k), xybox=(-12, 0), xycoords="data",
                                     boxcoords="offset points", frameon=False, annotation_clip=False))
    fig.colorbar(im, ax=ax, fraction=0.03, label=f"Euclidean distance of descriptors (bold white < {THRESHOLD})")
    ax.set_title("face_resnet: descriptor distance of every pair of faces")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="save the distance matrix figure here (PNG)")
    parser.add_argument("--align", action="store_true", help="level the eyes before cropping")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = sv.load_model("face_resnet", layer=None)
    items = faces(args.align)
    labels = [f[0] for f in items]
    start = time.perf_counter()
    with torch.no_grad():
        g = model.embed([f[4] for f in items]).double()
    seconds = time.perf_counter() - start
    D = torch.cdist(g, g).numpy()

    print(f"face_resnet, {len(items)} faces, crops {'with' if args.align else 'without'} eye levelling; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {1000 * seconds / len(items):.1f} ms per face (batch)")
    named = [k for k, f in enumerate(items) if f[2] != "unknown"]
    print("\nNamed people (Euclidean distance of descriptors):")
    print(" " * 21 + " ".join(f"{labels[j][:10]:>10}" for j in named))
    for i in named:
        print(f"{labels[i]:20} " + " ".join(f"{D[i, j]:10.3f}" for j in named))

    pairs: dict[str, list[float]] = {}
    for i, j in itertools.combinations(range(len(items)), 2):
        which = kind(items[i], items[j])
        if which is not None:
            pairs.setdefault(which, []).append(float(D[i, j]))
    order = ["same person, whole faces", "same person, partial", "different people, named",
             "different people, named vs demo", "different people, one group photo"]
    print()
    print("\n".join(summary({k: pairs[k] for k in order if k in pairs})))
    close = sorted((D[i, j], labels[i], labels[j]) for i, j in itertools.combinations(range(len(items)), 2)
                   if kind(items[i], items[j]) and kind(items[i], items[j]).startswith("different")
                   and D[i, j] <= THRESHOLD)
    if close:
        print("different people at or below the threshold: "
              + ", ".join(f"{a} / {b} {d:.3f}" for d, a, b in close))

    print("\nAll faces:")
    print(" " * 23 + " ".join(f"{k:>5d}" for k in range(len(items))))
    for i, label in enumerate(labels):
        print(f"{i:2d} {label:19} " + " ".join(f"{D[i, j]:5.2f}" for j in range(len(items))))
    if args.out:
        draw(args.out, labels, [f[4] for f in items], D)
        print(f"\nfigure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

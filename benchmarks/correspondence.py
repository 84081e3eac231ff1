"""Real-photo correspondence of point-specific maps (default model, bundled photos and views).

Run: .venv/bin/python benchmarks/correspondence.py
Prints, per view kind, the fraction of query cell centres whose map argmax lies within one cell of
the true match, for both readings, with the chance level.
"""

import numpy as np

import simviz_widgets as sv
from simviz_widgets.datasets import load_photo, views
from simviz_widgets.evaluate import correspondence_rate, display_mapping

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "horse", "china")
KINDS = ("mirror", "crop_scale", "rotation", "perspective")


def main():
    model = sv.load_model("efficientnet_lite0")
    print(f"{'view':<12} {'contribution':>12} {'correspondence':>15} {'chance':>7} {'points':>7} "
          f"{'max compl. err':>15}")
    for kind in KINDS:
        rates = {"contribution": [], "correspondence": []}
        chance, points, worst = [], 0, 0.0
        for name in PHOTOS:
            img = load_photo(name)
            view = views(img, kind)
            q, r = model.prepare(img), model.prepare(view.image)
            exp = sv.explain(model, q, r)
            worst = max(worst, exp.completeness_error)
            mapping = display_mapping(q, r, view.map_points)
            for reading in rates:
                res = correspondence_rate(exp, mapping, reading=reading)
                rates[reading].append((res.rate, res.n_points))
            chance.append(res.chance)
            points += res.n_points
        pooled = {k: sum(r * n for r, n in v) / sum(n for _, n in v) for k, v in rates.items()}
        print(f"{kind:<12} {pooled['contribution']:>12.3f} {pooled['correspondence']:>15.3f} "
              f"{np.mean(chance):>7.3f} {points:>7d} {worst:>15.2e}")


if __name__ == "__main__":
    main()

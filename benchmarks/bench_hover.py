"""Python work per hover event in the pair viewer, and time from construction to ready.

    python benchmarks/bench_hover.py            # everything (loads the default model)
    python benchmarks/bench_hover.py --no-model # hand-made explanations only

Per hover: the viewer's event handler for one mouse move (pixel -> interpolated row of D ->
colormap -> RGBA PNG -> draw commands), as ipyevents would call it; the comm send itself is a
no-op here (no kernel), so the kernel's socket write is not included. Targets: p95 <= 2 ms per
event; ready <= 0.5 s.

Overlay size: the map can be sent at one pixel per cell (the canvas scales it with smoothing,
interpolating *colours*), upsampled in value space to a few times its cells (the default: longest
side <= 32 px), or at full display resolution. For each we report time, bytes per hover and the
colour error against the exact rendering (values interpolated, then coloured), where the
browser's smoothing is modelled as bilinear interpolation of the RGBA channels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from ipycanvas.utils import binary_image  # noqa: E402

from simviz_widgets.explain.base import PairExplanation, PointToPoint  # noqa: E402
from simviz_widgets.render import map_to_rgba, normalize_map, upsample_bilinear  # noqa: E402
from simviz_widgets.widgets import PairExplorer, PairViewer  # noqa: E402
from simviz_widgets.widgets._canvas import overlay_rgba  # noqa: E402

EVENTS = 1000
SIZE = 320
OVERLAY_CHOICES = (("cells (1 px/cell)", 0), ("<=32 px (default)", 32), ("<=64 px", 64), ("full display", None))


def handmade(grid: tuple[int, int], dim: int = 1280, image: int = 224, seed: int = 0) -> PairExplanation:
    """A decomposition-shaped explanation with random factors (EfficientNet-Lite0 width)."""
    rng = np.random.default_rng(seed)
    n = grid[0] * grid[1]
    gq = np.abs(rng.normal(size=(n, dim))).astype(np.float32)
    gr = np.abs(rng.normal(size=(n, dim))).astype(np.float32) - 0.3
    p2p = PointToPoint(gq, gr, 1.0 / (n * n * dim), grid, grid)
    d = p2p.matrix()
    photos = rng.integers(0, 256, size=(2, image, image, 3), dtype=np.uint8)
    return PairExplanation("decomposition", float(d.sum()), photos[0], photos[1],
                           d.sum(1).reshape(grid), d.sum(0).reshape(grid), True, point_to_point=p2p)


def moves(viewer: PairViewer, count: int, seed: int = 1) -> list[tuple[str, dict]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        source = "query" if (k // 100) % 2 == 0 else "reference"  # runs of moves over one image
        canvas = viewer.query_canvas if source == "query" else viewer.reference_canvas
        out.append((source, {"type": "mousemove", "relativeX": float(rng.uniform(0, canvas.width)),
                             "relativeY": float(rng.uniform(0, canvas.height)), "timeStamp": float(k)}))
    return out


def time_hovers(viewer: PairViewer, count: int = EVENTS) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and CPU (this process, all threads) milliseconds per move event. On a shared
    machine the wall-clock tail mostly measures being descheduled; CPU time does not."""
    events = moves(viewer, count + 50)
    for source, event in events[:50]:  # warm-up
        viewer._handle_event(source, event)
    viewer.logic.reset_event_order()
    wall, cpu = np.empty(count), np.empty(count)
    for k, (source, event) in enumerate(events[50:]):
        start, start_cpu = time.perf_counter(), time.process_time()
        viewer._handle_event(source, event)
        wall[k], cpu[k] = time.perf_counter() - start, time.process_time() - start_cpu
    return wall * 1e3, cpu * 1e3


def percentiles(values: np.ndarray) -> str:
    return f"{np.percentile(values, 50):6.2f} | {np.percentile(values, 95):6.2f}"


def colour_error(values: np.ndarray, max_side, canvas=(SIZE, SIZE)) -> tuple[float, float]:
    """Mean and 99th-percentile |RGB difference| (0..255) between the canvas-smoothed overlay and
    the exact one (values interpolated to the canvas, then coloured)."""
    kwargs = {"cmap": "RdBu_r", "mode": "symmetric", "alpha": 1.0}
    _, lo, hi = normalize_map(values, mode="symmetric")
    exact = map_to_rgba(upsample_bilinear(values, canvas), vmin=lo, vmax=hi, **kwargs)[..., :3].astype(float)
    small = overlay_rgba(values, canvas_size=canvas, max_side=max_side, **kwargs)
    smoothed = np.stack([upsample_bilinear(small[..., k], canvas) for k in range(3)], axis=-1)
    diff = np.abs(np.round(smoothed) - exact)
    return float(diff.mean()), float(np.percentile(diff, 99))


def point_maps(explanation: PairExplanation, count: int = 40, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, cols = explanation.query_size
    return [explanation.from_query(rng.uniform(0, rows - 1), rng.uniform(0, cols - 1)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-model", action="store_true", help="skip the default model (no weights needed)")
    args = parser.parse_args()

    real = None
    if not args.no_model:
        from skimage import data

        import simviz_widgets as sv

        model = sv.load_model("efficientnet_lite0")
        query, reference = data.chelsea(), data.chelsea()[:, ::-1]
        start = time.perf_counter()
        real = sv.explain(model, query, reference)
        cold_explain = time.perf_counter() - start

    print(f"\nPer hover event (Python work), {EVENTS} events (200 for full display), display {SIZE} px,"
          " D width 1280")
    print(f"{'map':>6} | {'overlay sent':<18} | {'px sent':>8} | {'bytes':>6} | {'wall ms p50 | p95':>15} | "
          f"{'CPU ms p50 | p95':>15} | {'colour err mean/p99':>19}")
    print("-" * 110)
    for grid in ((7, 7), (28, 28)):
        exp = handmade(grid)
        maps = point_maps(real if (real is not None and grid == real.query_map.shape) else exp)
        viewer = PairViewer.from_explanation(exp, size=SIZE)
        for label, max_side in OVERLAY_CHOICES:
            viewer.overlay_max_side = max_side
            wall, cpu = time_hovers(viewer, EVENTS if max_side is not None else 200)  # full size is slow
            sample = overlay_rgba(maps[0], cmap="RdBu_r", mode="symmetric", alpha=0.5,
                                  canvas_size=(SIZE, SIZE), max_side=max_side)
            errors = np.array([colour_error(m, max_side) for m in maps[:10]])
            print(f"{grid[0]:>2}x{grid[1]:<3} | {label:<18} | {sample.shape[0]:>3}x{sample.shape[1]:<4} | "
                  f"{len(binary_image(sample)):>6} | {percentiles(wall)} | {percentiles(cpu)} | "
                  f"{errors[:, 0].mean():8.2f} / {errors[:, 1].mean():6.1f}")
        viewer.overlay_max_side = PairViewer.overlay_max_side
        rng = np.random.default_rng(3)
        wall, cpu = [], []
        for _ in range(EVENTS):
            row, col = rng.uniform(0, 223, size=2)
            start, start_cpu = time.perf_counter(), time.process_time()
            exp.from_query(row, col)
            wall.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
        print(f"{grid[0]:>2}x{grid[1]:<3} | {'from_query alone*':<18} | {'':>8} | {'':>6} | "
              f"{percentiles(np.array(wall))} | {percentiles(np.array(cpu))} |")
        explorer = PairExplorer.from_explanation(exp, size=SIZE)
        wall, cpu = time_hovers(explorer.viewer)
        print(f"{grid[0]:>2}x{grid[1]:<3} | {'explorer (+panel)':<18} | {'':>8} | {'':>6} | "
              f"{percentiles(wall)} | {percentiles(cpu)} |")
    print("colour err: |RGB| difference (0..255) vs values-interpolated-then-coloured, RdBu_r;"
          " maps from the default model where the grid matches (7x7), else hand-made")
    print("* from_query called back to back, BLAS threads left as numpy has them (the viewer runs it"
          " on one BLAS thread)")

    print("\nConstruction to ready")
    def median_seconds(build, repeats: int = 3) -> float:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            widget = build()
            samples.append(time.perf_counter() - start)
            widget.close()
        return float(np.median(samples))

    rows = []
    for grid in ((7, 7), (28, 28)):
        exp = handmade(grid)
        for cls in (PairViewer, PairExplorer):
            rows.append((f"{cls.__name__}.from_explanation, hand-made {grid[0]}x{grid[1]} (median of 3)",
                         median_seconds(lambda: cls.from_explanation(exp, size=SIZE))))
    if real is not None:
        for cls in (PairViewer, PairExplorer):
            rows.append((f"{cls.__name__}.from_explanation, default model (median of 3)",
                         median_seconds(lambda: cls.from_explanation(real, size=SIZE))))
        rows.append(("explain() alone, default model, first call", cold_explain))
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            sv.explain(model, query, reference)
            samples.append(time.perf_counter() - start)
        rows.append(("explain() alone, default model (median of 3)", float(np.median(samples))))
        for cls in (PairViewer, PairExplorer):
            rows.append((f"{cls.__name__}(model, query, reference), default model (median of 3)",
                         median_seconds(lambda: cls(model, query, reference, size=SIZE))))
    for label, seconds in rows:
        print(f"  {label:<72} {seconds:7.3f} s")


if __name__ == "__main__":
    main()

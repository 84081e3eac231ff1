"""Hover-to-paint in a real browser: the kernel path vs the browser path, four set-ups in one run.

    python benchmarks/bench_browser_hover.py [--moves 60] [--json out.json]

Set-ups (each a private JupyterLab on 127.0.0.1, as tests/browser starts them; headless Chromium
through Playwright):

* stock: Jupyter's stock kernel websocket;
* extension: simviz_widgets.lab_server (TCP_NODELAY on the kernel websocket);
* stock + 100 ms: the stock server with every kernel -> browser frame 100 ms late
  (tests/browser/delayed_kernel.py), as from a remote kernel;
* standalone file: ``explanation.to_html(path)`` opened from file:// with the network off.

In each notebook, two viewers of the default pair (chelsea and its mirror, EfficientNet-Lite0):
``hover="kernel"`` (every hover a kernel round trip; the kernel draws on ipycanvas) and
``hover="browser"`` (the page's hover layer paints). Real mouse moves (Playwright) over the query
image along the same path for every set-up and path (each move in another feature cell, so every
move changes the map), 50 ms apart; the latency of a move is from the page receiving the mousemove
to the reference image's pixels changing (tests/browser/lab_harness.py's probe: checked right after
each drawImage / putImageData on the watched canvas, and every animation frame). Five warm-up moves
first, not counted. Also printed: the data sent per explanation (the payload's binary parts, its
JSON rest) and the standalone file's size. Target: browser-path p95 <= 16.7 ms (one frame at 60 Hz)
in every set-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests" / "browser"))
sys.path.insert(0, str(REPO_ROOT))

from lab_harness import (  # noqa: E402 - after the path above
    DELAYED_KERNEL_ARGS,
    EXTENSION_ARGS,
    HARNESS_DIR,
    CanvasDriver,
    LabNotebook,
    hover_path,
    launch_chromium,
    new_lab_page,
    offline_context,
    start_server,
    stop_server,
    summary,
    timed_hovers,
)
from machine import cpu_name, load_average  # noqa: E402 - this folder (the script's own)

GRID = 7
CANVAS = (320, 320)
TARGET_P95_MS = 1000 / 60
WARM_UP = 5
PAUSE_MS = 50  # between moves: past the kernel path's 30 ms ipyevents throttle, so each move is a hover
SETUPS = [
    # name, server arguments, extra PYTHONPATH for the server
    ("stock", [], []),
    ("extension (lab_server)", EXTENSION_ARGS, []),
    ("stock + 100 ms kernel delay", DELAYED_KERNEL_ARGS, [HARNESS_DIR]),
]
CELLS = [
    """\
import simviz_widgets as sv
from simviz_widgets.datasets import default_pair
from simviz_widgets.widgets import PairViewer

model = sv.models.load("efficientnet_lite0")
query, reference = default_pair()
""",
    """\
browser_viewer = PairViewer(model, query, reference, hover="browser")
browser_viewer.add_class("bench-browser")
browser_viewer
""",
    """\
kernel_viewer = PairViewer.from_explanation(browser_viewer.explanation, model=model, hover="kernel")
kernel_viewer.add_class("bench-kernel")
kernel_viewer
""",
]
PATHS = {
    # path: (viewer class, element the mouse goes to, canvas that shows the hover)
    "kernel": (".bench-kernel", ".simviz-query-canvas", ".simviz-reference-canvas"),
    "browser": (".bench-browser", ".simviz-query-hover", ".simviz-reference-hover"),
}


def measure(driver, box, path, moves) -> dict:
    timed_hovers(driver, box, path[:WARM_UP], pause_ms=PAUSE_MS)
    driver.sent_messages(reset=True)
    result = timed_hovers(driver, box, path[WARM_UP:], pause_ms=PAUSE_MS)
    sent = driver.sent_messages()
    out = summary(result["latencies"])
    out["missed"] = len(result["missed"])
    out["kernel_messages_per_move"] = round(sum(m["type"] == "comm_msg" for m in sent) / moves, 2)
    out["latencies_ms"] = [round(v, 2) for v in result["latencies"]]
    return out


def lab_setup(browser, name, args, pythonpath, base: Path, path) -> dict:
    server = start_server(base, args, pythonpath=pythonpath)
    page = new_lab_page(browser)
    try:
        server.write_notebook("bench.ipynb", CELLS)
        notebook = LabNotebook(page, server, "bench.ipynb").open()
        notebook.run_all()
        for viewer, _query, _reference in PATHS.values():
            for side in ("query", "reference"):
                notebook.wait_for_canvas(f"{viewer} .simviz-{side}-canvas")
        results = {}
        for hover, (viewer, query, reference) in PATHS.items():
            page.mouse.move(5, 5)
            page.wait_for_timeout(300)
            box = notebook.canvas_box(f"{viewer} {query}")
            notebook.install_latency_probe(f"{viewer} {reference}")
            results[hover] = measure(notebook, box, path, len(path) - WARM_UP)
            print(f"  {name:<30} {hover:<8} p50 {results[hover]['p50_ms']:7.2f} ms  p95 "
                  f"{results[hover]['p95_ms']:7.2f} ms", flush=True)
        if "delayed_kernel" in " ".join(args):
            results["delays_ms"] = server.delayed_kernel_websockets()
        if args == EXTENSION_ARGS:
            results["tcp_nodelay"] = server.kernel_websocket_nodelay()
        return results
    finally:
        page.context.close()
        stop_server(server)


def file_setup(browser, exp, base: Path, path) -> dict:
    html = exp.to_html(base / "pair.html")
    context = offline_context(browser, viewport={"width": 1000, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    try:
        page.goto(html.as_uri())
        root = "document.getElementById('simviz-root').simvizView"
        page.wait_for_function(f"() => {root}")
        page.evaluate(f"() => {root}.ready.then(() => true)")
        driver = CanvasDriver(page)
        box = driver.canvas_box("canvas.sv-query")
        driver.install_latency_probe("canvas.sv-reference")
        page.evaluate("() => { window.__simvizSent = []; }")
        result = measure(driver, box, path, len(path) - WARM_UP)
        result["kernel_messages_per_move"] = None
        result["blocked_requests"] = [url for url, _frame in context.blocked]
        print(f"  {'standalone file':<30} {'browser':<8} p50 {result['p50_ms']:7.2f} ms  p95 "
              f"{result['p95_ms']:7.2f} ms", flush=True)
        return {"browser": result, "file_bytes": html.stat().st_size}
    finally:
        context.close()


def payload_sizes(exp) -> dict:
    from simviz_widgets.web.payload import explanation_payload, payload_nbytes

    payload = explanation_payload(exp, binary="bytes")
    parts = payload_nbytes(payload)

    def strip(tree):
        if isinstance(tree, dict):
            return {key: strip(value) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return [strip(value) for value in tree]
        return None if isinstance(tree, (bytes, bytearray, memoryview)) else tree

    parts["json (the rest)"] = len(json.dumps(strip(payload), separators=(",", ":")))
    parts["total"] = sum(parts.values())
    parts["point encoding"] = payload["point"]["encoding"] if payload["point"] else None
    return parts


def machine() -> dict:
    return {"nproc": os.cpu_count(), "cpu": cpu_name(), "python": platform.python_version(),
            "load_average_1_5_15": [round(v, 2) for v in load_average()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=60, help="timed moves per set-up and path (>= 60)")
    parser.add_argument("--json", type=Path, help="write every latency and size here")
    args = parser.parse_args()
    if args.moves < 60:
        parser.error("--moves must be at least 60")

    import jupyterlab
    from playwright.sync_api import sync_playwright

    import simviz_widgets as sv
    from simviz_widgets.datasets import default_pair

    model = sv.models.load("efficientnet_lite0")
    query, reference = default_pair()
    exp = sv.explain(model, query, reference)
    path = hover_path(*CANVAS, GRID, args.moves + WARM_UP)
    report = {"machine_before": machine(), "moves": args.moves, "setups": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simviz-bench-browser-") as tmp, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        report["chromium"], report["jupyterlab"] = browser.version, jupyterlab.__version__
        print(f"hover-to-paint, {args.moves} moves per set-up and path, Chromium {browser.version}, "
              f"JupyterLab {jupyterlab.__version__}", flush=True)
        for k, (name, server_args, pythonpath) in enumerate(SETUPS):
            report["setups"][name] = lab_setup(browser, name, server_args, pythonpath, Path(tmp) / f"lab{k}", path)
        report["setups"]["standalone file"] = file_setup(browser, exp, Path(tmp), path)
        browser.close()
    report["sizes"] = payload_sizes(exp)
    report["machine_after"] = machine()
    report["seconds"] = round(time.perf_counter() - started, 1)

    print(f"\n{'set-up':<30} {'path':<8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'msgs/move':>10}  p95 <= 16.7 ms")
    for name, results in report["setups"].items():
        for hover in ("kernel", "browser"):
            if hover not in results:
                continue
            r = results[hover]
            messages = "-" if r["kernel_messages_per_move"] is None else f"{r['kernel_messages_per_move']:.2f}"
            ok = "yes" if r["p95_ms"] is not None and r["p95_ms"] <= TARGET_P95_MS else "no"
            missed = f"  ({r['missed']} moves never painted)" if r["missed"] else ""
            print(f"{name:<30} {hover:<8} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['max_ms']:8.2f} "
                  f"{messages:>10}  {ok if hover == 'browser' else '(comparison)'}{missed}")
    sizes = report["sizes"]
    print(f"\ndata sent per explanation (payload, default pair, 320 px, {sizes['point encoding']} encoding): "
          + ", ".join(f"{key} {value / 1e3:.1f} kB" for key, value in sizes.items() if isinstance(value, int)))
    file_bytes = report["setups"]["standalone file"]["file_bytes"]
    print(f"standalone file (explanation.to_html, default pair): {file_bytes / 1e3:.1f} kB ({file_bytes} bytes); "
          f"requests it tried: {report['setups']['standalone file']['browser']['blocked_requests']}")
    for key in ("machine_before", "machine_after"):
        print(f"{key}: {report[key]}")
    print(f"wall time {report['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    missed = sum(r[h]["missed"] for r in report["setups"].values() for h in ("kernel", "browser") if h in r)
    if missed:
        raise SystemExit(f"{missed} moves never repainted the reference image")


if __name__ == "__main__":
    main()

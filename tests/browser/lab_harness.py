"""Real-browser harness, without pytest: private JupyterLab servers and headless Chromium pages.

tests/browser/conftest.py wraps these in fixtures; benchmarks/bench_browser_hover.py imports them
directly (``sys.path`` gets this folder), so the tests and the benchmark measure the same way.

A server is started from the caller (random port and token, temp root dir, private Jupyter
config/data/runtime dirs, the venv's python for server and kernel) with any extra server
arguments: Jupyter's stock kernel websocket, simviz_widgets.lab_server (:data:`EXTENSION_ARGS`),
or the test-only 100 ms delay shim tests/browser/delayed_kernel.py (:data:`DELAYED_KERNEL_ARGS`,
this folder on the server's PYTHONPATH). `playwright install` cannot download browsers here, so
Debian's chromium is used through ``executable_path`` (scripts/install_browser.sh installs it).

Pixels and hover-to-paint latency are read through :class:`CanvasDriver`, for any page or frame:
a JupyterLab notebook (:class:`LabNotebook`), a standalone explanation page, or an iframe in one.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parents[1]
CHROMIUM_PATH = os.environ.get("SIMVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: simviz_widgets.lab_server: TCP_NODELAY on the kernel websocket (what `scripts/run_demo.sh lab` uses).
EXTENSION_ARGS = ["--ServerApp.jpserver_extensions={'simviz_widgets.lab_server': True}"]
#: tests/browser/delayed_kernel.py: every kernel -> browser frame 100 ms late (needs HARNESS_DIR on PYTHONPATH).
DELAYED_KERNEL_ARGS = ["--ServerApp.kernel_websocket_connection_class=delayed_kernel.DelayedKernelConnection"]
# Front-end packages the widgets need, as JupyterLab names its federated (prebuilt) extensions.
REQUIRED_LABEXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "ipycanvas", "ipyevents", "bqplot", "anywidget")
SERVER_START_TIMEOUT_S = 120
KERNEL_TIMEOUT_S = 600
KERNEL_NAME = "python3"
#: URL schemes a page may load without the network (everything else is aborted and recorded).
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def browser_unavailable_reason() -> str | None:
    if not (os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)):
        return f"chromium not found at {CHROMIUM_PATH} (run scripts/install_browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python package 'playwright' is not installed"
    return None


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)


def offline_context(browser, **options):
    """A browser context with the network off: ``set_offline(True)`` and a route that aborts every
    request that is not file:, data:, blob: or about:, recording it in ``context.blocked``
    (url, frame url) so a test can assert that nothing was asked for."""
    context = browser.new_context(**options)
    context.set_offline(True)
    context.blocked = []

    def route(route):
        request = route.request
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
            return
        try:
            frame = request.frame.url
        except Exception:  # noqa: BLE001 - e.g. a service worker request has no frame
            frame = None
        context.blocked.append((request.url, frame))
        route.abort()

    context.route("**/*", route)
    return context


# ---------------------------------------------------------------- JupyterLab server


@dataclass
class LabServer:
    base_url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen
    args: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def kernel_websocket_nodelay(self) -> list[int]:
        """TCP_NODELAY of each kernel websocket opened so far, as lab_server.LowLatencyKernelConnection logs it."""
        log = self.log_path.read_text(errors="replace")
        return [int(flag) for flag in re.findall(r"simviz_widgets: kernel \S+ websocket TCP_NODELAY=(\d)", log)]

    def delayed_kernel_websockets(self) -> list[float]:
        """The delay (ms) of each kernel websocket opened so far through delayed_kernel.DelayedKernelConnection."""
        log = self.log_path.read_text(errors="replace")
        return [float(ms) for ms in re.findall(r"delayed_kernel: kernel \S+ websocket, frames ([\d.]+) ms late", log)]

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "<no server log>"

    def api(self, method: str, path: str):
        request = urllib.request.Request(
            f"{self.base_url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def write_notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook of code cells into the server root; return its name."""
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(notebook, self.root_dir / name)
        return name

    def close_sessions(self, paths) -> None:
        """Shut down the kernels of the notebooks at ``paths`` (the server keeps running)."""
        paths = set(paths)
        try:
            for session in self.api("GET", "/api/sessions") or []:
                if session.get("path") in paths:
                    self.api("DELETE", f"/api/sessions/{session['id']}")
        except (urllib.error.URLError, OSError):
            pass  # the server teardown stops whatever is left


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_jupyter_env(base: Path, pythonpath=()) -> dict[str, str]:
    """Environment for server, kernels and nbconvert: nothing read from the user's home, offline,
    this checkout (and ``pythonpath``) first on the path, "python3" = this interpreter."""
    dirs = {name: base / name for name in ("config", "data", "runtime", "path", "ipython")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    # A kernel spec pointing at this interpreter, found first via JUPYTER_PATH, so "python3" is the venv.
    spec_dir = dirs["path"] / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (simviz test venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    # Quiet JupyterLab: no news/update toasts floating over the widgets.
    notification = dirs["config"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(os.environ)
    path = [str(REPO_ROOT), *(str(p) for p in pythonpath), os.environ.get("PYTHONPATH", "")]
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PATH=str(dirs["path"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["config"] / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["config"] / "lab" / "workspaces"),
        IPYTHONDIR=str(dirs["ipython"]),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(p for p in path if p),
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


def _wait_until_ready(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {server.process.returncode} while starting; log:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.25)
    raise RuntimeError(f"JupyterLab not ready after {SERVER_START_TIMEOUT_S} s; log:\n{server.log_tail()}")


def _check_labextensions(server: LabServer) -> None:
    """The /lab page lists the prebuilt extensions it will load; the widget front-ends must be among them."""
    request = urllib.request.Request(server.url("/lab"))
    with urllib.request.urlopen(request, timeout=30) as response:
        html = response.read().decode()
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    if match is None:
        raise RuntimeError("JupyterLab /lab page has no jupyter-config-data block")
    page_config = json.loads(match.group(1))
    loaded = {ext["name"] for ext in page_config.get("federated_extensions", [])}
    disabled = set(page_config.get("disabledExtensions", []))
    missing = [name for name in REQUIRED_LABEXTENSIONS if name not in loaded]
    off = [name for name in REQUIRED_LABEXTENSIONS if name in disabled]
    if missing or off:
        raise RuntimeError(
            f"widget front-ends not available as prebuilt labextensions: missing={missing} disabled={off}; "
            f"loaded={sorted(loaded)} (check `jupyter labextension list` in {sys.prefix})"
        )


def stop_server(server: LabServer) -> None:
    # Shut kernels down through the API first: they run in their own sessions, outside the server's group.
    try:
        for kernel in server.api("GET", "/api/kernels") or []:
            server.api("DELETE", f"/api/kernels/{kernel['id']}")
    except (urllib.error.URLError, OSError):
        pass
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=15)


def start_server(base: Path, extra_args=(), *, pythonpath=()) -> LabServer:
    """JupyterLab on 127.0.0.1 (random port, token) with ``extra_args`` after the harness's own
    arguments; ``pythonpath``: folders the server (and its kernels) import from, after this checkout."""
    root_dir = base / "root"
    root_dir.mkdir(parents=True, exist_ok=True)
    env = private_jupyter_env(base / "jupyter", pythonpath)
    last_error: Exception | None = None
    for attempt in range(3):  # the free port can be taken between probing and binding
        port, token = _free_port(), secrets.token_hex(24)
        log_path = base / f"jupyterlab-{attempt}.log"
        cmd = [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root_dir}",
            "--ServerApp.allow_root=True",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            *extra_args,
        ]  # fmt: skip
        log_file = open(log_path, "wb")
        process = subprocess.Popen(
            cmd, cwd=root_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log_path, process, list(extra_args))
        try:
            _wait_until_ready(server)
            _check_labextensions(server)
            return server
        except Exception as error:  # noqa: BLE001 - retried, then re-raised with the log
            last_error = error
            stop_server(server)
            if "already in use" not in server.log_tail():
                break
    raise RuntimeError(f"could not start JupyterLab: {last_error}")


# ---------------------------------------------------------------- pages

# Records the type of every message the page sends to a kernel (and whether it is ipycanvas's own
# per-move mouse event), so tests can count what one hover costs the kernel.
SENT_MESSAGES_JS = """
window.__simvizSent = [];
const originalSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  let text = null;
  if (typeof data === 'string') text = data;
  else if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) text = new TextDecoder('latin1').decode(data);
  if (text !== null) {
    const type = /"msg_type":\\s*"(\\w+)"/.exec(text);
    window.__simvizSent.push({type: type ? type[1] : null, ipycanvasMouse: /"event":\\s*"mouse_/.test(text),
                              time: performance.now()});
  }
  return originalSend.call(this, data);
};
"""


def new_lab_page(browser, *, width: int = 1600, height: int = 1200):
    """A page (own context, device scale factor 1) recording console errors and the messages it sends."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    context.add_init_script(SENT_MESSAGES_JS)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


_CANVAS_JS = """
(selector) => {
  // The visible match: widgets of other (hidden) notebook tabs may carry the same class.
  const host = Array.from(document.querySelectorAll(selector)).find(el => el.getClientRects().length > 0);
  if (!host) return null;
  const canvas = host.tagName === 'CANVAS' ? host : host.querySelector('canvas');
  if (!canvas) return null;
  return canvas;
}
"""

_READ_PIXELS_JS = f"""
(selector) => {{
  const canvas = ({_CANVAS_JS})(selector);
  if (!canvas) return null;
  const bytes = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {{
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }}
  return {{width: canvas.width, height: canvas.height, rgba: btoa(binary)}};
}}
"""

_CANVAS_BOX_JS = f"""
(selector) => {{
  const canvas = ({_CANVAS_JS})(selector);
  if (!canvas) return null;
  const box = canvas.getBoundingClientRect();
  return {{left: box.left, top: box.top, width: box.width, height: box.height,
           pixelWidth: canvas.width, pixelHeight: canvas.height}};
}}
"""

# Times hover -> paint on one canvas: from the page receiving the mousemove to the canvas's pixels
# differing from what they were when armed. Event-driven (no busy polling competing with the kernel
# for CPU): the check runs right after every drawImage / putImageData on the canvas's context
# (ipycanvas copies each new frame into its view's <canvas> with drawImage; the browser hover layer
# and the standalone page paint with putImageData), timed at the end of that call, plus once per
# animation frame in case pixels arrive another way.
_LATENCY_PROBE_JS = f"""
(selector) => {{
  const canvas = ({_CANVAS_JS})(selector);
  if (!canvas) return false;
  const ctx = canvas.getContext('2d');
  const snapshot = () => new Uint32Array(ctx.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  const probe = {{moveTime: null, armed: false, before: null, finish: null, result: null}};
  const check = (paintedAt) => {{
    if (!probe.armed || probe.moveTime === null) return;
    const now = snapshot();
    let changed = now.length !== probe.before.length;
    for (let i = 0; !changed && i < now.length; i++) changed = now[i] !== probe.before[i];
    if (changed) probe.finish({{latencyMs: paintedAt - probe.moveTime}});
  }};
  for (const name of ['drawImage', 'putImageData']) {{
    const original = ctx[name];
    ctx[name] = function (...args) {{
      const out = original.apply(this, args);
      check(performance.now());
      return out;
    }};
  }}
  const frame = () => {{ check(performance.now()); requestAnimationFrame(frame); }};
  requestAnimationFrame(frame);
  document.addEventListener('mousemove', () => {{ probe.moveTime = performance.now(); }}, {{capture: true}});
  probe.arm = (timeoutMs) => {{
    probe.moveTime = null;
    probe.before = snapshot();
    probe.result = new Promise(resolve => {{
      const timer = setTimeout(() => {{
        probe.armed = false;
        resolve({{latencyMs: null, sawMove: probe.moveTime !== null}});
      }}, timeoutMs);
      probe.finish = (value) => {{ probe.armed = false; clearTimeout(timer); resolve(value); }};
    }});
    probe.armed = true;
  }};
  window.__simvizProbe = probe;
  return true;
}}
"""

# A signature of the visible element matching `selector`: its box, a hash of its markup and
# whether its images have loaded; CanvasDriver.wait_stable waits until it stops changing.
_ELEMENT_SIGNATURE_JS = """
(selector) => {
  const el = Array.from(document.querySelectorAll(selector)).find(e => e.getClientRects().length > 0);
  if (!el) return null;
  const box = el.getBoundingClientRect();
  const markup = el.innerHTML;
  let hash = 0;
  for (let i = 0; i < markup.length; i++) hash = (hash * 31 + markup.charCodeAt(i)) | 0;
  const images = Array.from(el.querySelectorAll('img'));
  const loaded = images.every(img => img.complete);
  return `${Math.round(box.width)}x${Math.round(box.height)}:${markup.length}:${hash}:${loaded}`;
}
"""


@dataclass
class CanvasBox:
    """A canvas's box in the top page's client coordinates, and its pixel size."""

    left: float
    top: float
    width: float
    height: float
    pixel_width: int
    pixel_height: int

    def client_point(self, row: float, col: float) -> tuple[int, int]:
        """Client (x, y) of canvas pixel (row, col), through the CSS scaling of the element, rounded
        to whole CSS pixels: Chromium's MouseEvent.clientX/Y are integers (a fractional move is
        truncated), so the point a page computes is the one the test computes."""
        x = self.left + (col + 0.5) * self.width / self.pixel_width
        y = self.top + (row + 0.5) * self.height / self.pixel_height
        return int(round(x)), int(round(y))

    def relative(self, x: float, y: float) -> dict:
        """The ipyevents-style position of client (x, y) in this box (what event_to_pixel reads)."""
        return {"relativeX": x - self.left, "relativeY": y - self.top,
                "boundingRectWidth": self.width, "boundingRectHeight": self.height}


class CanvasDriver:
    """Canvas pixels, boxes, real mouse moves and the latency probe in one page or frame.

    ``target``: a Playwright Page or Frame (where selectors are looked up); mouse moves go through
    the top page, so a frame's boxes are shifted by ``offset`` (its iframe element's client corner)."""

    def __init__(self, page, target=None, offset: tuple[float, float] = (0.0, 0.0)):
        self.page, self.target, self.offset = page, page if target is None else target, offset

    def canvas_pixels(self, selector: str) -> np.ndarray:
        """RGBA uint8 (H, W, 4) of the <canvas> at (or inside) `selector`, as drawn (getImageData)."""
        result = self.target.evaluate(_READ_PIXELS_JS, selector)
        if result is None:
            raise AssertionError(f"no canvas found for selector {selector!r}")
        flat = np.frombuffer(base64.b64decode(result["rgba"]), dtype=np.uint8)
        return flat.reshape(result["height"], result["width"], 4).copy()

    def canvas_box(self, selector: str, scroll: bool = True) -> CanvasBox:
        if scroll:
            self.target.locator(selector).filter(visible=True).first.scroll_into_view_if_needed()
        box = self.target.evaluate(_CANVAS_BOX_JS, selector)
        if box is None:
            raise AssertionError(f"no canvas found for selector {selector!r}")
        return CanvasBox(box["left"] + self.offset[0], box["top"] + self.offset[1], box["width"], box["height"],
                         box["pixelWidth"], box["pixelHeight"])

    def wait_for_canvas(self, selector: str, timeout_s: float = 60) -> None:
        """Wait until the canvas exists and has painted something (any non-transparent pixel)."""
        self.target.wait_for_function(
            f"""(selector) => {{
                const canvas = ({_CANVAS_JS})(selector);
                if (!canvas || !canvas.width || !canvas.height) return false;
                const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
                return false;
            }}""",
            arg=selector,
            timeout=timeout_s * 1000,
        )

    def hover(self, box: CanvasBox, row: float, col: float) -> tuple[int, int]:
        """A real mouse move to canvas pixel (row, col) of ``box``; returns the client point."""
        x, y = box.client_point(row, col)
        self.page.mouse.move(x, y)
        return x, y

    def install_latency_probe(self, selector: str) -> None:
        if not self.target.evaluate(_LATENCY_PROBE_JS, selector):
            raise AssertionError(f"no canvas to probe for selector {selector!r}")

    def timed_hover(self, box: CanvasBox, row: float, col: float, timeout_ms: float = 3000) -> float | None:
        """Hover (row, col); milliseconds from the page receiving the move to the watched canvas changing."""
        self.target.evaluate("(timeoutMs) => window.__simvizProbe.arm(timeoutMs)", timeout_ms)
        self.hover(box, row, col)
        result = self.target.evaluate("() => window.__simvizProbe.result")
        return result["latencyMs"]

    def wait_for_change(self, selector: str, before: np.ndarray, timeout_s: float = 30) -> np.ndarray:
        """Pixels of the canvas once they differ from `before` (raises on timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = self.canvas_pixels(selector)
            if now.shape != before.shape or not np.array_equal(now, before):
                return now
            time.sleep(0.05)
        raise AssertionError(f"canvas {selector!r} did not change within {timeout_s} s")

    def wait_settled(self, selector: str, pixels: np.ndarray | None = None, quiet_s: float = 0.3,
                     timeout_s: float = 10.0) -> np.ndarray:
        """Pixels of the canvas once they have not changed for `quiet_s` (the last of a burst of frames)."""
        deadline = time.monotonic() + timeout_s
        last = self.canvas_pixels(selector) if pixels is None else pixels
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.canvas_pixels(selector)
            if now.shape != last.shape or not np.array_equal(now, last):
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change >= quiet_s:
                return last
        return last

    def wait_stable(self, selector: str, quiet_s: float = 0.5, timeout_s: float = 60) -> None:
        """Wait until the visible element matching `selector` exists and its size, markup and images
        have stopped changing for `quiet_s` (widgets still receiving updates from the kernel)."""
        deadline = time.monotonic() + timeout_s
        last, last_change = None, time.monotonic()
        while time.monotonic() < deadline:
            signature = self.target.evaluate(_ELEMENT_SIGNATURE_JS, selector)
            if signature is None or signature != last or not signature.endswith(":true"):
                last, last_change = signature, time.monotonic()
            elif time.monotonic() - last_change >= quiet_s:
                return
            time.sleep(0.1)
        raise AssertionError(f"element {selector!r} still changing (or absent) after {timeout_s} s: {last}")

    def sent_messages(self, reset: bool = False) -> list[dict]:
        """Messages this page sent to kernels since the last reset: [{type, ipycanvasMouse, time}]."""
        sent = self.page.evaluate("() => (window.__simvizSent || []).slice()")
        if reset:
            self.page.evaluate("() => { if (window.__simvizSent) window.__simvizSent.length = 0; }")
        return sent


# ---------------------------------------------------------------- hover paths and latency


def hover_path(rows: int, cols: int, grid: int, moves: int, seed: int = 0, jitter: int = 8) -> list[tuple[int, int]]:
    """``moves`` canvas pixels (row, col), each in another feature cell than the one before (so every
    move changes the map and must repaint), jittered inside the cell so the path looks like a hand."""
    rng = np.random.default_rng(seed)
    cells = [(int(rng.integers(grid)), int(rng.integers(grid)))]
    while len(cells) < moves:
        cell = (int(rng.integers(grid)), int(rng.integers(grid)))
        if cell != cells[-1]:
            cells.append(cell)
    path = []
    for cell_row, cell_col in cells:
        row = int((cell_row + 0.5) * rows / grid) + int(rng.integers(-jitter, jitter + 1))
        col = int((cell_col + 0.5) * cols / grid) + int(rng.integers(-jitter, jitter + 1))
        path.append((min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)))
    return path


def timed_hovers(driver: CanvasDriver, box: CanvasBox, path, *, pause_ms: float = 0.0,
                 timeout_ms: float = 3000) -> dict:
    """Hover every point of ``path`` with the probe armed; {latencies, missed (points), elapsed_ms}."""
    latencies, missed = [], []
    start = time.perf_counter()
    for row, col in path:
        latency = driver.timed_hover(box, row, col, timeout_ms)
        if latency is None:
            missed.append((row, col))
        else:
            latencies.append(latency)
        if pause_ms:
            driver.page.wait_for_timeout(pause_ms)
    return {"latencies": latencies, "missed": missed, "elapsed_ms": (time.perf_counter() - start) * 1000}


def summary(latencies) -> dict:
    values = np.asarray(latencies, dtype=float)
    if values.size == 0:
        return {"moves": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {"moves": int(values.size), "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2), "max_ms": round(float(values.max()), 2)}


# ---------------------------------------------------------------- notebook driving

_NOTEBOOK_STATE_JS = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
  return {
    ready: panel.context.isReady,
    kernel: kernel ? kernel.status : null,
    executed: cells.map(cell => cell.model.executionCount),
    running: cells.some(cell => cell.model.executionState === 'running'),
    errors: cells.flatMap(cell => cell.model.outputs.toJSON().filter(out => out.output_type === 'error'))
      .map(out => `${out.ename}: ${out.evalue}\\n${(out.traceback || []).join('\\n')}`),
  };
}
"""

_RUN_ALL_JS = """
async () => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  app.shell.activateById(panel.id);
  panel.content.activate();
  await app.commands.execute('notebook:run-all-cells');
}
"""

# Runs code in the current notebook's kernel outside any cell (silent: no cell output, no history)
# and returns the reply: the value of `expression` (its repr) or the error.
_KERNEL_EXECUTE_JS = """
async ({code, expression}) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  const kernel = session && session.kernel;
  if (!kernel) return {error: 'the current notebook has no kernel'};
  const future = kernel.requestExecute({
    code, silent: true, store_history: false, allow_stdin: false, stop_on_error: false,
    user_expressions: expression === null ? {} : {value: expression},
  });
  const reply = (await future.done).content;
  if (reply.status !== 'ok') return {error: `${reply.ename}: ${reply.evalue}`};
  if (expression === null) return {};
  const value = reply.user_expressions.value;
  if (value.status !== 'ok') return {error: `${value.ename}: ${value.evalue}`};
  return {repr: value.data['text/plain']};
}
"""


class KernelError(AssertionError):
    """Code run in the notebook's kernel by LabNotebook.kernel_eval / kernel_exec raised."""


class LabNotebook(CanvasDriver):
    """One notebook open in JupyterLab in a Playwright page."""

    def __init__(self, page, server: LabServer, name: str):
        super().__init__(page)
        self.server, self.name = server, name

    def screenshot_element(self, selector: str, path, *, stable: str | None = None, scroll: bool = True):
        """Element screenshot of the visible ``selector`` into ``path`` once ``stable`` (default the
        element itself) has stopped changing. With ``scroll`` the element is scrolled into view and
        the viewport grows for an element taller than the notebook area (JupyterLab scrolls the
        notebook, not the page, so it would be cut), restored afterwards; without it the page is
        left exactly as it is (a hover stays where it is)."""
        page = self.page
        locator = page.locator(selector).filter(visible=True).first
        viewport = dict(page.viewport_size)
        if scroll:
            locator.scroll_into_view_if_needed()
            needed = int(locator.bounding_box()["height"]) + 260  # JupyterLab's bars and the cell's margins
            if needed > viewport["height"]:
                page.set_viewport_size({"width": viewport["width"], "height": needed})
                locator.scroll_into_view_if_needed()
        try:
            self.wait_stable(stable or selector)
            locator.screenshot(path=str(path))
        finally:
            if dict(page.viewport_size) != viewport:
                page.set_viewport_size(viewport)
        print(f"\nscreenshot: {path}")
        return path

    def open(self, timeout_s: float = 120) -> "LabNotebook":
        # A workspace of its own, reset: JupyterLab would otherwise restore the tabs (and kernels) of
        # notebooks earlier tests opened, and their widgets would shadow this notebook's.
        workspace = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(self.name).stem)
        self.page.goto(self.server.url(f"/lab/workspaces/{workspace}/tree/{self.name}?reset"))
        self.page.wait_for_function(
            f"() => {{ const s = ({_NOTEBOOK_STATE_JS})(); return s && s.ready && s.kernel === 'idle'; }}",
            timeout=timeout_s * 1000,
        )
        return self

    def state(self) -> dict:
        return self.page.evaluate(_NOTEBOOK_STATE_JS)

    def run_all(self, timeout_s: float = KERNEL_TIMEOUT_S, start_timeout_s: float = 15) -> None:
        """Run All through JupyterLab's own command (what the Run menu calls); wait for every cell to finish.

        The command acts on the notebook JupyterLab tracks as current, which a freshly loaded page
        may not have settled yet; the notebook is activated first and the command retried if no
        cell starts."""
        for _attempt in range(3):
            self.page.evaluate(_RUN_ALL_JS)
            deadline = time.monotonic() + start_timeout_s
            while time.monotonic() < deadline:
                state = self.state()
                if state["running"] or state["kernel"] != "idle" or any(c is not None for c in state["executed"]):
                    return self._wait_finished(timeout_s)
                time.sleep(0.2)
        raise AssertionError(f"{self.name}: Run All started no cell: {self.state()}")

    def _wait_finished(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        settled_checks = 0
        while time.monotonic() < deadline:
            state = self.state()
            if state["errors"]:
                raise AssertionError(f"{self.name}: cell raised in the browser kernel:\n" + "\n".join(state["errors"]))
            done = (
                state["kernel"] == "idle"
                and not state["running"]
                and all(count is not None for count in state["executed"])
            )
            settled_checks = settled_checks + 1 if done else 0
            if settled_checks >= 3:  # idle on consecutive polls, not between two cells
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: cells still running after {timeout_s} s: {self.state()}")

    def kernel_exec(self, code: str) -> None:
        """Run `code` in this notebook's kernel, outside the cells (raises KernelError if it raises)."""
        result = self.page.evaluate(_KERNEL_EXECUTE_JS, {"code": code, "expression": None})
        if "error" in result:
            raise KernelError(f"kernel raised running {code!r}: {result['error']}")

    def kernel_eval(self, expression: str, code: str = ""):
        """The value of a Python `expression` in this notebook's kernel (after running `code`), sent
        back as JSON: it must evaluate to something json.dumps accepts."""
        wrapped = f"__import__('json').dumps({expression})"
        result = self.page.evaluate(_KERNEL_EXECUTE_JS, {"code": code, "expression": wrapped})
        if "error" in result:
            raise KernelError(f"kernel raised evaluating {expression!r}: {result['error']}")
        return json.loads(ast.literal_eval(result["repr"]))

    def kernel_array(self, expression: str) -> np.ndarray:
        """A numpy array computed in the kernel (any dtype and shape), sent back as base64."""
        meta = self.kernel_eval(
            f"(lambda a: [str(a.dtype), list(a.shape), __import__('base64').b64encode(a.tobytes()).decode()])"
            f"(__import__('numpy').ascontiguousarray({expression}))"
        )
        dtype, shape, data = meta
        return np.frombuffer(base64.b64decode(data), dtype=dtype).reshape(shape).copy()

    def poll_kernel(self, expression: str, expected, timeout_s: float = 60.0):
        """Evaluate `expression` in the kernel until it equals `expected` (each evaluation is a new
        execute request, so the kernel's event loop turns between them, as it does for a user)."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.kernel_eval(expression)
            if value == expected:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{expression} is {value!r} after {timeout_s} s; expected {expected!r}")


def open_lab_notebook(page, server: LabServer, name: str, cells: list[str]) -> LabNotebook:
    """Write a notebook of code cells into the server root and open it in JupyterLab."""
    server.write_notebook(name, cells)
    return LabNotebook(page, server, name).open()


def run_notebook(page, server: LabServer, name: str, cells: list[str]) -> "LabNotebook":
    """Write a notebook of code cells into ``server``'s root, open it in ``page``, run all its cells."""
    server.write_notebook(name, cells)
    notebook = LabNotebook(page, server, name).open()
    notebook.run_all()
    return notebook

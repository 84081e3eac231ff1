"""Real-browser fixtures: private JupyterLab servers driven by headless Chromium through Playwright.

The machinery (servers, pages, notebooks, pixels, the latency probe) is tests/browser/lab_harness.py,
shared with benchmarks/bench_browser_hover.py. Servers are session fixtures, started once:

* ``lab_server``: simviz_widgets.lab_server's low-latency kernel websocket (what
  ``scripts/run_demo.sh lab`` uses); SIMVIZ_STOCK_KERNEL_WEBSOCKET=1 runs it on Jupyter's stock
  connection instead, for comparison;
* ``delayed_lab_server``: a **stock** server (no simviz extension) whose kernel replies reach the
  browser 100 ms late (tests/browser/delayed_kernel.py), as from a remote kernel.

Without chromium the browser tests are skipped locally and fail in CI (CI=true), so a broken CI
image is never reported green.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lab_harness, and delayed_kernel for the servers

from lab_harness import (  # noqa: E402 - after the path above
    DELAYED_KERNEL_ARGS,
    EXTENSION_ARGS,
    HARNESS_DIR,
    CanvasBox,
    KernelError,
    LabNotebook,
    LabServer,
    browser_unavailable_reason,
    in_ci,
    launch_chromium,
    new_lab_page,
    start_server,
    stop_server,
)

__all__ = ["CanvasBox", "KernelError", "LabNotebook", "LabServer"]

STOCK_KERNEL_WEBSOCKET = os.environ.get("SIMVIZ_STOCK_KERNEL_WEBSOCKET") == "1"
LATENCY_ARGS = [] if STOCK_KERNEL_WEBSOCKET else EXTENSION_ARGS


def pytest_collection_modifyitems(config, items):
    reason = browser_unavailable_reason()
    if reason is None or in_ci():
        return  # in CI the `browser` fixture fails loudly instead
    marker = pytest.mark.skip(
        reason=f"browser test needs a headless chromium: {reason}; CI=true turns this into a failure")
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(marker)


# ---------------------------------------------------------------- JupyterLab servers


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("jupyterlab"), LATENCY_ARGS)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def delayed_lab_server(tmp_path_factory):
    """A stock JupyterLab (no simviz server extension) with every kernel -> browser frame 100 ms late."""
    server = start_server(tmp_path_factory.mktemp("jupyterlab-delayed"), DELAYED_KERNEL_ARGS,
                          pythonpath=[HARNESS_DIR])
    yield server
    stop_server(server)


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def browser():
    reason = browser_unavailable_reason()
    if reason is not None:  # only reached in CI: skipped otherwise at collection
        pytest.fail(f"CI=true but the browser tests cannot run: {reason}", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    page = new_lab_page(browser)
    yield page
    page.context.close()


# ---------------------------------------------------------------- notebooks


def notebook_opener(page, server: LabServer, stem: str):
    """(factory, names): ``factory(name, cells)`` writes a notebook of code cells into the server root
    under a name made unique with ``stem``, opens it in JupyterLab and returns a LabNotebook."""
    opened: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", stem)[:60]

    def factory(name: str, cells: list[str]) -> LabNotebook:
        unique = f"{stem}_{len(opened)}_{name}"
        server.write_notebook(unique, cells)
        opened.append(unique)
        return LabNotebook(page, server, unique).open()

    return factory, opened


@pytest.fixture
def open_notebook(page, lab_server, request):
    """Factory: write a notebook of code cells into the server root, open it in JupyterLab, return a
    LabNotebook. Names are made unique per test; the notebooks' kernels are shut down afterwards."""
    factory, opened = notebook_opener(page, lab_server, request.node.name)
    yield factory
    lab_server.close_sessions(opened)


@pytest.fixture(scope="module")
def module_page(browser):
    """A page shared by the tests of one module (for a notebook built once per module)."""
    page = new_lab_page(browser)
    yield page
    page.context.close()

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Exported ONNX models (the perturbation methods' accelerator) go to one folder per test session, not
# the user's cache (notebook kernels started by the tests inherit it).
# The folder is removed when the session ends (13 MB a run would otherwise pile up in /tmp).
if "SIMVIZ_ONNX_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _onnx_cache = tempfile.mkdtemp(prefix="simviz-onnx-tests-")
    os.environ["SIMVIZ_ONNX_CACHE"] = _onnx_cache
    atexit.register(shutil.rmtree, _onnx_cache, ignore_errors=True)

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Property tests (hypothesis) run the same examples on every machine: derandomized (a fixed seed
# derived from each test), no example database, no per-example deadline (CI machines vary).
settings.register_profile(
    "simviz", derandomize=True, database=None, deadline=None, max_examples=60, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "simviz"))


@pytest.fixture(scope="session")
def default_model():
    import simviz_widgets as sv

    return sv.load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def photos():
    from skimage import data

    return {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "astronaut": data.astronaut(),
        "rocket": data.rocket(),
    }


@pytest.fixture
def commands(monkeypatch):
    """Every ipycanvas draw command sent during the test (tests/widget_helpers.py)."""
    from widget_helpers import record_commands

    return record_commands(monkeypatch)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    # Real-browser tests go last: Playwright's sync API keeps its event loop running in the main
    # thread while the session-scoped browser lives, which would change how the widget tests'
    # asyncio-based event coalescing behaves if they ran after it.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)

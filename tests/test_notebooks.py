"""Every notebook under notebooks/ runs top to bottom on this venv's kernel without a cell error."""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "simviz-test-venv"
CELL_TIMEOUT_S = 600


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch):
    """A kernel spec for this interpreter, found first through JUPYTER_PATH; offline, private dirs."""
    spec_dir = tmp_path / "jupyter-path" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "simviz test venv",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    for variable, subdir in (
        ("JUPYTER_PATH", "jupyter-path"),
        ("JUPYTER_CONFIG_DIR", "jupyter-config"),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        (tmp_path / subdir).mkdir(exist_ok=True)
        monkeypatch.setenv(variable, str(tmp_path / subdir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Notebooks read it to run small (e.g. 100 RISE masks instead of 2000) within the test budget.
    monkeypatch.setenv("SIMVIZ_FAST", "1")
    # The kernel imports simviz_widgets from this checkout, installed or not.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    return KERNEL_NAME


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {REPO_ROOT / 'notebooks'}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs_without_errors(path, venv_kernel):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=venv_kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the cell and traceback on the first error
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert errors == []
    executed = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert executed and all(count is not None for count in executed), f"{path.name}: cells left unexecuted"

"""The wheel: it holds every package of simviz_widgets/ and the JavaScript of js/ (not js/test/), and an
installed wheel, with no repository around, bundles that JavaScript and writes a standalone page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
# What the build reads is copied, not built in place: an in-tree build writes build/ and *.egg-info into
# the working tree (a stale build/lib can leak deleted modules into later wheels, parallel runs race).
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "out", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints",
                                     "node_modules")

SCRIPT = textwrap.dedent("""
    import json, re, sys, traceback
    from pathlib import Path

    import numpy as np

    import simviz_widgets
    from simviz_widgets.web import assets

    out = {"file": simviz_widgets.__file__, "path": sys.path, "js_dir": str(assets.js_dir())}
    text = assets.bundle()
    out["export_default"] = "export default" in text
    out["imports"] = re.findall(r"^[ \\t]*import\\b.*$", text, re.MULTILINE)

    from simviz_widgets.explain.base import PairExplanation, PointToPoint

    g = np.eye(4, dtype=np.float32)
    photo = np.zeros((20, 20, 3), np.uint8)
    photo[5:15, 5:15] = (200, 120, 40)
    exp = PairExplanation("decomposition", 4.0, photo, photo, np.ones((2, 2)), np.ones((2, 2)), True,
                          point_to_point=PointToPoint(g, g, 1.0, (2, 2), (2, 2)), completeness_error=0.0)
    out["has_to_html"] = hasattr(exp, "to_html")
    if out["has_to_html"]:
        try:
            exp.to_html(Path.cwd() / "pair.html")
        except Exception:
            out["to_html_error"] = traceback.format_exc()
    print(json.dumps(out))
""")


def test_pyproject_lists_every_package():
    """pyproject.toml lists the packages (find cannot add simviz_widgets.web.js, mapped to js/), so a
    new package of simviz_widgets/ must be added there or the wheel would silently lack it."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = setuptools.find_packages(str(ROOT), include=["simviz_widgets*"])
    assert sorted(config["packages"]) == sorted(found + ["simviz_widgets.web.js"])
    assert config["package-dir"] == {"simviz_widgets.web.js": "js"}


@pytest.mark.slow
def test_wheel_ships_the_javascript_and_works_without_the_repository(tmp_path):
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=COPY_IGNORE)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path),
                    str(source)], check=True, capture_output=True, env=env, timeout=120)
    (wheel,) = tmp_path.glob("simviz_widgets-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix("simviz_widgets/web/js/") for n in names if n.startswith("simviz_widgets/web/js/"))
    assert shipped == sorted(p.name for p in (ROOT / "js").glob("*.js")), "the wheel's JavaScript is not js/*.js"
    assert not [n for n in names if "/test/" in n or n.endswith((".mjs", ".json"))], "js/test/ leaked into the wheel"

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, env=env, timeout=120)

    # -S: no site-packages .pth files, so the editable install's finder is not there to win; the venv's
    # site-packages come after the wheel's folder for the dependencies only. cwd is tmp_path, not the repo.
    venv_site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    run_env = {**env, "PYTHONPATH": os.pathsep.join([str(site), *venv_site]), "HF_HUB_OFFLINE": "1",
               "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-S", "-c", SCRIPT], cwd=tmp_path, env=run_env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    assert Path(out["file"]).resolve().is_relative_to(site.resolve()), out["file"]
    assert not any(Path(p or tmp_path).resolve() == ROOT for p in out["path"]), out["path"]
    assert Path(out["js_dir"]) == site / "simviz_widgets" / "web" / "js"
    assert out["export_default"], "the bundle of pair_view.js has no `export default` (anywidget's render)"
    assert out["imports"] == [], out["imports"]

    assert out["has_to_html"], "PairExplanation.to_html is missing from the installed package"
    assert "to_html_error" not in out, out["to_html_error"]
    page = (tmp_path / "pair.html").read_text(encoding="utf-8")
    assert "<html" in page.lower() and "mountPairView" in page
    assert 'from "./' not in page and "from './" not in page, "the page imports local modules it does not hold"

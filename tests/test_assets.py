"""simviz_widgets.web.assets: finding js/, reading one module, and bundling an entry with its local
imports into one ES module (order, stripping, refusals, cache), checked on hand-written modules in a
temporary folder and, with Node, on the real js/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simviz_widgets.checks import InputError, SimvizError
from simviz_widgets.web import assets

REPO_JS = Path(__file__).resolve().parents[1] / "js"


def _in_ci() -> bool:  # the rule of tests/browser/conftest.py: a missing tool fails in CI, skips locally
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _write(folder: Path, **modules: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in modules.items():
        (folder / f"{name}.js").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture()
def modules(tmp_path) -> Path:
    """entry.js imports b.js (multi-line, double quotes) and a.js (single quotes); b.js imports a.js."""
    return _write(
        tmp_path / "js",
        a='export function a() {\n  return 1;\n}\nconst hidden = 2;\n',
        b='import {\n  a,\n} from "./a.js";\n\nexport const b = () => a() + 1;\n',
        entry=("import { b } from './b.js';\nimport {a} from \"./a.js\"\n"
               "export function mount(el) {\n  el.textContent = String(a() + b());\n}\n"
               "export default { render: ({ el }) => mount(el) };\n"),
        unused="export const unused = 3;\n",
    )


def _positions(text: str, *needles: str) -> list[int]:
    return [text.index(n) for n in needles]


def test_bundle_orders_dependencies_first_each_once_and_strips_local_imports(modules):
    text = assets.bundle("entry.js", directory=modules)
    a, b, entry = _positions(text, "export function a()", "export const b", "export function mount")
    assert a < b < entry
    assert text.count("export function a()") == 1 and "hidden = 2" in text
    assert not re.search(r"^\s*import\b", text, re.MULTILINE) and "from " not in text
    assert "unused" not in text  # only what the entry reaches
    assert "export default { render" in text  # exports kept
    assert text.index("// ---- a.js ----") < text.index("// ---- b.js ----") < text.index("// ---- entry.js ----")


def test_bundle_of_a_module_without_imports_is_that_module(modules):
    text = assets.bundle("a.js", directory=modules)
    assert "export function a()" in text and "// ---- b.js" not in text


def test_bundle_is_cached_until_a_file_changes(modules):
    first = assets.bundle("entry.js", directory=modules)
    assert assets.bundle("entry.js", directory=modules) is first
    path = modules / "a.js"
    path.write_text("export function a() {\n  return 42;\n}\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a later mtime, whatever the clock
    second = assets.bundle("entry.js", directory=modules)
    assert "return 42" in second and "return 1;" not in second


def test_import_cycle_is_refused_naming_the_cycle(tmp_path):
    folder = _write(tmp_path, x='import { y } from "./y.js";\nexport const x = 1;\n',
                    y='import { z } from "./z.js";\nexport const y = 2;\n',
                    z='import { x } from "./x.js";\nexport const z = 3;\n')
    with pytest.raises(SimvizError, match=r"cycle: x\.js -> y\.js -> z\.js -> x\.js"):
        assets.bundle("x.js", directory=folder)


@pytest.mark.parametrize("statement", [
    'import { html } from "https://esm.sh/lit";',
    "import { createRender } from '@anywidget/react';",
    'import { a } from "../a.js";',
    'import "anywidget";',
])
def test_non_local_import_is_refused(tmp_path, statement):
    folder = _write(tmp_path, a="export const a = 1;\n", entry=f"{statement}\nexport const e = 1;\n")
    with pytest.raises(SimvizError, match="is not a local import.*nothing is fetched at run time") as info:
        assets.bundle("entry.js", directory=folder)
    assert "entry.js" in str(info.value) and statement.rstrip(";") in str(info.value)


@pytest.mark.parametrize("entry, message", [
    ('import { a } from "./nope.js";\n', r"names a module that does not exist \(modules: a.js, entry.js\)"),
    ('import { a as b } from "./a.js";\n', "import local modules by name only"),
    ('import a from "./a.js";\n', "import local modules by name only"),
    ('import * as A from "./a.js";\n', "import local modules by name only"),
    ('const m = await import("./a.js");\n', "dynamic import"),
    ('export { a } from "./a.js";\n', "re-exports"),
    ('import { a } from "./a.js";\nexport function a() {}\n', r"'a' is declared at the top level of both a\.js and"),
])
def test_unsupported_local_forms_are_refused(tmp_path, entry, message):
    folder = _write(tmp_path, a="export function a() {}\n", entry=entry)
    with pytest.raises(SimvizError, match=message):
        assets.bundle("entry.js", directory=folder)


def test_two_default_exports_are_refused(tmp_path):
    folder = _write(tmp_path, a="export default 1;\n", entry='import "./a.js";\nexport default 2;\n')
    with pytest.raises(SimvizError, match="'export default' is declared at the top level of both a.js and entry.js"):
        assets.bundle("entry.js", directory=folder)


def test_unknown_module_or_entry_lists_the_modules(modules):
    with pytest.raises(InputError, match=r"name='rendr\.js' is not one of \['a\.js', 'b\.js', 'entry\.js', "):
        assets.module_source("rendr.js", directory=modules)
    with pytest.raises(InputError, match=r"entry='main\.js' is not one of \['a\.js'"):
        assets.bundle("main.js", directory=modules)
    assert assets.module_source("b.js", directory=modules).startswith("import {")


def test_missing_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="is not a folder of JavaScript modules"):
        assets.bundle("a.js", directory=tmp_path / "nowhere")


def test_js_dir_is_the_checkout_js_folder_here():
    assert assets.js_dir() == REPO_JS


def test_js_dir_missing_names_where_it_looked(tmp_path, monkeypatch):
    places = (tmp_path / "installed" / "js", tmp_path / "checkout" / "js")
    places[1].mkdir(parents=True)  # a folder without modules does not count
    monkeypatch.setattr(assets, "_CANDIDATES", places)
    with pytest.raises(SimvizError, match="are missing: looked in .*installed/js and .*checkout/js"):
        assets.js_dir()


def test_real_bundles_pass_node_check(tmp_path):
    """Every module of js/ as an entry bundles into one module Node parses (``node --check``)."""
    node = shutil.which("node")
    if node is None:
        message = "node not found (scripts/setup_env.sh test installs Debian's nodejs)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    names = sorted(p.name for p in REPO_JS.glob("*.js"))
    assert {"render.js", "point_map.js", "payload.js", "draw.js", "hover_layer.js", "pair_view.js"} <= set(names)
    for name in names:
        text = assets.bundle(name)
        path = tmp_path / f"bundle-{name[:-3]}.mjs"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"bundle of {name}:\n{result.stderr}"
    assert "export default" in assets.bundle()

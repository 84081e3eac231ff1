"""The package's shape: imports point down the layers, no module imports itself back through a
cycle, no package reaches into another's private modules, and widget modules stay small enough
to read (views thin, logic in plain classes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "simviz_widgets"
#: Lower layers must not import higher ones (DESIGN: data flows down, imports point down).
LAYER_RULES = {
    "render": {"adapters", "explain", "evaluate", "widgets", "attributes", "datasets", "models", "cli"},
    "explain": {"evaluate", "widgets", "attributes", "cli"},
    "adapters": {"explain", "evaluate", "widgets", "attributes", "cli"},
    "evaluate": {"widgets", "cli"},
}
WIDGET_MODULE_MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("simviz_widgets"):
                found.add(target)
                for alias in node.names:  # "from . import x" imports the module x
                    candidate = f"{target}.{alias.name}"
                    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                            (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists():
                        found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("simviz_widgets"))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in _imports(path) if t in modules and t != name} for name, path in modules.items()}


def test_import_graph_has_no_cycle_between_modules(graph):
    # Package __init__ files re-export their children; a child importing its package's __init__
    # is the usual pattern, so cycles are looked for among the modules that do the work.
    edges = {m: {t for t in ts if not (m.startswith(t + ".") and t in graph)} for m, ts in graph.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in edges.get(node, ()):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_downward_only(graph):
    wrong = []
    for module, targets in graph.items():
        layer = module.split(".")[1] if "." in module else ""
        for target in targets:
            other = target.split(".")[1] if "." in target else ""
            if other in LAYER_RULES.get(layer, ()):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_package_imports_another_packages_private_module(graph):
    wrong = []
    for module, targets in graph.items():
        package = module.split(".")[1] if "." in module else ""
        for target in targets:
            parts = target.split(".")
            if len(parts) > 2 and parts[1] != package and any(p.startswith("_") and p != "__init__" for p in parts[2:]):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_widget_modules_stay_readable():
    long = {str(p.relative_to(PACKAGE)): n for p in (PACKAGE / "widgets").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > WIDGET_MODULE_MAX_LINES}
    assert long == {}, f"widget modules over {WIDGET_MODULE_MAX_LINES} lines: {long}"

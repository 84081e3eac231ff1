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
    # the browser side of rendering: explanations -> payloads and pages (explain's to_html calls it)
    "web": {"adapters", "evaluate", "widgets", "attributes", "datasets", "models", "cli"},
    # matches and transforms from explanations: read by the widgets (cross-view explorer), never reading them
    "geometry": {"widgets", "cli"},
    # galleries, region search and orders: read by the widgets (retrieval explorer, similarity matrix)
    "retrieval": {"widgets", "cli"},
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


# ------------------------------------------------------------------------------------------------
# one module of input checks

#: The only ``check_*`` / ``_check_*`` / ``validate_*`` / ``_validate_*`` functions allowed outside
#: simviz_widgets/checks.py, each with what it checks. Each checks a *domain* object or state — a
#: registered method's options, a mask in display pixels, an open widget, a model whose decomposition
#: has a closed form — never a bare type, range, choice, size, colormap or shape (those are
#: checks.py's, and a new generic one is added there). A helper here must be short
#: (HELPER_MAX_LINES), be built on checks.py (call one of its checks or raise one of its errors)
#: and coerce nothing (no bool()/int()/float(), no hand-written isfinite).
DOMAIN_CHECKS = {
    "attributes/saliency.py": {"_check_exact": "the model's decomposition has the batched closed form"},
    "datasets/synthetic.py": {"_check_common": "the counts and seed every scene generator takes"},
    "evaluate/compare.py": {
        "check_methods": "registered method names, each once",
        "check_method_options": "{method: options} that each method's declarations accept",
        "check_metric_needs": "each metric's needs (model, mask, mapping) are available",
    },
    "geometry/matches.py": {"_check_coarse": "an explanation of the same pair on a coarser grid"},
    "retrieval/regions.py": {"check_box": "a non-empty (top, left, bottom, right) box inside the image"},
    "retrieval/matrix.py": {"_check_matrix": "a square, finite similarity matrix"},
    "retrieval/query.py": {"_check_exclude": "gallery indices to leave out: None, one index or a sequence"},
    "evaluate/metrics.py": {"check_display_mask": "a non-empty mask over the explained (display) image"},
    "evaluate/perturbation_curves.py": {"_check_sizes": "the explanation was computed at this model's input size"},
    "widgets/attribute_panel.py": {"_validate_selected": "traitlets validator: the panel is open"},
    "widgets/comparison/panel.py": {"_validate_trait": "traitlets validator: open panel, CHECKS of the trait"},
    "widgets/comparison/session.py": {"_check_model": "a SimilarityModel", "_check_open": "the session is open"},
    "widgets/explorer.py": {"_check_comparison": "the comparison= argument (flag or panel options)",
                            "_check_attributes": "the attributes= argument (a predictor or panel options)"},
    "widgets/hover.py": {"check_pixel": "a display pixel inside this explanation's image"},
    "widgets/overall_panel.py": {"_validate_trait": "traitlets validator: open panel, CHECKS of the trait"},
    "widgets/pair_viewer.py": {"check_viewer_with_model": "an open PairViewer that has a model",
                               "_validate_trait": "traitlets validator: open viewer, CHECKS of the trait"},
    "widgets/session.py": {"check_open": "a widget or session not closed", "_check_open": "the session is open",
                           "_check_inputs": "None or a (query, reference) pair"},
    "widgets/state.py": {"check_point": "a (side, row, col) point of the pair"},
}
#: Helpers of the packages not held to these rules here (explain/, adapters/, cli.py): listed so that no
#: new one appears unnoticed; their owners move the generic ones into checks.py.
ELSEWHERE = {
    "adapters/similarity_model.py": {"check_tensor", "_check_preprocess"},
    "cli.py": {"_check_out", "_check_figure_args"},
    "explain/base.py": {"check_point"},
    "explain/point_to_point.py": {"check_side"},
    "explain/perturbation.py": {"_check_cancel", "_check_fill", "_check_size"},
}
HELPER_MAX_LINES = 12
CHECK_LAYER = {"CHECKS", "check_open", "WidgetClosedError"}  # the widgets' table of checks.py checks


def _helpers(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.lstrip("_").startswith(
                ("check_", "validate_")):
            yield node


def _names_from_checks(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "checks":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and any(alias.name == "checks" for alias in node.names):
            names.add("checks")
    return names


def test_no_check_helper_outside_checks_py_but_the_listed_domain_checks():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE))
        if relative != "checks.py":
            names = {node.name for node in _helpers(path)}
            if names:
                found[relative] = names
    allowed = {module: set(names) for module, names in DOMAIN_CHECKS.items()}
    for module, names in ELSEWHERE.items():
        allowed.setdefault(module, set()).update(names)
    unexpected = {module: sorted(names - allowed.get(module, set())) for module, names in found.items()}
    assert {m: n for m, n in unexpected.items() if n} == {}, (
        "new check helpers outside simviz_widgets/checks.py: put a generic check (type, range, choice, size, "
        "shape, colormap) in checks.py, or list a domain check in DOMAIN_CHECKS with what it checks")


def test_domain_checks_are_short_built_on_checks_py_and_coerce_nothing():
    problems = []
    for module, names in DOMAIN_CHECKS.items():
        path = PACKAGE / module
        tree = ast.parse(path.read_text())
        from_checks = _names_from_checks(tree) | CHECK_LAYER | {n for ns in DOMAIN_CHECKS.values() for n in ns}
        helpers = {node.name: node for node in _helpers(path)}
        for name in names:
            node = helpers.get(name)
            if node is None:
                problems.append(f"{module}: {name} is listed but gone: take it off DOMAIN_CHECKS")
                continue
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = body[-1].end_lineno - body[0].lineno + 1
            if lines > HELPER_MAX_LINES:
                problems.append(f"{module}: {name} has {lines} lines (> {HELPER_MAX_LINES})")
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if not used & from_checks:
                problems.append(f"{module}: {name} uses nothing of simviz_widgets.checks")
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                callee = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
                if callee in {"bool", "int", "float", "isfinite"}:
                    problems.append(f"{module}: {name} calls {callee}() (coercion or a hand-written check)")
            for raised in (n.exc for n in ast.walk(node) if isinstance(n, ast.Raise) and n.exc is not None):
                error = raised.func if isinstance(raised, ast.Call) else raised
                if isinstance(error, ast.Name) and error.id not in from_checks:
                    problems.append(f"{module}: {name} raises {error.id}, not an error of simviz_widgets.checks")
    assert problems == []


def test_every_registered_method_and_metric_declares_typed_options():
    """Options are :class:`~simviz_widgets.checks.Option` declarations (no (default, description)
    tuples read with bool()), each default passes its own check, and listings read them."""
    import simviz_widgets.evaluate  # noqa: F401 - registers the metrics
    import simviz_widgets.explain  # noqa: F401 - registers the methods
    from simviz_widgets.checks import Option, check_options, describe_options
    from simviz_widgets.registry import REGISTRIES

    for kind in ("method", "metric"):
        registry = REGISTRIES[kind]
        assert len(registry) > 3, kind
        for name in registry.names():
            cls = registry.get(name)
            assert isinstance(cls.options, dict), (kind, name)
            for option_name, option in cls.options.items():
                assert isinstance(option, Option), (kind, name, option_name, option)
                if option.default is not None:
                    option.check(option.default, option_name)  # a default its own declaration refuses fails here
            config = check_options(f"{kind} {name!r}", cls.options, {})
            assert set(config) == set(cls.options)
            assert {k: v[0] for k, v in describe_options(cls.options).items()} == \
                {k: o.default for k, o in cls.options.items()}

"""The JavaScript of the browser side: where it is, one file of it, and all of it as one ES module.

js/ holds plain ES modules with no build step (js/README.md). The pair viewer's hover layer (an
anywidget whose ``_esm`` is a single module) and the standalone page each need one self-contained
module, so :func:`bundle` joins an entry and every local module it imports: dependencies first, each
once, with the local ``import { a, b } from "./render.js";`` statements removed and the exports kept
(top-level names are unique across files, so nothing needs renaming). Any other import is refused:
nothing is fetched at run time.

Where the files are: pyproject.toml maps the package ``simviz_widgets.web.js`` to the top-level js/
folder (setuptools ``package-dir``), so a wheel installs them as ``simviz_widgets/web/js/*.js`` next
to this module, while a source checkout (and its editable install) has them in the repository's
js/, two folders up. One folder, no copy and no symlink.

A bundle is cached per process and rebuilt when a file of js/ changes (modification time, size), so
a developer editing js/ sees the change without restarting the kernel.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..checks import InputError, SimvizError, check_choice, check_path

__all__ = ["js_dir", "module_source", "bundle"]

_HERE = Path(__file__).resolve().parent
#: An installed wheel (package data of simviz_widgets.web.js), then a source checkout.
_CANDIDATES = (_HERE / "js", _HERE.parents[1] / "js")

# A static import statement at the start of a line: `import { a,\n b } from "./x.js";`, `import "./x.js";`,
# `import x from 'y'`. Not `import(` (dynamic, refused separately) nor `import.meta`.
_IMPORT = re.compile(
    r"""^[ \t]*import(?=[\s{*"'])(?P<clause>[^;'"`]*?)\s*(?:\bfrom\s*)?"""  # `import`, what it binds, `from`
    r"""(?P<q>["'])(?P<spec>[^"'\n]*)(?P=q)[ \t]*;?[ \t]*\n?""",  # the quoted specifier, `;`, end of line
    re.MULTILINE)
_DYNAMIC_IMPORT = re.compile(r"""\bimport\s*\(\s*["'`]""")
_REEXPORT = re.compile(r"""^[ \t]*export\s*(?:\*|\{[^}]*\})\s*from\b""", re.MULTILINE)
_LOCAL = re.compile(r"\./([\w.-]+\.js)")
# Top-level (column 0) declarations, to name a clash before the browser does.
_DECLARATION = re.compile(r"^(?:export\s+)?(?:async\s+)?(?:function\*?|class|const|let|var)\s+([\w$]+)", re.MULTILINE)
_DEFAULT_EXPORT = re.compile(r"^export\s+default\b", re.MULTILINE)

_CACHE: dict[tuple[Path, str], tuple[tuple, str]] = {}


def js_dir() -> Path:
    """The folder of the JavaScript modules: the wheel's package data or the checkout's js/."""
    for candidate in _CANDIDATES:
        if candidate.is_dir() and any(candidate.glob("*.js")):
            return candidate
    looked = " and ".join(str(c) for c in _CANDIDATES)
    raise SimvizError(f"the JavaScript modules of simviz_widgets (*.js) are missing: looked in {looked}; "
                      "reinstall the package (a wheel ships them as simviz_widgets/web/js/)")


def _modules(directory: Path | None) -> tuple[Path, dict[str, Path]]:
    directory = js_dir() if directory is None else check_path(directory, "directory")
    if not directory.is_dir():
        raise InputError(f"directory={str(directory)!r} is not a folder of JavaScript modules")
    return directory, {p.name: p for p in sorted(directory.glob("*.js")) if p.is_file()}


def module_source(name: str, *, directory: str | Path | None = None) -> str:
    """The text of one module of js/ (``name`` such as ``"render.js"``); ``directory`` defaults to
    :func:`js_dir`."""
    directory, modules = _modules(directory)
    return modules[check_choice(name, "name", sorted(modules))].read_text(encoding="utf-8")


def bundle(entry: str = "pair_view.js", *, directory: str | Path | None = None) -> str:
    """One ES module: ``entry`` and the local modules it imports (transitively), dependencies first,
    local imports removed, exports kept. Cached until a file of ``directory`` (default
    :func:`js_dir`) changes."""
    directory, modules = _modules(directory)
    entry = check_choice(entry, "entry", sorted(modules))
    stamp = tuple((name, p.stat().st_mtime_ns, p.stat().st_size) for name, p in modules.items())
    key = (directory.resolve(), entry)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        cached = _CACHE[key] = (stamp, _join(entry, modules, directory))
    return cached[1]


def _join(entry: str, modules: dict[str, Path], directory: Path) -> str:
    bodies: dict[str, str] = {}  # insertion order = dependency order
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in bodies:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise SimvizError(f"the JavaScript modules in {directory} import each other in a cycle: {cycle}")
        visiting.append(name)
        body, imports = _strip_imports(name, modules[name].read_text(encoding="utf-8"), modules, directory)
        for dependency in imports:
            visit(dependency)
        visiting.pop()
        bodies[name] = body

    visit(entry)
    _refuse_clashing_names(bodies)
    header = (f"// {entry} bundled with the local modules it imports ({', '.join(bodies)}) by "
              "simviz_widgets.web.assets; edit the files of js/, not this.\n")
    return header + "".join(f"\n// ---- {name} ----\n{body.strip()}\n" for name, body in bodies.items())


def _strip_imports(name: str, text: str, modules: dict[str, Path], directory: Path) -> tuple[str, list[str]]:
    """``text`` without its import statements, and the local modules they name, in order."""
    imports: list[str] = []

    def refuse(statement: str, why: str) -> None:
        raise SimvizError(f"{name} (in {directory}): {' '.join(statement.split())!r} {why}")

    def drop(match: re.Match) -> str:
        statement, clause, spec = match.group(0), match.group("clause").strip(), match.group("spec")
        local = _LOCAL.fullmatch(spec)
        if local is None:
            refuse(statement, "is not a local import: a bundle holds only modules of js/ imported as "
                              "'./name.js', and nothing is fetched at run time")
        if local.group(1) not in modules:
            refuse(statement, f"names a module that does not exist (modules: {', '.join(modules)})")
        if (clause and not re.fullmatch(r"\{[^}]*\}", clause)) or re.search(r"\bas\b", clause):
            refuse(statement, "is not supported: import local modules by name only (import { a, b } from "
                              "'./x.js'), since the bundle drops the statement and keeps the original names")
        imports.append(local.group(1))
        return ""

    body = _IMPORT.sub(drop, text)
    for pattern, why in ((_DYNAMIC_IMPORT, "is a dynamic import; nothing is fetched at run time"),
                         (_REEXPORT, "re-exports from another module, which a bundle cannot keep")):
        found = pattern.search(body)
        if found:
            refuse(body[found.start():body.find("\n", found.start())], why)
    return body, imports


def _refuse_clashing_names(bodies: dict[str, str]) -> None:
    """Top-level names must be unique across the joined files (one module scope after bundling)."""
    seen: dict[str, str] = {}
    for name, body in bodies.items():
        declared = _DECLARATION.findall(body) + ["export default"] * len(_DEFAULT_EXPORT.findall(body))
        for declaration in declared:
            if seen.setdefault(declaration, name) != name:
                raise SimvizError(f"{declaration!r} is declared at the top level of both {seen[declaration]} and "
                                  f"{name}; the bundle is one module scope, so top-level names must be unique")

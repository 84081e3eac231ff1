"""Every document the project cites is in the repository, and docs/methods.md covers every method.

The project's own files (Python, notebooks, Markdown and shell scripts under simviz_widgets/,
tests/, notebooks/, docs/, benchmarks/, scripts/, and README.md: the files git tracks, plus new ones
it does not ignore) are scanned for

* references to Markdown documents (a path or file name ending in ``.md``, with an optional
  ``#anchor``) and to ``docs/`` paths: each must name a file inside the repository, resolved from the
  repository root or from the citing file's folder;
* relative link targets in Markdown text (``[text](target)``), resolved from the file's folder;
* anchors (a ``#`` after a document's name, or alone for the same file): each must be a heading of
  the document under GitHub's rules (lower case, spaces to '-', punctuation dropped, '-1', '-2' for
  repeated headings);
* section citations (a document's path, a comma, then the section's title in double quotes, as the
  module docstrings cite docs/methods.md): the title must be one of the document's headings.

docs/methods.md states the registered names it documents on lines that start with ``Method:``,
``Methods:``, ``Metric:`` or ``Metrics:``; every built-in method and metric must be stated there (or
be the title of a heading), and every name stated there must be registered.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS_DOC = "docs/methods.md"
SCANNED = ("simviz_widgets", "tests", "notebooks", "docs", "benchmarks", "scripts", "README.md")
SUFFIXES = {".py", ".ipynb", ".md", ".sh"}
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints"}

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
# A Markdown document: optional ../ or ./ prefixes, folders, a name, ".md", an optional anchor.
MD_REFERENCE = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*(?:[\w.-]+/)*[\w-]+\.md)(?!\w)(?:#([\w-]+))?")
DOCS_REFERENCE = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w./-]*\w)(?:#([\w-]+))?")
LINK = re.compile(r"\]\(([^)\s]+)\)")
SECTION_CITATION = re.compile(r"((?:[\w.-]+/)*[\w-]+\.md)(?:,\s*|\s+\()\"([A-Za-z][^\"\n]*)\"")
NAMES_LINE = re.compile(r"^(Methods?|Metrics?):(.*)$", re.MULTILINE)
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


# ------------------------------------------------------------------------------------------
# The scanner


def project_files(root: Path) -> list[Path]:
    """The scanned files: git's tracked and not-ignored files when ``root`` is a git work tree, every
    file under the scanned folders otherwise."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SCANNED],
            cwd=root, capture_output=True, check=True,
        ).stdout.decode()
        paths = [root / p for p in out.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for name in SCANNED:
            top = root / name
            if top.is_file():
                paths.append(top)
            for folder, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
                paths += [Path(folder) / f for f in files]
    return sorted({p for p in paths if p.suffix in SUFFIXES and p.is_file()})


def _notebook_sources(path: Path, kinds=("markdown", "code", "raw")) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] in kinds)


def file_text(path: Path) -> str:
    """The text a reader sees: a notebook's cell sources (not its JSON), other files as they are."""
    if path.suffix == ".ipynb":
        return _notebook_sources(path)
    return path.read_text(encoding="utf-8")


def markdown_text(path: Path) -> str:
    """Where Markdown links are written: Markdown files and notebooks' Markdown cells."""
    if path.suffix == ".ipynb":
        return _notebook_sources(path, ("markdown",))
    return path.read_text(encoding="utf-8") if path.suffix == ".md" else ""


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, formatting and punctuation dropped, spaces to '-'."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(path: Path) -> list[str]:
    """Heading titles of a Markdown file (ATX headings outside fenced code blocks)."""
    titles, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                titles.append(m.group(1))
    return titles


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for title in headings(path):
        base = github_anchor(title)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def resolve(root: Path, citing: Path, reference: str, *, from_root: bool = True) -> Path | None:
    """The repository file ``reference`` names, from the root or the citing file's folder, else None
    (a file outside the repository does not count, even if it exists)."""
    bases = ([root] if from_root else []) + [citing.parent]
    for base in bases:
        target = (base / reference).resolve()
        if target.exists() and target.is_relative_to(root.resolve()):
            return target
    return None


def citation_problems(root: Path) -> list[str]:
    """Every citation of a missing document, anchor or section in the project's files."""
    problems = []
    for path in project_files(root):
        rel = path.relative_to(root)
        text = URL.sub(" ", file_text(path))
        references = {m.groups() for m in MD_REFERENCE.finditer(text)}
        references |= {m.groups() for m in DOCS_REFERENCE.finditer(text)}
        links = set()
        for m in LINK.finditer(URL.sub(" ", markdown_text(path))):
            target = m.group(1).strip("<>")
            if target.startswith(("mailto:", "#")):
                if target.startswith("#"):
                    links.add((None, target[1:]))
                continue
            name, _, anchor = target.partition("#")
            links.add((name, anchor or None))
        checks = [(name, anchor, True) for name, anchor in references]
        checks += [(name, anchor, False) for name, anchor in links]
        for name, anchor, from_root in sorted(checks, key=str):
            if name is None:  # an anchor in the same file
                if path.suffix == ".md" and anchor not in anchors(path):
                    problems.append(f"{rel}: link to '#{anchor}', which is not a heading of {rel}")
                continue
            target = resolve(root, path, name, from_root=from_root)
            if target is None:
                problems.append(f"{rel}: cites {name!r}, which is not in the repository")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                problems.append(f"{rel}: cites '{name}#{anchor}', but {name} has no heading with that anchor")
        for m in SECTION_CITATION.finditer(text):
            name, section = m.groups()
            target = resolve(root, path, name)
            if target is not None and section not in headings(target):
                problems.append(f"{rel}: cites section {section!r} of {name}, which has no such heading")
    return problems


def stated_names(path: Path) -> dict[str, set[str]]:
    """Registered names stated on 'Method(s):' / 'Metric(s):' lines: {'method': ..., 'metric': ...}."""
    out = {"method": set(), "metric": set()}
    for m in NAMES_LINE.finditer(path.read_text(encoding="utf-8")):
        kind = "method" if m.group(1).startswith("Method") else "metric"
        out[kind] |= {n for n in re.findall(r"`([^`]+)`", m.group(2)) if re.fullmatch(r"[a-z][a-z0-9_]*", n)}
    return out


def builtin_names(kind: str) -> set[str]:
    """Names registered by the package itself (tests register temporary methods of their own)."""
    from simviz_widgets.registry import registry

    reg = registry(kind)
    return {n for n in reg.names() if reg.get(n).__module__.startswith("simviz_widgets.")}


# ------------------------------------------------------------------------------------------
# The project


def test_every_cited_document_anchor_and_section_exists():
    problems = citation_problems(ROOT)
    assert not problems, "citations of documents the repository does not contain:\n" + "\n".join(problems)


def test_the_scan_covers_the_project():
    files = {p.relative_to(ROOT).as_posix() for p in project_files(ROOT)}
    for expected in ("README.md", METHODS_DOC, "simviz_widgets/explain/decomposition.py",
                     "notebooks/02_method_comparison.ipynb", "tests/test_docs.py", "scripts/run_tests.sh"):
        assert expected in files


@pytest.mark.parametrize("kind", ["method", "metric"])
def test_methods_doc_has_a_section_for_every_registered_name(kind):
    doc = ROOT / METHODS_DOC
    stated = stated_names(doc)[kind]
    titles = " ".join(headings(doc)).lower()
    registered = builtin_names(kind)
    assert registered, f"no {kind} is registered"
    missing = sorted(n for n in registered if n not in stated and n.replace("_", " ") not in titles)
    assert not missing, f"{METHODS_DOC} has no section for the {kind}(s) {missing}"
    unknown = sorted(stated - registered)
    assert not unknown, f"{METHODS_DOC} states {kind}(s) {unknown}, which are not registered"


def test_methods_doc_cites_tests_that_exist():
    """The identities table names test files and functions (``tests/x.py::name``; ``::name`` alone
    continues the previous file): each must exist."""
    current, missing = None, []
    for m in TEST_REFERENCE.finditer((ROOT / METHODS_DOC).read_text(encoding="utf-8")):
        path, name = m.groups()
        if path:
            current = ROOT / path
            if not current.is_file():
                missing.append(path)
                continue
        if name and current is not None and current.is_file():
            if not re.search(rf"^\s*def {name}\(", current.read_text(encoding="utf-8"), re.MULTILINE):
                missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert not missing, f"{METHODS_DOC} cites tests that do not exist: {missing}"


# ------------------------------------------------------------------------------------------
# The scanner itself, on a small made-up project


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_scanner_flags_missing_documents_anchors_and_sections(tmp_path):
    # Names are spelt in pieces: this file is scanned too.
    doc, notes, gone = "docs/" + "methods" + ".md", "NOTES" + ".md", "docs/" + "gone.png"
    root = tmp_path / "repo"
    _write(root, doc, "# Methods\n\n## Activation decomposition\n\n## Deletion: and insertion\n")
    _write(root, "README.md", f"See [the notes]({doc}#activation-decomposition) and [x](#nowhere).\n")
    _write(root, "tests/test_ok.py", f'# ({doc}, "Activation decomposition"), {doc}#deletion-and-insertion\n')
    readme = "README.md: link to '#nowhere', which is not a heading of README.md"
    assert citation_problems(root) == [readme]

    (tmp_path / notes).write_text("# Notes\n", encoding="utf-8")  # exists, but outside the repository
    _write(root, "simviz_widgets/a.py", f'"""Maths ({notes} §3)."""\n')
    _write(root, "simviz_widgets/b.py", f'# ../{notes}, {doc}#activation, {doc}, "Deletion"\n')
    _write(root, "notebooks/n.ipynb", json.dumps({"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": [f"See {gone} and [m](../{doc})"]},
    ]}))
    assert citation_problems(root) == [
        readme,
        f"notebooks/n.ipynb: cites '{gone}', which is not in the repository",
        f"simviz_widgets/a.py: cites '{notes}', which is not in the repository",
        f"simviz_widgets/b.py: cites '../{notes}', which is not in the repository",
        f"simviz_widgets/b.py: cites '{doc}#activation', but {doc} has no heading with that anchor",
        f"simviz_widgets/b.py: cites section 'Deletion' of {doc}, which has no such heading",
    ]


def test_github_anchor_rules():
    assert github_anchor("Sanity check: cascading randomisation") == "sanity-check-cascading-randomisation"
    assert github_anchor("Grad-CAM on the similarity") == "grad-cam-on-the-similarity"
    assert github_anchor("Attribute explanations (SANE)") == "attribute-explanations-sane"
    assert github_anchor("The `bias` option") == "the-bias-option"
    assert github_anchor("snake_case name") == "snake_case-name"

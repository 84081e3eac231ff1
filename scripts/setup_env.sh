#!/usr/bin/env bash
# Creates .venv and installs simviz_widgets into it. Usage: scripts/setup_env.sh [main|test]
# Idempotent: a stamp keyed on pyproject.toml skips the installs when nothing changed (a changed
# pyproject.toml, e.g. a new dependency such as anywidget, re-runs them). `test` also installs Node.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-main}"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$extra-$(sha1sum pyproject.toml | cut -c1-12)"
quiet_pip() {
    # This machine's pip config names local package folders that may be absent; pip warns about each.
    .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
if [ ! -f "$stamp" ]; then
    echo "setting up .venv ($extra) ..."
    # torch first, pinned: pip takes these builds from this machine's local disk (about a minute);
    # an unpinned torch would pull a multi-GB build from the index.
    quiet_pip torch==2.14.1 torchvision==0.29.1
    if [ "$extra" = "test" ]; then
        quiet_pip -e ".[test]"
    else
        quiet_pip -e .
    fi
    touch "$stamp"
fi
if [ "$extra" = "test" ]; then
    # Node runs the JavaScript tests (`node --test js/`, `node --check` on the bundle): Debian's nodejs
    # when node is missing. Outside the stamp: the machine, not pyproject.toml, decides whether it is there.
    bash scripts/install_node.sh
fi

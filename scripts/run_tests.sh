#!/usr/bin/env bash
# Runs every test (unit, notebooks, real-browser) on a fresh machine: sets up .venv, installs
# Debian's chromium for the browser tests and the Insight Toolkit's example images (brain slices
# with known geometry) when missing, lints with ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
bash scripts/install_browser.sh
bash scripts/install_test_data.sh
bash scripts/install_face_data.sh
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
# Lint first ([tool.ruff] in pyproject.toml): any finding stops the run before the tests.
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"

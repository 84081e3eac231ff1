#!/usr/bin/env bash
# The main job: explain the bundled pair (chelsea and its mirror) with the default model
# (EfficientNet-Lite0, offline weights) and write the figure. Extra arguments go to `simviz explain`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh main
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
mkdir -p out
exec .venv/bin/simviz explain --out out/explanation.png "$@"

#!/usr/bin/env bash
# The main job: explain the bundled pair (chelsea and its mirror) with the default model
# (EfficientNet-Lite0, offline weights) and write the figure to out/explanation.png.
#   bash scripts/run_demo.sh [QUERY] [REFERENCE] [simviz explain options]
#   bash scripts/run_demo.sh lab    # open the interactive quickstart notebook in JupyterLab
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ "${1:-}" = "lab" ]; then
    shift
    bash scripts/setup_env.sh test  # the test extra brings JupyterLab
    # Nagle off on the kernel websocket: ~40 ms less per hover (simviz_widgets/lab_server.py).
    exec .venv/bin/python -m jupyter lab notebooks/01_pair_viewer.ipynb \
        "--ServerApp.jpserver_extensions={'simviz_widgets.lab_server': True}" "$@"
fi
bash scripts/setup_env.sh main
export MPLBACKEND=Agg
mkdir -p out
exec .venv/bin/simviz explain --out out/explanation.png "$@"

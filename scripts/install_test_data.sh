#!/usr/bin/env bash
# Installs the Debian data packages the tests and benchmarks read: the Insight Toolkit's example
# images (brain MRI slices with known shifts, rotations and scales; tests/test_known_pairs.py,
# benchmarks/bench_crossview.py). Idempotent: does nothing when they are there.
set -euo pipefail

DATA=/usr/share/doc/insighttoolkit5-examples/examples/Data/BrainProtonDensitySliceBorder20.png

if [ -f "$DATA" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_test_data.sh: $DATA is missing and installing it needs root (apt-get install insighttoolkit5-examples)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends insighttoolkit5-examples >/dev/null
if [ ! -f "$DATA" ]; then
    echo "install_test_data.sh: apt-get installed insighttoolkit5-examples but $DATA is still missing" >&2
    exit 1
fi

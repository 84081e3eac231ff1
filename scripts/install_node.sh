#!/usr/bin/env bash
# Installs Node for the JavaScript tests (`node --test js/`, and `node --check` on the bundle in
# tests/test_assets.py): Debian's nodejs, as scripts/install_browser.sh installs chromium. Runs without a
# terminal (CI=true): apt-get as root, or through sudo when it needs no password. Idempotent: does nothing
# when `node` is on PATH.
set -euo pipefail

if command -v node >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "install_node.sh: node is missing and installing it needs root (apt-get install nodejs)" >&2
    exit 1
fi

$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >/dev/null

if ! command -v node >/dev/null 2>&1; then
    echo "install_node.sh: apt-get installed nodejs but node is still not on PATH" >&2
    exit 1
fi
node --version

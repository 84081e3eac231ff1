#!/usr/bin/env bash
# Installs Node for the JavaScript tests (`node --test js/`, and `node --check` on the bundle in
# tests/test_assets.py) and npm for scripts/install_face_data.sh (`npm pack`): Debian's nodejs and npm, as scripts/install_browser.sh installs chromium. Runs without a
# terminal (CI=true): apt-get as root, or through sudo when it needs no password. Idempotent: does nothing
# when `node` and `npm` are on PATH.
set -euo pipefail

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    exit 0
fi
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "install_node.sh: ${missing[*]} missing and installing needs root (apt-get install ${missing[*]})" >&2
    exit 1
fi

$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install_node.sh: apt-get installed ${missing[*]} but node or npm is still not on PATH" >&2
    exit 1
fi
node --version

#!/usr/bin/env bash
# Installs the headless browser the browser tests drive (tests/browser/).
# `playwright install` needs a download host we cannot reach, so the tests use Debian's chromium
# through Playwright's `executable_path`. Idempotent: does nothing when /usr/bin/chromium exists.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser.sh: $CHROMIUM is missing and installing it needs root (apt-get install chromium)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "install_browser.sh: apt-get installed chromium but $CHROMIUM is still missing" >&2
    exit 1
fi
"$CHROMIUM" --version 2>/dev/null

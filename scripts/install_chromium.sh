#!/usr/bin/env bash
# Debian's Chromium, the real browser the UI test drives with Playwright (which never downloads
# a browser of its own here). Installs only what is missing; without root or apt-get it says
# how, and the browser test is skipped (in CI, where CI is set, it fails instead).
set -euo pipefail
PACKAGES=(chromium chromium-driver)
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "Chromium is not installed, so the browser test will be skipped. To run it, as root on" \
        "Debian or Ubuntu: apt-get install --no-install-recommends ${PACKAGES[*]}" >&2
    exit 0
fi
echo "installing Chromium (${PACKAGES[*]}) with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

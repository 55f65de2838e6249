#!/usr/bin/env bash
# Ceph RGW from Debian's packages: the real S3 server some tests run against (about 61 MB).
# Installs only what is missing; without root or apt-get it says how, and the tests that need
# Ceph are skipped (in CI, where CI is set, they fail instead).
set -euo pipefail
PACKAGES=(radosgw ceph-mon ceph-osd)
if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "Ceph RGW is not installed, so its tests will be skipped. To run them, as root on" \
        "Debian or Ubuntu: apt-get install --no-install-recommends ${PACKAGES[*]}" >&2
    exit 0
fi
echo "installing Ceph RGW (${PACKAGES[*]}) with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

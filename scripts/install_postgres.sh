#!/usr/bin/env bash
# Debian's PostgreSQL, the real server of the production instance's tests and of
# `make dev-postgres`. Installs only what is missing; without root or apt-get it says how, and
# the Postgres tests are skipped (in CI, where CI is set, they fail instead).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "PostgreSQL is not installed, so the Postgres tests will be skipped. To run them, as" \
        "root on Debian or Ubuntu: apt-get install --no-install-recommends postgresql" >&2
    exit 0
fi
echo "installing PostgreSQL (postgresql) with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null

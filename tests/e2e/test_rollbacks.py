"""A sync_now() run survives the rollback of its caller's transaction: the worker records it.

sync_now() writes its run row in the caller's transaction. When a cancel, a termination, an
error or a ROLLBACK (of the transaction or of a savepoint) takes that row away, Qobra has still
received what was sent: the run must still be in qobra_sync.runs, saying so."""

import time

import psycopg
import pytest

from helpers import Db, bulk_fault, sync_in_background, wait_for

ROWS, BATCH = 30, 10


def create_deals(db, fake):
    """30 deals, pushed in chunks of 10."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    db.rows(f"INSERT INTO deals SELECT i, 'deal ' || i, i * 10.5 FROM generate_series(1, {ROWS}) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows(f"SET qobra_sync.batch_rows = {BATCH}")
    return key


def manual_runs(db):
    """The manual runs of deals, oldest first."""
    return db.rows("SELECT * FROM qobra_sync.runs WHERE source = 'deals'::regclass AND trigger = 'manual' "
                   "ORDER BY run_id")


def wait_recorded(db, count=1):
    """Waits (5 s at most) for `count` manual runs of deals; returns them."""
    return wait_for(lambda: (rs := manual_runs(db)) and len(rs) >= count and rs, 5, interval=0.05,
                    what=f"{count} manual run(s) to be recorded")


def sync_in_transaction(db, end):
    """sync_now() inside BEGIN … `end` (COMMIT or ROLLBACK); returns the run id it returned."""
    db.rows("BEGIN")
    run_id = db.value("SELECT qobra_sync.sync_now('deals')")
    db.rows(end)
    return run_id


@pytest.mark.parametrize("stop", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_push_cut_short_is_recorded_as_interrupted_and_possibly_partial(db, fake, connect, stop):
    """A push stopped after its first chunks (cancel, or the session terminated) raises in the
    session, yet its run is recorded: interrupted, possibly partial, with the rows sent so far;
    the progress view no longer shows it."""
    key = create_deals(db, fake)
    fake.add_faults(bulk_fault(key, {"delay_ms": 300}, times=0))
    pid = db.value("SELECT pg_backend_pid()")
    pushing, outcome = sync_in_background(db, "deals")
    other = connect()
    wait_for(lambda: other.execute("SELECT chunks FROM qobra_sync.progress").fetchone() in [(1,), (2,)],
             10, interval=0.02, what="the first chunk to be accepted")
    assert other.execute(f"SELECT {stop}(%s)", (pid,)).fetchone()[0]
    pushing.join(10)
    assert not pushing.is_alive()
    assert isinstance(outcome.get("error"), psycopg.Error), outcome

    if stop == "pg_terminate_backend":
        db = Db(connect(), db.schema)
        db.rows(f"SET search_path = {db.schema}")
    [run] = wait_recorded(db)
    assert run["status"] == "interrupted"
    assert run["possibly_partial"] is True
    assert BATCH <= run["rows_sent"] < ROWS and run["bytes_sent"] > 0
    assert run["finished_at"] >= run["started_at"]
    assert "did not finish" in run["error"] and "rolled back" in run["error"]
    assert run["data_table_key"] == key and run["source_name"] == f"{db.schema}.deals"
    status = db.one("SELECT * FROM qobra_sync.status WHERE source = 'deals'::regclass")
    assert (status["last_run_id"], status["last_status"]) == (run["run_id"], "interrupted")
    assert db.value("SELECT count(*) FROM qobra_sync.progress") == 0


def test_a_cancel_while_the_first_chunk_waits_is_possibly_partial(db, fake, connect):
    """Cancelled while the first request (all=true) waits for an answer: nothing is known to be
    accepted, yet Qobra may have cleared the table, so the run says possibly partial."""
    key = create_deals(db, fake)
    fake.add_faults(bulk_fault(key, {"hang": True}, times=0))
    db.rows("SET qobra_sync.http_timeout_ms = 60000")
    pid = db.value("SELECT pg_backend_pid()")
    pushing, outcome = sync_in_background(db, "deals")
    wait_for(lambda: any(p["fault"] == "hang" for p in fake.bulk_requests(key)), 10,
             what="the first request to hang")
    assert connect().execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone()[0]
    pushing.join(10)
    assert not pushing.is_alive()
    assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled), outcome
    fake.clear_faults()
    [run] = wait_recorded(db)
    assert (run["status"], run["possibly_partial"], run["rows_sent"]) == ("interrupted", True, 0)


def test_a_rolled_back_push_keeps_its_outcome(db, fake):
    """BEGIN; sync_now(); ROLLBACK: the push happened, so its run is recorded with its outcome
    under the id sync_now() returned (import ids pending, snapshot hash kept): the imports are
    polled, and the next run with skip_unchanged sees the snapshot as unchanged."""
    key = create_deals(db, fake)
    run_id = sync_in_transaction(db, "ROLLBACK")
    [run] = wait_recorded(db)
    assert run["run_id"] == run_id
    assert (run["status"], run["rows_read"], run["rows_sent"], run["requests"]) == ("succeeded", ROWS, ROWS, 3)
    assert run["possibly_partial"] is False and run["error"] is None
    assert run["import_ids"] and run["import_status"] == "pending"
    assert run["snapshot_sha256"] and run["finished_at"] >= run["started_at"]
    fake.flush()
    assert len(fake.records(key)) == ROWS
    assert db.value("SELECT qobra_sync.poll_imports()") >= 1
    assert db.run(run_id)["import_status"] == "finished"
    again = db.sync("deals")
    assert again["status"] == "skipped", again["error"]


def test_savepoints_rolled_back_or_released(db, fake):
    """ROLLBACK TO SAVEPOINT around sync_now(): recorded by the worker. A savepoint released
    and the transaction committed: the session's own row, recorded once. Released, then the
    whole transaction rolled back: recorded by the worker."""
    create_deals(db, fake)
    db.rows("SET qobra_sync.skip_unchanged = off")
    db.rows("BEGIN")
    db.rows("SAVEPOINT s")
    first = db.value("SELECT qobra_sync.sync_now('deals')")
    db.rows("ROLLBACK TO SAVEPOINT s")  # the worker records it at once, while this goes on
    db.rows("COMMIT")
    assert [r["run_id"] for r in wait_recorded(db, 1)] == [first]

    db.rows("BEGIN")
    db.rows("SAVEPOINT s")
    second = db.value("SELECT qobra_sync.sync_now('deals')")
    db.rows("RELEASE SAVEPOINT s")
    db.rows("SAVEPOINT t")
    db.rows("ROLLBACK TO SAVEPOINT t")  # an unrelated savepoint changes nothing
    db.rows("COMMIT")

    db.rows("BEGIN")
    db.rows("SAVEPOINT s")
    third = db.value("SELECT qobra_sync.sync_now('deals')")
    db.rows("RELEASE SAVEPOINT s")
    db.rows("ROLLBACK")
    runs = wait_recorded(db, 3)
    assert [r["run_id"] for r in runs] == [first, second, third]
    assert [r["status"] for r in runs] == ["succeeded"] * 3
    time.sleep(0.5)  # nothing recorded twice
    assert len(manual_runs(db)) == 3


def test_a_committed_push_is_recorded_once_by_the_session(db, fake):
    """COMMIT: the session's row stands alone (the worker adds nothing) and no slot is left."""
    create_deals(db, fake)
    run_id = sync_in_transaction(db, "COMMIT")
    time.sleep(0.5)
    assert [r["run_id"] for r in manual_runs(db)] == [run_id]
    assert db.value("SELECT count(*) FROM qobra_sync.progress") == 0

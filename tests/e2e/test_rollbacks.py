"""A sync_now() run survives the rollback of its caller's transaction: the worker records it.

sync_now() writes its run row in the caller's transaction. When a cancel, a termination, an
error or a ROLLBACK (of the transaction or of a savepoint) takes that row away, Qobra has still
received what was sent: the run must still be in qobra_sync.runs, saying so."""

import time

import psycopg
import pytest

from helpers import DBNAME, Db, bulk_fault, sync_in_background, wait_for

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


def test_no_role_takes_every_slot_and_no_run_is_lost_for_want_of_one(cluster, db, fake, system):
    """With qobra_sync.max_pushes = 8: a login role holds at most 2 slots (a quarter), a
    database at most 4 (half). The review's attack — one statement calling sync_now() again and
    again in a transaction — gets the role's 2 slots, and the third call fails (SQLSTATE 53400)
    before anything is sent; the transaction rolls back and the worker records both runs.
    SET ROLE to another role does not give a login more slots. Two logins holding 2 slots each
    fill the database's half: a fifth push fails, naming it."""
    create_deals(db, fake)
    system.set("qobra_sync.max_pushes", 8)
    db.rows("DROP ROLE IF EXISTS t_slot_a, t_slot_b, t_slot_c")
    db.rows("CREATE ROLE t_slot_c IN ROLE qobra_sync_operator, qobra_reader")
    db.rows("CREATE ROLE t_slot_a LOGIN IN ROLE qobra_sync_operator, qobra_reader, t_slot_c")
    db.rows("CREATE ROLE t_slot_b LOGIN IN ROLE qobra_sync_operator, qobra_reader")
    db.rows(f"GRANT USAGE ON SCHEMA {db.schema} TO t_slot_a, t_slot_b, t_slot_c")
    sessions = {}
    try:
        db.rows("SELECT qobra_sync.unregister_table('deals')")
        for table in ("other", "third", "fourth"):
            db.rows(f"CREATE TABLE {table} AS SELECT * FROM deals")
            db.rows(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
        db.register("third")
        db.rows("GRANT SELECT ON other, fourth TO qobra_reader")
        for role, table in (("t_slot_a", "deals"), ("t_slot_b", "other"), ("t_slot_c", "fourth")):
            db.rows(f"SET ROLE {role}")
            db.rows(f"SELECT qobra_sync.register_table('{table}', '{role}', 'id', 'name', "
                    "run_as => 'qobra_reader', schedule => '0 0 29 2 *')")
            db.rows("RESET ROLE")
            fake.define_table(role)
        for role in ("t_slot_a", "t_slot_b"):
            conn = sessions[role] = psycopg.connect(host=str(cluster.dir), port=cluster.port, user=role,
                                                    dbname=DBNAME, autocommit=False)
            conn.execute(f"SET search_path = {db.schema}")
        a, b = sessions["t_slot_a"], sessions["t_slot_b"]
        a.commit()
        b.commit()

        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="quarter of qobra_sync.max_pushes") as e:
            a.execute("SELECT count(qobra_sync.sync_now('deals', force => true)) FROM generate_series(1, 32)")
        assert "nothing was sent" in e.value.diag.message_detail
        a.rollback()
        recorded = wait_recorded(db, 2)
        assert [r["status"] for r in recorded] == ["succeeded", "succeeded"], recorded
        assert len(fake.bulk_requests("t_slot_a")) == 2, "the third push sent nothing"

        def pushes_alone():
            """Whether t_slot_a may push again (the worker freed the slots it recorded)."""
            try:
                a.execute("SELECT qobra_sync.sync_now('deals', force => true)")
                a.commit()
                return True
            except psycopg.errors.ConfigurationLimitExceeded:
                a.rollback()
                return False
        wait_for(pushes_alone, what="the recorded runs' slots to be freed")

        a.execute("SELECT qobra_sync.sync_now('deals', force => true)")
        a.execute("SELECT qobra_sync.sync_now('deals', force => true)")
        a.execute("SET ROLE t_slot_c")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match='role "t_slot_a" holds 2 slots'):
            a.execute("SELECT qobra_sync.sync_now('fourth', force => true)")
        a.rollback()
        wait_for(pushes_alone, what="the recorded runs' slots to be freed")

        for conn, table in ((a, "deals"), (a, "deals"), (b, "other"), (b, "other")):
            conn.execute(f"SELECT qobra_sync.sync_now('{table}', force => true)")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="this database holds 4 slots"):
            db.rows("SELECT qobra_sync.sync_now('third', force => true)")
        a.commit()
        b.commit()
        assert db.value("SELECT qobra_sync.sync_now('third', force => true)") > 0
    finally:
        for conn in sessions.values():
            conn.rollback()
            conn.close()
        db.rows("RESET ROLE")
        db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        db.rows("DROP OWNED BY t_slot_a, t_slot_b, t_slot_c CASCADE")
        db.rows("DROP ROLE t_slot_a, t_slot_b, t_slot_c")

"""Progress of a push in flight, seen from another session: the progress view and, for the
worker, its pg_stat_activity entry."""

import threading

from helpers import bulk_fault, wait_for
from worker_helpers import reload_config


def wait_event(conn, pid):
    """The (wait_event_type, wait_event) of backend `pid`, sampled until it shows a wait (2 s at
    most: a slowed push waits on Qobra 400 ms per chunk, and reads for a few ms in between)."""
    def sample():
        """The pair, once it is not (None, None)."""
        row = conn.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
        return row if row and row != (None, None) else None
    return wait_for(sample, 2, interval=0.01, what=f"backend {pid} to show a wait event")


def test_progress_view_shows_a_push_in_flight(db, fake, connect):
    """While a slowed push runs, another session sees its run, chunks, rows and bytes grow, and
    its backend waiting in pg_stat_activity (wait event type Extension) while Qobra answers; the
    view is empty again once it ends."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i, i FROM generate_series(1, 50) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows("SET qobra_sync.batch_rows = 10")
    db.rows("SET qobra_sync.max_in_flight = 1")  # one chunk at a time: progress in steps
    fake.add_faults(bulk_fault(key, {"delay_ms": 400}, times=0))
    pid = db.value("SELECT pg_backend_pid()")
    done = {}
    push = threading.Thread(target=lambda: done.setdefault("run", db.sync("deals")))
    push.start()
    other = connect()

    def progress():
        """The progress row of the push, once it has sent two chunks."""
        row = other.execute("SELECT pid, run_id, source::text, chunks, rows_sent, bytes_sent, elapsed "
                            "FROM qobra_sync.progress").fetchone()
        return row if row and row[3] >= 2 else None

    pid_seen, run_id, source, chunks, rows_sent, bytes_sent, elapsed = wait_for(progress, 15, what="progress")
    assert (pid_seen, source) == (pid, f"{db.schema}.deals")
    assert rows_sent == chunks * 10 and bytes_sent > 0 and elapsed.total_seconds() > 0
    assert wait_event(other, pid) == ("Extension", "Extension")
    push.join(30)
    assert done["run"]["status"] == "succeeded" and done["run"]["run_id"] == run_id
    assert other.execute("SELECT count(*) FROM qobra_sync.progress").fetchone()[0] == 0


def test_worker_activity_says_what_it_pushes(cluster, db, fake, connect):
    """A request pushed by the worker shows in its pg_stat_activity entry with the rows sent."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i FROM generate_series(1, 40) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows("ALTER SYSTEM SET qobra_sync.batch_rows = 10")
    reload_config(cluster)
    try:
        fake.add_faults(bulk_fault(key, {"delay_ms": 400}, times=0))
        db.rows("SELECT qobra_sync.request_sync(%s::regclass)", ("deals",))
        other = connect()

        def activity():
            """The worker's activity once it reports rows sent."""
            row = other.execute("SELECT query FROM pg_stat_activity WHERE backend_type = 'qobra_sync worker'").fetchone()
            return row[0] if row and "rows sent" in row[0] else None

        text = wait_for(activity, 15, what="the worker to report its push")
        assert f"pushing {db.schema}.deals" in text
        worker_pid = other.execute("SELECT pid FROM pg_stat_activity "
                                   "WHERE backend_type = 'qobra_sync worker'").fetchone()[0]
        assert wait_event(other, worker_pid) == ("Extension", "Extension")
        wait_for(lambda: other.execute("SELECT count(*) FROM qobra_sync.runs WHERE trigger = 'request' "
                                       "AND status = 'succeeded' AND data_table_key = %s", (key,)).fetchone()[0],
                 30, what="the requested run to succeed")
    finally:
        db.rows("ALTER SYSTEM RESET qobra_sync.batch_rows")
        reload_config(cluster)

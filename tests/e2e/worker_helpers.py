"""Helpers of the end-to-end tests that watch the background worker: its pg_stat_activity
row, the runs it records, registered tables in the fake, settings changed with ALTER SYSTEM."""

from psycopg import sql

from helpers import QUIET_SCHEDULE, Db, wait_for

WORKER_TYPE = "qobra_sync worker"


def worker(db):
    """The worker's row of pg_stat_activity (pid, datname, state, query, activity = state and
    query as one lower-case text), or None when it is not running."""
    rows = db.rows("""SELECT pid, datname, state, query, backend_start
                        FROM pg_stat_activity WHERE backend_type = %s""", (WORKER_TYPE,))
    assert len(rows) <= 1, f"more than one worker: {rows}"
    if not rows:
        return None
    w = rows[0]
    w["activity"] = f"{w['state'] or ''} {w['query'] or ''}".lower()
    return w


def wait_worker(db, other_than=None, timeout=10.0):
    """Waits for the worker to be running (with a pid other than `other_than`); returns its row."""
    return wait_for(lambda: (w := worker(db)) and w["pid"] != other_than and w, timeout,
                    what="the qobra_sync worker" + (f" to replace pid {other_than}" if other_than else ""))


def wait_worker_pushing(db, table, timeout=10.0):
    """Waits until pg_stat_activity says the worker is pushing `<schema>.<table>`."""
    wanted = f"pushing {db.schema}.{table}"
    return wait_for(lambda: (w := worker(db)) and wanted in (w["query"] or "") and w, timeout,
                    interval=0.02, what=f"the worker's query to say {wanted!r}")


def wait_worker_not_pushing(db, timeout=40.0):
    """Waits until the worker (if it runs at all) is not pushing anything."""
    wait_for(lambda: (w := worker(db)) is None or "pushing" not in w["activity"], timeout,
             interval=0.1, what="the worker to finish its push")


def runs(db, table, trigger=None, after=0):
    """The runs of `table` (optionally of one trigger, with run_id > after), oldest first."""
    return db.rows("""SELECT * FROM qobra_sync.runs
                       WHERE source = %(t)s::regclass AND run_id > %(after)s
                         AND (%(trigger)s::text IS NULL OR trigger = %(trigger)s)
                       ORDER BY run_id""", {"t": table, "trigger": trigger, "after": after})


def wait_runs(db, table, count, trigger="schedule", after=0, timeout=20.0, finished=False):
    """Waits until `table` has at least `count` runs of `trigger` (finished ones only when
    `finished`); returns them all."""
    def enough():
        rs = [r for r in runs(db, table, trigger, after) if not finished or r["status"] != "running"]
        return len(rs) >= count and rs
    return wait_for(enough, timeout, interval=0.1,
                    what=f"{count} {'finished ' if finished else ''}{trigger} run(s) of {table}")


def wait_run_finished(db, run_id, timeout=20.0):
    """Waits until a run is no longer `running`; returns its row."""
    return wait_for(lambda: (r := db.run(run_id))["status"] != "running" and r, timeout, interval=0.1,
                    what=f"run {run_id} to finish")


def now(db):
    """The database's clock (the same machine's clock as Python's)."""
    return db.value("SELECT clock_timestamp()")


def seconds(a, b):
    """b - a in seconds."""
    return (b - a).total_seconds()


def gaps(rows, column="started_at"):
    """Seconds between consecutive rows' `column`."""
    return [round(seconds(a[column], b[column]), 3) for a, b in zip(rows, rows[1:])]


def create_deals(db, fake, rows=10, table="deals", schedule=QUIET_SCHEDULE):
    """A registered table of `rows` deals, its data table defined (empty) in the fake; returns
    its data table key."""
    db.rows(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, amount numeric)")
    db.rows(f"INSERT INTO {table} SELECT i, 'deal ' || i, i * 1.5 FROM generate_series(1, {rows}) i")
    key = db.register(table, schedule=schedule)
    db.define_in_fake(fake, table)
    return key


def assert_holds_table(db, fake, key, table="deals"):
    """The fake holds exactly the records preview() gives for the whole table."""
    fake.flush()
    assert fake.records(key) == db.preview(table), f"the fake does not hold exactly {table}"


def reload_config(cluster):
    """pg_reload_conf(), then waits until the postmaster has read the files again (a new
    session's pg_conf_load_time() is after the call). The postmaster signals every session as
    it reloads, and a session takes in a signalled reload before the next statement it reads: so
    once this returns, every statement any session sends sees the new settings (the postmaster's
    pg_hba.conf too). Without the wait, a statement sent at once may run with the old ones."""
    with cluster.connect() as conn:
        before = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.execute("SELECT pg_reload_conf()")

    def reloaded():
        """Whether a new session was forked after the reload."""
        with cluster.connect() as fresh:
            return fresh.execute("SELECT pg_conf_load_time() >= %s", (before,)).fetchone()[0]
    wait_for(reloaded, 10, interval=0.02, what="the postmaster to reload its configuration")


class SystemSettings:
    """ALTER SYSTEM on one cluster, each change followed by a reload every session sees
    (`reload_config`); `reset()` puts every changed setting back."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.changed = set()

    def set(self, name, value):
        """ALTER SYSTEM SET name = value, then reload: every session's next statement sees it."""
        self.changed.add(name)
        with self.cluster.connect() as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.SQL(name), sql.Literal(str(value))))
        reload_config(self.cluster)

    def reset(self):
        """ALTER SYSTEM RESET of every changed setting, then reload."""
        if not self.changed:
            return
        with self.cluster.connect() as conn:
            for name in self.changed:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.SQL(name)))
        reload_config(self.cluster)
        self.changed.clear()


def wait_setting(db, name, value):
    """Waits until this session sees a reloaded setting (backends reload between commands)."""
    wait_for(lambda: db.value(f"SHOW {name}") == value, 5, what=f"{name} = {value} after reload")


def session(conn, schema):
    """A Db on another connection, in the test's schema."""
    conn.execute(f"SET search_path = {schema}, public")
    return Db(conn, schema)


def quiesce(db, fake):
    """Stops what a test left going: faults cleared, every registration paused, the worker idle."""
    fake.clear_faults()
    db.rows("SELECT qobra_sync.pause(source) FROM qobra_sync.tables WHERE NOT paused")
    wait_worker_not_pushing(db)

"""Several databases in one cluster (qobra_sync.database_name = 'qobra_a, qobra_b'): one worker
per database, each keeping its own schedules and pushing to its own destination at the same
time; progress and runs recorded after a rollback stay in their database; a worker terminated
in one database does not stop the other; a database dropped and re-created gets its worker back;
runs orphaned in a dropped database give their progress slots back."""

import time

import psycopg
import pytest

from conftest import preloaded_cluster
from helpers import READER, WORK, Db, FakeQobra, bulk_fault, wait_for
from worker_helpers import WORKER_TYPE, assert_holds_table, create_deals, runs, wait_runs

DATABASES = ("qobra_a", "qobra_b")


@pytest.fixture(scope="module")
def multi():
    """A cluster whose worker databases are qobra_a and qobra_b, each with the extension, the
    reader and a fake Qobra of its own as destination."""
    c = preloaded_cluster("e2e-databases", f"qobra_sync.database_name = '{', '.join(DATABASES)}'")
    fakes = {name: FakeQobra(WORK, f"fake-qobra-{name}") for name in DATABASES}
    try:
        with c.connect("postgres") as conn:
            conn.execute(f"CREATE ROLE {READER} NOLOGIN")
            for name in DATABASES:
                conn.execute(f"CREATE DATABASE {name}")
        for name in DATABASES:
            install(c, name, fakes[name])
        yield c, fakes
    finally:
        c.stop()
        for f in fakes.values():
            f.stop()


def install(cluster, name, fake):
    """The extension in database `name`, with `fake` as destination and a schema `s`."""
    with cluster.connect(name) as conn:
        conn.execute("CREATE EXTENSION qobra_sync")
        conn.execute("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
        conn.execute(f"CREATE SCHEMA s; GRANT USAGE ON SCHEMA s TO {READER}")


def session(cluster, name):
    """A superuser session in database `name`, search_path s."""
    conn = cluster.connect(name)
    conn.execute("SET search_path = s, public")
    return Db(conn, "s")


def worker_pid(db):
    """The pid of the worker connected to db's database."""
    pids = [r["pid"] for r in db.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = %s "
                                      "AND datname = current_database()", (WORKER_TYPE,))]
    assert len(pids) <= 1, pids
    return pids[0] if pids else None


def test_each_database_has_its_worker_its_destination_and_its_runs(multi):
    """Both databases push at the same time, each to its own fake; a slow push shows in its own
    database's progress only; a rolled-back run is recorded by its own database's worker."""
    cluster, fakes = multi
    a, b = (session(cluster, name) for name in DATABASES)
    workers = {name: wait_for(lambda db=db: worker_pid(db), what=f"the worker of {name}")
               for name, db in zip(DATABASES, (a, b))}
    assert len(set(workers.values())) == 2
    keys = {}
    for name, db in zip(DATABASES, (a, b)):
        fakes[name].reset()
        keys[name] = create_deals(db, fakes[name], rows=20, table=f"deals_{name}")
        fakes[name].add_faults(bulk_fault(keys[name], {"delay_ms": 1500}, times=2))
    for name, db in zip(DATABASES, (a, b)):
        db.rows(f"SELECT qobra_sync.request_sync('deals_{name}')")
    # While both push, each database's progress shows its own push only.
    for name, db in zip(DATABASES, (a, b)):
        rows = wait_for(lambda db=db: db.rows("SELECT source::text FROM qobra_sync.progress"), timeout=10,
                        what=f"the push in {name}'s progress")
        assert [r["source"] for r in rows] == [f"deals_{name}"], rows
    done = {name: wait_runs(db, f"deals_{name}", 1, trigger="request", finished=True, timeout=30)[0]
            for name, db in zip(DATABASES, (a, b))}
    assert all(r["status"] == "succeeded" for r in done.values()), done
    ra, rb = done["qobra_a"], done["qobra_b"]
    assert ra["started_at"] < rb["finished_at"] and rb["started_at"] < ra["finished_at"], \
        "the two pushes did not overlap"
    for name, db in zip(DATABASES, (a, b)):
        assert_holds_table(db, fakes[name], keys[name], f"deals_{name}")
        assert fakes[name].bulk_requests(keys[name]), f"{name} pushed elsewhere"

    # A session's push rolled back in qobra_a: recorded by qobra_a's worker, in qobra_a only.
    a.conn.autocommit = False
    run_id = a.value("SELECT qobra_sync.sync_now('deals_qobra_a', force => true)")
    a.conn.rollback()
    a.conn.autocommit = True
    recorded = wait_for(lambda: a.rows("SELECT status FROM qobra_sync.runs WHERE run_id = %s", (run_id,)),
                        timeout=15, what="qobra_a's worker to record the rolled-back run")
    assert recorded == [{"status": "succeeded"}]
    time.sleep(1)
    assert b.value("SELECT count(*) FROM qobra_sync.runs WHERE source_name LIKE '%%deals_qobra_a'") == 0
    a.conn.close()
    b.conn.close()


def test_a_worker_terminated_in_one_database_leaves_the_other_on_schedule(multi):
    """pg_terminate_backend on qobra_a's worker: qobra_b's worker keeps pushing every 2 seconds
    meanwhile, and qobra_a's worker comes back and resumes."""
    cluster, fakes = multi
    a, b = (session(cluster, name) for name in DATABASES)
    for name, db in zip(DATABASES, (a, b)):
        fakes[name].reset()
        db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        create_deals(db, fakes[name], rows=5, table=f"every_{name}", schedule="2 seconds")
    wait_runs(a, "every_qobra_a", 1, finished=True, timeout=20)
    old = worker_pid(a)
    before = len(runs(b, "every_qobra_b", "schedule"))
    a.rows("SELECT pg_terminate_backend(%s)", (old,))
    wait_runs(b, "every_qobra_b", before + 2, timeout=20)
    new = wait_for(lambda: (p := worker_pid(a)) and p != old and p, timeout=10, what="qobra_a's new worker")
    after = len(runs(a, "every_qobra_a", "schedule"))
    wait_runs(a, "every_qobra_a", after + 1, finished=True, timeout=20)
    assert worker_pid(a) == new
    for db in (a, b):
        db.rows("SELECT qobra_sync.pause(source) FROM qobra_sync.tables")
        db.conn.close()


def test_a_database_dropped_and_created_again_gets_its_worker_back(multi):
    """DROP DATABASE qobra_b (its worker is terminated with it) while qobra_a goes on; created
    again with the extension, qobra_b's worker keeps its new schedule."""
    cluster, fakes = multi
    a = session(cluster, "qobra_a")
    a.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    fakes["qobra_a"].reset()
    create_deals(a, fakes["qobra_a"], rows=5, table="steady", schedule="2 seconds")
    with cluster.connect("postgres") as conn:
        conn.execute("DROP DATABASE qobra_b WITH (FORCE)")
    count = len(runs(a, "steady", "schedule"))
    wait_runs(a, "steady", count + 2, timeout=20)
    with cluster.connect("postgres") as conn:
        conn.execute("CREATE DATABASE qobra_b")
    install(cluster, "qobra_b", fakes["qobra_b"])
    b = session(cluster, "qobra_b")
    fakes["qobra_b"].reset()
    key = create_deals(b, fakes["qobra_b"], rows=7, table="reborn", schedule="2 seconds")
    wait_runs(b, "reborn", 1, finished=True, timeout=30)
    assert runs(b, "reborn")[0]["status"] == "succeeded"
    assert_holds_table(b, fakes["qobra_b"], key, "reborn")
    assert worker_pid(b)
    for db in (a, b):
        db.rows("SELECT qobra_sync.pause(source) FROM qobra_sync.tables")
        db.conn.close()


def test_runs_orphaned_in_a_dropped_database_give_their_slots_back(multi):
    """In qobra_b, while its worker is held by a hanging push, a role's sessions' pushes are
    rolled back until the role holds every slot it may (a quarter of qobra_sync.max_pushes): a
    further push is refused. qobra_b is dropped before its worker records them, and no worker
    ever will: qobra_a's worker frees their slots, and the role pushes again in qobra_a."""
    cluster, fakes = multi
    with cluster.connect("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'qobra_b'").fetchone():
            conn.execute("CREATE DATABASE qobra_b")
            install(cluster, "qobra_b", fakes["qobra_b"])
    b = session(cluster, "qobra_b")
    b.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    fakes["qobra_b"].reset()
    hang = create_deals(b, fakes["qobra_b"], rows=5, table="hang")
    create_deals(b, fakes["qobra_b"], rows=5, table="quick")
    fakes["qobra_b"].add_faults(bulk_fault(hang, {"hang": True}, times=0))
    b.rows("SELECT qobra_sync.request_sync('hang')")
    wait_for(lambda: b.rows("SELECT 1 FROM pg_stat_activity WHERE backend_type = %s AND query LIKE %s",
                            (WORKER_TYPE, "pushing s.hang%")), timeout=15, what="qobra_b's worker to hang")
    quarter = int(b.value("SHOW qobra_sync.max_pushes")) // 4
    b.conn.autocommit = False
    for _ in range(quarter):
        b.value("SELECT qobra_sync.sync_now('quick', force => true)")
        b.conn.rollback()
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
        b.value("SELECT qobra_sync.sync_now('quick', force => true)")
    b.conn.rollback()
    b.conn.close()
    with cluster.connect("postgres") as conn:
        conn.execute("DROP DATABASE qobra_b WITH (FORCE)")

    a = session(cluster, "qobra_a")
    a.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    fakes["qobra_a"].reset()
    create_deals(a, fakes["qobra_a"], rows=5, table="again")
    create_deals(a, fakes["qobra_a"], rows=5, table="wake")
    a.rows("SELECT qobra_sync.request_sync('wake')")  # a commit that wakes qobra_a's worker
    wait_runs(a, "wake", 1, trigger="request", finished=True, timeout=30)

    def pushes():
        """Whether the role may push in qobra_a (the orphaned slots were freed)."""
        try:
            return a.value("SELECT qobra_sync.sync_now('again', force => true)") > 0
        except psycopg.errors.ConfigurationLimitExceeded:
            return False
    wait_for(pushes, timeout=30, interval=0.5, what="qobra_a's worker to free qobra_b's slots")
    a.conn.close()

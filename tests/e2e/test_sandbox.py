"""Reads that cannot be hijacked: a table owner's code (an RLS policy, a view, the functions it
calls) runs as the reader while qobra_sync reads it, and nothing it does outlives the read,
whoever reads it (a session's push, the worker's, the inspection functions). The run's deadline
bounds slow reads, in a session and in the worker."""

import time

import psycopg
import pytest

from helpers import READER, wait_for
from worker_helpers import create_deals, runs, wait_runs, worker

MALLORY = "t_mallory"


@pytest.fixture
def mallory(db):
    """A plain login role owning schema `mal_<test schema>`, readable by the reader, with the
    attack of the issue in place: the table's RLS policy moves search_path to mallory's schema,
    where "=" on bigint (the run bookkeeping's run_id) makes mallory a superuser when a
    superuser calls it. Returns the schema; afterwards everything of mallory's is dropped."""
    schema = "mal_" + db.schema[2:40]
    db.rows(f"DROP ROLE IF EXISTS {MALLORY}")
    db.rows(f"CREATE ROLE {MALLORY} LOGIN")
    db.rows(f"CREATE SCHEMA {schema} AUTHORIZATION {MALLORY}")
    db.rows(f"GRANT USAGE ON SCHEMA {schema} TO {READER}")
    db.rows(f"SET ROLE {MALLORY}")
    db.rows(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, name text)")
    db.rows(f"INSERT INTO {schema}.t SELECT i, 'deal ' || i FROM generate_series(1, 20) i")
    db.rows(f"GRANT SELECT ON {schema}.t TO {READER}")
    db.rows(f"ALTER TABLE {schema}.t ENABLE ROW LEVEL SECURITY")
    db.rows(f"""CREATE POLICY p ON {schema}.t FOR SELECT USING (
                pg_catalog.set_config('search_path', '{schema}, pg_catalog, public', false) IS NOT NULL)""")
    db.rows(f"""CREATE FUNCTION {schema}.eq8(a bigint, b bigint) RETURNS bool LANGUAGE plpgsql AS $$BEGIN
                IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                  EXECUTE 'ALTER ROLE {MALLORY} SUPERUSER'; END IF;
                RETURN a OPERATOR(pg_catalog.=) b; END$$""")
    db.rows(f"CREATE OPERATOR {schema}.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = {schema}.eq8)")
    db.rows("RESET ROLE")
    yield schema
    db.rows("RESET ROLE")
    db.rows(f"SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables WHERE source::text LIKE '{schema}.%'")
    db.rows(f"DROP OWNED BY {MALLORY} CASCADE")
    db.rows(f"DROP ROLE {MALLORY}")


def is_superuser(db, role=MALLORY):
    """Whether `role` is a superuser now."""
    return db.value("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))


def register_mal(db, fake, schema, table="t", **options):
    """Registers mallory's `table` (pushing to a data table of its own in the fake)."""
    key = f"{schema}.{table}"
    db.rows(f"SELECT qobra_sync.register_table('{schema}.{table}', %s, 'id', 'name', run_as => %s,"
            f" schedule => %s)", (key, READER, options.get("schedule", "0 0 29 2 *")))
    fake.define_table(key)
    return key


@pytest.mark.parametrize("entry", ["sync_now", "preview", "validate", "csv_template"])
def test_a_table_owner_cannot_hijack_a_read(db, fake, mallory, entry):
    """The attack, through each entry point as a superuser: mallory stays a plain role, the
    caller's search_path is the same afterwards, and the read did happen (a push sends the
    table)."""
    key = register_mal(db, fake, mallory)
    before = db.value("SHOW search_path")
    call = {"sync_now": "SELECT qobra_sync.sync_now(%s) AS r",
            "preview": "SELECT count(*) AS r FROM qobra_sync.preview(%s, 100)",
            "validate": "SELECT count(*) AS r FROM qobra_sync.validate(%s)",
            "csv_template": "SELECT qobra_sync.csv_template(%s) AS r"}[entry]
    result = db.value(call, (f"{mallory}.t",))
    assert db.value("SHOW search_path") == before
    assert not is_superuser(db)
    if entry == "sync_now":
        run = db.run(result)
        assert run["status"] == "succeeded", run["error"]
        fake.flush()
        assert len(fake.records(key)) == 20
    elif entry == "preview":
        assert result == 20


def test_the_worker_is_not_hijacked(db, fake, mallory):
    """The worker pushes mallory's table on its schedule, twice (its session would keep the
    hijacked search_path between the two); mallory stays a plain role, and another table is
    pushed fine afterwards."""
    register_mal(db, fake, mallory, schedule="1 second")
    first = wait_runs(db, f"{mallory}.t", 2, finished=True, timeout=15)
    assert [r["status"] for r in first[:2]] in (["succeeded", "succeeded"], ["succeeded", "skipped"]), \
        [(r["status"], r["error"]) for r in first]
    db.rows(f"SELECT qobra_sync.pause('{mallory}.t')")
    assert not is_superuser(db)
    create_deals(db, fake, schedule="1 second")
    assert wait_runs(db, "deals", 1, finished=True, timeout=10)[0]["status"] == "succeeded"
    db.rows("SELECT qobra_sync.pause('deals')")
    assert not is_superuser(db)


MEDDLE = """CREATE FUNCTION {s}.meddle(i int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'mal_cursor';
BEGIN
  PERFORM pg_catalog.set_config('search_path', '{s}, public', false);
  PERFORM pg_catalog.set_config('work_mem', '77MB', false);
  PERFORM pg_catalog.set_config('TimeZone', 'Asia/Tokyo', false);
  PERFORM pg_catalog.pg_advisory_unlock_all();
  PERFORM pg_catalog.pg_advisory_lock(4242);
  PERFORM pg_catalog.pg_advisory_lock_shared(4243);
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE name OPERATOR(pg_catalog.=) 'mal_cursor') THEN
    OPEN c FOR SELECT 1;
  END IF;
  BEGIN EXECUTE 'PREPARE mal_stmt AS SELECT 1'; EXCEPTION WHEN OTHERS THEN NULL; END;
  BEGIN EXECUTE 'DEALLOCATE ALL'; EXCEPTION WHEN OTHERS THEN NULL; END;
  RETURN i;
END $$"""

SESSION_STATE = {
    "settings": "SELECT name, setting FROM pg_settings ORDER BY name",
    "locks": """SELECT locktype, classid, objid, objsubid, mode FROM pg_locks
                 WHERE pid = pg_backend_pid() AND locktype = 'advisory' ORDER BY 1, 2, 3, 4, 5""",
    "prepared statements": "SELECT name, statement FROM pg_prepared_statements ORDER BY name",
    "cursors": "SELECT name, statement FROM pg_cursors ORDER BY name",
}


def session_state(db):
    """What a source's code could leave behind in this session, by kind."""
    return {kind: db.rows(query) for kind, query in SESSION_STATE.items()}


def meddling_view(db, schema):
    """Mallory's view whose function changes settings, takes and releases advisory locks,
    opens a cursor and tries PREPARE and DEALLOCATE, on every row read."""
    db.rows(f"SET ROLE {MALLORY}")
    db.rows(MEDDLE.format(s=schema))
    db.rows(f"CREATE VIEW {schema}.v AS SELECT {schema}.meddle(id) AS id, name FROM {schema}.t")
    db.rows(f"GRANT SELECT ON {schema}.v TO {READER}")
    db.rows("RESET ROLE")


def test_nothing_the_source_does_outlives_the_read(db, fake, mallory):
    """A whole push (census, every chunk) and each inspection of the meddling view, with a
    session lock and a prepared statement of the caller's own: pg_settings, pg_locks,
    pg_prepared_statements and pg_cursors are the same after each as before."""
    meddling_view(db, mallory)
    key = register_mal(db, fake, mallory, table="v")
    db.rows("SET qobra_sync.batch_rows = 7")  # three chunks
    db.rows("SELECT pg_advisory_lock(7)")
    db.rows("PREPARE mine AS SELECT 1")
    before = session_state(db)
    run = db.sync(f"{mallory}.v")
    assert run["status"] == "succeeded" and run["requests"] == 3, run["error"]
    assert session_state(db) == before
    for call in ["SELECT count(*) FROM qobra_sync.preview(%s)",
                 "SELECT count(*) FROM qobra_sync.validate(%s)",
                 "SELECT qobra_sync.csv_template(%s)"]:
        db.value(call, (f"{mallory}.v",))
        assert session_state(db) == before, call
    fake.flush()
    assert len(fake.records(key)) == 20
    db.rows("DEALLOCATE mine")
    assert db.value("SELECT pg_advisory_unlock(7)") is True


def test_the_worker_keeps_no_lock_of_the_source(db, fake, mallory):
    """After the worker pushed the meddling view, it holds no advisory lock and pushes another
    table on schedule."""
    meddling_view(db, mallory)
    register_mal(db, fake, mallory, table="v", schedule="1 second")
    wait_runs(db, f"{mallory}.v", 1, finished=True, timeout=10)
    db.rows(f"SELECT qobra_sync.pause('{mallory}.v')")
    pid = wait_for(lambda: (w := worker(db)) and w["pid"], what="the worker")
    locks = db.rows("SELECT objid, mode FROM pg_locks WHERE pid = %s AND locktype = 'advisory'", (pid,))
    assert locks == []
    create_deals(db, fake, schedule="1 second")
    assert wait_runs(db, "deals", 1, finished=True, timeout=10)[0]["status"] == "succeeded"
    db.rows("SELECT qobra_sync.pause('deals')")


SLOW_FILTER = "length(repeat(name, 20000000)) > 0"


def slow_table(db, fake, schedule="0 0 29 2 *"):
    """2,000 deals behind a filter that takes tens of milliseconds a row."""
    db.rows("CREATE TABLE slow (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO slow SELECT i, 'deal ' || i FROM generate_series(1, 2000) i")
    key = db.register("slow", filter=SLOW_FILTER, schedule=schedule)
    fake.define_table(key)
    return key


def test_run_timeout_bounds_a_slow_read_in_a_session(db, fake):
    """run_timeout_ms = 2000 and a read that would take over a minute: sync_now returns within
    a few seconds, the run failed saying it took longer than run_timeout_ms, nothing was sent."""
    key = slow_table(db, fake)
    db.rows("SET qobra_sync.run_timeout_ms = 2000")
    run = db.sync("slow")
    assert run["elapsed"] < 5
    assert run["status"] == "failed" and "run_timeout_ms" in run["error"], run["error"]
    assert run["requests"] == 0 and fake.bulk_requests(key) == []
    assert db.value("SELECT 1") == 1


def test_run_timeout_bounds_a_slow_read_in_the_worker(db, fake, system):
    """The same slow table on the worker's schedule next to a quick one: the slow table's runs
    fail after about 2 s each, the quick table's runs keep coming."""
    system.set("qobra_sync.run_timeout_ms", 2000)
    slow_table(db, fake, schedule="2 seconds")
    create_deals(db, fake, schedule="2 seconds")
    quick = wait_runs(db, "deals", 3, finished=True, timeout=20)
    assert all(r["status"] in ("succeeded", "skipped") for r in quick), [r["error"] for r in quick]
    slow = [r for r in runs(db, "slow", "schedule") if r["status"] != "running"]
    assert slow, "the slow table was never run"
    for r in slow:
        assert r["status"] == "failed" and "run_timeout_ms" in r["error"], r["error"]
        assert (r["finished_at"] - r["started_at"]).total_seconds() < 4
    db.rows("SELECT qobra_sync.pause(source) FROM qobra_sync.tables")


def test_a_superuser_is_never_the_reader(db, fake):
    """Before registering, preview() and csv_template() as a superuser without run_as are
    refused (42501) and read nothing; with a least-privileged run_as they read."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals VALUES (1, 'a')")
    db.rows(f"GRANT SELECT ON deals TO {READER}")
    for call in ["SELECT * FROM qobra_sync.preview('deals')",
                 "SELECT qobra_sync.csv_template('deals')",
                 "SELECT * FROM qobra_sync.preview('deals', run_as => 'postgres')"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="superuser"):
            db.rows(call)
    assert db.value(f"SELECT count(*) FROM qobra_sync.preview('deals', run_as => '{READER}')") == 1


def test_the_fetch_timeout_of_the_session_is_kept(db, fake):
    """A session statement_timeout shorter than the run's deadline still applies (and is back
    in force after the push)."""
    slow_table(db, fake)
    db.rows("SET statement_timeout = '1s'")
    start = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        db.value("SELECT qobra_sync.sync_now('slow')")
    assert time.monotonic() - start < 4
    db.rows("SET statement_timeout = '100s'")

"""A production cluster's life, each on clusters of its own: a streaming replica that stays
quiet and takes over at promotion, pg_dump and restore (custom and plain) into a fresh cluster,
DROP EXTENSION idle and mid-push then CREATE EXTENSION again, and the upgrade from 0.1.0 (its
install script and library) to this version, whose catalog must equal a fresh install's."""

import os
import re
import shutil
import subprocess
import time

import psycopg
import pytest

from conftest import Cluster, preloaded_cluster
from helpers import DBNAME, READER, ROOT, WORK, Db, FakeQobra, bulk_fault, free_port, wait_for
from worker_helpers import WORKER_TYPE, assert_holds_table, runs, wait_runs

SCHEMA = "life"
CATALOG_SQL = (ROOT / "tests/e2e/catalog.sql").read_text()


@pytest.fixture(scope="module")
def fake():
    """The fake Qobra of this module's clusters."""
    f = FakeQobra(WORK, "fake-qobra-lifecycle")
    yield f
    f.stop()


@pytest.fixture
def clusters():
    """Makes preloaded clusters (`make(name, *conf_lines)`, or `adopt(cluster)` for one made
    otherwise); every one is stopped after the test."""
    made = []

    class Make:
        def __call__(self, name, *conf):
            made.append(preloaded_cluster(name, *conf))
            return made[-1]

        def adopt(self, cluster):
            made.append(cluster)
            return cluster

    yield Make()
    for c in made:
        c.stop()


def session(cluster):
    """A superuser session in the test database with search_path = life, public."""
    conn = cluster.connect()
    conn.execute(f"SET search_path = {SCHEMA}, public")
    return Db(conn, SCHEMA)


def install(cluster, fake, version=None):
    """Creates the extension (of `version`, default the current one), the reader, the
    destination and the schema; returns a session."""
    db = session(cluster)
    db.rows("CREATE EXTENSION qobra_sync" + (f" VERSION '{version}'" if version else ""))
    db.rows(f"DO $$ BEGIN CREATE ROLE {READER} NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    db.rows(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; GRANT USAGE ON SCHEMA {SCHEMA} TO {READER}")
    return db


def deals(db, fake, table="deals", rows=20, **options):
    """A registered table whose second column was dropped (so a restore numbers its columns
    afresh), its data table defined in the fake; returns the key."""
    db.rows(f"CREATE TABLE {table} (id int PRIMARY KEY, junk int, name text, amount numeric(12,2))")
    db.rows(f"ALTER TABLE {table} DROP COLUMN junk")
    db.rows(f"INSERT INTO {table} SELECT i, 'deal ' || i, i * 1.5 FROM generate_series(1, {rows}) i")
    key = db.register(table, key=f"{table}_{os.getpid()}_{time.monotonic_ns()}", **options)
    db.define_in_fake(fake, table)
    return key


# A role that may read whatever it is granted: by hand, or by default privileges.
WATCHER = "t_watcher"


def assert_only_own_grants(db):
    """Every privilege on the extension's schema, tables, sequences, views and functions is its
    owner's, or one the extension grants (qobra_sync_operator; pg_monitor on metrics); the
    tables of the destination and its key are their owner's alone."""
    grants = db.rows("""
        SELECT o.name, o.owner::regrole::text AS owner, a.grantee, a.privilege_type
          FROM (SELECT c.oid::regclass::text AS name, c.relowner AS owner, c.relacl AS acl
                  FROM pg_class c WHERE c.relnamespace = 'qobra_sync'::regnamespace
                UNION ALL
                SELECT p.oid::regprocedure::text, p.proowner, p.proacl
                  FROM pg_proc p WHERE p.pronamespace = 'qobra_sync'::regnamespace
                UNION ALL
                SELECT c.oid::regclass::text || '.' || t.attname, c.relowner, t.attacl
                  FROM pg_class c JOIN pg_attribute t ON t.attrelid = c.oid
                 WHERE c.relnamespace = 'qobra_sync'::regnamespace
                UNION ALL
                SELECT 'schema', n.nspowner, n.nspacl FROM pg_namespace n WHERE n.nspname = 'qobra_sync') o
          CROSS JOIN LATERAL (SELECT CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END AS grantee,
                                     x.privilege_type FROM aclexplode(o.acl) x) a
         WHERE a.grantee <> o.owner::regrole::text""")
    allowed = {"qobra_sync_operator", "pg_monitor"}
    assert [g for g in grants if g["grantee"] not in allowed] == [], grants
    assert not [g for g in grants if g["name"] in ("qobra_sync.destination", "qobra_sync.destination_key")], grants


def sqlstate_of(db, query, params=None):
    """The SQLSTATE and hint of the error `query` raises."""
    with pytest.raises(psycopg.Error) as e:
        db.rows(query, params)
    return e.value.sqlstate, e.value.diag.message_hint or ""


def log_mark(cluster):
    """Where the server log ends now (for `log_lines(since=...)`)."""
    return cluster.server_log.stat().st_size


def log_lines(cluster, pattern, since=0):
    """The server log's lines (written after `since`) matching the regular expression `pattern`."""
    with open(cluster.server_log, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if re.search(pattern, line)]


def assert_no_error_loop(cluster, since):
    """Since `since`, the server log shows no crash, no exit of qobra_sync's worker, and no
    error it caught (it logs those at LOG as `qobra_sync worker: <message>`; its only other
    lines say what it waits for)."""
    bad = log_lines(cluster, r"terminated by signal|PANIC|((ERROR|FATAL).*qobra_sync worker)|"
                             r'background worker "qobra_sync worker.*exit|'
                             r'LOG:  qobra_sync worker: (?!waiting for |database ")', since)
    assert not bad, bad


def worker_pids(db):
    """The pids of the qobra_sync workers."""
    return [r["pid"] for r in db.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = %s",
                                      (WORKER_TYPE,))]


# --------------------------------------------------------------------------- standby, promotion


def make_standby(primary, name):
    """A streaming replica of `primary` (pg_basebackup -R), started, with the primary's
    configuration (qobra_sync preloaded) on a port of its own."""
    standby = Cluster(WORK / name, free_port())
    standby.stop()
    subprocess.run(["bash", "-c", 'source scripts/cluster.sh && rm -rf "$1" && install -d -o "$QS_PGUSER" -m 700 "$1" && '
                    'as_pguser "$PGBIN/pg_basebackup" -h "$2" -p "$3" -U postgres -D "$1/data" -R -X stream -c fast && '
                    'printf "port = %s\\nunix_socket_directories = \'%s\'\\n" "$4" "$1" | as_pguser tee -a "$1/data/postgresql.auto.conf" >/dev/null',
                    "standby", str(standby.dir), str(primary.dir), str(primary.port), str(standby.port)],
                   cwd=ROOT, check=True)
    standby.pg_ctl("start")
    return standby


def test_a_standby_is_quiet_refuses_writes_and_takes_over_at_promotion(clusters, fake):
    """On a hot standby no worker runs (no log line, no restart loop), the functions that
    write fail with 25006 and a hint while inspection works; after the primary dies mid-push
    and the standby is promoted, the worker starts within seconds, marks the dead primary's run
    interrupted, runs the schedule that fell due once, and pushes work."""
    fake.reset()
    primary = clusters("life-primary")
    db = install(primary, fake)
    hung = deals(db, fake, "hung")
    due = deals(db, fake, "due", schedule="1 hour")
    standby = clusters.adopt(make_standby(primary, "life-standby"))
    sdb = session(standby)

    # Inspection works on the standby; every function that writes says where to go.
    assert all(c["ok"] for c in sdb.rows("SELECT * FROM qobra_sync.validate('due')")), \
        sdb.rows("SELECT * FROM qobra_sync.validate('due')")
    assert len(sdb.rows("SELECT * FROM qobra_sync.column_mapping('due') WHERE synced")) == 3
    assert len(sdb.preview("due")) == 20
    assert sdb.value("SELECT qobra_sync.csv_template('due', 5)").count("\n") >= 5
    for call in ["SELECT qobra_sync.sync_now('due')", "SELECT qobra_sync.request_sync('due')",
                 "SELECT qobra_sync.pause('due')", "SELECT qobra_sync.alter_table('due', schedule => '2 hours')",
                 "SELECT qobra_sync.unregister_table('due')", "SELECT qobra_sync.poll_imports()",
                 "SELECT qobra_sync.set_destination('qk_x', 'https://api.qobra.co')",
                 "SELECT qobra_sync.register_table('hung', 'other', 'id', 'name')"]:
        state, hint = sqlstate_of(sdb, call)
        assert (state, "primary" in hint) == ("25006", True), (call, state, hint)

    # The primary dies with a push in flight: its run stays "running", as replicated.
    fake.add_faults(bulk_fault(hung, {"hang": True}, times=100))
    db.rows("SELECT qobra_sync.request_sync('hung')")
    run = wait_for(lambda: [r for r in runs(sdb, "hung") if r["status"] == "running"], timeout=30,
                   what="the hung run, running, on the standby")[0]
    # "due" falls due while the worker is stuck in that push, and stays due until the failover.
    db.rows("UPDATE qobra_sync.registrations SET next_run_at = now() - interval '1 minute' WHERE source = 'due'::regclass")
    wait_for(lambda: sdb.value("SELECT next_run_at < now() FROM qobra_sync.tables WHERE source = 'due'::regclass"),
             what="the standby to replay the due time")
    assert not worker_pids(sdb), "a worker runs on the standby"
    primary.pg_ctl("-m", "immediate", "stop")
    time.sleep(2)
    assert not worker_pids(sdb), "a worker started on the standby"
    assert not log_lines(standby, r"qobra_sync worker"), "the standby logged about the worker"

    fake.clear_faults()
    promoted = time.monotonic()
    standby.pg_ctl("promote")
    wait_for(lambda: worker_pids(sdb), timeout=10, what="the worker after promotion")
    assert time.monotonic() - promoted < 10
    assert wait_for(lambda: sdb.run(run["run_id"])["status"] != "running" and sdb.run(run["run_id"]),
                    timeout=20, what="the dead primary's run to be marked")["status"] == "interrupted"
    scheduled = wait_runs(sdb, "due", 1, finished=True, timeout=30)
    assert [r["status"] for r in scheduled] == ["succeeded"]
    wait_runs(sdb, "hung", 1, trigger="request", finished=True, timeout=30)
    time.sleep(2)
    assert len(runs(sdb, "due", "schedule")) == 1, "the due schedule ran more than once"
    assert sdb.value("SELECT next_run_at > now() + interval '50 minutes' FROM qobra_sync.tables WHERE source = 'due'::regclass")
    sdb.rows("INSERT INTO due VALUES (21, 'deal 21', 31.5)")
    assert sdb.sync("due")["status"] == "succeeded"
    assert_holds_table(sdb, fake, due, "due")
    assert_holds_table(sdb, fake, hung, "hung")
    assert_no_error_loop(standby, 0)
    sdb.conn.close()
    db.conn.close()


# --------------------------------------------------------------------------- dump and restore


def pg_tool(*args, check=True):
    """Runs a PostgreSQL program (pg_dump, pg_restore, psql, pg_config) from the server's bin;
    returns it finished, its output as bytes."""
    return subprocess.run(["bash", "-c", 'source scripts/postgres.sh && "$PGBIN/$1" "${@:2}"', "tool", *args],
                          cwd=ROOT, check=check, capture_output=True)


def populated(db, fake):
    """A database with two registrations (filter, interval schedule, overrides, field keys,
    run_as), their history, rejected rows, and a destination; returns the keys."""
    plain = deals(db, fake, "plain")
    tuned = deals(db, fake, "tuned", schedule="30 minutes", filter="amount > 3",
                  column_types={"amount": "number"}, field_keys={"amount": "deal_amount"})
    for table in ("plain", "tuned"):
        run = db.sync(table)
        assert run["status"] == "succeeded"
    # A parsing error as Qobra's import reports it (poll_imports writes such rows).
    db.rows("""INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, "row", details)
               VALUES (%s, 'import', 3, '{"amount": "x"}', 'amount: not a number')""", (run["run_id"],))
    db.rows("UPDATE qobra_sync.registrations SET paused = true WHERE source = 'plain'::regclass")
    return plain, tuned


def history(db):
    """The run history and registrations, as comparable rows."""
    regs = db.rows("""SELECT source::text, data_table_key, id_column, name_column, user_columns, user_key,
                             column_types, field_keys, exclude_columns, filter, schedule, run_as, paused,
                             owner, (SELECT jsonb_agg(c - 'attnum') FROM jsonb_array_elements(shape) c) AS shape
                        FROM qobra_sync.tables ORDER BY 1""")
    hist = db.rows("""SELECT run_id, source::text, source_name, status, trigger, rows_sent, import_ids,
                             owner::text, started_at FROM qobra_sync.runs ORDER BY run_id""")
    errors = db.rows("SELECT * FROM qobra_sync.run_errors ORDER BY run_id, line_number")
    assert errors, "no run_errors to compare"
    return regs, hist, errors


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_dump_and_restore_keeps_registrations_and_history_but_never_the_key(clusters, fake, fmt):
    """pg_dump of a database with registrations, history and a destination, restored into a
    fresh cluster: registrations point at the same relations by name, history is intact, the
    key is in no dump and must be set again, and then the first push works."""
    fake.reset()
    origin = clusters("life-dump-origin")
    db = install(origin, fake)
    populated(db, fake)
    before = history(db)
    dump = WORK / f"life.{fmt}.dump"
    pg_tool("pg_dump", "-h", str(origin.dir), "-p", str(origin.port), "-U", "postgres",
            "-F", "c" if fmt == "custom" else "p", "-f", str(dump), DBNAME)
    text = dump.read_bytes() if fmt == "plain" else pg_tool("pg_restore", "-f", "-", str(dump)).stdout
    assert fake.api_key.encode() not in text, "the API key is in the dump"
    assert b"qobra_sync.registrations" in text and b"qobra_sync.runs" in text

    target = clusters("life-dump-target")
    with target.connect() as conn:
        conn.execute(f"CREATE ROLE {READER} NOLOGIN")
    if fmt == "custom":
        pg_tool("pg_restore", "-h", str(target.dir), "-p", str(target.port), "-U", "postgres",
                "--exit-on-error", "-d", DBNAME, str(dump))
    else:
        pg_tool("psql", "-h", str(target.dir), "-p", str(target.port), "-U", "postgres", "-X", "-q",
                "-v", "ON_ERROR_STOP=1", "-d", DBNAME, "-f", str(dump))
    rdb = session(target)
    assert history(rdb) == before
    status = rdb.one("SELECT * FROM qobra_sync.destination_status")
    assert (status["base_url"], status["api_key_set"], status["key_source"]) == (fake.base_url, False, None)
    state, hint = sqlstate_of(rdb, "SELECT qobra_sync.sync_now('tuned')")
    assert state == "55000" and "set_destination" in hint
    rdb.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    # Unchanged since the dump, the table is skipped (Qobra holds it); changed, it is pushed.
    assert rdb.sync("tuned")["status"] == "skipped"
    rdb.rows("INSERT INTO tuned VALUES (21, 'deal 21', 31.5)")
    run = rdb.sync("tuned")
    assert (run["status"], run["rows_sent"]) == ("succeeded", 19), run
    assert run["run_id"] > max(r["run_id"] for r in before[1]), "a restored run id was reused"
    # The shape was recorded on the original relation's column numbers: it now matches by name.
    assert rdb.value("SELECT shape_of = (SELECT home FROM qobra_sync.destination) || '/' || source::oid "
                     "FROM qobra_sync.registrations WHERE source = 'tuned'::regclass")
    assert_holds_table(rdb, fake, rdb.registration("tuned")["data_table_key"], "tuned")
    rdb.conn.close()
    db.conn.close()


def test_a_restore_without_a_source_names_it(clusters, fake):
    """Restoring the extension's data where a registered relation is missing fails on that
    relation, by name, instead of leaving a registration that points at nothing: the COPY of the
    registrations fails as a whole."""
    fake.reset()
    origin = clusters("life-partial-origin")
    db = install(origin, fake)
    populated(db, fake)
    dump = WORK / "life.partial.dump"
    pg_tool("pg_dump", "-h", str(origin.dir), "-p", str(origin.port), "-U", "postgres", "-F", "c",
            "-f", str(dump), DBNAME)
    target = clusters("life-partial-target")
    with target.connect() as conn:
        conn.execute(f"CREATE ROLE {READER} NOLOGIN")
    # Everything but the table "tuned" (its schema, the other table, the extension and its data).
    listing = pg_tool("pg_restore", "-l", str(dump)).stdout.decode()
    kept = [line for line in listing.splitlines() if f" {SCHEMA} tuned " not in line]
    (WORK / "life.partial.list").write_text("\n".join(kept) + "\n")
    result = pg_tool("pg_restore", "-h", str(target.dir), "-p", str(target.port), "-U", "postgres",
                     "-d", DBNAME, "-L", str(WORK / "life.partial.list"), str(dump), check=False)
    assert result.returncode != 0
    assert f'relation "{SCHEMA}.tuned" does not exist' in result.stderr.decode(), result.stderr
    # The registrations are restored all together or not at all: none points at nothing, and
    # the relations that are there wait to be registered again.
    rdb = session(target)
    assert rdb.value("SELECT count(*) FROM qobra_sync.registrations") == 0
    assert rdb.value("SELECT count(*) FROM plain") == 20
    rdb.conn.close()
    db.conn.close()


def key_file(name, fake):
    """A file holding the destination's key, as qobra_sync.api_key_file requires it."""
    path = WORK / name
    path.write_text(fake.api_key + "\n")
    shutil.chown(path, "postgres")
    path.chmod(0o600)
    return path


def assert_copy_blocked(cdb, table, how):
    """In a copy of the destination's home: check_destination says so, and a push is blocked
    before anything is read or sent, forced or not, with the reason in runs, status and the
    hint; raise_on_failure makes it an error (55000)."""
    finding = cdb.one("SELECT * FROM qobra_sync.check_destination() WHERE check_name = 'pushes from this database'")
    assert not finding["ok"] and how in finding["detail"], finding
    run = cdb.run(cdb.value("SELECT qobra_sync.sync_now(%s, force => true)", (table,)))
    assert run["status"] == "blocked" and run["rows_read"] == 0, run
    assert "this database is a copy" in run["error"] and how in run["error"], run["error"]
    assert "qobra_sync.set_destination()" in run["error"], run["error"]
    status = cdb.one("SELECT * FROM qobra_sync.status WHERE source = %s::regclass", (table,))
    assert (status["last_status"], status["last_error"]) == ("blocked", run["error"]), status
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="this database is a copy"):
        cdb.rows("SELECT qobra_sync.sync_now(%s, raise_on_failure => true)", (table,))


def test_a_copy_of_the_database_pushes_nothing_until_a_dba_confirms(clusters, fake):
    """A dump of a database whose key comes from qobra_sync.api_key_file (the recommended way),
    restored where the same file is in place, as a staging copy is: into another database of
    the same cluster, and into another cluster. Neither pushes, on schedule or by hand, until
    set_destination() is called in it (no argument: the file's key, the stored URL and format);
    the original keeps pushing."""
    fake.reset()
    path = key_file("life-copy.key", fake)
    conf = (f"qobra_sync.api_key_file = '{path}'", f"qobra_sync.database_name = '{DBNAME}, qobra_copy'")
    origin = clusters("life-copy-origin", *conf)
    db = install(origin, fake)
    key = deals(db, fake, "copied", schedule="1 hour")
    assert db.sync("copied")["status"] == "succeeded"
    dump = WORK / "life.copy.dump"
    pg_tool("pg_dump", "-h", str(origin.dir), "-p", str(origin.port), "-U", "postgres", "-F", "c",
            "-f", str(dump), DBNAME)
    with origin.connect("postgres") as conn:
        conn.execute("CREATE DATABASE qobra_copy")
    target = clusters("life-copy-target", *conf)
    with target.connect() as conn:
        conn.execute(f"CREATE ROLE {READER} NOLOGIN")
    for cluster, dbname in [(origin, "qobra_copy"), (target, DBNAME)]:
        pg_tool("pg_restore", "-h", str(cluster.dir), "-p", str(cluster.port), "-U", "postgres",
                "--exit-on-error", "-d", dbname, str(dump))
    fake.clear_requests()
    copies = {"another database": Db(origin.connect("qobra_copy"), SCHEMA),
              "another cluster": Db(target.connect(), SCHEMA)}
    for how, cdb in copies.items():
        cdb.rows(f"SET search_path = {SCHEMA}, public")
        assert_copy_blocked(cdb, "copied", {"another database": "template", "another cluster": "pg_upgrade"}[how])
    # The worker of the other cluster runs the schedule that falls due, and blocks it too.
    tdb = copies["another cluster"]
    mark = log_mark(target)
    tdb.rows("UPDATE qobra_sync.registrations SET next_run_at = now() WHERE source = 'copied'::regclass")
    scheduled = wait_runs(tdb, "copied", 1, finished=True, timeout=30)
    assert [r["status"] for r in scheduled] == ["blocked"], scheduled
    assert wait_for(lambda: log_lines(target, r"WARNING: .*pushes are paused: this database is a copy", mark),
                    what="the blocked scheduled run in the log")
    assert fake.requests("/v1/tables/") == [], "a copy sent something"
    # The original is still home.
    db.rows("INSERT INTO copied VALUES (21, 'deal 21', 31.5)")
    run = db.sync("copied")
    assert run["status"] == "succeeded", run["error"]
    # A DBA confirms the other cluster's copy: it pushes from now on.
    tdb.rows("SELECT qobra_sync.set_destination()")
    finding = tdb.one("SELECT * FROM qobra_sync.check_destination() WHERE check_name = 'pushes from this database'")
    assert finding["ok"], finding
    status = tdb.one("SELECT * FROM qobra_sync.destination_status")
    assert (status["base_url"], status["key_source"], status["body_format"]) == (fake.base_url, "api_key_file", "data")
    run = tdb.sync("copied", force=True)
    assert run["status"] == "succeeded", run["error"]
    assert_copy_blocked(copies["another database"], "copied", "template")
    for cdb in (*copies.values(), db):
        cdb.conn.close()


def test_a_database_not_in_utf8_is_refused(clusters):
    """Values are read as UTF-8 text: in a LATIN1 database (or SQL_ASCII, which holds any
    bytes) they would not be, so CREATE EXTENSION refuses it (0A000), naming the encoding."""
    cluster = clusters("life-latin1", f"qobra_sync.database_name = '{DBNAME}, latin'")
    with cluster.connect("postgres") as conn:
        conn.execute("CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    with cluster.connect("latin") as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="needs a UTF8 database, and this one is LATIN1"):
            conn.execute("CREATE EXTENSION qobra_sync")
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'qobra_sync'").fetchone() == (0,)


# --------------------------------------------------------------------------- drop and re-create


def test_drop_extension_idle_and_mid_push_then_create_again(clusters, fake):
    """DROP EXTENSION while the worker is idle and while it pushes: the push ends, nothing is
    written to the dropped schema, the log has no ERROR loop; CREATE EXTENSION again and the
    worker keeps the new schedules without a restart."""
    fake.reset()
    c = clusters("life-drop")
    db = install(c, fake)
    deals(db, fake, "idle")
    worker = wait_for(lambda: worker_pids(db), what="the worker")[0]
    mark = log_mark(c)
    db.rows("DROP EXTENSION qobra_sync")
    db.rows("DROP TABLE idle")

    db = install(c, fake)
    slow = deals(db, fake, "slow", rows=50)
    fake.add_faults(bulk_fault(slow, {"delay_ms": 3000}, times=3))
    db.rows("SELECT qobra_sync.request_sync('slow')")
    wait_for(lambda: fake.bulk_requests(slow), timeout=20, what="the worker's push to start")
    dropped = time.monotonic()
    db.rows("SET lock_timeout = '60s'; DROP EXTENSION qobra_sync")
    assert time.monotonic() - dropped < 30
    db.rows("DROP TABLE slow")
    fake.clear_faults()
    time.sleep(3)
    assert worker_pids(db) == [worker], "the worker restarted"

    db = install(c, fake)
    again = deals(db, fake, "again", schedule="2 seconds")
    wait_runs(db, "again", 2, finished=True, timeout=20)
    assert worker_pids(db) == [worker], "the worker restarted"
    statuses = [r["status"] for r in runs(db, "again") if r["status"] != "running"]
    assert statuses[0] == "succeeded" and set(statuses) <= {"succeeded", "skipped"}, statuses
    assert_no_error_loop(c, mark)
    db.conn.close()


# --------------------------------------------------------------------------- upgrade from 0.1.0


def catalog(db):
    """The extension's objects as (kind, name, definition) rows."""
    return [(r["kind"], r["name"], r["definition"]) for r in db.rows(CATALOG_SQL)]


def install_release_script(version):
    """Puts the kept install script of `version` where CREATE EXTENSION finds it."""
    sharedir = pg_tool("pg_config", "--sharedir").stdout.decode().strip()
    target = f"{sharedir}/extension/qobra_sync--{version}.sql"
    subprocess.run(["install", "-m", "644", str(ROOT / f"sql/qobra_sync--{version}.sql"), target], check=True)


@pytest.mark.skipif(os.environ.get("QS_PG_MAJOR", "15") != "15", reason="0.1.0 was built for PostgreSQL 15 only")
def test_upgrade_from_0_1_0_keeps_everything_and_equals_a_fresh_install(clusters, fake):
    """0.1.0's install script and library: registrations and pushes; the library replaced by
    this one: the worker waits and every function says to update; ALTER EXTENSION UPDATE:
    registrations and history intact, pushes work, and the catalog equals a fresh install's."""
    old_library = os.environ.get("QS_RELEASE_0_1_0")
    assert old_library, "scripts/e2e.sh builds the 0.1.0 library (QS_RELEASE_0_1_0)"
    install_release_script("0.1.0")
    fake.reset()
    fake.settings(body_format="array")  # what 0.1.0 sends
    c = clusters("life-upgrade", f"dynamic_library_path = '{os.path.dirname(old_library)}:$libdir'")
    db = install(c, fake, version="0.1.0")
    assert db.value("SELECT extversion FROM pg_extension WHERE extname = 'qobra_sync'") == "0.1.0"
    key = deals(db, fake, "upgraded", schedule="1 hour")
    assert db.sync("upgraded")["status"] == "succeeded"
    # Grants a DBA made by hand on 0.1.0's objects (whose destination table held the key):
    # the update leaves only its own.
    db.rows(f"CREATE ROLE {WATCHER}; GRANT USAGE ON SCHEMA qobra_sync TO {WATCHER}")
    db.rows(f"GRANT ALL ON ALL TABLES IN SCHEMA qobra_sync TO {WATCHER}, PUBLIC")
    db.rows(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA qobra_sync TO {WATCHER}")
    db.rows(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA qobra_sync TO {WATCHER}")
    db.rows(f"GRANT SELECT (source, data_table_key) ON qobra_sync.registrations TO {WATCHER}")
    db.rows(f"CREATE ROLE {WATCHER}_2; GRANT SELECT ON qobra_sync.runs TO {WATCHER} WITH GRANT OPTION")
    db.rows(f"SET ROLE {WATCHER}; GRANT SELECT ON qobra_sync.runs TO {WATCHER}_2; RESET ROLE")
    wait_for(lambda: worker_pids(db), what="the 0.1.0 worker")
    before = db.rows("SELECT run_id, status, rows_sent, import_ids FROM qobra_sync.runs ORDER BY run_id")
    regs = db.rows("SELECT source::text, data_table_key, schedule, run_as FROM qobra_sync.tables")
    db.conn.close()

    # The library replaced (the search path no longer finds 0.1.0), the SQL still 0.1.0.
    conf = c.dir / "data/postgresql.auto.conf"
    subprocess.run(["bash", "-c", f"source scripts/cluster.sh && echo \"dynamic_library_path = '\\$libdir'\" | as_pguser tee -a {conf} >/dev/null"],
                   cwd=ROOT, check=True)
    before_restart = log_mark(c)
    c.restart()
    mark = log_mark(c)
    db = session(c)
    wait_for(lambda: log_lines(c, r"waiting for ALTER EXTENSION qobra_sync UPDATE", before_restart), timeout=15,
             what="the worker to say it waits for the update")
    for call in ["SELECT qobra_sync.sync_now('upgraded')", "SELECT qobra_sync.request_sync('upgraded')",
                 "SELECT * FROM qobra_sync.preview('upgraded')", "SELECT qobra_sync.csv_template('upgraded')",
                 "SELECT * FROM qobra_sync.validate('upgraded')", "SELECT qobra_sync.pause('upgraded')",
                 "SELECT qobra_sync.alter_table('upgraded', schedule => '2 hours')"]:
        state, hint = sqlstate_of(db, call)
        assert (state, "ALTER EXTENSION qobra_sync UPDATE" in hint) == ("55000", True), (call, state, hint)
    db.rows("UPDATE qobra_sync.registrations SET next_run_at = now() WHERE source = 'upgraded'::regclass")
    time.sleep(12)
    assert len(db.rows("SELECT * FROM qobra_sync.runs")) == len(before), "something ran before the update"
    assert len(log_lines(c, r"waiting for ALTER EXTENSION", before_restart)) == 1, "said more than once"

    db.rows("ALTER EXTENSION qobra_sync UPDATE")
    assert db.value("SELECT extversion FROM pg_extension WHERE extname = 'qobra_sync'") == "0.2.0"
    assert db.rows("SELECT run_id, status, rows_sent, import_ids FROM qobra_sync.runs ORDER BY run_id "
                   "LIMIT %s", (len(before),)) == before
    assert db.rows("SELECT source::text, data_table_key, schedule, run_as FROM qobra_sync.tables") == regs
    assert db.value("SELECT owner FROM qobra_sync.tables") == "postgres"
    assert db.value("SELECT api_key_set FROM qobra_sync.destination_status")
    # The destination keeps sending what it sent, until the DBA chooses otherwise.
    assert db.value("SELECT body_format FROM qobra_sync.destination_status") == "array"
    scheduled = wait_runs(db, "upgraded", 1, finished=True, timeout=30)
    assert scheduled[0]["status"] in ("succeeded", "skipped"), scheduled
    db.rows("INSERT INTO upgraded VALUES (21, 'deal 21', 31.5)")
    run = db.sync("upgraded")
    assert run["status"] == "succeeded", run
    assert db.value("SELECT shape IS NOT NULL FROM qobra_sync.tables")
    assert_holds_table(db, fake, key, "upgraded")
    # The README's upgrade note: check, choose 'data', push once.
    fake.settings(body_format="data")
    assert db.sync("upgraded", force=True)["status"] == "failed", "a bare array is refused now"
    db.rows("SELECT qobra_sync.set_destination(%s, %s, body_format => 'data')", (fake.api_key, fake.base_url))
    assert all(c["ok"] for c in db.rows("SELECT * FROM qobra_sync.check_destination()"))
    assert db.sync("upgraded", force=True)["status"] == "succeeded"
    assert_holds_table(db, fake, key, "upgraded")
    assert_no_error_loop(c, mark)

    assert_only_own_grants(db)
    fresh = clusters("life-fresh")
    # Default privileges in force at CREATE EXTENSION would grant every new table to WATCHER.
    with fresh.connect() as conn:
        conn.execute(f"CREATE ROLE {WATCHER}")
        for kind in ("TABLES", "SEQUENCES", "FUNCTIONS", "SCHEMAS"):
            privilege = {"FUNCTIONS": "EXECUTE", "SCHEMAS": "USAGE"}.get(kind, "ALL")
            conn.execute(f"ALTER DEFAULT PRIVILEGES GRANT {privilege} ON {kind} TO {WATCHER}")
    fdb = install(fresh, fake)
    assert_only_own_grants(fdb)
    upgraded, installed = catalog(db), catalog(fdb)
    assert {kind for kind, _, _ in installed} >= {"member", "function", "relation", "columns", "constraint",
                                                 "index", "policy", "config dump", "schema", "role"}
    missing = sorted(set(installed) - set(upgraded))
    extra = sorted(set(upgraded) - set(installed))
    assert (missing, extra) == ([], []), f"fresh only: {missing}\nupgraded only: {extra}"
    db.conn.close()
    fdb.conn.close()

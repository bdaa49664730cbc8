"""Attacks through code qobra_sync runs while it reads a source, tried with the roles the
README's Delegating section suggests: `app_admin` (LOGIN, qobra_sync_operator, member of
`app_reader`, owns schema `app`), `hr_reader` (may read `salaries`, which app_admin may not),
`monitor` (pg_monitor), `nobody` (LOGIN, no grant) and `mallory` (owns a table, no grant on
qobra_sync). Each attack tries to make qobra_sync act as a role the attacker may not act as —
by calling it back from a source's code, from a security-definer function a superuser calls, or
from a materialized view a superuser refreshes — or to learn what it should not."""

import json
import threading
import time

import psycopg
import pytest

from helpers import DBNAME, QUIET_SCHEDULE, wait_for
from worker_helpers import wait_runs

ROLES = ("t_re_app_admin", "t_re_app_reader", "t_re_hr_reader", "t_re_monitor", "t_re_nobody", "t_re_mallory")
SALARY = "1000000"
# A nested call that would show salaries (readable by t_re_hr_reader alone) as an error text.
LOOT = ("((SELECT pg_catalog.string_agg(p::text, ' ') FROM qobra_sync.preview("
        "'{schema}.salaries'::regclass, 100, 't_re_hr_reader') p)::int)::text")
REFUSED = "cannot be called while qobra_sync reads a source"


@pytest.fixture
def roles(cluster, db):
    """The roles above, `salaries` readable by t_re_hr_reader alone, `deals` by t_re_app_reader,
    and schema `app_<test>` owned by t_re_app_admin; returns {role: autocommit session in the
    test's schema} for the login roles, and the app schema's name. Everything is dropped after."""
    for role in ROLES:
        db.rows(f"DROP OWNED BY {role} CASCADE" if db.value("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,))
                else "SELECT 1")
        db.rows(f"DROP ROLE IF EXISTS {role}")
    db.rows("CREATE ROLE t_re_app_reader NOLOGIN")
    db.rows("CREATE ROLE t_re_hr_reader NOLOGIN")
    db.rows("CREATE ROLE t_re_app_admin LOGIN IN ROLE qobra_sync_operator, t_re_app_reader")
    db.rows("CREATE ROLE t_re_monitor LOGIN IN ROLE pg_monitor")
    db.rows("CREATE ROLE t_re_nobody LOGIN")
    db.rows("CREATE ROLE t_re_mallory LOGIN")
    app = "app_" + db.schema[2:40]
    db.rows(f"CREATE SCHEMA {app} AUTHORIZATION t_re_app_admin")
    db.rows(f"GRANT USAGE ON SCHEMA {db.schema} TO t_re_app_reader, t_re_hr_reader, t_re_app_admin, t_re_mallory")
    db.rows(f"GRANT USAGE ON SCHEMA {app} TO t_re_app_reader")
    db.rows(f"GRANT CREATE ON SCHEMA {db.schema} TO t_re_mallory")
    db.rows("CREATE TABLE salaries (id int PRIMARY KEY, name text, salary numeric)")
    db.rows(f"INSERT INTO salaries VALUES (1, 'ceo', {SALARY})")
    db.rows("GRANT SELECT ON salaries TO t_re_hr_reader")
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i FROM generate_series(1, 5) i")
    db.rows("GRANT SELECT ON deals TO t_re_app_reader")
    sessions = {}
    for role in ("t_re_app_admin", "t_re_nobody", "t_re_monitor", "t_re_mallory"):
        conn = connect_as(cluster, role)
        conn.execute(f"SET search_path = {db.schema}, public")
        sessions[role] = conn
    yield sessions, app
    for conn in sessions.values():
        conn.close()
    db.rows("RESET ROLE")
    db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    for role in ROLES:
        db.rows(f"DROP OWNED BY {role} CASCADE")
    db.rows(f"DROP ROLE {', '.join(ROLES)}")


def connect_as(cluster, role):
    """A new autocommit session of `role` in the test database."""
    return psycopg.connect(host=str(cluster.dir), port=cluster.port, user=role, dbname=DBNAME, autocommit=True)


def loot_view(db, admin, app):
    """As app_admin: the issue's view `app.loot`, whose name column calls preview() of
    salaries as t_re_hr_reader, registered with no run_as, so read as app_admin itself (which
    may call qobra_sync, and may not act as t_re_hr_reader)."""
    admin.execute(f"CREATE VIEW {app}.loot AS SELECT 1 AS id, {LOOT.format(schema=db.schema)} AS name")
    admin.execute(f"SELECT qobra_sync.register_table('{app}.loot', 'loot', 'id', 'name', "
                  f"schedule => '{QUIET_SCHEDULE}')")
    return f"{app}.loot"


def test_a_view_calling_qobra_sync_back_gets_nothing_from_the_worker(db, fake, wdb, roles):
    """The issue's attack: request_sync of the view. The worker, a superuser, reads it as the
    reader; the nested preview() is refused, and nothing of salaries reaches the run."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("SELECT qobra_sync.preview('salaries', 10, 't_re_hr_reader')")
    loot = loot_view(db, admin, app)
    fake.define_table("loot")
    admin.execute(f"SELECT qobra_sync.request_sync('{loot}')")
    [run] = wait_runs(db, loot, 1, trigger="request", finished=True)
    error = admin.execute("SELECT error FROM qobra_sync.runs WHERE run_id = %s", (run["run_id"],)).fetchone()[0]
    assert run["status"] == "failed" and REFUSED in error, error
    assert SALARY not in error and "ceo" not in error
    assert fake.bulk_requests("loot") == []


def test_a_superusers_session_reading_the_view_acts_for_no_one(db, fake, roles):
    """A superuser pushing or inspecting the view in its own session: the nested call is
    refused the same way, whatever the entry point."""
    sessions, app = roles
    loot = loot_view(db, sessions["t_re_app_admin"], app)
    fake.define_table("loot")
    run = db.sync(loot)
    assert run["status"] == "failed" and REFUSED in run["error"] and SALARY not in run["error"], run
    for call in (f"SELECT * FROM qobra_sync.preview('{loot}')", f"SELECT qobra_sync.csv_template('{loot}')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED) as e:
            db.rows(call)
        assert SALARY not in str(e.value)
    checks = db.rows(f"SELECT * FROM qobra_sync.validate('{loot}')")
    assert any(not c["ok"] and REFUSED in c["detail"] for c in checks), checks
    assert all(SALARY not in c["detail"] for c in checks), checks


@pytest.mark.parametrize("call", [
    "qobra_sync.sync_now('{schema}.deals')", "qobra_sync.request_sync('{schema}.deals')",
    "qobra_sync.register_table('{schema}.deals', 'k', 'id', 'name')", "qobra_sync.pause('{schema}.deals')",
    "qobra_sync.column_mapping('{schema}.deals')", "qobra_sync.next_runs('1 hour')",
    "qobra_sync.reader_from_service_account('{{}}')", "qobra_sync._progress()",
    "qobra_sync.set_destination('qk_nested_0000', 'http://127.0.0.1:9')", "qobra_sync.poll_imports()",
    "qobra_sync.alter_table('{schema}.deals', schedule => '1 hour')", "qobra_sync.unregister_table('{schema}.deals')",
    "qobra_sync.resume('{schema}.deals')", "(SELECT count(*) FROM qobra_sync.validate('{schema}.deals'))",
    "(SELECT count(*) FROM qobra_sync.preview('{schema}.deals'))", "qobra_sync.csv_template('{schema}.deals')",
    "qobra_sync._check_installation()", "(SELECT count(*) FROM qobra_sync.check_destination())",
])
def test_every_function_refuses_to_run_inside_a_read(db, fake, roles, call):
    """Each function of the extension, called by the code of a source being read (here as a
    superuser's preview of a view the reader may read): refused at once, before it does
    anything."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    admin.execute(f"""CREATE VIEW {app}.nested AS SELECT 1 AS id,
                      (SELECT pg_catalog.count(*) FROM (SELECT {call.format(schema=db.schema)} AS v) x
                        WHERE x.v IS NOT NULL)::text AS name""")
    admin.execute(f"GRANT SELECT ON {app}.nested TO t_re_app_reader")
    db.rows("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA qobra_sync TO t_re_app_reader")
    try:
        before = db.value("SELECT count(*) FROM qobra_sync.runs")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
            db.rows(f"SELECT * FROM qobra_sync.preview('{app}.nested', run_as => 't_re_app_reader')")
        assert db.value("SELECT count(*) FROM qobra_sync.runs") == before
        assert db.value("SELECT count(*) FROM qobra_sync.tables") == 0
    finally:
        db.rows("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA qobra_sync FROM t_re_app_reader")


def test_a_table_owners_policy_reaches_nothing_through_the_worker(db, fake, wdb, roles):
    """mallory, with no grant on qobra_sync, owns a table whose row security policy calls
    preview() of salaries; app_admin registers it, read as itself. The worker's push fails on
    the refusal, and mallory, listening, learns only a run id and a status."""
    sessions, app = roles
    mallory, admin = sessions["t_re_mallory"], sessions["t_re_app_admin"]
    mallory.execute("CREATE TABLE mal (id int PRIMARY KEY, name text)")
    mallory.execute("INSERT INTO mal VALUES (1, 'a')")
    # PL/pgSQL: its body is not resolved when the function is created, so mallory needs no
    # grant on qobra_sync to write it.
    mallory.execute(f"""CREATE FUNCTION spy() RETURNS bool LANGUAGE plpgsql AS
                        $$BEGIN RETURN {LOOT.format(schema=db.schema)} IS NOT NULL; END$$""")
    mallory.execute("ALTER TABLE mal ENABLE ROW LEVEL SECURITY")
    mallory.execute(f"CREATE POLICY p ON mal FOR SELECT USING ({db.schema}.spy())")
    mallory.execute("GRANT SELECT ON mal TO t_re_app_admin")
    mallory.execute("LISTEN qobra_sync")
    admin.execute(f"SELECT qobra_sync.register_table('mal', 'mal', 'id', 'name', schedule => '{QUIET_SCHEDULE}')")
    fake.define_table("mal")
    admin.execute("SELECT qobra_sync.request_sync('mal')")
    [run] = wait_runs(db, "mal", 1, trigger="request", finished=True)
    assert run["status"] == "failed" and REFUSED in run["error"] and SALARY not in run["error"], run
    assert first_run_end(mallory) == [{"run_id": run["run_id"], "status": "failed"}]


def first_run_end(conn, timeout=5.0):
    """The first notification of a run's end on channel qobra_sync, in a list (empty after
    `timeout` seconds without one); those of settled imports, whose payload is the run's id and
    import status only, are passed over."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for n in conn.notifies(timeout=left, stop_after=1):
            told = json.loads(n.payload)
            if "status" in told:
                return [told]
    return []


def test_a_security_definer_function_a_superuser_calls_acts_for_its_owner_only(db, roles):
    """app_admin's SECURITY DEFINER function calling preview() of salaries as t_re_hr_reader,
    called by a superuser: qobra_sync checks the function's owner too, and refuses."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    admin.execute(f"""CREATE FUNCTION {app}.peek() RETURNS text LANGUAGE sql SECURITY DEFINER AS
                      $$SELECT pg_catalog.string_agg(p::text, ' ') FROM qobra_sync.preview(
                          '{db.schema}.salaries'::regclass, 100, 't_re_hr_reader') p$$""")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act as") as e:
        db.rows(f"SELECT {app}.peek()")
    assert SALARY not in str(e.value)
    # The superuser's own call, with no function in between, works as before.
    assert SALARY in str(db.rows("SELECT * FROM qobra_sync.preview('salaries', 10, 't_re_hr_reader')"))


def test_a_materialized_view_a_superuser_refreshes_acts_for_no_one(db, roles):
    """REFRESH MATERIALIZED VIEW runs the view's query as its owner in a security-restricted
    operation: qobra_sync refuses to run there at all."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    admin.execute(f"CREATE MATERIALIZED VIEW {app}.mv AS SELECT {LOOT.format(schema=db.schema)} AS x WITH NO DATA")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="security-restricted operation") as e:
        db.rows(f"REFRESH MATERIALIZED VIEW {app}.mv")
    assert SALARY not in str(e.value)


@pytest.mark.parametrize("group", ["pg_monitor", "pg_read_all_stats", "pg_read_all_settings"])
def test_a_reader_that_reads_other_sessions_is_refused(db, fake, group):
    """A reader that may read every session's statements or every setting is refused like a
    superuser: by register_table, and by validate, which reads nothing."""
    db.rows("DROP ROLE IF EXISTS t_re_watcher")
    db.rows(f"CREATE ROLE t_re_watcher IN ROLE {group}")
    try:
        db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
        db.rows("GRANT SELECT ON deals TO t_re_watcher")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"member of {group}"):
            db.rows("SELECT qobra_sync.register_table('deals', 'd', 'id', 'name', run_as => 't_re_watcher')")
        checks = {c["check_name"]: c for c in db.rows("SELECT * FROM qobra_sync.validate('deals', run_as => 't_re_watcher')")}
        assert not checks["reader least-privileged"]["ok"] and group in checks["reader least-privileged"]["detail"]
    finally:
        db.rows("DROP OWNED BY t_re_watcher")
        db.rows("DROP ROLE t_re_watcher")


def test_a_listener_with_no_grant_learns_only_run_ids_and_statuses(db, fake, roles):
    """`nobody` may LISTEN (any role that connects may): each notification holds the run's id
    and status, never the error that quotes a value of a table nobody cannot read."""
    sessions, _ = roles
    nobody = sessions["t_re_nobody"]
    nobody.execute("LISTEN qobra_sync")
    db.rows("CREATE TABLE secret (id int PRIMARY KEY, name text, amount text)")
    db.rows("INSERT INTO secret VALUES (1, 'x', 'ceo earns 1000000')")
    db.rows("CREATE VIEW secret_num AS SELECT id, name, amount::numeric AS amount FROM secret")
    db.register("secret_num")
    db.define_in_fake(fake, "secret_num")
    run = db.sync("secret_num")
    assert run["status"] == "failed" and "ceo earns" in run["error"], run
    assert first_run_end(nobody) == [{"run_id": run["run_id"], "status": "failed"}]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        nobody.execute("SELECT * FROM qobra_sync.runs")


def test_an_operator_sees_no_other_owners_pushes_runs_or_names(cluster, db, fake, roles):
    """While a superuser's push is in flight, _progress() shows it to the superuser and not to
    app_admin; after the superuser's registration of deals is dropped and app_admin registers
    deals, app_admin's status and metrics start afresh; a data table key already used names the
    other source only to who may act for its owner."""
    sessions, _ = roles
    admin = sessions["t_re_app_admin"]
    db.register("salaries", key="pay")
    db.define_in_fake(fake, "salaries")
    fake.settings(latency_ms=1500)
    pusher = connect_as(cluster, "postgres")
    pusher.execute(f"SET search_path = {db.schema}")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (pusher.execute("SELECT qobra_sync.sync_now('salaries')"), done.set()))
    try:
        thread.start()
        wait_for(lambda: db.value("SELECT count(*) FROM qobra_sync._progress()") == 1, what="the push in flight")
        assert admin.execute("SELECT count(*) FROM qobra_sync._progress()").fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM qobra_sync.progress").fetchone() == (0,)
    finally:
        thread.join(60)
        pusher.close()
        fake.settings(latency_ms=0)
    assert done.is_set()
    with pytest.raises(psycopg.errors.DuplicateObject) as e:
        admin.execute("SELECT qobra_sync.register_table('deals', 'pay', 'id', 'name', run_as => 't_re_app_reader')")
    assert "already fed by another registration" in str(e.value) and "salaries" not in str(e.value)

    db.register("deals", key="deals")
    db.define_in_fake(fake, "deals")
    assert db.sync("deals")["status"] == "succeeded"
    db.rows("SELECT qobra_sync.unregister_table('deals')")
    admin.execute("SELECT qobra_sync.register_table('deals', 'deals', 'id', 'name', run_as => 't_re_app_reader', "
                  f"schedule => '{QUIET_SCHEDULE}')")
    status = admin.execute("SELECT last_run_id, last_status, last_error FROM qobra_sync.status").fetchall()
    assert status == [(None, None, None)], status
    counts = admin.execute("SELECT runs_succeeded_total, rows_sent_total FROM qobra_sync.metrics").fetchall()
    assert counts == [(0, 0)], counts


def test_monitoring_reads_every_registrations_metrics_and_no_text(db, fake, roles):
    """A member of pg_monitor reads metrics for every owner's registrations (numbers and
    states), and neither status, runs nor the registrations."""
    sessions, _ = roles
    admin, monitor = sessions["t_re_app_admin"], sessions["t_re_monitor"]
    db.register("salaries", key="pay")
    admin.execute(f"SELECT qobra_sync.register_table('deals', 'deals', 'id', 'name', "
                  f"run_as => 't_re_app_reader', schedule => '{QUIET_SCHEDULE}')")
    rows = monitor.execute("SELECT data_table_key, runs_failed_total FROM qobra_sync.metrics ORDER BY 1").fetchall()
    assert rows == [("deals", 0), ("pay", 0)], rows
    for relation in ("status", "runs", "tables", "run_errors", "registrations"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            monitor.execute(f"SELECT * FROM qobra_sync.{relation}")


def test_a_source_cannot_read_a_key_the_session_passes(cluster, db, fake, roles):
    """A view whose code shows current_query() and the session's prepared statements: a DBA
    sending set_destination() and a push in one query string, or holding a statement prepared
    with the key, gets the read refused; the key reaches no run."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    secret = "qk_e2e_snoop_" + "A1s2D3f4G5h6"
    admin.execute(f"""CREATE VIEW {app}.snoop AS SELECT 1 AS id,
                      (pg_catalog.current_query() || (SELECT pg_catalog.string_agg(statement, ' ')
                                                        FROM pg_catalog.pg_prepared_statements)) AS name""")
    admin.execute(f"SELECT qobra_sync.register_table('{app}.snoop', 'snoop', 'id', 'name', "
                  f"schedule => '{QUIET_SCHEDULE}')")
    fake.define_table("snoop")
    superuser = connect_as(cluster, "postgres")
    try:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="holds a secret"):
            superuser.execute(f"SELECT qobra_sync.set_destination('{secret}', '{fake.base_url}'); "
                              f"SELECT qobra_sync.sync_now('{app}.snoop')")
        superuser.execute(f"PREPARE keep AS SELECT qobra_sync.set_destination('{secret}', '{fake.base_url}')")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="holds a secret"):
            superuser.execute(f"SELECT * FROM qobra_sync.preview('{app}.snoop')")
        superuser.execute("DEALLOCATE keep")
        assert len(superuser.execute(f"SELECT * FROM qobra_sync.preview('{app}.snoop')").fetchall()) == 1
    finally:
        superuser.execute(f"SELECT qobra_sync.set_destination('{fake.api_key}', '{fake.base_url}')")
        superuser.close()
    assert db.value("SELECT count(*) FROM qobra_sync.runs WHERE error LIKE %s", (f"%{secret[-6:]}%",)) == 0


def test_a_dblink_connection_of_the_session_never_serves_the_reader(cluster, db, fake, roles):
    """A DBA's session with dblink connections (named, and unnamed) to this server as a
    superuser; a view app_admin wrote runs `ALTER ROLE … SUPERUSER` through them. The unnamed one
    is closed before the read, a named one refuses the read: app_admin stays what it was."""
    sessions, app = roles
    admin = sessions["t_re_app_admin"]
    db.rows("CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public")
    conninfo = f"host={cluster.dir} port={cluster.port} dbname={DBNAME} user=postgres"
    try:
        for name, call in (("unnamed", "public.dblink_exec('ALTER ROLE t_re_app_admin SUPERUSER')"),
                           ("named", "public.dblink_exec('ops', 'ALTER ROLE t_re_app_admin SUPERUSER')")):
            admin.execute(f"CREATE VIEW {app}.{name} AS SELECT 1 AS id, {call} AS name")
            admin.execute(f"SELECT qobra_sync.register_table('{app}.{name}', '{name}', 'id', 'name', "
                          f"schedule => '{QUIET_SCHEDULE}')")
            fake.define_table(name)
        db.rows("SELECT public.dblink_connect(%s)", (conninfo,))
        run = db.sync(f"{app}.unnamed")
        assert run["status"] == "failed" and "connection" in run["error"], run
        db.rows("SELECT public.dblink_connect('ops', %s)", (conninfo,))
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="dblink connections"):
            db.rows(f"SELECT * FROM qobra_sync.preview('{app}.named')")
        db.rows("SELECT public.dblink_disconnect('ops')")
        assert db.value("SELECT rolsuper FROM pg_roles WHERE rolname = 't_re_app_admin'") is False
    finally:
        db.rows("ALTER ROLE t_re_app_admin NOSUPERUSER")
        db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        db.rows("DROP EXTENSION dblink CASCADE")


# What each role may reach, as docs/security.md's table says: relation → roles that may SELECT it.
RELATIONS = {
    "tables": {"t_re_app_admin"}, "status": {"t_re_app_admin"}, "progress": {"t_re_app_admin"},
    "runs": {"t_re_app_admin"}, "run_errors": {"t_re_app_admin"}, "destination_status": {"t_re_app_admin"},
    "metrics": {"t_re_app_admin", "t_re_monitor"},
    "destination": set(), "destination_key": set(), "registrations": set(), "_health": set(), "baselines": set(),
}
LOGINS = ("t_re_nobody", "t_re_mallory", "t_re_app_admin", "t_re_monitor")


def test_every_relation_and_function_as_each_role(db, roles):
    """Each relation and function of the extension, as each role of the delegation matrix: the
    privileges are exactly those docs/security.md lists, nothing through PUBLIC."""
    sessions, _ = roles
    relations = {r for (r,) in db.conn.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'qobra_sync'::regnamespace "
        "AND c.relkind IN ('r', 'v')").fetchall()}
    assert relations == set(RELATIONS), relations
    for role in LOGINS:
        conn = sessions[role]
        for relation, allowed in RELATIONS.items():
            try:
                conn.execute(f"SELECT * FROM qobra_sync.{relation} LIMIT 0")
                reached = True
            except psycopg.errors.InsufficientPrivilege:
                reached = False
            assert reached == (role in allowed), (role, relation)
    operator_functions = {"register_table", "alter_table", "unregister_table", "pause", "resume",
                          "column_mapping", "validate", "preview", "csv_template",
                          "reader_from_service_account", "sync_now", "request_sync", "_progress", "next_runs", "accept_shape",
                          "check_destination"}
    functions = db.rows("SELECT p.oid::regprocedure::text AS f, p.proname FROM pg_proc p "
                        "WHERE p.pronamespace = 'qobra_sync'::regnamespace")
    assert {f["proname"] for f in functions} == operator_functions | {"set_destination", "poll_imports",
                                                                      "_check_installation"}
    for role in LOGINS:
        for f in functions:
            may = db.value("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, f["f"]))
            expected = (role == "t_re_app_admin" and f["proname"] in operator_functions) or \
                (role == "t_re_monitor" and f["proname"] == "next_runs")
            assert may == expected, (role, f["f"])

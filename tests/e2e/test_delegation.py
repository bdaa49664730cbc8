"""Delegation as a DBA does it: a login role given qobra_sync_operator operates the extension on
its own registrations, reads only as roles it may SET ROLE to, and sees only its own runs; the
worker checks the owner again before each push; errors carry no Rust backtrace."""

import subprocess

import psycopg
import pytest

from helpers import DBNAME, QUIET_SCHEDULE, ROOT
from worker_helpers import wait_runs

PASSWORD = "e2e-delegation-pw"


@pytest.fixture
def app_admin(cluster, db):
    """A login role `t_app_admin` holding qobra_sync_operator, and a session of it in the test's
    schema; a table `deals` it may read through `t_app_reader`, and `salaries` only `t_hr_reader`
    may read. Everything is dropped afterwards."""
    for role in ("t_app_admin", "t_app_reader", "t_hr_reader"):
        db.rows(f"DROP ROLE IF EXISTS {role}")
    db.rows("CREATE ROLE t_app_reader NOLOGIN")
    db.rows("CREATE ROLE t_hr_reader NOLOGIN")
    db.rows(f"CREATE ROLE t_app_admin LOGIN PASSWORD '{PASSWORD}' IN ROLE qobra_sync_operator, t_app_reader")
    db.rows(f"GRANT USAGE ON SCHEMA {db.schema} TO t_app_reader, t_hr_reader, t_app_admin")
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i FROM generate_series(1, 5) i")
    db.rows("GRANT SELECT ON deals TO t_app_reader")
    db.rows("CREATE TABLE salaries (id int PRIMARY KEY, name text, salary numeric)")
    db.rows("INSERT INTO salaries VALUES (1, 'ceo', 1000000)")
    db.rows("GRANT SELECT ON salaries TO t_hr_reader")
    conn = psycopg.connect(host=str(cluster.dir), port=cluster.port, user="t_app_admin",
                           dbname=DBNAME, autocommit=True)
    conn.execute(f"SET search_path = {db.schema}, public")
    yield conn
    conn.close()
    db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    db.rows(f"DROP OWNED BY t_app_admin, t_app_reader, t_hr_reader")
    db.rows("DROP ROLE t_app_admin, t_app_reader, t_hr_reader")


def test_one_grant_operates_the_own_registrations(db, fake, app_admin):
    """With qobra_sync_operator alone (no grant on any table of the extension), the login role
    registers, previews, validates, pushes and sees its run; the superuser sees it too."""
    app_admin.execute(f"SELECT qobra_sync.register_table('deals', 'deals', 'id', 'name', "
                      f"run_as => 't_app_reader', schedule => '{QUIET_SCHEDULE}')")
    fake.define_table("deals")
    assert app_admin.execute("SELECT count(*) FROM qobra_sync.preview('deals')").fetchone()[0] == 5
    checks = dict(app_admin.execute("SELECT check_name, ok FROM qobra_sync.validate('deals')").fetchall())
    assert checks["rows"] and checks["reader least-privileged"], checks
    run_id = app_admin.execute("SELECT qobra_sync.sync_now('deals')").fetchone()[0]
    status = app_admin.execute("SELECT status FROM qobra_sync.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert status == ("succeeded",)
    fake.flush()
    assert len(fake.records("deals")) == 5
    assert db.value("SELECT owner FROM qobra_sync.tables WHERE source = 'deals'::regclass") == "t_app_admin"
    for table in ("destination", "destination_key"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_admin.execute(f"SELECT * FROM qobra_sync.{table}")


def test_the_escalation_is_refused_at_every_entry_point(db, fake, app_admin):
    """The login role names as run_as a role it is not a member of, on a table it cannot read:
    every function refuses (42501) and no salary is read; a registration another role made is
    out of its reach and out of its sight."""
    for call in [
        "SELECT qobra_sync.register_table('salaries', 'salaries', 'id', 'name', run_as => 't_hr_reader')",
        "SELECT * FROM qobra_sync.preview('salaries', run_as => 't_hr_reader')",
        "SELECT qobra_sync.csv_template('salaries', run_as => 't_hr_reader')",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act as"):
            app_admin.execute(call)
    rows = dict(app_admin.execute("SELECT check_name, detail FROM qobra_sync.validate("
                                  "'salaries', 'id', 'name', run_as => 't_hr_reader')").fetchall())
    assert "may not act as" in rows["reader least-privileged"]
    assert rows["rows"].startswith("not checked")
    db.rows(f"SELECT qobra_sync.register_table('salaries', 'salaries', 'id', 'name', "
            f"run_as => 't_hr_reader', schedule => '{QUIET_SCHEDULE}')")
    for call in ["SELECT * FROM qobra_sync.preview('salaries')",
                 "SELECT qobra_sync.sync_now('salaries')",
                 "SELECT qobra_sync.alter_table('salaries', data_table_key => 'mine')",
                 "SELECT qobra_sync.unregister_table('salaries')"]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="registered by"):
            app_admin.execute(call)
    assert app_admin.execute("SELECT count(*) FROM qobra_sync.tables").fetchone()[0] == 0
    assert app_admin.execute("SELECT count(*) FROM qobra_sync.status").fetchone()[0] == 0


def test_the_worker_blocks_a_push_whose_owner_lost_the_reader(db, fake, app_admin):
    """The worker pushes the login role's registration on schedule; once its membership in the
    reader is revoked, the next scheduled run is blocked, naming both roles, and sends nothing."""
    app_admin.execute("SELECT qobra_sync.register_table('deals', 'deals', 'id', 'name', "
                      "run_as => 't_app_reader', schedule => '2 seconds')")
    fake.define_table("deals")
    first = wait_runs(db, "deals", 1, finished=True, timeout=10)[0]
    assert first["status"] == "succeeded", first["error"]
    db.rows("REVOKE t_app_reader FROM t_app_admin")
    sent = len(fake.bulk_requests("deals"))
    later = wait_runs(db, "deals", 1, finished=True, after=first["run_id"], timeout=10)[0]
    db.rows("SELECT qobra_sync.pause('deals')")
    assert later["status"] == "blocked", later
    assert '"t_app_admin"' in later["error"] and '"t_app_reader"' in later["error"], later["error"]
    assert later["requests"] == 0 and len(fake.bulk_requests("deals")) == sent


def test_errors_carry_no_rust_backtrace(spare_cluster, fake):
    """A server started with RUST_BACKTRACE=1 in its environment: qobra_sync's errors have no
    backtrace in their DETAIL."""
    subprocess.run(["bash", "-c", 'source scripts/cluster.sh && as_pguser env RUST_BACKTRACE=1 '
                    '"$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 -m fast restart',
                    "restart", str(spare_cluster.dir)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    try:
        with spare_cluster.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS qobra_sync")
            for call in ["SELECT qobra_sync.set_destination('bad key')",
                         "SELECT qobra_sync.sync_now('pg_class')"]:
                with pytest.raises(psycopg.Error) as raised:
                    conn.execute(call)
                diag = raised.value.diag
                text = f"{diag.message_primary} {diag.message_detail or ''} {diag.message_hint or ''}"
                assert "backtrace" not in text.lower() and "rust_begin_unwind" not in text, text
    finally:
        spare_cluster.restart()

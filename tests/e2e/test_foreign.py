"""Foreign tables (postgres_fdw) as sources: one database pushes a table that lives in another
(here a second database of the same cluster), with a filter; a remote that is down fails the
run before anything is sent; a reader without a user mapping is refused by validate() and by
register_table()."""

import psycopg
import pytest

from helpers import READER
from worker_helpers import assert_holds_table

REMOTE_DB = "qobra_remote"


@pytest.fixture
def remote(cluster, db):
    """A table of deals in database qobra_remote, and in the test's schema a foreign table
    `deals` over it (server `remote`, user mapping for the reader); dropped afterwards."""
    with cluster.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {REMOTE_DB}")
        conn.execute(f"CREATE DATABASE {REMOTE_DB}")
    with cluster.connect(REMOTE_DB) as conn:
        conn.execute("CREATE TABLE deals (id int PRIMARY KEY, name text NOT NULL, amount numeric(12,2), won boolean)")
        conn.execute("INSERT INTO deals SELECT i, 'deal ' || i, i * 10.5, i % 3 = 0 FROM generate_series(1, 30) i")
    db.rows("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    db.rows("DROP SERVER IF EXISTS remote CASCADE")
    db.rows(f"CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw "
            f"OPTIONS (host '{cluster.dir}', port '{cluster.port}', dbname '{REMOTE_DB}')")
    db.rows(f"CREATE USER MAPPING FOR {READER} SERVER remote OPTIONS (user 'postgres', password_required 'false')")
    db.rows("CREATE USER MAPPING FOR postgres SERVER remote OPTIONS (user 'postgres')")
    db.rows(f"IMPORT FOREIGN SCHEMA public LIMIT TO (deals) FROM SERVER remote INTO {db.schema}")
    yield
    db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
    db.rows("DROP SERVER remote CASCADE")
    with cluster.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE {REMOTE_DB} WITH (FORCE)")


def test_a_foreign_table_is_registered_validated_and_pushed(db, fake, remote):
    """Registered with a filter, the foreign table validates, previews and pushes exactly the
    remote rows that pass the filter."""
    key = db.register("deals", filter="won OR amount > 200")
    assert db.value("SELECT filter FROM qobra_sync.tables") == "(won OR (amount > (200)::numeric))"
    checks = {c["check_name"]: c for c in db.rows("SELECT * FROM qobra_sync.validate('deals')")}
    assert all(c["ok"] for c in checks.values()), checks
    assert "foreign table" in checks["source"]["detail"], checks["source"]
    db.define_in_fake(fake, "deals")
    run = db.sync("deals")
    expected = db.value("SELECT count(*) FROM deals WHERE won OR amount > 200")
    assert (run["status"], run["rows_read"], run["rows_sent"]) == ("succeeded", expected, expected), run
    assert_holds_table(db, fake, key, "deals")
    assert len(db.preview("deals")) == expected == 17


def test_a_remote_that_is_down_fails_the_run_and_sends_nothing(db, fake, remote):
    """The remote server unreachable: the run fails, naming the connection problem, and no
    request reaches Qobra."""
    db.register("deals")
    db.define_in_fake(fake, "deals")
    fake.clear_requests()
    db.rows("ALTER SERVER remote OPTIONS (SET port '1')")
    run = db.sync("deals")
    assert run["status"] == "failed" and "connect" in run["error"], run
    assert fake.requests() == []


def test_a_reader_without_a_user_mapping_is_refused(db, fake, remote):
    """Without a user mapping for the reader, validate() says so and register_table() refuses,
    with a hint naming the server."""
    db.rows(f"DROP USER MAPPING FOR {READER} SERVER remote")
    db.rows(f"GRANT SELECT ON deals TO {READER}")
    checks = {c["check_name"]: c for c in db.rows("SELECT * FROM qobra_sync.validate('deals', run_as => %s)", (READER,))}
    assert not checks["reader can read"]["ok"]
    assert "no user mapping for server remote" in checks["reader can read"]["detail"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        db.register("deals")
    assert "no user mapping" in str(e.value) and "CREATE USER MAPPING" in e.value.diag.message_hint


def test_a_reader_never_reads_through_a_connection_another_role_opened(cluster, db, fake, remote):
    """Through PUBLIC's user mapping, which has no password: a superuser may connect, a reader
    may not (postgres_fdw demands a password of other roles). After the superuser read the
    foreign table, preview() as the reader does not reuse the superuser's cached connection:
    in a later transaction it connects afresh and is refused; in the same transaction, where
    the connection cannot be closed, the read is refused."""
    db.rows("DROP USER MAPPING FOR postgres SERVER remote")
    db.rows("CREATE USER MAPPING FOR PUBLIC SERVER remote OPTIONS (user 'postgres')")
    db.rows("DROP ROLE IF EXISTS t_crm_reader")
    db.rows("CREATE ROLE t_crm_reader")
    try:
        db.rows(f"GRANT USAGE ON SCHEMA {db.schema} TO t_crm_reader")
        db.rows("GRANT SELECT ON deals TO t_crm_reader")
        assert db.value("SELECT count(*) FROM deals") == 30  # the superuser's connection, cached
        # postgres_fdw's own words: "password is required" up to 15, then "password or GSSAPI
        # delegated credentials required".
        with pytest.raises(psycopg.errors.ProhibitedSqlStatementAttempted, match="password (is|or GSSAPI .*) required"):
            db.rows("SELECT * FROM qobra_sync.preview('deals', 5, 't_crm_reader')")
        with db.conn.transaction():
            assert db.value("SELECT count(*) FROM deals") == 30
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="did not open"):
                db.rows("SELECT * FROM qobra_sync.preview('deals', 5, 't_crm_reader')")
            raise psycopg.Rollback()
    finally:
        db.rows("DROP OWNED BY t_crm_reader")
        db.rows("DROP ROLE t_crm_reader")

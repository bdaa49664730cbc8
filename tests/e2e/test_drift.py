"""Schema drift against the fake Qobra: a renamed, dropped or retyped synced column blocks the
push before any request, and Qobra keeps what it had; the new shape is accepted with
accept_shape or column options (a renamed column keeping its key); an added column waits to be
accepted; confirming a renamed source accepts no lost column; a recreated source is
unregistered by its data table."""

from decimal import Decimal

import psycopg
import pytest

from helpers import READER
from worker_helpers import wait_runs


def create_deals(db, fake):
    """A registered deals table of 5 rows (id, name, amount, stage), pushed once."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric, stage text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i, i * 100, 'won' FROM generate_series(1, 5) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    return key


def amounts(fake, key):
    """The amount field of every record in the fake, by id."""
    return {rid: r.get("amount") for rid, r in fake.records(key).items()}


def test_a_renamed_column_blocks_the_push_and_qobra_keeps_its_field(db, fake):
    """RENAME COLUMN amount TO amount_eur: the run is blocked, no request is sent, and every
    record in Qobra keeps its amount; accepted under the old key, the next push sends the new
    values as `amount` again."""
    key = create_deals(db, fake)
    before = amounts(fake, key)
    assert before == {str(i): Decimal(i * 100) for i in range(1, 6)}
    requests = len(fake.bulk_requests(key))
    db.rows("ALTER TABLE deals RENAME COLUMN amount TO amount_eur")
    db.rows("UPDATE deals SET amount_eur = amount_eur + 1")

    blocked = db.sync("deals")
    assert blocked["status"] == "blocked"
    assert blocked["requests"] == 0 and blocked["rows_sent"] == 0
    assert 'column "amount" was renamed to "amount_eur"' in blocked["error"]
    assert """field_keys => '{"amount_eur":"amount"}'""" in blocked["error"]
    assert len(fake.bulk_requests(key)) == requests, "nothing reached Qobra"
    assert amounts(fake, key) == before

    db.rows("""SELECT qobra_sync.alter_table('deals', field_keys => '{"amount_eur": "amount"}')""")
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    records = fake.records(key)
    assert {rid: r.get("amount") for rid, r in records.items()} == {
        str(i): Decimal(i * 100 + 1) for i in range(1, 6)}
    assert all("amount_eur" not in r for r in records.values())


def test_a_dropped_or_retyped_column_blocks_even_the_scheduled_push(wdb, fake):
    """A dropped column and a column whose type maps to another Qobra type block the worker's
    scheduled runs too, naming both columns; nothing is sent."""
    db = wdb
    key = create_deals(db, fake)
    requests = len(fake.bulk_requests(key))
    db.rows("ALTER TABLE deals DROP COLUMN stage")
    db.rows("ALTER TABLE deals ALTER COLUMN amount TYPE text")
    db.rows("SELECT qobra_sync.alter_table('deals', schedule => '2 seconds')")
    run = wait_runs(db, "deals", 1, finished=True)[0]
    db.rows("SELECT qobra_sync.pause('deals')")
    assert run["status"] == "blocked"
    assert 'column "stage" was dropped' in run["error"]
    assert 'column "amount" is now of type text (was numeric)' in run["error"]
    assert len(fake.bulk_requests(key)) == requests
    assert amounts(fake, key) == {str(i): Decimal(i * 100) for i in range(1, 6)}


def test_an_added_column_is_sent_only_once_accepted(db, fake):
    """ADD COLUMN region: pushes go on without it (validate and column_mapping say it is new);
    after alter_table accepts the shape, the records carry it."""
    key = create_deals(db, fake)
    db.rows("ALTER TABLE deals ADD COLUMN region text DEFAULT 'EMEA'")
    mapping = db.one("SELECT synced, note FROM qobra_sync.column_mapping('deals') WHERE column_name = 'region'")
    assert not mapping["synced"] and "new" in mapping["note"], mapping
    check = db.one("SELECT ok, detail FROM qobra_sync.validate('deals') WHERE check_name = 'shape unchanged'")
    assert check["ok"] and 'column "region" is new' in check["detail"], check

    db.rows("UPDATE deals SET amount = amount + 1 WHERE id = 1")
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    records = fake.records(key)
    assert records["1"]["amount"] == Decimal(101)
    assert all("region" not in r for r in records.values())

    db.rows("SELECT qobra_sync.alter_table('deals')")
    db.define_in_fake(fake, "deals")  # the admin adds the field in Qobra
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    assert {r.get("region") for r in fake.records(key).values()} == {"EMEA"}


def test_confirming_a_rename_does_not_accept_a_dropped_column(db, fake):
    """A migration renames the table and drops a synced column: alter_table(source), which
    confirms the new name, says in a WARNING that the lost column is not accepted and the runs
    stay blocked; accept_shape() accepts it, and the next push sends the table without it."""
    key = create_deals(db, fake)
    db.rows("ALTER TABLE deals RENAME TO deals_v2")
    db.rows("ALTER TABLE deals_v2 DROP COLUMN stage")
    db.notices.clear()
    db.rows("SELECT qobra_sync.alter_table('deals_v2')")
    [warning] = [n.message_primary for n in db.notices if n.severity_nonlocalized == "WARNING"]
    assert 'column "stage" was dropped' in warning and "accept_shape('" in warning, warning
    blocked = db.sync("deals_v2")
    assert blocked["status"] == "blocked" and 'column "stage" was dropped' in blocked["error"], blocked
    assert "qobra_sync.accept_shape('" in blocked["error"]
    db.rows("SELECT qobra_sync.accept_shape('deals_v2')")
    pushed = db.sync("deals_v2", force=True)
    assert pushed["status"] == "succeeded", pushed["error"]
    fake.flush()
    assert all("stage" not in r for r in fake.records(key).values())


def test_a_recreated_source_is_unregistered_by_its_data_table(db, fake):
    """A deploy drops and recreates the table (CREATE TABLE … AS, then a rename): the old
    registration points at nothing and every call says so; unregister_table(data_table_key =>)
    removes it without the old OID, and the new relation is registered afresh and pushes."""
    key = create_deals(db, fake)
    db.rows("CREATE TABLE deals_next AS SELECT * FROM deals")
    db.rows("DROP TABLE deals")
    db.rows("ALTER TABLE deals_next RENAME TO deals")
    db.rows("ALTER TABLE deals ADD PRIMARY KEY (id)")
    with pytest.raises(psycopg.errors.UndefinedObject):
        db.sync("deals")
    db.rows("SELECT qobra_sync.unregister_table(data_table_key => %s)", (key,))
    assert db.value("SELECT count(*) FROM qobra_sync.tables") == 0
    with pytest.raises(psycopg.errors.UndefinedObject, match="no registration feeds"):
        db.rows("SELECT qobra_sync.unregister_table(data_table_key => %s)", (key,))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.rows("SELECT qobra_sync.unregister_table('deals', %s)", (key,))
    db.register("deals", key=key)
    assert db.sync("deals")["status"] == "succeeded"


def recreate_deals(db, select="SELECT * FROM deals"):
    """What a dbt model or a migration does: the table built anew beside the old one, the old
    one dropped and the new one renamed in its place; the reader granted again."""
    db.rows(f"CREATE TABLE deals_next AS {select}")
    db.rows("DROP TABLE deals")
    db.rows("ALTER TABLE deals_next RENAME TO deals")
    db.rows(f"GRANT SELECT ON deals TO {READER}")


def test_a_registration_following_its_name_pushes_the_recreated_table(wdb, fake):
    """With follow_name, a table dropped and created again under its name is pushed in its
    place: on schedule and by sync_now; the registration, its guards' baseline and its history
    move to it (the unchanged snapshot is skipped, a NOTICE says it moved); a new relation
    without a synced column fails the run and moves nothing; a swap by renames moves to the
    relation that takes the name."""
    db = wdb
    key = create_deals(db, fake)
    db.rows("SELECT qobra_sync.alter_table('deals', follow_name => true)")
    first = db.value("SELECT run_id FROM qobra_sync.runs WHERE source = 'deals'::regclass")
    recreate_deals(db)

    db.rows("SET client_min_messages = notice")
    run = db.sync("deals")
    assert run["status"] == "skipped", run  # Qobra holds this snapshot: the baseline moved too
    assert any("follows its name" in n.message_primary for n in run["notices"]), run["notices"]
    assert db.value("SELECT source = 'deals'::regclass FROM qobra_sync.tables")
    assert db.value("SELECT count(*) FROM qobra_sync.runs WHERE source = 'deals'::regclass "
                    "AND run_id = %s", (first,)) == 1, "the history did not follow"

    # The worker follows too, on schedule.
    recreate_deals(db, "SELECT id, name, amount * 2 AS amount, stage FROM deals")
    db.rows("UPDATE qobra_sync.registrations SET next_run_at = now()")
    [scheduled] = wait_runs(db, "deals", 1, finished=True)
    assert scheduled["status"] == "succeeded", scheduled
    db.rows("UPDATE qobra_sync.registrations SET next_run_at = 'infinity'")
    fake.flush()
    assert amounts(fake, key) == {str(i): Decimal(i * 200) for i in range(1, 6)}

    # A new relation without a synced column: the run fails, nothing moves.
    recreate_deals(db, "SELECT id, name, amount FROM deals")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match='column "stage" was dropped'):
        db.sync("deals")
    assert db.value("SELECT count(*) FROM qobra_sync.tables WHERE source = 'deals'::regclass") == 0

    # Renamed aside and replaced (a blue-green swap): the registration moves to the new one.
    db.rows("DROP TABLE deals")
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric, stage text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i, i * 300, 'won' FROM generate_series(1, 5) i")
    db.rows(f"GRANT SELECT ON deals TO {READER}")
    assert db.sync("deals")["status"] == "succeeded"
    db.rows("ALTER TABLE deals RENAME TO deals_old")
    db.rows("CREATE TABLE deals AS SELECT id, name, amount + 1 AS amount, stage FROM deals_old")
    db.rows(f"GRANT SELECT ON deals TO {READER}")
    assert db.sync("deals")["status"] == "succeeded"
    assert db.value("SELECT source = 'deals'::regclass FROM qobra_sync.tables")
    fake.flush()
    assert amounts(fake, key) == {str(i): Decimal(i * 300 + 1) for i in range(1, 6)}

    # Without a recorded shape (registered before shapes were), there is nothing to match.
    db.rows("UPDATE qobra_sync.registrations SET shape = NULL")
    recreate_deals(db)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no recorded shape"):
        db.sync("deals")


def test_without_follow_name_a_recreated_table_is_not_pushed(db, fake):
    """By default a registration holds its relation by OID: the table created again under its
    name is not registered, and nothing moves."""
    create_deals(db, fake)
    recreate_deals(db)
    with pytest.raises(psycopg.errors.UndefinedObject, match="is not registered"):
        db.sync("deals")
    assert db.value("SELECT count(*) FROM qobra_sync.tables WHERE source = 'deals'::regclass") == 0


def test_a_role_that_may_create_tables_cannot_take_a_followed_name(db, fake):
    """The attack: a registration follows its name; its table is dropped (a deploy, a mistake);
    a role that may only create tables in the schema creates one under that name, with the
    same columns, its own rows, and SELECT for the reader. qobra_sync does not follow there
    (42501, naming both owners): nothing moves and nothing is sent."""
    key = create_deals(db, fake)
    db.rows("SELECT qobra_sync.alter_table('deals', follow_name => true)")
    before = amounts(fake, key)
    db.rows("DROP ROLE IF EXISTS t_squatter")
    db.rows("CREATE ROLE t_squatter")
    try:
        db.rows(f"GRANT CREATE, USAGE ON SCHEMA {db.schema} TO t_squatter")
        db.rows("DROP TABLE deals")
        db.rows("SET ROLE t_squatter")
        db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric, stage text)")
        db.rows("INSERT INTO deals SELECT i, 'forged ' || i, 0, 'won' FROM generate_series(1, 5) i")
        db.rows(f"GRANT SELECT ON deals TO {READER}")
        db.rows("RESET ROLE")
        requests = len(fake.requests("/v1/tables/"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match='owned by "t_squatter"'):
            db.sync("deals")
        assert db.value("SELECT count(*) FROM qobra_sync.tables WHERE source = 'deals'::regclass") == 0
        assert len(fake.requests("/v1/tables/")) == requests
        assert amounts(fake, key) == before
        # Inspected, the new table is what it is: not the registration's (and not an error).
        assert db.value("SELECT count(*) FROM qobra_sync.column_mapping('deals')") == 4
    finally:
        db.rows("RESET ROLE")
        db.rows("DROP TABLE IF EXISTS deals")
        db.rows(f"REVOKE ALL ON SCHEMA {db.schema} FROM t_squatter")
        db.rows("DROP ROLE t_squatter")

"""Schema drift against the fake Qobra: a renamed, dropped or retyped synced column blocks the
push before any request, and Qobra keeps what it had; the new shape is accepted with
alter_table (a renamed column keeping its key); an added column waits to be accepted."""

from decimal import Decimal

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

"""A DBA's first weeks: what stops a push before anything is sent (the deletion guard,
unchanged snapshots, misuse of sync_now), guards a purge cannot erase, no schedule unless one is
given, and inspection before registering that shows what the registration will send."""

import math
import re
import subprocess

import psycopg
import pytest

from helpers import DBNAME, READER, wait_for
from worker_helpers import runs, wait_runs


def create_deals(db, fake, rows=10):
    """A registered deals table of `rows` rows, its data table defined in the fake."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    db.rows(f"INSERT INTO deals SELECT i, 'deal ' || i, i FROM generate_series(1, {rows}) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    return key


def test_deletion_guard_blocks_a_shrunken_snapshot_until_forced(db, fake):
    """60% of the rows deleted: the next push is blocked with a WARNING and sends nothing;
    sync_now(force => true) pushes the 4 remaining rows."""
    key = create_deals(db, fake)
    db.rows("SET qobra_sync.deletion_guard = 0.5")
    assert db.sync("deals")["status"] == "succeeded"
    fake.flush()
    db.rows("DELETE FROM deals WHERE id <= 6")

    blocked = db.sync("deals")
    assert blocked["status"] == "blocked"
    assert re.search(r"\b4\b", blocked["error"]) and re.search(r"\b10\b", blocked["error"]), blocked["error"]
    assert db.warnings(blocked)
    assert len(fake.bulk_requests(key)) == 1
    fake.flush()
    assert len(fake.records(key)) == 10

    forced = db.sync("deals", force=True)
    assert forced["status"] == "succeeded", forced["error"]
    fake.flush()
    assert sorted(fake.records(key), key=int) == ["7", "8", "9", "10"]


def test_unchanged_snapshot_is_skipped(db, fake):
    """With skip_unchanged, a second push of the same rows is skipped without a request; a
    change makes the next one push again."""
    key = create_deals(db, fake)
    db.rows("SET qobra_sync.skip_unchanged = on")
    first = db.sync("deals")
    assert first["status"] == "succeeded"
    second = db.sync("deals")
    assert second["status"] == "skipped"
    assert second["snapshot_sha256"] == first["snapshot_sha256"]
    assert len(fake.bulk_requests(key)) == 1

    db.rows("UPDATE deals SET amount = 11 WHERE id = 1")
    third = db.sync("deals")
    assert third["status"] == "succeeded"
    assert third["snapshot_sha256"] != first["snapshot_sha256"]
    assert len(fake.bulk_requests(key)) == 2


def assert_misuse(db, table, *words):
    """sync_now raises an error with a specific SQLSTATE whose message names `words`."""
    with pytest.raises(psycopg.Error) as raised:
        db.value("SELECT qobra_sync.sync_now(%s::regclass)", (table,))
    diag = raised.value.diag
    assert diag.sqlstate and diag.sqlstate != "XX000", diag.sqlstate
    text = " ".join(filter(None, (diag.message_primary, diag.message_detail, diag.message_hint)))
    for word in words:
        assert word in text, text


def test_sync_now_misuse_raises_errors(db, fake):
    """Not registered, renamed or dropped sources and a missing destination are errors, and
    nothing reaches Qobra."""
    create_deals(db, fake)
    db.rows("CREATE TABLE other (id int PRIMARY KEY, name text)")
    assert_misuse(db, "other", "other")

    db.rows("ALTER TABLE deals RENAME TO deals_renamed")
    assert_misuse(db, "deals_renamed", "deals", "deals_renamed")
    db.rows("ALTER TABLE deals_renamed RENAME TO deals")

    db.rows("CREATE TABLE doomed (id int PRIMARY KEY, name text)")
    oid = db.value("SELECT 'doomed'::regclass::oid")
    db.register("doomed")
    db.rows("DROP TABLE doomed")
    assert_misuse(db, str(oid), "doomed")

    assert db.value("SELECT count(*) FROM qobra_sync.destination") == 1
    try:
        db.rows("DELETE FROM qobra_sync.destination")
        assert_misuse(db, "deals", "destination")
    finally:
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    # The worker may still be asking about earlier tests' imports (GET); nothing was sent.
    assert [r for r in fake.requests("/v1/") if r["method"] != "GET"] == []


def test_a_purged_history_keeps_the_guards_and_the_health(db, fake):
    """The guards' baseline is the registration's, not the history's: with every run purged
    (what a month of history_days does to a monthly table), the deletion guard still blocks a
    shrunken snapshot, an unchanged one is still skipped, and status says the registration is
    healthy. A skip is no error: no error text, a NOTICE, and it counts as alive for status and
    metrics alike."""
    create_deals(db, fake)
    db.rows("SELECT qobra_sync.alter_table('deals', schedule => '1 hour')")
    assert db.sync("deals")["status"] == "succeeded"
    db.rows("DELETE FROM qobra_sync.runs")  # as the purge does
    health = db.one("SELECT last_success_rows, stale, consecutive_failures FROM qobra_sync.status")
    assert health == {"last_success_rows": 10, "stale": False, "consecutive_failures": 0}, health

    db.rows("SET client_min_messages = notice")
    skipped = db.sync("deals")
    assert (skipped["status"], skipped["error"]) == ("skipped", None), skipped
    assert not db.warnings(skipped)
    assert any("same as the last successful push" in n.message_primary for n in skipped["notices"])
    alive = db.one("SELECT seconds_since_last_success AS s FROM qobra_sync.metrics")["s"]
    assert 0 <= alive < 60, alive

    db.rows("DELETE FROM qobra_sync.runs")
    db.rows("DELETE FROM deals WHERE id <= 8")
    blocked = db.sync("deals")
    assert blocked["status"] == "blocked" and re.search(r"\b10\b", blocked["error"]), blocked


def test_raise_on_failure_fails_the_statement_and_keeps_the_run(cluster, db, fake):
    """sync_now(…, raise_on_failure => true): a failed push raises (SQLSTATE 58000), a blocked
    one too (55000), so that `psql -c` exits non-zero; the run is still recorded (by the worker,
    from the push's slot, since the statement rolled back); a skip raises nothing."""
    key = create_deals(db, fake)
    assert db.sync("deals")["status"] == "succeeded"
    fake.add_faults({"path_prefix": f"/v1/tables/{key}/records/bulk", "method": "POST", "nth": 1,
                     "times": 1, "action": {"status": 400}})
    with pytest.raises(psycopg.errors.SystemError) as e:
        db.rows("SELECT qobra_sync.sync_now('deals', force => true, raise_on_failure => true)")
    assert re.search(r"run \d+ of .*deals failed: .*400", str(e.value)), str(e.value)
    run_id = int(re.search(r"run (\d+)", str(e.value)).group(1))
    recorded = wait_for(lambda: db.rows("SELECT status FROM qobra_sync.runs WHERE run_id = %s", (run_id,)),
                        what="the worker to record the failed run")
    assert recorded == [{"status": "failed"}]
    assert db.value("SELECT qobra_sync.sync_now('deals', raise_on_failure => true)") > 0  # skipped
    db.rows("DELETE FROM deals WHERE id <= 8")
    proc = subprocess.run(["psql", "-X", "-h", str(cluster.dir), "-p", str(cluster.port), "-U", "postgres",
                           "-d", DBNAME, "-c", f"SELECT qobra_sync.sync_now('{db.schema}.deals', raise_on_failure => true)"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr, proc


def test_a_registration_without_a_schedule_is_pushed_only_when_asked(wdb, fake):
    """As pg_cron asks for a schedule, register_table() gives none by default: the worker never
    pushes such a registration on its own, request_sync() and sync_now() do, and status calls
    it neither stale nor due. alter_table() gives it a schedule, and schedule => '' removes it."""
    db = wdb
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i FROM generate_series(1, 5) i")
    db.register("deals", schedule=None)
    db.define_in_fake(fake, "deals")
    reg = db.one("SELECT schedule, next_run_at FROM qobra_sync.tables")
    assert reg == {"schedule": None, "next_run_at": None}
    status = db.one("SELECT next_run_at, stale FROM qobra_sync.status")
    assert status == {"next_run_at": None, "stale": False}
    assert math.isnan(db.value("SELECT next_run_in_seconds FROM qobra_sync.metrics"))

    db.rows("SELECT qobra_sync.request_sync('deals')")
    [run] = wait_runs(db, "deals", 1, trigger="request", finished=True)
    assert run["status"] == "succeeded", run
    wait_for(lambda: db.value("SELECT requested_at IS NULL FROM qobra_sync.registrations"),
             what="the request to be taken")
    assert db.value("SELECT next_run_at FROM qobra_sync.tables") is None
    db.rows("SELECT qobra_sync.alter_table('deals', schedule => '1 hour')")
    assert db.value("SELECT next_run_at - now() BETWEEN interval '59 minutes' AND interval '1 hour' FROM qobra_sync.tables")
    db.rows("SELECT qobra_sync.alter_table('deals', schedule => '')")
    assert db.one("SELECT schedule, next_run_at FROM qobra_sync.tables") == reg
    assert [r["trigger"] for r in runs(db, "deals", None)] == ["request"]


def test_inspection_before_registering_takes_the_registrations_options(db, fake):
    """csv_template(), preview(), column_mapping() and validate() before registering take
    register_table()'s options, so the template's header, the records, the mapping and the
    checks are those of what the registration will send; after registering, they show it."""
    db.rows("CREATE TABLE deals (ref int PRIMARY KEY, title text, amount numeric, tags text, stage text)")
    db.rows("INSERT INTO deals VALUES (1, 'a', 10, 'x', 'won'), (2, 'b', 20, 'y', 'lost')")
    options = dict(id_column="ref", name_column="title", exclude_columns="{tags}",
                   field_keys='{"amount": "deal_amount"}', filter="stage = 'won'", run_as=READER)
    named = ", ".join(f"{k} => %({k})s" for k in options)
    db.rows(f"GRANT SELECT ON deals TO {READER}")
    template = db.value(f"SELECT qobra_sync.csv_template('deals', 10, {named})", options)
    records = [r for (r,) in db.conn.execute(f"SELECT qobra_sync.preview('deals', 10, {named})", options)]
    assert template.splitlines()[0] == "ref,title,deal_amount,stage", template
    assert [sorted(r) for r in records] == [["deal_amount", "ref", "stage", "title"]], records
    assert (records[0]["ref"], records[0]["title"]) == ("1", "a")
    columns = {k: options[k] for k in ("id_column", "name_column", "exclude_columns", "field_keys")}
    mapping = {m["column_name"]: m for m in db.rows(
        "SELECT * FROM qobra_sync.column_mapping('deals', "
        + ", ".join(f"{k} => %({k})s" for k in columns) + ")", columns)}
    assert (mapping["amount"]["field_key"], mapping["tags"]["synced"]) == ("deal_amount", False), mapping
    checks = {c["check_name"]: c for c in db.rows(f"SELECT * FROM qobra_sync.validate('deals', {named})", options)}
    assert checks["rows"]["ok"] and checks["rows"]["detail"].startswith("1 "), checks["rows"]
    db.register("deals", id_column="ref", name_column="title", exclude_columns="{tags}",
                field_keys={"amount": "deal_amount"}, filter="stage = 'won'")
    assert db.value("SELECT qobra_sync.csv_template('deals', 10)") == template
    assert [r for (r,) in db.conn.execute("SELECT qobra_sync.preview('deals', 10)")] == records

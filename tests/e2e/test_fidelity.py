"""Fidelity: what Qobra holds after a push equals the source, value by value, for every
supported type; unrepresentable rows are reported, never sent; filters and Qobra's own
parsing errors."""

import pytest

from helpers import assert_same_records, comparable, expected_records

# Every test runs against both body formats (see conftest.each_body_format).
pytestmark = pytest.mark.usefixtures("each_body_format")

EVERY_TYPE = """
CREATE TABLE every_type (
    id bigint PRIMARY KEY, name text, code char(6), label varchar(60), day date,
    local_ts timestamp, at timestamptz, small int2, medium int4, big int8,
    ratio float4, measure float8, precise numeric, price money, active boolean,
    flags bit(4), mask varbit, owner text)"""

# (id, name, code, label, day, local_ts, at, small, medium, big, ratio, measure, precise,
#  price, active, flags, mask, owner)
GOOD_ROWS = [
    (1, "all nulls", None, None, None, None, None, None, None, None, None, None, None,
     None, None, None, None, None),
    (2, "Zoë — 日本語 🚀", "ab", "it's \"quoted\", back\\slash", "1969-12-31",
     "1950-06-15 12:34:56.789", "2024-03-31 02:30:00+02", -32768, 2147483647,
     -9223372036854775808, 3.4028235e38, 1e-300, "12345678901234567890123456789012345678",
     "-92233720368547758.08", True, "1010", "", "ana@acme.com"),
    (3, "line1\nline2\r\n\ttab", "x ", "🙂 emoji\u00a0nbsp", "0001-01-01",
     "0001-01-01 00:00:00", "1969-12-31 23:59:59.999999-08", 32767, -2147483648,
     9223372036854775807, -1.5, 1e30, "-0.000000000000000000000000000001",
     "92233720368547758.07", False, "0000", "1", "bob@example.org"),
    (4, "zones", "ABCDEF", "", "1900-02-28", "2000-02-29 23:59:59.5",
     "2000-01-01 00:00:00 America/New_York", 0, 0, 0, 0.1, -2.5e-5, "1.500",
     "0.01", True, "1111", "1010101010", None),
    (5, "more zones", "é", "Ünïcödé", "9999-12-31", "9999-12-31 23:59:59.999999",
     "1970-01-01 05:30:00+05:30", 1, -1, 42, 16777216, 0.30000000000000004,
     "99999999999999999999999999999999999999.123456789", "-0.99", False, "0101",
     "000", "carol+tag@sub.example.co"),
]
# id -> (column, value) of rows Qobra cannot take.
BAD_ROWS = {
    10: ("measure", "NaN"),
    11: ("precise", "Infinity"),
    12: ("ratio", "-Infinity"),
    13: ("day", "infinity"),
    14: ("at", "-infinity"),
    15: ("owner", "not-an-email"),
}


def create_every_type(db):
    """The every_type table: good rows and one bad value per rejected row; registered with a
    user column, renamed fields and type overrides."""
    db.rows(EVERY_TYPE)
    db.rows("SET TimeZone = 'Asia/Kolkata'")  # the push must not depend on the session's zone
    with db.conn.cursor() as cur:
        cur.executemany(f"INSERT INTO every_type VALUES ({', '.join(['%s'] * 18)})", GOOD_ROWS)
        for rid, (column, value) in BAD_ROWS.items():
            cur.execute(f"INSERT INTO every_type (id, name, {column}) VALUES (%s, %s, %s)",
                        (rid, f"bad {column}", value))
    return db.register("every_type", user_columns=["owner"],
                       field_keys={"name": "deal_name", "at": "closed_at", "price": "amount_eur",
                                   "owner": "owner_email"},
                       column_types={"precise": "amount", "small": "percentage"})


def test_preview_of_every_type_matches_the_source(db):
    """preview() gives every good row exactly as computed from the source, and no bad row."""
    create_every_type(db)
    preview = comparable(db, "every_type", db.preview("every_type"))
    good = expected_records(db, "every_type", f"id <> ALL(ARRAY{list(BAD_ROWS)})")
    assert_same_records(preview, good)
    assert preview["2"]["amount_eur"] == good["2"]["amount_eur"]


def test_push_of_every_type_is_read_back_value_by_value(db, fake):
    """sync_now sends every good row; the fake holds exactly them, value by value; the bad rows
    are absent, in run_errors with a reason, and counted in rows_rejected."""
    key = create_every_type(db)
    definition = db.define_in_fake(fake, "every_type")
    assert definition["fields"]["precise"] == "amount"
    assert definition["fields"]["closed_at"] == "date"
    assert definition["record_count"] == 0

    run = db.sync("every_type")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    good = expected_records(db, "every_type", f"id <> ALL(ARRAY{list(BAD_ROWS)})")
    assert_same_records(comparable(db, "every_type", fake.records(key)), good)
    assert fake.table(key)["record_count"] == len(GOOD_ROWS)

    assert (run["rows_read"], run["rows_sent"], run["rows_rejected"]) == \
        (len(GOOD_ROWS) + len(BAD_ROWS), len(GOOD_ROWS), len(BAD_ROWS))
    errors = db.run_errors(run["run_id"])
    assert len(errors) == len(BAD_ROWS)
    by_id = {str(e["row"].get("id")): e["details"] for e in errors}
    assert sorted(by_id) == sorted(str(i) for i in BAD_ROWS)
    for rid, (column, value) in BAD_ROWS.items():
        details = by_id[str(rid)].lower()
        assert column in details or value.lower() in details, by_id[str(rid)]

    posts = fake.bulk_requests(key)
    assert len(posts) == run["requests"] == 1
    assert posts[0]["api_key_valid"] and posts[0]["params"]["all"] == "true"
    assert posts[0]["records"] == len(GOOD_ROWS)
    assert run["import_ids"] and run["bytes_sent"] == posts[0]["body_bytes"]


def test_filtered_registration_pushes_exactly_the_filtered_rows(db, fake):
    """Only the rows the filter keeps reach Qobra, and nothing else does."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, stage text, amount numeric)")
    db.rows("""INSERT INTO deals SELECT i, 'deal ' || i,
                   (ARRAY['won', 'open', 'lost'])[1 + i % 3], i * 7 % 100
               FROM generate_series(1, 300) i""")
    condition = "stage IN ('won', 'open') AND amount >= 20"
    key = db.register("deals", filter=condition)
    db.define_in_fake(fake, "deals")

    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    expected = expected_records(db, "deals", condition)
    assert 100 < len(expected) < 300
    assert_same_records(fake.records(key), expected)
    assert run["rows_sent"] == len(expected)


def test_qobra_parsing_errors_land_in_run_errors(db, fake):
    """A field Qobra types differently from the source fails row by row in Qobra; after
    poll_imports() those rows are in run_errors with Qobra's details."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, stage text)")
    db.rows("INSERT INTO deals VALUES (1, 'a', '12'), (2, 'b', 'won'), (3, 'c', NULL), (4, 'd', 'lost')")
    key = db.register("deals")
    fake.define_table(key, fields={"stage": "number"})

    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    db.rows("SELECT qobra_sync.poll_imports()")
    errors = db.run_errors(run["run_id"])
    assert sorted((e["row"]["id"], e["details"]) for e in errors) == [
        ("2", "Can't parse 'won' as float for user attribute stage"),
        ("4", "Can't parse 'lost' as float for user attribute stage")]
    assert all(1 <= e["line_number"] <= 4 for e in errors)
    assert sorted(fake.records(key)) == ["1", "3"]


def test_an_import_qobra_does_not_know_settles_its_run_as_unknown(db, fake):
    """An import Qobra answers 404 for (here: the fake forgot it) will never be known: the run
    is settled as unknown with a run_errors row naming the import, and not looked at again."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals VALUES (1, 'a'), (2, 'b')")
    db.register("deals")
    db.define_in_fake(fake, "deals")
    run = db.sync("deals")
    assert run["status"] == "succeeded" and run["import_status"] == "pending", run
    [import_id] = run["import_ids"]
    fake.reset()
    db.rows("SELECT qobra_sync.poll_imports()")  # the worker may have looked first: settled once
    assert db.run(run["run_id"])["import_status"] == "unknown"
    [error] = db.run_errors(run["run_id"])
    assert error["origin"] == "import" and error["line_number"] is None and error["row"] is None
    assert import_id in error["details"] and "HTTP 404" in error["details"], error
    looked = len(fake.requests(f"/v1/imports/{import_id}"))
    assert looked >= 1
    db.rows("SELECT qobra_sync.poll_imports()")
    assert len(fake.requests(f"/v1/imports/{import_id}")) == looked

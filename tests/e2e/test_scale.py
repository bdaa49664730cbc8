"""Scale: a 100,000-row table goes out in batch_rows chunks, the first one replacing the table."""

from decimal import Decimal

ROWS, BATCH = 100_000, 5_000


def test_hundred_thousand_rows_in_twenty_chunks(db, fake):
    """20 requests of 5,000 records: the first with all=true, all with debounce=1, the others
    without all=true; the fake ends up with every row."""
    db.rows("CREATE TABLE big_deals (id int PRIMARY KEY, name text, amount numeric(12,2), "
            "close_date date, owner text)")
    db.rows(f"""INSERT INTO big_deals SELECT i, 'deal ' || i, i * 1.25, DATE '2020-01-01' + i % 2000,
                    'rep' || i % 50 || '@example.com' FROM generate_series(1, {ROWS}) i""")
    key = db.register("big_deals", user_columns=["owner"])
    db.define_in_fake(fake, "big_deals")
    db.rows(f"SET qobra_sync.batch_rows = {BATCH}")
    db.rows("SET qobra_sync.debounce_seconds = 1")

    run = db.sync("big_deals")
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["rows_sent"], run["requests"]) == (ROWS, ROWS, ROWS // BATCH)

    posts = fake.bulk_requests(key)
    assert [p["records"] for p in posts] == [BATCH] * (ROWS // BATCH)
    assert all(p["status"] == 200 for p in posts)
    assert posts[0]["params"] == {"all": "true", "debounce": "1"}
    for p in posts[1:]:
        assert p["params"].get("all", "false") == "false" and p["params"]["debounce"] == "1"
    assert run["bytes_sent"] == sum(p["body_bytes"] for p in posts)

    fake.flush()
    records = fake.records(key)
    assert len(records) == ROWS and fake.table(key)["record_count"] == ROWS
    assert set(records) == {str(i) for i in range(1, ROWS + 1)}
    assert records["77777"] == {"id": "77777", "name": "deal 77777", "amount": Decimal("97221.25"),
                                "close_date": "2024-11-12", "owner": "rep27@example.com"}

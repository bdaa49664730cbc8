"""Wide rows against the fake Qobra: requests bounded by qobra_sync.batch_bytes whatever the row
width, with the pushing backend's memory bounded too; a record larger than the limit alone is
rejected and the rest pushed; a 413 splits the chunk, and the split size is kept for the run."""

from helpers import MIB, PeakMemory, rss_anon_kib


def create_wide(db, rows, width, wide_ids=()):
    """A registered table `wide` (id, name, notes) of `rows` rows whose notes are `width`
    bytes; the rows of `wide_ids` get notes of 3 * width bytes."""
    db.rows("CREATE TABLE wide (id int PRIMARY KEY, name text, notes text)")
    db.rows("""INSERT INTO wide SELECT i, 'deal ' || i,
                      repeat(md5(i::text), (CASE WHEN i = ANY(%s) THEN 3 ELSE 1 END * %s) / 32)
                 FROM generate_series(1, %s) i""", (list(wide_ids), width, rows))
    return db.register("wide")


def bulk_answers(fake, key):
    """(status, body_bytes) of every bulk request to the table, oldest first."""
    return [(r["status"], r["body_bytes"]) for r in fake.bulk_requests(key)]


def warm_up(db, fake):
    """A first push of a one-row table, so that the client's first use is out of the way of a
    memory measurement."""
    db.rows("CREATE TABLE warm (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO warm VALUES (1, 'a')")
    db.register("warm")
    db.define_in_fake(fake, "warm")
    assert db.sync("warm")["status"] == "succeeded"


def test_wide_rows_go_in_bounded_requests_and_memory(db, fake):
    """2,000 rows of 200 kB (400 MB): requests of at most batch_bytes (4 MiB), every record
    lands, and the pushing backend grows by less than 64 MB."""
    warm_up(db, fake)
    key = create_wide(db, 2000, 200_000)
    db.define_in_fake(fake, "wide")
    pid = db.value("SELECT pg_backend_pid()")
    base = rss_anon_kib(pid)

    with PeakMemory(pid) as memory:
        run = db.sync("wide")
    assert run["status"] == "succeeded", run["error"]
    assert run["rows_sent"] == 2000 and run["bytes_sent"] > 400_000_000
    growth = (memory.peak - base) * 1024
    assert memory.samples > 10
    assert growth < 64 * MIB, f"the backend grew by {growth / MIB:.0f} MiB"
    answers = bulk_answers(fake, key)
    assert len(answers) >= 400_000_000 // (4 * MIB)
    assert all(status == 200 and size <= 4 * MIB for status, size in answers), answers[:5]
    fake.flush()
    records = fake.records(key)
    assert len(records) == 2000
    assert len(records["1234"]["notes"]) == 200_000 // 32 * 32


def test_wide_rows_rejected_for_a_value_are_kept_cut_and_memory_stays_bounded(db, fake):
    """1,000 rows of 256 kB whose amount is NaN (250 MB Qobra cannot take) and 10 good ones:
    each bad row is rejected and kept in run_errors cut to a few kB, its id whole; the pushing
    backend grows by less than 64 MB."""
    warm_up(db, fake)
    db.rows("CREATE TABLE wide (id int PRIMARY KEY, name text, amount float8, notes text)")
    db.rows("""INSERT INTO wide SELECT i, 'deal ' || i, CASE WHEN i > 10 THEN 'NaN'::float8 ELSE i END,
                      repeat(md5(i::text), 8192) FROM generate_series(1, 1010) i""")
    db.register("wide")
    db.define_in_fake(fake, "wide")
    pid = db.value("SELECT pg_backend_pid()")
    base = rss_anon_kib(pid)

    with PeakMemory(pid) as memory:
        run = db.sync("wide")
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["rows_sent"], run["rows_rejected"]) == (1010, 10, 1000), run
    growth = (memory.peak - base) * 1024
    assert growth < 64 * MIB, f"the backend grew by {growth / MIB:.0f} MiB"
    kept = db.one("""SELECT count(*) AS rows, max(octet_length("row"::text)) AS widest,
                            count(DISTINCT "row"->>'id') AS ids, min(("row"->>'id')::int) AS first,
                            max(("row"->>'id')::int) AS last, bool_and("row"->>'notes' LIKE '%%…') AS notes_cut
                       FROM qobra_sync.run_errors WHERE run_id = %s""", (run["run_id"],))
    assert kept == {"rows": 1000, "widest": kept["widest"], "ids": 1000, "first": 11, "last": 1010,
                    "notes_cut": True}, kept
    assert kept["widest"] < 8192, kept


def test_a_record_larger_than_batch_bytes_alone_is_rejected_and_the_rest_pushed(db, fake):
    """batch_bytes = 64kB and one row of 90 kB among 200 of 30 kB: that row goes to run_errors
    by its id, with the reason; the 199 others land."""
    key = create_wide(db, 200, 30_000, wide_ids=[77])
    db.define_in_fake(fake, "wide")
    db.rows("SET qobra_sync.batch_bytes = '64kB'")
    run = db.sync("wide")
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_read"], run["rows_sent"], run["rows_rejected"]) == (200, 199, 1)
    [error] = db.run_errors(run["run_id"])
    assert error["origin"] == "push" and error["row"] == {"id": "77"}, error
    assert "qobra_sync.batch_bytes" in error["details"], error["details"]
    assert all(size <= 64 * 1024 for _, size in bulk_answers(fake, key))
    fake.flush()
    records = fake.records(key)
    assert len(records) == 199 and "77" not in records
    # The same rows under a larger batch_bytes: not skipped as unchanged, and row 77 lands.
    assert run["snapshot_sha256"] is None
    db.rows("SET qobra_sync.batch_bytes = '1MB'")
    again = db.sync("wide")
    assert (again["status"], again["rows_sent"], again["rows_rejected"]) == ("succeeded", 200, 0), again
    fake.flush()
    assert "77" in fake.records(key)


def test_a_413_splits_the_chunk_and_later_chunks_stay_small(db, fake):
    """Qobra takes at most 200 kB per request, chunks are 1 MiB: the first chunk is halved
    until it passes (each 413 counted in runs.retries); the chunk read ahead meanwhile is cut to
    the learned size and later ones are made at it, so the 413s stay those of the first chunk's
    halving; every record lands."""
    key = create_wide(db, 1500, 2_000)
    db.define_in_fake(fake, "wide")
    fake.settings(max_body_bytes=200_000)
    db.rows("SET qobra_sync.batch_bytes = '1MB'")
    run = db.sync("wide")
    assert run["status"] == "succeeded", run["error"]
    answers = bulk_answers(fake, key)
    refused = [size for status, size in answers if status == 413]
    accepted = [size for status, size in answers if status == 200]
    assert len(answers) == len(refused) + len(accepted), answers
    # The first chunk (1 MiB, sent alone) halved to 128 kB: 1 MiB, 512 kB, 256 kB refused.
    # Then up to max_in_flight chunks at once: its other halves, cut to the learned size.
    assert 3 <= len(refused) <= 7, answers
    assert run["retries"] == len(refused)
    assert len(accepted) >= 3 * MIB // 200_000
    assert run["rows_sent"] == 1500 and run["rows_rejected"] == 0
    fake.flush()
    assert len(fake.records(key)) == 1500


def test_a_record_qobra_refuses_alone_is_rejected_and_the_rest_pushed(db, fake):
    """Qobra takes at most 50 kB per request and one row is 60 kB: halving ends with that
    record alone, refused again: it is rejected (reason: too large for Qobra), never retried
    in a loop, and the 99 others land."""
    key = create_wide(db, 100, 20_000, wide_ids=[42])
    db.define_in_fake(fake, "wide")
    fake.settings(max_body_bytes=50_000)
    run = db.sync("wide")
    assert run["status"] == "succeeded", run["error"]
    assert (run["rows_sent"], run["rows_rejected"]) == (99, 1)
    [error] = db.run_errors(run["run_id"])
    assert error["row"] == {"id": "42"} and "HTTP 413" in error["details"], error
    refused = [size for status, size in bulk_answers(fake, key) if status == 413]
    # 2 MB halved down to 40 kB, sent alone (6 refusals), then the chunk holding record 42
    # alone once more; no other chunk is refused.
    assert run["retries"] == len(refused) - 1 <= 8, refused
    fake.flush()
    records = fake.records(key)
    assert len(records) == 99 and "42" not in records
    # Once Qobra takes larger requests, the same rows are pushed again (not skipped as
    # unchanged) and record 42 lands.
    assert run["snapshot_sha256"] is None
    fake.settings(max_body_bytes=None)
    again = db.sync("wide")
    assert (again["status"], again["rows_sent"], again["rows_rejected"]) == ("succeeded", 100, 0), again
    fake.flush()
    assert "42" in fake.records(key)

"""Faults injected by the fake: each push ends with Qobra holding exactly the table, or with a
failed run whose error is clear and whose possibly_partial flag is right."""

import email.utils
import time

import psycopg
import pytest

from helpers import bulk_fault, sync_in_background, wait_for

# Every test runs against both body formats (see conftest.each_body_format).
pytestmark = pytest.mark.usefixtures("each_body_format")

ROWS, BATCH = 30, 10  # three chunks


def create_deals(db, fake):
    """30 deals in 3 chunks; the fake's table holds one stale record the push must replace."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric, close_date date)")
    db.rows(f"""INSERT INTO deals SELECT i, 'deal ' || i, i * 10.5, DATE '2026-01-01' + i
                FROM generate_series(1, {ROWS}) i""")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    assert fake.bulk(key, [{"id": "999", "name": "stale"}], all=True)[0] == 200
    fake.flush()
    fake.clear_requests()
    db.rows(f"SET qobra_sync.batch_rows = {BATCH}")
    return key


def assert_holds_table(db, fake, key):
    """The fake holds exactly the records preview() gives for the whole table."""
    fake.flush()
    assert fake.records(key) == db.preview("deals")


def assert_holds_stale_only(fake, key):
    """The fake still holds only the stale record: nothing of the push was applied."""
    fake.flush()
    assert list(fake.records(key)) == ["999"]


def assert_succeeded_after_retry(run, fake, key):
    """A succeeded run that retried, counted every request it made, and left nothing partial."""
    assert run["status"] == "succeeded", run["error"]
    assert run["retries"] >= 1
    assert run["requests"] == len(fake.bulk_requests(key))
    assert run["possibly_partial"] is False


@pytest.mark.parametrize("chunk", [1, 3])
def test_server_error_on_a_chunk_is_retried(db, fake, chunk):
    """A 500 on chunk k, then success: the run succeeds and Qobra holds the table."""
    key = create_deals(db, fake)
    fake.add_faults(bulk_fault(key, {"status": 500}, nth=chunk))
    run = db.sync("deals")
    assert_succeeded_after_retry(run, fake, key)
    assert [p["status"] for p in fake.bulk_requests(key)].count(500) == 1
    assert_holds_table(db, fake, key)


def test_server_errors_beyond_the_retry_budget_fail_the_run(db, fake):
    """500s from chunk 2 on, whatever the retries: a failed run naming the status, a WARNING,
    and possibly_partial set, since the all=true chunk was accepted."""
    key = create_deals(db, fake)
    db.rows("SET qobra_sync.max_retries = 2")
    fake.add_faults(bulk_fault(key, {"status": 500}, nth=2, times=0))
    run = db.sync("deals")
    assert run["status"] == "failed"
    assert "500" in run["error"]
    assert run["possibly_partial"] is True
    assert run["requests"] == len(fake.bulk_requests(key))
    assert db.warnings(run)


def http_date(seconds_ahead):
    """An HTTP date `seconds_ahead` seconds from now."""
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


def lower_retry_after_cap(db):
    """Caps every wait between tries (Retry-After included) at 2 s; returns the longest a push
    with one capped wait may then take."""
    db.rows("SET qobra_sync.retry_wait_max_ms = '2s'")
    return 12


@pytest.mark.parametrize("retry_after, min_wait, max_wait", [
    ("0", 0, 10),
    ("2", 1.9, 12),
    (lambda: http_date(3), 1.0, 12),
    ("soon, maybe", 0, 12),
    ("1000000000", 0, None),  # capped: a server cannot park a push for 31 years
], ids=["zero", "two-seconds", "http-date", "garbage", "huge"])
def test_rate_limit_honours_retry_after(db, fake, retry_after, min_wait, max_wait):
    """A 429 with Retry-After, then success: the wait honours the header, within a cap."""
    key = create_deals(db, fake)
    value = retry_after() if callable(retry_after) else retry_after
    max_wait = max_wait or lower_retry_after_cap(db)
    fake.add_faults(bulk_fault(key, {"status": 429, "headers": {"Retry-After": value}}, nth=2))
    run = db.sync("deals")
    assert_succeeded_after_retry(run, fake, key)
    assert min_wait <= run["elapsed"] <= max_wait
    assert_holds_table(db, fake, key)


@pytest.mark.parametrize("read_body", [True, False], ids=["after-body", "mid-body"])
def test_connection_reset_mid_chunk_is_retried(db, fake, read_body):
    """A connection reset on chunk 2, then success."""
    key = create_deals(db, fake)
    fake.add_faults(bulk_fault(key, {"reset": True, "read_body": read_body}, nth=2))
    run = db.sync("deals")
    assert_succeeded_after_retry(run, fake, key)
    assert [p["fault"] for p in fake.bulk_requests(key)].count("reset") == 1
    assert_holds_table(db, fake, key)


@pytest.mark.parametrize("hang_from", [1, 2], ids=["first-chunk", "second-chunk"])
def test_hanging_receiver_times_out(db, fake, hang_from):
    """Every request from chunk k on hangs; with a small http_timeout_ms the run fails with a
    timeout error, possibly partial either way: the all=true chunk was accepted, or it reached
    Qobra and no answer said whether Qobra took it."""
    key = create_deals(db, fake)
    db.rows("SET qobra_sync.http_timeout_ms = 300")
    db.rows("SET qobra_sync.max_retries = 1")
    fake.add_faults(bulk_fault(key, {"hang": True}, nth=hang_from, times=0))
    run = db.sync("deals")
    assert run["status"] == "failed"
    assert "time" in run["error"].lower() and "out" in run["error"].lower(), run["error"]
    assert run["possibly_partial"] is True
    assert run["elapsed"] < 15
    assert db.warnings(run)
    if hang_from == 1:
        # This fake never applies a request it hangs on; a real Qobra might have.
        assert_holds_stale_only(fake, key)


def test_query_cancel_stops_a_hanging_push_within_a_second(db, fake, connect):
    """pg_cancel_backend from another session ends a push stuck on a silent server: sync_now
    returns with the query-cancel error within 1.5 s of the cancel."""
    key = create_deals(db, fake)
    db.rows("SET qobra_sync.http_timeout_ms = 60000")
    fake.add_faults(bulk_fault(key, {"hang": True}, times=0))
    pid = db.value("SELECT pg_backend_pid()")
    worker, outcome = sync_in_background(db, "deals")
    wait_for(lambda: not worker.is_alive() or any(p["fault"] == "hang" for p in fake.bulk_requests(key)),
             20, what="the push to reach the hanging server")
    assert worker.is_alive(), f"sync_now ended before reaching the server: {outcome}"
    cancelled_at = time.monotonic()
    assert connect().execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone()[0]
    worker.join(10)
    assert not worker.is_alive(), "sync_now still running 10 s after the cancel"
    assert outcome["at"] - cancelled_at < 1.5
    assert isinstance(outcome.get("error"), psycopg.errors.QueryCanceled), outcome
    assert db.value("SELECT 1") == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_key_fails_at_once(db, fake, status):
    """401/403: a failed run after exactly one request, with an error naming the refusal."""
    key = create_deals(db, fake)
    fake.add_faults(bulk_fault(key, {"status": status, "body": '{"detail": "Invalid API key"}'},
                               times=0))
    run = db.sync("deals")
    assert run["status"] == "failed"
    assert str(status) in run["error"] or "api key" in run["error"].lower(), run["error"]
    assert len(fake.bulk_requests(key)) == run["requests"] == 1
    assert run["retries"] == 0 and run["possibly_partial"] is False
    assert run["elapsed"] < 5
    assert db.warnings(run)
    assert_holds_stale_only(fake, key)


@pytest.mark.parametrize("status", [307, 302])
def test_redirect_is_not_followed(db, fake, other_fake, status):
    """A redirect to another server (which would accept the push) is not followed: the run
    fails and the other server sees no request."""
    key = create_deals(db, fake)
    other_fake.define_table(key, fields={"amount": "number", "close_date": "date"})
    path = f"/v1/tables/{key}/records/bulk"
    fake.add_faults(bulk_fault(key, {"status": status,
                                     "headers": {"Location": f"{other_fake.base_url}{path}?all=true"}},
                               times=0))
    run = db.sync("deals")
    assert run["status"] == "failed"
    assert str(status) in run["error"] or "redirect" in run["error"].lower(), run["error"]
    assert other_fake.requests("/v1/") == []
    assert run["possibly_partial"] is False
    assert_holds_stale_only(fake, key)

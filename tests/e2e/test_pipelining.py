"""Several requests in flight against a far-away fake Qobra (latency per request): the first
chunk alone, then up to qobra_sync.max_in_flight at once; a 500, a reset and a 429 among them
are retried and the table lands whole; a 401 mid-flight stops everything; a hanging request is
timed out and retried; a cancel mid-flight is answered within a second."""

import time

import psycopg
import pytest

from helpers import (assert_same_records, bulk_fault, comparable, expected_records, parse_time,
                     sync_in_background, wait_for)

ROWS, BATCH = 1000, 100  # ten chunks


@pytest.fixture
def far(db, fake):
    """A registered deals table of ROWS rows in chunks of BATCH, the fake answering each
    request 300 ms after it arrived; the data table key."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    db.rows(f"INSERT INTO deals SELECT i, 'deal ' || i, i FROM generate_series(1, {ROWS}) i")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows(f"SET qobra_sync.batch_rows = {BATCH}")
    fake.settings(latency_ms=300)
    return key


def most_at_once(requests):
    """The most requests of the log that were in flight together (received, not yet answered)."""
    events = sorted([(parse_time(r["received_at"]), 1) for r in requests]
                    + [(parse_time(r["finished_at"]), -1) for r in requests])
    now = most = 0
    for _, step in events:  # at equal times an answer (-1) sorts first
        now += step
        most = max(most, now)
    return most


def holds_the_table(db, fake, key):
    """Qobra holds exactly the source table."""
    fake.flush()
    assert_same_records(comparable(db, "deals", fake.records(key)), expected_records(db, "deals"))


def accepted(fake, key):
    """The bulk requests the fake answered 200, oldest first."""
    return [r for r in fake.bulk_requests(key) if r["status"] == 200]


def test_after_the_first_chunk_requests_travel_together(db, fake, far):
    """The all=true chunk is answered before any other is sent; then up to max_in_flight (6)
    requests are in flight at once, never more; every request is counted once and the run
    names the import."""
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert (run["requests"], run["retries"], run["rows_sent"]) == (10, 0, ROWS)
    requests = fake.bulk_requests(key := far)
    assert [r["params"].get("all", "false") for r in requests] == ["true"] + ["false"] * 9
    first_answered = parse_time(requests[0]["finished_at"])
    assert all(parse_time(r["received_at"]) >= first_answered for r in requests[1:])
    assert most_at_once(requests) == 6
    assert len(run["import_ids"]) == 1
    holds_the_table(db, fake, key)


@pytest.mark.parametrize("in_flight", [1, 8])
def test_max_in_flight_bounds_the_requests_on_their_way(db, fake, far, in_flight):
    """max_in_flight = 1 sends one request at a time; 8 lets eight travel together."""
    db.rows(f"SET qobra_sync.max_in_flight = {in_flight}")
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert most_at_once(fake.bulk_requests(far)) == in_flight
    holds_the_table(db, fake, far)


def test_a_500_a_reset_and_a_429_among_requests_in_flight_are_retried(db, fake, far):
    """Requests 3, 4 and 5 (in flight together) fail with a 500, a connection reset and a
    429 with Retry-After: each is retried on its own, the run counts three retries and 13
    requests, and Qobra holds exactly the table."""
    fake.add_faults(bulk_fault(far, {"status": 500}, nth=3),
                    bulk_fault(far, {"reset": True}, nth=4),
                    bulk_fault(far, {"status": 429, "headers": {"Retry-After": "1"}}, nth=5))
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert (run["requests"], run["retries"], run["restarts"]) == (13, 3, 0), run
    assert len(accepted(fake, far)) == 10
    holds_the_table(db, fake, far)


def test_a_401_mid_flight_stops_everything_at_once(db, fake, far):
    """The key is refused on the third request while others travel: the run fails at once
    without another request, says the key was rejected, and Qobra may hold part of the table."""
    fake.add_faults(bulk_fault(far, {"status": 401}, nth=3, times=0))
    run = db.sync("deals")
    assert run["status"] == "failed"
    assert "401" in run["error"] and run["possibly_partial"] is True, run
    assert run["retries"] == 0 and run["restarts"] == 0
    assert len(fake.bulk_requests(far)) <= 2 + 6 + 1  # first, those in flight, one read ahead


def test_a_hanging_request_among_others_times_out_and_is_retried(db, fake, far):
    """Request 4 never gets an answer: at http_timeout_ms (2 s) it is retried while the others
    have landed; the table lands whole."""
    db.rows("SET qobra_sync.http_timeout_ms = 2000")
    fake.add_faults(bulk_fault(far, {"hang": True}, nth=4))
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert (run["requests"], run["retries"]) == (11, 1), run
    holds_the_table(db, fake, far)


@pytest.mark.parametrize("stop", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_stop_with_requests_in_flight_is_answered_within_a_second(db, fake, far, connect, stop):
    """Each answer takes 5 s; once several requests are in flight, a cancel (or the session's
    termination) ends the push within a second: the run is recorded interrupted, possibly
    partial."""
    other = connect()
    # Requests an earlier push dropped are still in flight at the fake until their 5 s are up.
    wait_for(lambda: fake.stats()["in_flight"] == 0, 10, what="the fake to have nothing in flight")
    fake.settings(latency_ms=5000)
    db.rows("SET qobra_sync.http_timeout_ms = 60000")
    pid = db.value("SELECT pg_backend_pid()")
    thread, outcome = sync_in_background(db, "deals")
    # This push's first chunk accepted (the progress view counts it), then several at once.
    wait_for(lambda: other.execute("SELECT chunks FROM qobra_sync.progress WHERE pid = %s",
                                           (pid,)).fetchone() not in (None, (0,)),
             20, what="the first chunk to be accepted")
    wait_for(lambda: fake.stats()["in_flight"] >= 3, 20, what="requests in flight together")
    stopped_at = time.monotonic()
    assert other.execute(f"SELECT {stop}(%s)", (pid,)).fetchone()[0]
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), psycopg.Error), outcome
    if stop == "pg_cancel_backend":
        assert isinstance(outcome["error"], psycopg.errors.QueryCanceled), outcome
    assert outcome["at"] - stopped_at < 1.0
    # The worker records the run; its own requests (import status polls) need not wait 5 s.
    fake.settings(latency_ms=0)

    def recorded():
        """The push's run, once it is no longer running."""
        row = other.execute("SELECT status, possibly_partial FROM qobra_sync.runs "
                            "WHERE source_name = %s ORDER BY run_id DESC LIMIT 1",
                            (f"{db.schema}.deals",)).fetchone()
        return row if row and row[0] != "running" else None
    assert wait_for(recorded, 20, what="the run to be recorded") == ("interrupted", True)

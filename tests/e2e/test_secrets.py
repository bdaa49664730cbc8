"""The API key: sent to Qobra on every request, and found nowhere else."""

from helpers import bulk_fault


def test_api_key_is_in_no_log_run_error_or_message(cluster, db, fake):
    """After a push with a rejected row, a failed push and a refused push, all with the session
    logging at DEBUG1, the key is in no server log line, runs row, run_errors entry or message."""
    secret = fake.api_key.split("_")[-1]  # the random part, in case a prefix is cut off
    db.rows("SET log_min_messages = debug1")
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount float8)")
    db.rows("INSERT INTO deals VALUES (1, 'a', 1.5), (2, 'b', 'NaN'), (3, 'c', 3)")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows("SET qobra_sync.skip_unchanged = off")
    db.rows("SET qobra_sync.max_retries = 0")

    runs = [db.sync("deals")]
    assert runs[0]["status"] == "succeeded" and runs[0]["rows_rejected"] == 1
    assert all(p["api_key_valid"] for p in fake.bulk_requests(key))
    for status in (500, 401):
        fake.clear_faults()
        fake.add_faults(bulk_fault(key, {"status": status}, times=0))
        runs.append(db.sync("deals"))
        assert runs[-1]["status"] == "failed"

    messages = [" ".join(filter(None, (n.message_primary, n.message_detail, n.message_hint,
                                       n.context))) for run in runs for n in run["notices"]]
    assert messages, "the failed runs raised no WARNING"
    tables = {
        "runs": "SELECT r::text FROM qobra_sync.runs r",
        "run_errors": "SELECT e::text FROM qobra_sync.run_errors e",
        "tables": "SELECT t::text FROM qobra_sync.tables t",
        "destination_status": "SELECT d::text FROM qobra_sync.destination_status d",
    }
    for name, query in tables.items():
        for (text,) in db.conn.execute(query).fetchall():
            assert secret not in text, f"the API key is in {name}: {text}"
    for message in messages:
        assert secret not in message, f"the API key is in a message: {message}"
    log = cluster.server_log.read_text(errors="replace")
    warnings = [w for run in runs for w in db.warnings(run)]
    assert any(w in log for w in warnings), "the server log lacks the runs' WARNINGs"
    leaks = [line for line in log.splitlines() if secret in line]
    assert not leaks, f"the API key is in the server log: {leaks[:3]}"

"""The API key: sent to Qobra on every request, and found nowhere else: not in the server log,
runs, run_errors or messages, in whatever form a server echoes it; and kept out of SQL with
qobra_sync.api_key_file."""

import base64
import json
import shutil
import urllib.parse

import psycopg
import pytest

from helpers import WORK, bulk_fault, wait_for


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


def key_forms(key):
    """The API key as a server might echo it: upper-cased, URL-encoded, inside base64."""
    return {
        "upper": key.upper(),
        "url": urllib.parse.quote(key, safe=""),
        "url-every-byte": "".join(f"%{b:02x}" for b in key.encode()),
        "base64": base64.b64encode(f"user:{key}".encode()).decode(),
        "base64-url": base64.urlsafe_b64encode(f"u{key}".encode()).decode(),
    }


def leaks(text, key):
    """The forms of `key` found in `text` (none once redacted)."""
    secret = key.split("_")[-1]
    found = [name for name, form in key_forms(key).items() if form in text]
    if secret.lower() in text.lower():
        found.append("raw")
    return found


def one_deal(db, fake):
    """A registered table of one deal, its data table defined in the fake; pushes are never
    skipped as unchanged. Returns the data table key."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.rows("INSERT INTO deals VALUES (1, 'a')")
    key = db.register("deals")
    db.define_in_fake(fake, "deals")
    db.rows("SET qobra_sync.skip_unchanged = off")
    return key


def test_echoes_of_the_key_in_other_forms_are_redacted(db, fake):
    """Qobra answering with the key upper-cased, URL-encoded (in a body and in a redirect's
    Location) or base64-encoded: runs.error and the WARNINGs hold none of these forms."""
    key = one_deal(db, fake)
    db.rows("SET qobra_sync.max_retries = 0")
    forms = key_forms(fake.api_key)
    faults = [{"status": 500, "body": f"your key {forms['upper']} is over quota"},
              {"status": 400, "body": f'{{"detail": "bad key {forms["url"]}"}}'},
              {"status": 400, "body": f"Authorization: Basic {forms['base64']} refused"},
              {"status": 400, "body": f"token={forms['base64-url']}&k={forms['url-every-byte']}"},
              {"status": 302, "headers": {"Location": f"https://evil.example/k/{forms['url']}?k={forms['upper']}"}}]
    for action in faults:
        fake.clear_faults()
        fake.add_faults(bulk_fault(key, action, times=0))
        run = db.sync("deals")
        assert run["status"] == "failed"
        assert "[redacted]" in run["error"], run["error"]
        assert leaks(run["error"], fake.api_key) == [], (action, run["error"])
        for warning in db.warnings(run):
            assert leaks(warning, fake.api_key) == [], warning


def test_qobra_parsing_errors_quoting_the_key_are_redacted(db, fake):
    """A value Qobra cannot parse that happens to be the key in another case: run_errors keeps
    the row and the details, with the key redacted."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount text)")
    db.rows("INSERT INTO deals VALUES (1, 'a', %s), (2, 'b', '12')", (fake.api_key.upper(),))
    key = db.register("deals")
    fake.define_table(key, fields={"amount": "number"})
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    assert db.value("SELECT qobra_sync.poll_imports()") >= 1
    errors = db.run_errors(run["run_id"])
    assert [e["origin"] for e in errors] == ["import"], errors
    text = f"{errors[0]['row']} {errors[0]['details']}"
    assert "[redacted]" in text and leaks(text, fake.api_key) == [], text


def test_api_key_file_keeps_the_key_out_of_sql(cluster, db, fake, system):
    """With qobra_sync.api_key_file, set_destination(NULL, url) and pushes work from the file;
    destination_status says where the key comes from; a file others can read, or a rotated
    wrong key, fail clearly; the key is read again at each push."""
    path = WORK / "qobra-key"
    path.write_text(fake.api_key + "\n")
    shutil.chown(path, "postgres")
    path.chmod(0o600)
    key = one_deal(db, fake)
    try:
        system.set("qobra_sync.api_key_file", str(path))
        wait_for(lambda: db.value("SHOW qobra_sync.api_key_file") == str(path), what="the reload")
        db.rows("SELECT qobra_sync.set_destination(NULL, %s)", (fake.base_url,))
        status = db.one("SELECT * FROM qobra_sync.destination_status")
        assert (status["api_key_set"], status["key_source"]) == (False, "api_key_file")
        run = db.sync("deals")
        assert run["status"] == "succeeded", run["error"]
        assert all(r["api_key_valid"] for r in fake.bulk_requests(key))

        path.chmod(0o644)
        with pytest.raises(psycopg.errors.ConfigFileError, match="group or world access"):
            db.sync("deals")
        path.chmod(0o600)
        path.write_text("qk_rotated_but_wrong_0000")
        run = db.sync("deals")
        assert run["status"] == "failed" and "API key" in run["error"], run["error"]
    finally:
        system.reset()
        wait_for(lambda: db.value("SHOW qobra_sync.api_key_file") == "", what="the reset")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    log = cluster.server_log.read_text(errors="replace")
    assert fake.api_key.split("_")[-1] not in log


def test_a_key_file_set_but_not_yet_reloaded_is_enough_for_set_destination(cluster, db, fake):
    """`ALTER SYSTEM SET qobra_sync.api_key_file …; SELECT pg_reload_conf(); SELECT
    set_destination(api_key => NULL)` pasted at once: the reload may not have reached the
    session yet. set_destination() takes the file the configuration names (here, with no reload
    at all); with no key and no file anywhere it still refuses."""
    try:
        db.rows("ALTER SYSTEM SET qobra_sync.api_key_file = '/nonexistent/qobra.key'")
        assert db.value("SHOW qobra_sync.api_key_file") == ""
        db.rows("SELECT qobra_sync.set_destination(api_key => NULL, base_url => %s)", (fake.base_url,))
        db.rows("ALTER SYSTEM RESET qobra_sync.api_key_file")
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="api_key"):
            db.rows("SELECT qobra_sync.set_destination(api_key => NULL, base_url => %s)", (fake.base_url,))
    finally:
        db.rows("ALTER SYSTEM RESET qobra_sync.api_key_file")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))


def test_a_prepared_statement_executed_with_the_key_keeps_it_out_of_the_log(cluster, db, fake):
    """PREPARE p AS SELECT qobra_sync.set_destination($1, $2), then EXECUTE p('<key>', …),
    EXPLAIN ANALYZE EXECUTE, and an EXECUTE that fails: every statement logged, yet the key is in
    no line of the server log (the EXECUTE names no secret function; the statement it runs does)."""
    secret = "qk_e2e_prepared_" + "M3n4B5v6C7x8"
    db.rows("SET log_statement = 'all'")
    db.rows("SET log_min_duration_statement = 0")
    try:
        db.rows("PREPARE set_key(text, text) AS SELECT qobra_sync.set_destination($1, $2)")
        db.rows(f"EXECUTE set_key('{secret}', '{fake.base_url}')")
        db.rows(f"EXPLAIN ANALYZE EXECUTE SET_KEY('{secret}', '{fake.base_url}')")
        with pytest.raises(psycopg.Error):
            db.rows(f"EXECUTE set_key('{secret}', 'ftp://nowhere')")
        with pytest.raises(psycopg.Error):
            db.rows(f"EXECUTE set_key('{secret}', '{fake.base_url}'), 1 / 0")
        db.rows("DEALLOCATE set_key")
    finally:
        db.rows("RESET log_statement")
        db.rows("RESET log_min_duration_statement")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    log = cluster.server_log.read_text(errors="replace")
    assert "statement: DEALLOCATE set_key" in log  # statements are logged: this one holds no secret
    lines = [line for line in log.splitlines() if "m3n4b5v6c7x8" in line.lower()]
    assert not lines, lines[:3]
    assert "statement not logged: it passes a secret" in log


def test_statements_passing_secrets_never_reach_the_log(cluster, db, fake):
    """Every statement logged (log_statement, durations), parameters sent apart (the extended
    protocol, whose parameters PostgreSQL logs too), and errors before the function runs: the key
    and a private key are in no line of the server log, in any case; the filter's note is."""
    secret = "qk_e2e_logged_" + "Z9y8X7w6V5u4"
    private = "PRIVATE_e2e_Q1w2E3r4"
    account = json.dumps({"type": "service_account", "project_id": "p",
                          "client_email": "ana@p.iam.gserviceaccount.com", "private_key": private})
    db.rows("SET log_statement = 'all'")
    db.rows("SET log_min_duration_statement = 0")
    db.rows("SET log_parameter_max_length = -1")
    db.rows("SET log_parameter_max_length_on_error = -1")
    try:
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (secret, fake.base_url))
        db.rows("SELECT qobra_sync.reader_from_service_account(%s::jsonb)", (account,))
        for bad in ["SELECT qobra_sync.set_destination(%s::int)",
                    "SELECT qobra_sync.set_destination(%s, 'ftp://x'), 1 / 0",
                    "SELECT qobra_sync.reader_from_service_account(%s::jsonb, 1)"]:
            with pytest.raises(psycopg.Error):
                db.rows(bad, (secret if "set_destination" in bad else account,))
    finally:
        for setting in ["log_statement", "log_min_duration_statement", "log_parameter_max_length",
                        "log_parameter_max_length_on_error"]:
            db.rows(f"RESET {setting}")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    log = cluster.server_log.read_text(errors="replace")
    for value in (secret, private):
        lines = [line for line in log.splitlines() if value.split("_")[-1].lower() in line.lower()]
        assert not lines, lines[:3]
    assert "statement not logged: it passes a secret" in log

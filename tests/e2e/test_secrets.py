"""The API key: sent to Qobra on every request, and found nowhere else: not in the server log,
runs, run_errors or messages, in whatever form a server echoes it; and kept out of SQL with
qobra_sync.api_key_file."""

import base64
import json
import shutil
import urllib.parse

import psycopg
import pytest

from conftest import preloaded_cluster
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


def log_lines_with(cluster, value):
    """The server log's lines that hold `value` (its last part, in any case)."""
    needle = value.split("_")[-1].lower()
    return [line for line in cluster.server_log.read_text(errors="replace").splitlines() if needle in line.lower()]


def test_a_key_in_a_do_block_or_a_wrapper_function_is_refused_and_logged_nowhere(cluster, db, fake):
    """A DO block, and a function wrapping set_destination, pass a key: both are refused (their
    text would keep it where no filter reaches, pg_proc or pg_stat_statements), and the server
    log has neither the key nor the QUERY: line of the error."""
    secret = "qk_e2e_nested_" + "P0o9I8u7Y6t5"
    db.rows("SET log_statement = 'all'")
    try:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="statement that calls it itself"):
            db.rows(f"DO $$BEGIN PERFORM qobra_sync.set_destination('{secret}', '{fake.base_url}'); END$$")
        db.rows("CREATE FUNCTION wrap_key(k text) RETURNS void LANGUAGE sql "
                "AS $$SELECT qobra_sync.set_destination(k, 'http://127.0.0.1:9')$$")
    finally:
        db.rows("RESET log_statement")
    # (A statement that names no secret function is logged by log_statement before anything
    # runs: the README says so. Its error's lines are not.)
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        db.rows(f"SELECT wrap_key('{secret}')")
    assert db.value("SELECT base_url FROM qobra_sync.destination_status") == fake.base_url
    assert log_lines_with(cluster, secret) == [], log_lines_with(cluster, secret)[:3]


def test_execute_then_deallocate_in_one_query_string_keeps_the_key_out(cluster, db, fake):
    """`EXECUTE p('<key>'); DEALLOCATE p` sent as one query string: when its duration is logged,
    the prepared statement is gone, yet the query string is known to have passed a secret."""
    secret = "qk_e2e_dealloc_" + "L1k2J3h4G5f6"
    db.rows("SET log_min_duration_statement = 0")
    try:
        db.rows("PREPARE p_key(text, text) AS SELECT qobra_sync.set_destination($1, $2)")
        db.conn.execute(f"EXECUTE p_key('{secret}', '{fake.base_url}'); DEALLOCATE p_key")
    finally:
        db.rows("RESET log_min_duration_statement")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    assert log_lines_with(cluster, secret) == [], log_lines_with(cluster, secret)[:3]


def test_a_comment_naming_the_function_hides_nothing_from_the_audit(cluster, db):
    """log_statement = 'all' is an audit trail: a statement that only mentions set_destination
    (in a comment, a string, as an alias) is logged like any other."""
    marker = "audit_" + "Q7w8E9r0"
    db.rows("SET log_statement = 'all'")
    try:
        db.rows(f"SELECT '{marker}' AS a /* qobra_sync.set_destination */")
        db.rows(f"SELECT 'set_destination(' AS b, '{marker}_2' -- reader_from_service_account")
        db.rows(f"SELECT 1 AS set_destination, '{marker}_3' AS c")
    finally:
        db.rows("RESET log_statement")
    log = cluster.server_log.read_text(errors="replace")
    assert f"statement: SELECT '{marker}' AS a" in log
    assert f"{marker}_2" in log
    assert f"statement: SELECT 1 AS set_destination, '{marker}_3' AS c" in log


def test_monitoring_roles_do_not_read_the_key_in_pg_stat_activity(cluster, db, fake, connect):
    """A session that set the key and went idle: pg_stat_activity (as a pg_monitor member reads
    it) shows a note in place of its last statement."""
    secret = "qk_e2e_activity_" + "M9n8B7v6C5x4"
    setter = connect()
    pid = setter.execute("SELECT pg_backend_pid()").fetchone()[0]
    setter.execute(f"SELECT qobra_sync.set_destination('{secret}', '{fake.base_url}')")
    try:
        db.rows("SELECT pg_stat_clear_snapshot()")
        query = db.value("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
        assert secret not in query and "passes a secret to qobra_sync" in query, query
    finally:
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))


def test_pg_stat_statements_keeps_no_key(fake):
    """With pg_stat_statements loaded: a plain call keeps its constants out (PostgreSQL replaces
    them), a DO block is refused before it could be recorded, a prepared statement's EXECUTE is
    not recorded: no entry holds the key."""
    cluster = preloaded_cluster("e2e-pgss-cluster", "shared_preload_libraries = 'qobra_sync, pg_stat_statements'")
    secret = "qk_e2e_pgss_" + "R4t5Y6u7I8o9"
    try:
        with cluster.connect() as conn:
            conn.execute("CREATE EXTENSION qobra_sync")
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute(f"SELECT qobra_sync.set_destination('{secret}', '{fake.base_url}')")
            with pytest.raises(psycopg.errors.FeatureNotSupported):
                conn.execute(f"DO $$BEGIN PERFORM qobra_sync.set_destination('{secret}'); END$$")
            conn.execute("PREPARE p(text) AS SELECT qobra_sync.set_destination($1, 'http://127.0.0.1:9')")
            conn.execute(f"EXECUTE p('{secret}')")
            recorded = [q for (q,) in conn.execute("SELECT query FROM pg_stat_statements").fetchall()]
            assert any("set_destination" in q for q in recorded), recorded
            assert [q for q in recorded if secret in q] == []
    finally:
        cluster.stop()


def test_a_function_of_ones_own_named_set_destination_hides_nothing(cluster, db, fake):
    """A function of one's own named set_destination, and the statements sent with it in one
    query string: log_statement's line is hidden before PostgreSQL resolves any name, then, once
    each statement is analysed, every one that does not really call qobra_sync's is logged — and
    the one that does, with its key, is not."""
    marker = "own_fn_" + "U1i2O3p4"
    secret = "qk_e2e_ownfn_" + "Z0x9C8v7B6n5"
    db.rows("CREATE FUNCTION set_destination() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    db.rows("SET log_statement = 'all'")
    try:
        db.conn.execute(f"SELECT set_destination(); SELECT '{marker}' AS audit")
        db.conn.execute(f"SELECT qobra_sync.set_destination('{secret}', '{fake.base_url}'); "
                        f"SELECT '{marker}_2' AS audit")
    finally:
        db.rows("RESET log_statement")
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    log = cluster.server_log.read_text(errors="replace")
    assert "statement: SELECT set_destination()" in log
    assert f"statement: SELECT '{marker}' AS audit" in log
    assert f"statement: SELECT '{marker}_2' AS audit" in log
    assert log_lines_with(cluster, secret) == [], log_lines_with(cluster, secret)[:3]

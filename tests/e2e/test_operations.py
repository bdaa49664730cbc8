"""Watching qobra_sync like a service: a NOTIFY on channel qobra_sync when a run's end commits
(sessions, the worker, runs recorded after a rollback), one key=value LOG line per finished
run, status.stale and status.consecutive_failures, and the metrics view as postgres_exporter
reads it (docs/postgres_exporter.yaml)."""

import json
import math
import os
import re
import subprocess
import time
import urllib.request

import yaml

from helpers import DBNAME, ROOT, bulk_fault, free_port, stop_process, wait_for
from worker_helpers import create_deals, wait_runs

EXPORTER_QUERIES = ROOT / "docs/postgres_exporter.yaml"
# Debian's prometheus-postgres-exporter, which scripts/e2e.sh installs.
EXPORTER = "/usr/bin/prometheus-postgres-exporter"


def notifications(conn, count, timeout=10.0):
    """The next `count` payloads of runs' ends on channel qobra_sync (as dicts); those of
    settled imports (which carry an import_status) are passed over."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (left := deadline - time.monotonic()) > 0:
        for n in conn.notifies(timeout=left, stop_after=1):
            told = json.loads(n.payload)
            if n.channel == "qobra_sync" and "status" in told:
                got.append(told)
    assert len(got) == count, f"{len(got)} notification(s) of {count}: {got}"
    return got


def run_log_lines(cluster, run_id):
    """The server log's `run ended` lines of run `run_id`."""
    text = cluster.server_log.read_text(errors="replace")
    return re.findall(rf"qobra_sync run ended: run_id={run_id} .*", text)


def test_every_run_end_is_notified_at_commit_and_logged_once(cluster, db, fake, connect):
    """A session's push notifies when its transaction commits, not before; a rolled-back one
    is notified by the worker that records it; a worker's run too. Each payload carries the
    run's id and status, the rest is read from runs; each run has exactly one LOG line, in key=value form, without the key."""
    listener = connect()
    listener.execute("LISTEN qobra_sync")
    key = create_deals(db, fake)

    run = db.sync("deals")
    [n] = notifications(listener, 1)
    assert n == {"run_id": run["run_id"], "status": "succeeded"}

    # In an open transaction nothing is told; after ROLLBACK, the worker tells (and logs) it.
    session = connect()
    session.execute(f"SET search_path = {db.schema}")
    session.autocommit = False
    rolled_back = session.execute("SELECT qobra_sync.sync_now('deals', force => true)").fetchone()[0]
    early = [n.payload for n in listener.notifies(timeout=1) if "status" in json.loads(n.payload)]
    assert early == [], "told before the commit"
    session.rollback()
    [n] = notifications(listener, 1)
    assert (n["run_id"], n["status"]) == (rolled_back, "succeeded")

    # A blocked run of the worker, after request_sync().
    db.rows("INSERT INTO deals VALUES (11, NULL, 1), (12, NULL, 2)")
    db.rows("ALTER TABLE deals DROP CONSTRAINT deals_pkey; INSERT INTO deals VALUES (1, 'again', 3)")
    db.rows("SELECT qobra_sync.request_sync('deals')")
    [n] = notifications(listener, 1, timeout=20)
    assert n["status"] == "blocked", n
    told = db.one("SELECT trigger, error FROM qobra_sync.runs WHERE run_id = %s", (n["run_id"],))
    assert told["trigger"] == "request" and "more than once" in told["error"], told

    for run_id in (run["run_id"], rolled_back, n["run_id"]):
        lines = wait_for(lambda: run_log_lines(cluster, run_id), what=f"run {run_id}'s log line")
        assert len(lines) == 1, lines
    line = run_log_lines(cluster, n["run_id"])[0]
    assert re.match(rf"qobra_sync run ended: run_id=\d+ source={db.schema}\.deals data_table_key={re.escape(key)} "
                    r"trigger=request status=blocked rows_sent=0 rows_rejected=0 duration_ms=\d+ "
                    r"requests=0 retries=0 possibly_partial=false error=\".*more than once.*\"$", line), line
    assert fake.api_key not in cluster.server_log.read_text(errors="replace")


def test_status_tells_stale_registrations_and_consecutive_failures(db, fake):
    """Three failed runs in a row make a registration stale; a success clears both; a schedule
    that fired twice since the last success (or since registering) makes it stale too, unless
    it is paused."""
    key = create_deals(db, fake)
    status = lambda: db.one("SELECT stale, consecutive_failures FROM qobra_sync.status")  # noqa: E731
    assert status() == {"stale": False, "consecutive_failures": 0}
    fake.add_faults(bulk_fault(key, {"status": 400}, times=3))
    for failures in (1, 2, 3):
        assert db.sync("deals", force=True)["status"] == "failed"
        assert status() == {"stale": failures == 3, "consecutive_failures": failures}
    assert db.sync("deals", force=True)["status"] == "succeeded"
    assert status() == {"stale": False, "consecutive_failures": 0}
    assert db.sync("deals")["status"] == "skipped"
    assert status() == {"stale": False, "consecutive_failures": 0}

    # Every hour, and Qobra last held the snapshot three hours ago (kept in the registration's
    # baseline): two scheduled runs came and went.
    db.rows("SELECT qobra_sync.alter_table('deals', schedule => '1 hour')")
    db.rows("UPDATE qobra_sync.baselines SET alive_at = alive_at - interval '3 hours'")
    assert status()["stale"] is True
    db.rows("SELECT qobra_sync.pause('deals')")
    assert status()["stale"] is False, "a paused registration is not stale"
    db.rows("SELECT qobra_sync.resume('deals')")
    # Never pushed: registered 90 minutes ago, then 150.
    db.rows("DELETE FROM qobra_sync.runs; DELETE FROM qobra_sync.baselines")
    db.rows("UPDATE qobra_sync.registrations SET created_at = now() - interval '90 minutes'")
    assert status()["stale"] is False, "only one scheduled run since registering"
    db.rows("UPDATE qobra_sync.registrations SET created_at = now() - interval '150 minutes'")
    assert status()["stale"] is True


def told_until(conn, wanted, timeout=20.0):
    """Reads notifications on channel qobra_sync until one equals `wanted`; fails after
    `timeout` seconds without it."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for n in conn.notifies(timeout=left, stop_after=1):
            if n.channel == "qobra_sync" and json.loads(n.payload) == wanted:
                return
    raise AssertionError(f"no notification {wanted}")


def import_log_lines(cluster, run_id):
    """The server log's `import settled` lines of run `run_id`."""
    text = cluster.server_log.read_text(errors="replace")
    return re.findall(rf"qobra_sync import settled: run_id={run_id} .*", text)


def test_status_says_why_and_imports_qobra_failed_are_told(cluster, db, fake, connect):
    """One query answers "why": status shows the last run's rejected rows and possibly_partial,
    the last failure even after a success, and the outcome of the last imports with the errors
    they left. An import Qobra failed is told like a run's end (a NOTIFY, one LOG line) and
    counted by metrics; imports still not over two days after their push settle as unknown."""
    listener = connect()
    listener.execute("LISTEN qobra_sync")
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, stage text, score float8)")
    db.rows("INSERT INTO deals VALUES (1, 'a', '12', 1), (2, 'b', 'won', 2), (3, 'c', NULL, 'NaN'), (4, 'd', 'lost', 4)")
    key = db.register("deals")
    fake.define_table(key, fields={"stage": "number", "score": "number"})
    fake.add_faults(bulk_fault(key, {"status": 400}))
    failed = db.sync("deals")
    assert failed["status"] == "failed" and "400" in failed["error"], failed
    pushed = db.sync("deals")
    assert (pushed["status"], pushed["rows_rejected"]) == ("succeeded", 1), pushed
    fake.flush()
    db.rows("SELECT qobra_sync.poll_imports()")  # the worker may have settled it first
    told_until(listener, {"run_id": pushed["run_id"], "import_status": "failed"})
    [line] = wait_for(lambda: import_log_lines(cluster, pushed["run_id"]), what="the import's log line")
    assert line.endswith("import_status=failed import_errors=2"), line
    assert f"data_table_key={key}" in line

    why = db.one("SELECT * FROM qobra_sync.status WHERE source = 'deals'::regclass")
    assert (why["last_run_id"], why["last_status"], why["last_error"]) == (pushed["run_id"], "succeeded", None)
    assert (why["last_rows_rejected"], why["last_possibly_partial"]) == (1, False)
    assert why["last_failure_at"] == failed["finished_at"] and why["last_failure"] == failed["error"]
    assert (why["last_import_run_id"], why["last_import_status"], why["last_import_errors"]) == \
        (pushed["run_id"], "failed", 2)
    metrics = db.one("SELECT imports_failed_total, imports_unknown_total FROM qobra_sync.metrics")
    assert metrics == {"imports_failed_total": 1, "imports_unknown_total": 0}

    # Qobra never says how the next imports end; two days later they settle as unknown.
    fake.add_faults({"path_prefix": "/v1/imports/", "method": "GET", "nth": 1, "times": 1000,
                     "action": {"status": 503}})
    db.rows("INSERT INTO deals VALUES (5, 'e', '5', 5)")
    late = db.sync("deals")
    assert late["import_status"] == "pending", late
    db.rows("UPDATE qobra_sync.runs SET started_at = started_at - interval '2 days 1 minute' WHERE run_id = %s",
            (late["run_id"],))
    db.rows("SELECT qobra_sync.poll_imports()")
    told_until(listener, {"run_id": late["run_id"], "import_status": "unknown"})
    [error] = [e for e in db.run_errors(late["run_id"]) if e["origin"] == "import"]
    assert "2 days" in error["details"] and error["line_number"] is None, error
    why = db.one("SELECT * FROM qobra_sync.status WHERE source = 'deals'::regclass")
    assert (why["last_import_run_id"], why["last_import_status"], why["last_import_errors"]) == \
        (late["run_id"], "unknown", 1)
    assert db.value("SELECT imports_unknown_total FROM qobra_sync.metrics") == 1


def test_metrics_read_by_the_exporter_queries(db, fake, wdb):
    """The query of docs/postgres_exporter.yaml runs as it is; it returns every column the file
    declares, with counters matching the run history and gauges in seconds."""
    config = yaml.safe_load(EXPORTER_QUERIES.read_text())["qobra_sync"]
    declared = [next(iter(m)) for m in config["metrics"]]
    key = create_deals(db, fake, schedule="1 hour")
    rows = db.rows(config["query"])
    assert len(rows) == 1 and list(rows[0]) == declared
    fresh = rows[0]
    assert (fresh["runs_succeeded_total"], fresh["rows_sent_total"]) == (0, 0)
    assert math.isnan(fresh["seconds_since_last_success"]) and math.isnan(fresh["last_run_duration_seconds"])
    assert 3500 < fresh["next_run_in_seconds"] <= 3600

    db.sync("deals")
    db.sync("deals")
    fake.add_faults(bulk_fault(key, {"status": 400}))
    db.sync("deals", force=True)
    [m] = db.rows(config["query"])
    mine = "FROM qobra_sync.runs WHERE source = 'deals'::regclass"
    counts = {r["status"]: r["n"] for r in db.rows(f"SELECT status, count(*) AS n {mine} GROUP BY 1")}
    assert counts == {"succeeded": 1, "skipped": 1, "failed": 1}
    assert (m["runs_succeeded_total"], m["runs_skipped_total"], m["runs_failed_total"],
            m["runs_blocked_total"], m["runs_interrupted_total"]) == (1, 1, 1, 0, 0)
    assert m["rows_sent_total"] == db.value(f"SELECT sum(rows_sent) {mine}")
    assert m["bytes_sent_total"] == db.value(f"SELECT sum(bytes_sent) {mine}") > 0
    assert 0 <= m["seconds_since_last_success"] < 60 and 0 <= m["last_run_duration_seconds"] < 60
    assert (m["consecutive_failures"], m["stale"], m["paused"], m["running"]) == (1, 0, 0, 0)
    assert m["source"] == f"{db.schema}.deals" and m["data_table_key"] == key


def test_a_real_postgres_exporter_scrapes_every_registration_as_a_monitor(cluster, db, fake):
    """Debian's prometheus-postgres-exporter with docs/postgres_exporter.yaml, logged in as a
    member of pg_monitor (no superuser, no grant on qobra_sync): one series per registration,
    whoever owns it, with the counters of the run history."""
    db.rows("DROP ROLE IF EXISTS t_exporter, t_other_owner")
    db.rows("CREATE ROLE t_exporter LOGIN IN ROLE pg_monitor")
    db.rows("CREATE ROLE t_other_owner IN ROLE qobra_sync_operator, qobra_reader")
    port = free_port()
    exporter = None
    try:
        key = create_deals(db, fake)
        assert db.sync("deals")["status"] == "succeeded"
        db.rows("CREATE TABLE others (id int PRIMARY KEY, name text)")
        db.rows("GRANT SELECT ON others TO qobra_reader")
        db.rows(f"GRANT USAGE ON SCHEMA {db.schema} TO t_other_owner")
        db.rows("SET ROLE t_other_owner")
        db.rows("SELECT qobra_sync.register_table('others', 'others_of_another_owner', 'id', 'name', "
                "run_as => 'qobra_reader', schedule => '0 0 29 2 *')")
        db.rows("RESET ROLE")
        env = {**os.environ, "DATA_SOURCE_NAME": f"host={cluster.dir} port={cluster.port} user=t_exporter "
                                                  f"dbname={DBNAME} sslmode=disable"}
        exporter = subprocess.Popen(
            [EXPORTER, f"--extend.query-path={EXPORTER_QUERIES}", f"--web.listen-address=127.0.0.1:{port}",
             "--disable-default-metrics", "--disable-settings-metrics"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def scrape():
            """The qobra_sync series the exporter serves, by (metric, data_table_key)."""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    text = answer.read().decode()
            except OSError:
                return None
            series = {}
            for name, labels, value in re.findall(r"^(qobra_sync_\w+)\{([^}]*)\} (\S+)$", text, re.M):
                table = re.search(r'data_table_key="([^"]*)"', labels).group(1)
                series[(name, table)] = float(value)
            return series or None

        series = wait_for(scrape, 20, interval=0.2, what="the exporter to serve qobra_sync's series")
        assert series[("qobra_sync_runs_succeeded_total", key)] == 1, series
        assert series[("qobra_sync_rows_sent_total", key)] == 10, series
        assert series[("qobra_sync_runs_succeeded_total", "others_of_another_owner")] == 0, series
        assert series[("qobra_sync_paused", "others_of_another_owner")] == 0, series
        names = {name for name, _ in series}
        declared = yaml.safe_load(EXPORTER_QUERIES.read_text())["qobra_sync"]["metrics"]
        assert len(names) == len(declared) - 2, names  # every column but the two labels
    finally:
        if exporter:
            stop_process(exporter)
        db.rows("RESET ROLE")
        db.rows("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        db.rows("DROP OWNED BY t_exporter, t_other_owner")
        db.rows("DROP ROLE t_exporter, t_other_owner")

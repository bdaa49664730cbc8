"""Helpers of the end-to-end tests: the fake Qobra's control API, a database session with
qobra_sync shortcuts, and the expected records computed from a source table in Python."""

import datetime as dt
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import threading
import time
from types import SimpleNamespace
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]
# Each pytest-xdist worker keeps its clusters, fakes and files apart, in a directory of its own.
WORK = Path(os.environ.get("QS_TEST_DIR", "/tmp/qobra_sync-test")) / os.environ.get("PYTEST_XDIST_WORKER", "main")
WORK.mkdir(parents=True, exist_ok=True)
FAKE_BIN = Path(os.environ.get("QS_FAKE_QOBRA", ROOT / "fake_qobra/target/release/fake-qobra"))
DBNAME = "qobra_e2e"
READER = "qobra_reader"
# A schedule that never comes due during a test run: only the tests' own pushes reach the fake.
QUIET_SCHEDULE = "0 0 29 2 *"
UTC_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sync_in_background(db, table):
    """Starts sync_now(table) on a thread of its own; returns the thread and a dict that gets
    how it ended: the run ("run") or the psycopg error ("error"), and when ("at", monotonic)."""
    outcome = {}

    def push():
        """Runs sync_now, keeping how it ended."""
        try:
            outcome["run"] = db.sync(table)
        except psycopg.Error as e:
            outcome["error"] = e
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=push)
    thread.start()
    return thread, outcome


MIB = 1024 * 1024


def stop_process(proc):
    """Stops a child process: SIGTERM, then SIGKILL after 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def parse_time(text):
    """An RFC 3339 time of the fake's request log."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def rss_anon_kib(pid):
    """The anonymous resident memory of a process, in KiB (from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError(f"no RssAnon for pid {pid}")


class PeakMemory:
    """Samples a process's RssAnon (KiB) every 10 ms on a thread: `start` when made, `peak` the
    largest seen."""

    def __init__(self, pid):
        self.pid, self.samples = pid, 0
        self.start = self.peak = rss_anon_kib(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample)

    def _sample(self):
        """Runs until `stop()`."""
        while not self.done.wait(0.01):
            self.peak = max(self.peak, rss_anon_kib(self.pid))
            self.samples += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loads(text):
    """Parses JSON keeping every number exact, as a Decimal."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def dumps(value):
    """Writes JSON, Decimals as exact numbers."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


# --------------------------------------------------------------------------- the fake Qobra


class FakeQobra:
    """A running `fake-qobra` process and its control API (`/_fake/...`)."""

    def __init__(self, workdir, name, tls=None, args=()):
        """Starts the fake; `tls` = (certificate file, key file) serves HTTPS, `args` are more
        flags (`--latency-ms`, `--max-body-bytes`)."""
        self.api_key = "qk_e2e_" + secrets.token_hex(16)
        port_file = Path(workdir) / f"{name}.port"
        port_file.unlink(missing_ok=True)
        self.log = open(Path(workdir) / f"{name}.log", "wb")
        tls_args = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
        self.proc = subprocess.Popen(
            [str(FAKE_BIN), "--listen", "127.0.0.1:0", "--api-key", self.api_key,
             "--port-file", str(port_file), *tls_args, *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        port = wait_for(lambda: port_file.exists() and port_file.read_text().strip(),
                        what=f"{name} to listen")
        self.port = int(port)
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        # The harness's own control calls do not check the certificate: what the extension
        # accepts is what the tests are about.
        self.ssl = ssl._create_unverified_context() if tls else None

    def stop(self):
        """Stops the process."""
        stop_process(self.proc)
        self.log.close()

    def call(self, method, path, body=None, query=None, headers=None, raw=False):
        """One HTTP request to the fake; returns (status, body parsed as JSON unless `raw`)."""
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        return status, (text if raw else loads(text) if text else None)

    def control(self, method, path, body=None, query=None):
        """A control-API call that must succeed; returns its JSON answer."""
        status, doc = self.call(method, "/_fake" + path, body, query)
        assert status == 200, f"{method} /_fake{path}: {status} {doc}"
        return doc

    def reset(self):
        """Forgets all tables, imports, requests and faults."""
        self.control("POST", "/reset")

    def define_table(self, key, id_field="id", name_field="name", fields=None, user_key="email"):
        """Defines (or redefines, emptying) a data table from a JSON definition."""
        return self.control("PUT", f"/tables/{key}", {
            "id_field": id_field, "name_field": name_field, "user_key": user_key,
            "fields": fields or {}})

    def define_table_from_csv(self, key, csv_text, types, user_key="email"):
        """Defines a data table from a CSV, as an admin does; its rows become the content."""
        query = {"types": ",".join(f"{f}:{t}" for f, t in types.items()), "user_key": user_key}
        return self.control("PUT", f"/tables/{key}/csv", csv_text, query)

    def table(self, key):
        """A table's definition and record_count."""
        return self.control("GET", f"/tables/{key}")

    def records(self, key):
        """All stored records of a table, by id (numbers as Decimal)."""
        return {r[self.table(key)["id_field"]]: r for r in self.control("GET", f"/tables/{key}/records")}

    def requests(self, path_prefix="/v1/"):
        """The request log, restricted to paths starting with `path_prefix`."""
        return [r for r in self.control("GET", "/requests") if r["path"].startswith(path_prefix)]

    def clear_requests(self):
        """Empties the request log."""
        self.control("DELETE", "/requests")

    def bulk_requests(self, key):
        """Logged bulk requests to one table, oldest first, with their query parsed."""
        out = self.requests(f"/v1/tables/{key}/records/bulk")
        for r in out:
            r["params"] = dict(urllib.parse.parse_qsl(r["query"]))
        return out

    def add_faults(self, *rules):
        """Adds fault rules (see fake_qobra/README.md)."""
        return self.control("POST", "/faults", list(rules))

    def settings(self, **changes):
        """Changes the network settings (`latency_ms`, `max_body_bytes`); returns them all."""
        return self.control("PUT", "/settings", changes)

    def stats(self):
        """What the server counted: in_flight, max_in_flight, connections,
        tls_handshake_failures (since the last reset)."""
        return self.control("GET", "/stats")

    def clear_faults(self):
        """Removes all fault rules."""
        self.control("DELETE", "/faults")

    def flush(self):
        """Launches every scheduled import now and waits until all are finished."""
        return self.control("POST", "/imports/flush")

    def bulk(self, key, records, all=False, debounce=0, api_key=None):
        """Pushes records through the public API, as a client would (framed as the fake takes
        them, `{"data": […]}` unless set otherwise); returns (status, body)."""
        body = records if self.control("GET", "/settings")["body_format"] == "array" else {"data": records}
        return self.call("POST", f"/v1/tables/{key}/records/bulk", body,
                         {"all": str(all).lower(), "debounce": debounce},
                         {"X-API-Key": api_key or self.api_key, "Content-Type": "application/json"})


def bulk_fault(key, action, nth=1, times=1):
    """A fault rule on the bulk endpoint of one table."""
    return {"path_prefix": f"/v1/tables/{key}/records/bulk", "method": "POST",
            "nth": nth, "times": times, "action": action}


# --------------------------------------------------------------------------- the database


class Db:
    """A superuser session in the test database whose search_path is the test's own schema."""

    def __init__(self, conn, schema):
        self.conn = conn
        self.schema = schema
        self.notices = []
        # A notice's fields are only readable inside the handler: copy them there.
        conn.add_notice_handler(lambda n: self.notices.append(SimpleNamespace(
            severity_nonlocalized=n.severity_nonlocalized, message_primary=n.message_primary,
            message_detail=n.message_detail, message_hint=n.message_hint, context=n.context)))

    def rows(self, query, params=None):
        """All rows of a query, as dicts."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def one(self, query, params=None):
        """The single row of a query, as a dict."""
        rows = self.rows(query, params)
        assert len(rows) == 1, f"{query}: {len(rows)} rows"
        return rows[0]

    def value(self, query, params=None):
        """The single value of a query."""
        return next(iter(self.one(query, params).values()))

    def register(self, table, key=None, id_column="id", name_column="name", **options):
        """Grants SELECT to the reader and registers `table`; returns its data table key."""
        key = key or f"{self.schema}.{table}"
        self.rows(f'GRANT SELECT ON "{table}" TO {READER}')
        args = {"run_as": READER, "schedule": QUIET_SCHEDULE, **options}
        named = "".join(f", {k} => %({k})s" for k in args)
        params = {k: (psycopg.types.json.Jsonb(v) if isinstance(v, dict) else v)
                  for k, v in args.items()}
        self.rows(f"SELECT qobra_sync.register_table(%(t)s::regclass, %(key)s, %(id)s, %(name)s{named})",
                  {"t": table, "key": key, "id": id_column, "name": name_column, **params})
        return key

    def sync(self, table, force=False):
        """Calls sync_now; returns its run row (with `elapsed` seconds and the `notices` raised)."""
        self.notices.clear()
        start = time.monotonic()
        run_id = self.value("SELECT qobra_sync.sync_now(%s::regclass, force => %s)", (table, force))
        elapsed = time.monotonic() - start
        run = self.run(run_id)
        run.update(elapsed=elapsed, notices=list(self.notices))
        return run

    def run(self, run_id):
        """One row of qobra_sync.runs."""
        return self.one("SELECT * FROM qobra_sync.runs WHERE run_id = %s", (run_id,))

    def run_errors(self, run_id):
        """The run_errors rows of a run, by line number."""
        return self.rows("SELECT * FROM qobra_sync.run_errors WHERE run_id = %s ORDER BY line_number",
                         (run_id,))

    def warnings(self, run):
        """The WARNING messages a sync raised."""
        return [n.message_primary for n in run["notices"] if n.severity_nonlocalized == "WARNING"]

    def preview(self, table, max_rows=1_000_000):
        """preview() records by id, numbers kept exact."""
        rows = self.rows("SELECT p::text AS r FROM qobra_sync.preview(%s::regclass, %s) p", (table, max_rows))
        records = [loads(r["r"]) for r in rows]
        id_field = self.wire_fields(table)["id_field"]
        return {r[id_field]: r for r in records}

    def registration(self, table):
        """The table's row of qobra_sync.tables."""
        return self.one("SELECT * FROM qobra_sync.tables WHERE source = %s::regclass", (table,))

    def wire_fields(self, table):
        """How a registered table is sent: {"columns": {column: (field_key, pg_type, qobra_type)}
        for the synced columns, "id_field", "name_field", "user_key"}."""
        reg = self.registration(table)
        mapping = self.rows("SELECT * FROM qobra_sync.column_mapping(%s::regclass) WHERE synced", (table,))
        columns = {m["column_name"]: (m["field_key"], m["pg_type"], m["qobra_type"]) for m in mapping}
        return {"columns": columns, "id_field": columns[reg["id_column"]][0],
                "name_field": columns[reg["name_column"]][0], "user_key": reg["user_key"]}

    def define_in_fake(self, fake, table, max_rows=0):
        """Creates the table's data table in the fake from csv_template(), with the field types
        column_mapping() gives (the id and name fields stay strings, as they are sent). With
        the default max_rows = 0 the CSV is a header only and the data table starts empty."""
        wire = self.wire_fields(table)
        csv_text = self.value("SELECT qobra_sync.csv_template(%s::regclass, %s)", (table, max_rows))
        types = {fk: qt for fk, _, qt in wire["columns"].values()
                 if fk not in (wire["id_field"], wire["name_field"])}
        return fake.define_table_from_csv(self.registration(table)["data_table_key"],
                                          csv_text, types, wire["user_key"])


# --------------------------------------------------------------------------- expected records


def _expected_value(value, pg_type):
    """A source value as Qobra should hold it, in the form `comparable()` gives."""
    if value is None:
        return None
    if pg_type.startswith("character(") or pg_type == "character":
        return value.rstrip(" ")
    if pg_type == "date":
        return value.isoformat()
    if pg_type == "timestamp without time zone":
        return value.replace(tzinfo=dt.timezone.utc)
    if pg_type == "timestamp with time zone":
        return value.astimezone(dt.timezone.utc)
    if pg_type in ("real", "double precision"):
        return Decimal(repr(value))
    if pg_type in ("smallint", "integer", "bigint", "money") or pg_type.startswith("numeric"):
        return Decimal(str(value))
    return value  # text, varchar, boolean, bit strings (psycopg gives bits as text)


def expected_records(db, table, where="true"):
    """The records Qobra should hold for `table`, computed from the source in Python: by id,
    each {field_key: value} with numbers as Decimal and timestamps as aware UTC datetimes."""
    wire = db.wire_fields(table)
    columns = wire["columns"]
    select = ", ".join(f'"{c}"::numeric AS "{c}"' if pg == "money" else f'"{c}"'
                       for c, (_, pg, _) in columns.items())
    out = {}
    for row in db.rows(f'SELECT {select} FROM "{table}" WHERE {where}'):
        record = {}
        for column, (field_key, pg_type, _) in columns.items():
            if field_key == wire["id_field"]:
                record[field_key] = str(row[column])
            else:
                record[field_key] = _expected_value(row[column], pg_type)
        out[record[wire["id_field"]]] = record
    return out


def comparable(db, table, records):
    """Records read back from the fake (or preview), with timestamps checked to be UTC ISO
    with a `Z` and parsed, so they compare with `expected_records()`."""
    timestamp_fields = {fk for fk, pg, _ in db.wire_fields(table)["columns"].values()
                        if pg.startswith("timestamp")}
    out = {}
    for rid, record in records.items():
        record = dict(record)
        for field in timestamp_fields & record.keys():
            if record[field] is not None:
                assert UTC_ISO.match(record[field]), f"record {rid}: {field} = {record[field]!r}"
                record[field] = dt.datetime.fromisoformat(record[field])
        out[rid] = record
    return out


def assert_same_records(actual, expected):
    """Compares two {id: record} maps value by value, naming the first differences."""
    assert sorted(actual) == sorted(expected), "record ids differ"
    diffs = [f"id {rid}, {field}: got {actual[rid].get(field)!r}, expected {value!r}"
             for rid, record in expected.items() for field, value in record.items()
             if actual[rid].get(field, "<missing>") != value]
    assert not diffs, "\n".join(diffs[:20])

"""Company networks against the fake Qobra serving HTTPS: certificates verified (a private CA
trusted through qobra_sync.ca_file; self-signed and wrong-host certificates fail at once, the
key never sent), a real proxy (tinyproxy) through qobra_sync.https_proxy with its credentials
shown nowhere, a proxy that refuses; and answers that misbehave (gigabytes, a slow drip)."""

import http.server
import shutil
import threading

import psycopg
import pytest

from helpers import MIB, WORK, FakeQobra, PeakMemory, bulk_fault
from net_helpers import CertificateAuthority, TinyProxy
from worker_helpers import wait_setting

PROXY_USER, PROXY_PASSWORD = "qs-proxy-user", "pr0xy-s3cret-a7f1"


@pytest.fixture(scope="module")
def ca():
    """The test CA, in the test directory (readable by the cluster's OS user)."""
    return CertificateAuthority(WORK / "tls")


@pytest.fixture(scope="module")
def https_fakes(ca, cluster):
    """Three fakes serving HTTPS: `good` (signed by the CA for 127.0.0.1), `wrong_host` (signed
    by the CA for qobra.invalid), `self_signed`."""
    certs = {"good": ca.server("good"),
             "wrong_host": ca.server("wrong-host", "DNS:qobra.invalid"),
             "self_signed": ca.self_signed("self-signed")}
    started = {}
    try:
        for name, tls in certs.items():
            started[name] = FakeQobra(WORK, f"fake-qobra-{name}", tls=tls)
        yield started
    finally:
        for fake in started.values():
            fake.stop()


@pytest.fixture
def to_fake(db, fakes):
    """Points the destination at another fake, resets it and defines the test's `deals` table
    there; the session's destination is set back afterwards."""
    def point(other):
        other.reset()
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (other.api_key, other.base_url))
        db.define_in_fake(other, "deals")
        return other
    yield point
    db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fakes[0].api_key, fakes[0].base_url))


@pytest.fixture
def deals(db):
    """A registered deals table of 20 rows; its data table key."""
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    db.rows("INSERT INTO deals SELECT i, 'deal ' || i, i FROM generate_series(1, 20) i")
    return db.register("deals")


def set_and_wait(system, db, name, value):
    """ALTER SYSTEM SET, reload, and wait until the test's session sees it."""
    system.set(name, value)
    wait_setting(db, name, str(value))


def assert_failed_at_once(run, *phrases):
    """The run failed without retrying, with an error holding every phrase."""
    assert run["status"] == "failed", run
    assert run["retries"] == 0 and run["restarts"] == 0, run
    for phrase in phrases:
        assert phrase in run["error"], run["error"]


def test_a_private_ca_is_trusted_only_through_ca_file(db, system, deals, to_fake, https_fakes, ca):
    """Signed by an unknown CA: the run fails at once naming the problem, and the fake logs no
    request (the key was never sent). With ca_file naming the CA, the same push lands."""
    fake = to_fake(https_fakes["good"])
    run = db.sync("deals")
    assert_failed_at_once(run, "certificate", "not signed by a trusted certificate authority",
                          "qobra_sync.ca_file")
    assert fake.requests() == [] and fake.stats()["tls_handshake_failures"] >= 1

    set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    fake.flush()
    assert len(fake.records(deals)) == 20


@pytest.mark.parametrize("name, problem", [
    ("wrong_host", "not valid for the host name 127.0.0.1"),
    ("self_signed", "is self-signed"),
])
def test_wrong_host_and_self_signed_certificates_fail_at_once(db, system, deals, to_fake,
                                                              https_fakes, ca, name, problem):
    """Even with the CA trusted, a certificate for another host or a self-signed one fails the
    run at once, naming the problem; nothing reaches the fake."""
    set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
    fake = to_fake(https_fakes[name])
    run = db.sync("deals")
    assert_failed_at_once(run, problem)
    assert run["elapsed"] < 10
    assert fake.requests() == []


def auth_file(directory, text):
    """A 0600 file of the cluster's OS user holding `text` (proxy credentials)."""
    path = directory / "proxy-auth"
    path.write_text(text + "\n")
    path.chmod(0o600)
    shutil.chown(path, "postgres")
    return path


def test_pushes_go_through_the_proxy_and_its_credentials_show_nowhere(
        cluster, db, system, deals, to_fake, https_fakes, ca):
    """tinyproxy asking for credentials, given in https_proxy_auth_file: the push goes through a
    CONNECT tunnel and lands; a wrong password fails at once (407). The passwords are in no run,
    no error and no server log line."""
    proxy = TinyProxy(WORK / "proxy", "tinyproxy-auth", credentials=(PROXY_USER, PROXY_PASSWORD))
    try:
        set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
        fake = to_fake(https_fakes["good"])
        set_and_wait(system, db, "qobra_sync.https_proxy", proxy.url())
        path = auth_file(proxy.dir, f"{PROXY_USER}:{PROXY_PASSWORD}")
        set_and_wait(system, db, "qobra_sync.https_proxy_auth_file", path)
        run = db.sync("deals")
        assert run["status"] == "succeeded", run["error"]
        assert any(f"CONNECT 127.0.0.1:{fake.port}" in line for line in proxy.connects()), proxy.connects()
        fake.flush()
        assert len(fake.records(deals)) == 20

        auth_file(proxy.dir, f"{PROXY_USER}:wrong-pw-9c2e")
        db.rows("UPDATE deals SET amount = amount + 1")
        refused = db.sync("deals")
        assert_failed_at_once(refused, "refused to open a tunnel", "credentials")
        runs_text = str(db.rows("SELECT * FROM qobra_sync.runs"))
        log = cluster.server_log.read_text()
        for secret in (PROXY_PASSWORD, "wrong-pw-9c2e"):
            assert secret not in runs_text and secret not in log
    finally:
        proxy.stop()


def test_credentials_in_the_proxy_url_are_shown_nowhere_we_show_them(
        db, system, deals, to_fake, https_fakes, ca):
    """https_proxy = http://user:password@host:port works too; errors say '(credentials not
    shown)', and a non-superuser cannot read the setting (PostgreSQL itself logs a reloaded
    setting's value: the README points to https_proxy_auth_file for that reason)."""
    proxy = TinyProxy(WORK / "proxy", "tinyproxy-url", credentials=(PROXY_USER, PROXY_PASSWORD))
    try:
        set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
        fake = to_fake(https_fakes["good"])
        set_and_wait(system, db, "qobra_sync.https_proxy", proxy.url((PROXY_USER, PROXY_PASSWORD)))
        run = db.sync("deals")
        assert run["status"] == "succeeded", run["error"]
        assert proxy.connects()
        set_and_wait(system, db, "qobra_sync.https_proxy", proxy.url((PROXY_USER, "wrong-pw-9c2e")))
        db.rows("UPDATE deals SET amount = amount + 1")
        refused = db.sync("deals")
        assert_failed_at_once(refused, "refused to open a tunnel", "(credentials not shown)")
        runs_text = str(db.rows("SELECT * FROM qobra_sync.runs"))
        assert PROXY_PASSWORD not in runs_text and "wrong-pw-9c2e" not in runs_text
        assert PROXY_USER not in runs_text
        db.rows("SET ROLE qobra_reader")
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.rows("SHOW qobra_sync.https_proxy")
        finally:
            db.rows("RESET ROLE")
    finally:
        proxy.stop()


def test_a_proxy_that_forbids_the_destination_fails_at_once(db, system, deals, to_fake,
                                                             https_fakes, ca):
    """tinyproxy allowing CONNECT to port 443 only: the run fails at once, saying the proxy
    refused the tunnel; nothing reaches the fake."""
    proxy = TinyProxy(WORK / "proxy", "tinyproxy-443", connect_ports=[443])
    try:
        set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
        fake = to_fake(https_fakes["good"])
        set_and_wait(system, db, "qobra_sync.https_proxy", proxy.url())
        run = db.sync("deals")
        assert_failed_at_once(run, f'the proxy "http://127.0.0.1:{proxy.port}"', "refused to open a tunnel")
        assert fake.requests() == []
        assert any("Refused CONNECT" in line for line in proxy.log.read_text().splitlines())
    finally:
        proxy.stop()


@pytest.mark.parametrize("content_length", [True, False])
def test_an_answer_of_gigabytes_is_cut_at_one_mebibyte_and_retried(db, fake, deals, content_length):
    """The first bulk answer is 4 GB (announced, or chunked): the client reads at most 1 MiB,
    fails that request like a server fault and retries it; the push lands and the backend
    never held the answer."""
    db.define_in_fake(fake, "deals")
    fake.add_faults(bulk_fault(deals, {"huge": {"bytes": 4_000_000_000,
                                                 "content_length": content_length}}))
    pid = db.value("SELECT pg_backend_pid()")
    with PeakMemory(pid) as memory:
        run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert run["retries"] == 1, run
    assert (memory.peak - memory.start) * 1024 < 64 * MIB
    fake.flush()
    assert len(fake.records(deals)) == 20


def test_an_answer_that_drips_is_bounded_by_http_timeout_ms(db, fake, deals):
    """The first bulk answer trickles at 1 kB/s: the request ends at http_timeout_ms (2 s) in
    total, not at its last byte, and is retried; the push lands."""
    db.define_in_fake(fake, "deals")
    db.rows("SET qobra_sync.http_timeout_ms = 2000")
    fake.add_faults(bulk_fault(deals, {"drip": {"body_bytes": 100_000, "bytes_per_second": 1000}}))
    run = db.sync("deals")
    assert run["status"] == "succeeded", run["error"]
    assert run["retries"] == 1, run
    assert 2 <= run["elapsed"] < 15, run["elapsed"]
    fake.flush()
    assert len(fake.records(deals)) == 20


def checks(db):
    """check_destination()'s rows, by name."""
    return {c["check_name"]: c for c in db.rows("SELECT * FROM qobra_sync.check_destination()")}


def test_check_destination_passes_and_changes_nothing(db, fake):
    """Against the fake: every finding holds, one GET of an import that does not exist is all
    that reached it (no bulk request), and validate() reports the destination reachable."""
    fake.clear_requests()
    found = checks(db)
    assert list(found) == ["destination set", "pushes from this database", "address resolves",
                           "connection and certificate", "API key accepted", "body format"], list(found)
    assert all(c["ok"] for c in found.values()), found
    assert "127.0.0.1" in found["address resolves"]["detail"]
    assert "the key is accepted" in found["API key accepted"]["detail"]
    assert found["body format"]["detail"].startswith("'data'")
    requests = fake.requests()
    assert [(r["method"], r["path"].rsplit("/", 1)[0], int(r["status"])) for r in requests] == \
        [("GET", "/v1/imports", 404)], requests
    assert all(r["api_key_valid"] for r in requests)
    db.rows("CREATE TABLE deals (id int PRIMARY KEY, name text)")
    db.register("deals")
    reachable = {c["check_name"]: c for c in db.rows("SELECT * FROM qobra_sync.validate('deals')")}
    assert reachable["destination reachable"]["ok"], reachable


def test_check_destination_names_a_refused_key(db, fake):
    """A key Qobra refuses: the key finding says so (HTTP 401); the connection holds."""
    db.rows("SELECT qobra_sync.set_destination(%s, %s)", ("qk_e2e_wrong_key_000", fake.base_url))
    try:
        found = checks(db)
    finally:
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    assert found["connection and certificate"]["ok"]
    assert not found["API key accepted"]["ok"]
    assert "rejected the key (HTTP 401)" in found["API key accepted"]["detail"]
    assert "qk_e2e_wrong_key_000" not in str(found)


def test_check_destination_names_an_unknown_ca_and_sends_no_key(db, system, deals, to_fake, https_fakes, ca):
    """A certificate signed by a CA not trusted: the connection finding names the problem, the
    key is not checked (never sent); trusting the CA through ca_file makes every finding hold."""
    fake = to_fake(https_fakes["good"])
    fake.clear_requests()
    found = checks(db)
    assert not found["connection and certificate"]["ok"]
    assert "not signed by a trusted certificate authority" in found["connection and certificate"]["detail"]
    assert found["API key accepted"]["detail"] == "not checked: no connection"
    assert fake.requests() == []
    set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
    assert all(c["ok"] for c in checks(db).values())


def test_check_destination_names_a_proxy_that_refuses_connect(db, system, deals, to_fake, https_fakes, ca):
    """tinyproxy allowing CONNECT to port 443 only: the connection finding says the proxy
    refused the tunnel; the address finding speaks of the proxy's host."""
    proxy = TinyProxy(WORK / "proxy", "tinyproxy-check", connect_ports=[443])
    try:
        set_and_wait(system, db, "qobra_sync.ca_file", ca.cert)
        to_fake(https_fakes["good"])
        set_and_wait(system, db, "qobra_sync.https_proxy", proxy.url())
        found = checks(db)
        assert found["address resolves"]["ok"] and "the proxy's host 127.0.0.1" in found["address resolves"]["detail"]
        assert not found["connection and certificate"]["ok"]
        assert "refused the tunnel" in found["connection and certificate"]["detail"], found
    finally:
        proxy.stop()


def test_check_destination_names_a_base_url_that_answers_a_web_page(db, fake):
    """A base URL where a web server answers HTML (a wrong address, a captive portal): the key
    finding says it is not Qobra's API."""
    page = b"<html><head><title>Welcome</title></head><body>It works</body></html>"

    class Page(http.server.BaseHTTPRequestHandler):
        """Answers every GET with a 404 web page."""

        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        db.rows("SELECT qobra_sync.set_destination(%s, %s)",
                (fake.api_key, f"http://127.0.0.1:{server.server_address[1]}"))
        found = checks(db)
    finally:
        server.shutdown()
        db.rows("SELECT qobra_sync.set_destination(%s, %s)", (fake.api_key, fake.base_url))
    assert found["connection and certificate"]["ok"]
    assert not found["API key accepted"]["ok"]
    assert "with a web page, not Qobra's API" in found["API key accepted"]["detail"], found

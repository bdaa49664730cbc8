"""Fixtures of the end-to-end tests: one preloaded cluster and two fake Qobra servers for the
whole session; per test, a fresh schema, a superuser session in it, and reset fakes."""

import os
import re
import subprocess
import time

import psycopg
import pytest

from helpers import DBNAME, READER, ROOT, WORK, Db, FakeQobra, free_port
from worker_helpers import SystemSettings, quiesce


class Cluster:
    """A throwaway cluster that preloads qobra_sync (scripts/cluster.sh), of the major under
    test unless `major` names another."""

    def __init__(self, directory, port, major=None, build=None):
        self.dir, self.port, self.major, self.build = directory, port, major, build
        self.server_log = directory / "server.log"

    def env(self):
        """The environment of scripts run for this cluster: its major's server (and which build
        of it, scripts/postgres.sh's QS_PG_BUILD)."""
        return {**os.environ, **({"QS_PG_MAJOR": str(self.major)} if self.major else {}),
                **({"QS_PG_BUILD": self.build} if self.build else {})}

    def _bash(self, *command):
        """Runs a function of scripts/cluster.sh."""
        subprocess.run(["bash", "-c", 'source scripts/cluster.sh && "$@"', "cluster", *command],
                       cwd=ROOT, check=True, env=self.env())

    def start(self, *conf_lines, initdb=()):
        """Creates and starts the cluster (the server runs without RUST_BACKTRACE); `initdb` are
        more options of initdb."""
        self._bash("env", f"QS_INITDB_OPTIONS={' '.join(initdb)}", "bash", "-c",
                   'source scripts/cluster.sh && cluster_start "$@"', "cluster_start",
                   str(self.dir), str(self.port), *conf_lines)

    def stop(self):
        """Stops the cluster, fast."""
        self._bash("cluster_stop", str(self.dir))

    def connect(self, dbname=DBNAME, **kwargs):
        """A new autocommit superuser connection."""
        return psycopg.connect(host=str(self.dir), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True, **kwargs)

    def pg_ctl(self, *args):
        """Runs `pg_ctl -D <data> -l server.log -w -t 60 <args>` as the cluster's OS user, without
        RUST_BACKTRACE (as cluster_start does); returns the seconds it took."""
        start = time.monotonic()
        subprocess.run(["bash", "-c", 'source scripts/cluster.sh && as_pguser env -u RUST_BACKTRACE '
                        '-u RUST_LIB_BACKTRACE "$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 "${@:2}"',
                        "pg_ctl", str(self.dir), *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env=self.env())
        return time.monotonic() - start

    def restart(self, mode="fast"):
        """Restarts the server; mode `immediate` kills it as a crash would (recovery at start).
        Every open connection is lost. Returns the seconds it took."""
        return self.pg_ctl("-m", mode, "restart")


def preloaded_cluster(name, *conf_lines, major=None, build=None):
    """A fresh preloaded cluster in WORK/name with database qobra_e2e (no extension yet), of
    the major under test unless `major` names another; `conf_lines` are more postgresql.conf
    lines."""
    WORK.mkdir(parents=True, exist_ok=True)
    c = Cluster(WORK / name, free_port(), major, build)
    c.stop()  # a cluster left running by an interrupted session
    c.start(f"qobra_sync.database_name = '{DBNAME}'",
            "qobra_sync.debounce_seconds = 1", *conf_lines)
    with c.connect("postgres") as conn:
        conn.execute(f"CREATE DATABASE {DBNAME}")
    return c


@pytest.fixture(scope="session")
def cluster():
    """The session's cluster, with database qobra_e2e and the extension created; always stopped."""
    c = None
    try:
        c = preloaded_cluster("e2e-cluster")
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION qobra_sync")
            conn.execute(f"CREATE ROLE {READER} NOLOGIN")
        yield c
    finally:
        if c:
            c.stop()


@pytest.fixture(scope="session")
def fakes(cluster):
    """Two fake Qobra servers: the destination, and another one (a redirect target)."""
    started = []
    try:
        started.append(FakeQobra(WORK, "fake-qobra"))
        started.append(FakeQobra(WORK, "fake-qobra-other"))
        with cluster.connect() as conn:
            conn.execute("SELECT qobra_sync.set_destination(%s, %s)",
                         (started[0].api_key, started[0].base_url))
        yield started
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def fake(fakes):
    """The destination fake, reset for this test."""
    fakes[0].reset()
    return fakes[0]


@pytest.fixture(params=["data", "array"])
def each_body_format(request, cluster, fake):
    """Runs a test once per body format: the fake takes only that shape (and refuses the other
    with a 400), and the destination sends it. The default ('data') is set back afterwards."""
    def destination(body_format):
        with cluster.connect() as conn:
            conn.execute("SELECT qobra_sync.set_destination(%s, %s, body_format => %s)",
                         (fake.api_key, fake.base_url, body_format))
    fake.settings(body_format=request.param)
    destination(request.param)
    yield request.param
    destination("data")
    fake.settings(body_format="data")


@pytest.fixture
def other_fake(fakes):
    """A second, independent fake, reset for this test."""
    fakes[1].reset()
    return fakes[1]


@pytest.fixture
def db(cluster, fake, request):
    """A superuser session in a fresh schema named after the test (readable by the reader);
    afterwards every registration is removed and the schema dropped."""
    schema = "t_" + re.sub(r"\W+", "_", request.node.name.lower())[:50]
    with cluster.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {READER}")
        conn.execute(f"SET search_path = {schema}, public")
        conn.execute("SET statement_timeout = '100s'")  # a hung push cannot hang the suite
        yield Db(conn, schema)
    with cluster.connect() as conn:
        conn.execute("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def connect(cluster):
    """Opens more connections to the test database; they are closed after the test."""
    opened = []

    def open_connection():
        """A new autocommit superuser connection."""
        opened.append(cluster.connect())
        return opened[-1]

    yield open_connection
    for conn in opened:
        conn.close()


@pytest.fixture(scope="module")
def spare_cluster():
    """A second preloaded cluster, for the tests of a module that stop, restart or crash the
    server while the session's cluster stays up: database qobra_e2e exists, the extension does
    not (the tests create it); always stopped at the end of the module."""
    c = None
    try:
        c = preloaded_cluster("e2e-spare-cluster")
        yield c
    finally:
        if c:
            c.stop()


@pytest.fixture
def system(cluster):
    """ALTER SYSTEM on the session's cluster, reset after the test."""
    s = SystemSettings(cluster)
    yield s
    s.reset()


@pytest.fixture
def wdb(cluster, db, fake, system):
    """The test's session (see `db`), and afterwards: faults cleared, registrations paused and
    the worker idle before `db` unregisters them, settings reset."""
    yield db
    with cluster.connect() as conn:
        quiesce(Db(conn, db.schema), fake)

"""Across PostgreSQL majors (run by scripts/test.sh once every major is installed): a fresh
install's catalog is the same, object by object, on every major qobra_sync is built for; and a
cluster moved from 15 to 18 with pg_upgrade, the extension installed and preloaded on both
sides, keeps its registrations, its run history and its key, then pushes on schedule once the
copy is confirmed."""

import subprocess

import pytest

from conftest import Cluster, preloaded_cluster
from helpers import DBNAME, ROOT, WORK, free_port
from test_lifecycle import catalog, clusters, deals, fake, install, session  # noqa: F401 (fixtures)
from worker_helpers import runs, wait_runs

pytestmark = pytest.mark.majors

MAJORS = [15, 16, 17, 18]


def bindir(major):
    """The bin directory of `major`'s server (scripts/postgres.sh)."""
    return subprocess.run(["bash", "-c", "source scripts/postgres.sh && echo $PGBIN"], cwd=ROOT, check=True,
                          env={"PATH": "/usr/bin:/bin", "QS_PG_MAJOR": str(major)},
                          capture_output=True, text=True).stdout.strip()


def test_a_fresh_install_is_the_same_catalog_on_every_major(clusters):
    """Tables, columns, functions, views, policies, comments and ACLs of a fresh install are
    equal on 15, 16, 17 and 18."""
    catalogs = {}
    for major in MAJORS:
        c = clusters.adopt(preloaded_cluster(f"majors-catalog-{major}", major=major))
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION qobra_sync")
        db = session(c)
        catalogs[major] = catalog(db)
        db.conn.close()
        c.stop()
    for major in MAJORS[1:]:
        missing = sorted(set(catalogs[15]) - set(catalogs[major]))
        extra = sorted(set(catalogs[major]) - set(catalogs[15]))
        assert (missing, extra) == ([], []), f"{major} differs from 15"
        assert catalogs[major] == catalogs[15], f"{major}: the same objects in another order"


def test_pg_upgrade_from_15_to_18_keeps_registrations_history_and_key(clusters, fake):
    """pg_upgrade from 15 to 18: registrations, runs and the stored key are all there; pushes
    wait for the copy to be confirmed (a new cluster is another home), then the schedule runs
    on 18 and its records reach Qobra."""
    fake.reset()
    old = clusters.adopt(preloaded_cluster("majors-up-15", major=15))
    db = install(old, fake)
    key = deals(db, fake, "deals", schedule="2 seconds")
    before = wait_runs(db, "deals", 1, finished=True, timeout=30)
    assert before[0]["status"] == "succeeded", before
    registrations = db.rows("SELECT source_name, data_table_key, schedule, paused FROM qobra_sync.tables")
    db.rows("SELECT qobra_sync.pause('deals')")
    history = db.value("SELECT count(*) FROM qobra_sync.runs")
    db.conn.close()
    old.stop()

    # The new cluster: initialised and configured alike (preloaded), then stopped, empty.
    new = clusters.adopt(Cluster(WORK / "majors-up-18", free_port(), 18))
    new.start(f"qobra_sync.database_name = '{DBNAME}'", "qobra_sync.debounce_seconds = 1")
    new.stop()
    upgrade = subprocess.run(
        ["bash", "-c", 'source scripts/cluster.sh && cd "$1" && as_pguser "$3/pg_upgrade" '
         '-b "$2" -B "$3" -d "$4/data" -D "$1/data" -U postgres -p "$5" -P "$6" -s "$1"',
         "pg_upgrade", str(new.dir), bindir(15), bindir(18), str(old.dir), str(free_port()), str(new.port)],
        cwd=ROOT, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr[-2000:]
    new.pg_ctl("start")

    udb = session(new)
    assert udb.value("SELECT current_setting('server_version_num')::int / 10000") == 18
    assert udb.rows("SELECT source_name, data_table_key, schedule, paused FROM qobra_sync.tables") == \
        [{**r, "paused": True} for r in registrations]
    assert udb.value("SELECT count(*) FROM qobra_sync.runs") == history
    assert udb.value("SELECT count(*) FROM qobra_sync.destination_key") == 1, "the stored key"
    # The upgraded cluster is a copy: nothing is pushed until this database is confirmed.
    udb.rows("SELECT qobra_sync.resume('deals')")
    blocked = wait_runs(udb, "deals", 1, finished=True, timeout=30, after=before[-1]["run_id"])
    assert blocked[0]["status"] == "blocked" and "set_destination()" in blocked[0]["error"], blocked
    # Confirmed, with rows changed on 18 (an unchanged snapshot would be skipped as held).
    udb.rows("UPDATE deals SET name = name || ' on 18'")
    udb.rows("SELECT qobra_sync.set_destination()")
    pushed = wait_for_success(udb, blocked[-1]["run_id"])
    assert pushed["rows_sent"] == 20
    names = sorted(r["name"] for r in fake.records(key).values())
    assert len(names) == 20 and all(n.endswith(" on 18") for n in names), names[:3]
    udb.conn.close()


def wait_for_success(db, after):
    """The first succeeded scheduled run of `deals` after run `after`."""
    done = wait_runs(db, "deals", 1, finished=True, timeout=30, after=after)
    ok = [r for r in runs(db, "deals", "schedule", after) if r["status"] == "succeeded"]
    assert ok, done
    return ok[0]

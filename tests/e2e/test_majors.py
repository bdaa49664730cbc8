"""Across PostgreSQL majors (run by scripts/test.sh once every major is installed): a fresh
install's catalog is the same, object by object, on every major qobra_sync is built for; and a
cluster moved from 15 to 18 with pg_upgrade, the extension installed and preloaded on both
sides, keeps its registrations, its run history and its key, then pushes on schedule once the
copy is confirmed."""

import re
import subprocess

import pytest

from conftest import Cluster, preloaded_cluster
from helpers import DBNAME, ROOT, WORK, free_port, wait_for
from test_lifecycle import catalog, clusters, deals, fake, install, session  # noqa: F401 (fixtures)
from worker_helpers import runs, wait_runs

pytestmark = pytest.mark.majors

MAJORS = [15, 16, 17, 18]


def bindir(cluster):
    """The bin directory of a cluster's server (scripts/postgres.sh)."""
    return subprocess.run(["bash", "-c", "source scripts/postgres.sh && echo $PGBIN"], cwd=ROOT, check=True,
                          env=cluster.env(), capture_output=True, text=True).stdout.strip()


# A column in a deparsed query, qualified by its relation or alias (`registrations.source`).
QUALIFIER = re.compile(r"(?<![\w.\"])(?!qobra_sync\.|pg_catalog\.)[a-z_][a-z0-9_]*\.(?=[a-z_\"])")


# The MAINTAIN privilege (`m`) in an ACL entry (`postgres=arwdDxtm/postgres`).
MAINTAIN = re.compile(r"(=[A-Za-z*]*?)m(?=[A-Za-z*]*/)")


def comparable(row):
    """A catalog row as it can be compared across majors, where PostgreSQL's own rendering
    differs: from 16 on, a view over one relation is deparsed without qualifying its columns
    (15 wrote `registrations.source`, 16 `source`); from 17 on, an owner's privileges include
    MAINTAIN (`m`, a privilege 15 and 16 do not have)."""
    kind, name, definition = row
    if kind == "relation":
        definition = MAINTAIN.sub(r"\1", QUALIFIER.sub("", definition))
    return kind, name, definition


def comparable_catalog(rows):
    """A catalog as it can be compared across majors (see `comparable`); without the row types
    of the extension's tables and views, which 17 lists as members of the extension besides the
    relations themselves; and without the NOT NULL constraints 18 records in pg_constraint (every
    major says NOT NULL in the columns' rows)."""
    relations = {name for kind, name, _ in rows if kind == "relation"}
    return [comparable(r) for r in rows
            if not (r[0] == "member" and r[1].startswith("type ") and r[1][5:].removesuffix("[]") in relations)
            and not (r[0] == "constraint" and r[2].startswith("NOT NULL "))]


def test_a_fresh_install_is_the_same_catalog_on_every_major(clusters):
    """Tables, columns, functions, views, policies, comments and ACLs of a fresh install are
    equal on 15, 16, 17 and 18."""
    catalogs = {}
    for major in MAJORS:
        c = clusters.adopt(preloaded_cluster(f"majors-catalog-{major}", major=major))
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION qobra_sync")
        db = session(c)
        catalogs[major] = comparable_catalog(catalog(db))
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
    # PyPI's build of 15: Debian's is a newer minor release than the 18 build at hand (see
    # scripts/postgres.sh); scripts/test.sh installs the extension built for 15 in it.
    old = clusters.adopt(preloaded_cluster("majors-up-15", major=15, build="pypi"))
    db = install(old, fake)
    key = deals(db, fake, "deals", schedule="2 seconds")
    before = wait_runs(db, "deals", 1, finished=True, timeout=30)
    assert before[0]["status"] == "succeeded", before
    registrations = db.rows("SELECT source::text, data_table_key, schedule, paused FROM qobra_sync.tables")
    db.rows("SELECT qobra_sync.pause('deals')")
    history = db.value("SELECT count(*) FROM qobra_sync.runs")
    db.conn.close()
    old.stop()

    # The new cluster: initialised and configured alike (preloaded), then stopped, empty.
    new = clusters.adopt(Cluster(WORK / "majors-up-18", free_port(), 18))
    # Like the old one, without data checksums (which initdb turns on by default from 18).
    new.start(f"qobra_sync.database_name = '{DBNAME}'", "qobra_sync.debounce_seconds = 1",
              initdb=["--no-data-checksums"])
    new.stop()
    upgrade = subprocess.run(
        ["bash", "-c", 'source scripts/cluster.sh && cd "$1" && as_pguser "$3/pg_upgrade" '
         '-b "$2" -B "$3" -d "$4/data" -D "$1/data" -U postgres -p "$5" -P "$6" -s "$1"',
         "pg_upgrade", str(new.dir), bindir(old), bindir(new), str(old.dir), str(free_port()), str(new.port)],
        cwd=ROOT, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr[-2000:]
    new.pg_ctl("start")

    udb = session(new)
    assert udb.value("SELECT current_setting('server_version_num')::int / 10000") == 18
    assert udb.rows("SELECT source::text, data_table_key, schedule, paused FROM qobra_sync.tables") == \
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
    # Qobra imports the records once the debounce is over.
    wait_for(lambda: all(r["name"].endswith(" on 18") for r in fake.records(key).values()), 10,
             what="the records pushed from 18 in the fake")
    assert len(fake.records(key)) == 20
    udb.conn.close()


def wait_for_success(db, after):
    """The first succeeded scheduled run of `deals` after run `after`."""
    done = wait_runs(db, "deals", 1, finished=True, timeout=30, after=after)
    ok = [r for r in runs(db, "deals", "schedule", after) if r["status"] == "succeeded"]
    assert ok, done
    return ok[0]

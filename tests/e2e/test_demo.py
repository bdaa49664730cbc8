"""The demo (`bash scripts/demo.sh`, the README's first command) runs from start to end, and ends
with what it promises: the sample table in the fake Qobra, exactly the rows its filter selects,
pushed by a manual, a requested and a scheduled run.

The demo installs the extension (`cargo pgrx install`), so it runs while no cluster of the
suite is up: scripts/test.sh runs this module apart (`-m demo`), before the end-to-end tier."""

import os
import re
import subprocess

import pytest

from conftest import Cluster
from helpers import (ROOT, WORK, Db, assert_same_records, comparable, expected_records, free_port,
                     loads)

pytestmark = pytest.mark.demo

DEMO_DIR = WORK / "demo"
# What the demo's filter selects, as its registration says it.
CLOSED_WON = "stage = 'Closed Won' AND close_date > current_date - 365"


@pytest.fixture(scope="module")
def demo():
    """Runs the demo once; returns its output. The cluster it leaves is started again for the
    checks, and stopped at the end."""
    port = free_port()
    env = {**os.environ, "QS_DEMO_DIR": str(DEMO_DIR), "QS_DEMO_PORT": str(port)}
    proc = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the demo failed (exit {proc.returncode}):\n{output[-6000:]}"
    cluster = Cluster(DEMO_DIR / "cluster", port)
    cluster.pg_ctl("start")
    try:
        yield output, cluster
    finally:
        cluster.stop()


def test_the_demo_walks_through_every_step_and_stops_everything(demo):
    """Every section is printed in order, none fails, and the end says everything is stopped."""
    output, _ = demo
    sections = [int(n) for n in re.findall(r"^== (\d+)\. ", output, re.M)]
    script = (ROOT / "scripts/demo.sh").read_text()
    assert sections == list(range(1, len(re.findall(r'^section "', script, re.M)) + 1)), sections
    assert "ERROR" not in output, output[max(0, output.find("ERROR") - 2000):][:4000]
    assert "Done. The cluster and the fake Qobra are stopped" in output


def test_the_demo_ends_with_the_filtered_table_in_qobra(demo):
    """What the fake Qobra held at the end is, record by record, what the source's filtered
    rows are, computed apart from the extension's encoder."""
    _, cluster = demo
    held = loads((DEMO_DIR / "qobra-opportunities.json").read_text())
    with cluster.connect("sales") as conn:
        db = Db(conn, "public")
        expected = expected_records(db, "opportunities", CLOSED_WON)
        assert len(expected) > 50, "the sample data selects a few dozen deals"
        id_field = db.wire_fields("opportunities")["id_field"]
        # The demo's data table types the id field as column_mapping() says (a number); a push
        # sends ids as strings.
        actual = comparable(db, "opportunities", {str(r[id_field]): {**r, id_field: str(r[id_field])}
                                                  for r in held})
        assert_same_records(actual, expected)


def test_the_demo_pushed_by_hand_on_request_and_on_schedule(demo):
    """Three runs, one per trigger, each succeeded with every selected row; the two deals won
    during the demo reached Qobra by the worker's runs; the registration is left paused."""
    _, cluster = demo
    with cluster.connect("sales") as conn:
        db = Db(conn, "public")
        runs = db.rows("SELECT trigger, status, rows_sent, rows_rejected, error FROM qobra_sync.runs ORDER BY run_id")
        # (On a slow machine the 5-second schedule may fire once more before the pause.)
        first, later = runs[:3], runs[3:]
        assert [(r["trigger"], r["status"]) for r in first] == [
            ("manual", "succeeded"), ("request", "succeeded"), ("schedule", "succeeded")], runs
        assert [r["rows_sent"] for r in first] == [first[0]["rows_sent"] + i for i in range(3)], runs
        assert all((r["trigger"], r["status"], r["rows_sent"]) == ("schedule", "succeeded", first[2]["rows_sent"])
                   for r in later), runs
        assert all(r["rows_rejected"] == 0 and r["error"] is None for r in runs), runs
        assert runs[-1]["rows_sent"] == db.value(f"SELECT count(*) FROM opportunities WHERE {CLOSED_WON}")
        status = db.one("SELECT paused, last_status FROM qobra_sync.status")
        assert status == {"paused": True, "last_status": "succeeded"}
        # The key came from the file, as the Quick start recommends: none is stored.
        destination = db.one("SELECT api_key_set, key_source FROM qobra_sync.destination_status")
        assert destination == {"api_key_set": False, "key_source": "api_key_file"}

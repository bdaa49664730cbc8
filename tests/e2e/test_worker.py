"""The background worker: schedules (intervals and cron in qobra_sync.timezone),
request_sync, pause/resume/alter without a restart, one push of a table at a time, a slow
table not starving the others, enabled on/off, restarts after termination and crashes, fast
shutdown mid-request, history purge, and the idle worker's CPU.

The first tests use the session's cluster; those that restart, crash or stop the server use a
spare cluster of their own (fixture `spare_cluster`), created without the extension."""

import datetime as dt
import os
import re
import time
import zoneinfo

import psycopg
import pytest

from conftest import Cluster
from helpers import (DBNAME, QUIET_SCHEDULE, READER, WORK, Db, FakeQobra, bulk_fault, free_port,
                     parse_time, sync_in_background, wait_for)
from worker_helpers import (WORKER_TYPE, SystemSettings, assert_holds_table, create_deals, gaps,
                            now, quiesce, runs, seconds, session, wait_run_finished, wait_runs,
                            wait_setting, wait_worker, wait_worker_not_pushing, wait_worker_pushing,
                            worker)

UTC = dt.timezone.utc
# 120,000 rows are three chunks at the default batch_rows (50,000), whatever the worker's
# settings (the rows are narrow: far from batch_bytes).
CHUNKED_ROWS, CHUNKS = 120_000, 3


# --------------------------------------------------------------------------- helpers


def assert_pushes_never_interleave(requests, chunks):
    """The fake's bulk requests form whole pushes one after the other: `all=true` then
    `chunks - 1` more, and each push's first request arrives after the previous push's last
    request was answered. Returns the number of pushes."""
    log = sorted(requests, key=lambda r: parse_time(r["received_at"]))
    flags = ["all" if r["params"].get("all") == "true" else "-" for r in log]
    pushes = len(log) // chunks
    assert flags == (["all"] + ["-"] * (chunks - 1)) * pushes, f"interleaved pushes: {flags}"
    for i in range(chunks, len(log), chunks):
        previous_end = parse_time(log[i - 1]["finished_at"])
        assert parse_time(log[i]["received_at"]) >= previous_end, \
            f"push {i // chunks + 1} started before push {i // chunks} ended: {log[i - 1]}, {log[i]}"
    return pushes


def assert_runs_never_overlap(db, table):
    """The runs of `table` that sent something did not overlap in time."""
    sent = [r for r in runs(db, table) if r["requests"] > 0]
    for a, b in zip(sent, sent[1:]):
        assert a["finished_at"] is not None and b["started_at"] >= a["finished_at"], \
            f"runs {a['run_id']} and {b['run_id']} overlap: {a['started_at']}..{a['finished_at']} " \
            f"and {b['started_at']}..{b['finished_at']}"


def worker_cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    text = open(f"/proc/{pid}/stat").read()
    fields = text[text.rindex(")") + 2:].split()  # fields from the third one (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def next_cron(after, zone, minute, hour, weekday):
    """The first time strictly after `after` that the cron `minute hour * * weekday` (weekday:
    0 = Sunday) matches in `zone`, in UTC; computed independently of the extension."""
    local_day = after.astimezone(zone).date()
    for i in range(9):
        day = local_day + dt.timedelta(days=i)
        candidate = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if candidate > after and candidate.isoweekday() % 7 == weekday:
            return candidate.astimezone(UTC)
    raise AssertionError("no match within 9 days")


def next_feb_29(after):
    """The next 29 February 00:00 UTC after `after` (the QUIET_SCHEDULE's next time in UTC)."""
    year = after.year
    while True:
        if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
            candidate = dt.datetime(year, 2, 29, tzinfo=UTC)
            if candidate > after:
                return candidate
        year += 1


# --------------------------------------------------------------------------- fixtures


# --------------------------------------------------------------------------- the session's cluster


def test_one_worker_in_the_configured_database_idle_when_nothing_is_due(wdb, fake):
    """One worker, connected to qobra_sync.database_name, saying it is idle or waiting."""
    create_deals(wdb, fake)
    w = wait_worker(wdb)
    assert w["datname"] == DBNAME
    assert "pushing" not in w["activity"]
    wait_for(lambda: re.search(r"\bidle\b|\bwaiting\b", worker(wdb)["activity"]), 5,
             what="the worker's activity to say idle or waiting")
    assert wdb.value("SELECT count(*) FROM pg_stat_activity WHERE backend_type = %s", (WORKER_TYPE,)) == 1


def test_interval_schedule_keeps_its_cadence(wdb, fake):
    """'5 seconds': next_run_at = registration + 5 s; runs with trigger 'schedule' start every
    5 s ± 1 s; the first pushes the table, a change is pushed by the next one, an unchanged
    snapshot is skipped; next_run_at (tables and status) is the next due time."""
    wdb.rows("CREATE TABLE deals (id int PRIMARY KEY, name text, amount numeric)")
    wdb.rows("INSERT INTO deals SELECT i, 'deal ' || i, i FROM generate_series(1, 20) i")
    with wdb.conn.transaction():
        registered_at = wdb.value("SELECT now()")
        key = wdb.register("deals", schedule="5 seconds")
        wdb.define_in_fake(fake, "deals")
        first_due = wdb.registration("deals")["next_run_at"]
    assert abs(seconds(registered_at + dt.timedelta(seconds=5), first_due)) < 0.5, first_due

    first = wait_runs(wdb, "deals", 1, finished=True, timeout=10)[0]
    assert first["status"] == "succeeded", first["error"]
    assert 4.0 <= seconds(registered_at, first["started_at"]) <= 6.0, first["started_at"]
    assert_holds_table(wdb, fake, key)
    wdb.rows("UPDATE deals SET amount = amount + 1 WHERE id = 7")

    scheduled = wait_runs(wdb, "deals", 3, finished=True, timeout=15)[:3]
    assert all(4.0 <= g <= 6.0 for g in gaps(scheduled)), f"gaps between runs: {gaps(scheduled)}"
    assert [r["status"] for r in scheduled] == ["succeeded", "succeeded", "skipped"], \
        [(r["status"], r["error"]) for r in scheduled]
    assert_holds_table(wdb, fake, key)

    reg = wdb.registration("deals")
    status = wdb.one("SELECT * FROM qobra_sync.status WHERE source = 'deals'::regclass")
    last = runs(wdb, "deals", "schedule")[-1]
    assert status["next_run_at"] == reg["next_run_at"]
    assert 4.0 <= seconds(last["started_at"], reg["next_run_at"]) <= 6.0, (last["started_at"], reg["next_run_at"])
    assert runs(wdb, "deals", "manual") == [] and runs(wdb, "deals", "request") == []


def test_request_sync_starts_within_a_second_of_commit(wdb, fake, connect):
    """request_sync pushes nothing while its transaction is open or after a rollback; after
    commit the run (trigger 'request') starts within 1 s and Qobra holds the table."""
    key = create_deals(wdb, fake)
    observer = session(connect(), wdb.schema)
    with wdb.conn.transaction(force_rollback=True):
        wdb.rows("SELECT qobra_sync.request_sync('deals')")
    with wdb.conn.transaction():
        wdb.rows("SELECT qobra_sync.request_sync('deals')")
        time.sleep(1.5)  # nothing may start before commit (nor for the rolled-back request)
        assert runs(observer, "deals") == []
        committed_at = wdb.value("SELECT clock_timestamp()")
    run = wait_runs(wdb, "deals", 1, trigger="request", timeout=5)[0]
    assert 0 <= seconds(committed_at, run["started_at"]) < 1.0, (committed_at, run["started_at"])
    run = wait_run_finished(wdb, run["run_id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["rows_sent"] == 10
    assert_holds_table(wdb, fake, key)
    assert len(runs(wdb, "deals")) == 1  # one request run: the rolled-back request did nothing


def test_a_request_does_not_wait_behind_a_slow_look_at_imports(wdb, fake):
    """Twenty runs whose import Qobra has not finished, and a Qobra answering each request 2 s
    after it arrives: the worker's look at them (40 s in all) gives way to a requested push,
    which starts within a second of commit; once Qobra is fast and has finished the import,
    the look, a second at a time, settles every run."""
    create_deals(wdb, fake)
    wdb.rows("SET qobra_sync.skip_unchanged = off")
    pending = [wdb.sync("deals") for _ in range(20)]
    assert all(r["status"] == "succeeded" and r["import_status"] == "pending" for r in pending)
    fake.settings(latency_ms=2000)
    wait_for(lambda: (w := worker(wdb)) and "checking qobra imports" in w["activity"], 20,
             interval=0.02, what="the worker to look at the imports")
    time.sleep(0.3)
    assert fake.stats()["in_flight"] == 1, "no import status request on its way"
    wdb.rows("UPDATE deals SET amount = amount + 1 WHERE id = 1")  # not skipped as unchanged
    committed_at = wdb.value("SELECT clock_timestamp()")
    wdb.rows("SELECT qobra_sync.request_sync('deals')")
    run = wait_runs(wdb, "deals", 1, trigger="request", timeout=10)[0]
    assert 0 <= seconds(committed_at, run["started_at"]) < 1.0, (committed_at, run["started_at"])
    assert wait_run_finished(wdb, run["run_id"])["status"] == "succeeded"
    fake.settings(latency_ms=0)
    fake.flush()
    ids = [r["run_id"] for r in pending]
    wait_for(lambda: wdb.value("SELECT count(*) FROM qobra_sync.runs WHERE run_id = ANY(%s) "
                               "AND import_status = 'finished'", (ids,)) == len(ids),
             30, what="the worker to settle the twenty runs")


def test_cron_next_run_at_in_the_configured_time_zone(wdb, fake, system):
    """Cron schedules are evaluated in qobra_sync.timezone (reloaded with pg_reload_conf): a
    weekly time just after midnight in Asia/Kolkata (UTC+5:30) falls on the previous UTC day,
    and one just before midnight in America/Los_Angeles on the next UTC day; next_run_at
    (tables and status) equals the time Python computes with zoneinfo."""
    create_deals(wdb, fake)
    cases = [("Asia/Kolkata", 30, 0), ("America/Los_Angeles", 45, 23)]
    for zone_name, minute, hour in cases:
        zone = zoneinfo.ZoneInfo(zone_name)
        system.set("qobra_sync.timezone", zone_name)
        wait_setting(wdb, "qobra_sync.timezone", zone_name)
        weekday = (now(wdb).astimezone(zone) + dt.timedelta(days=2)).isoweekday() % 7
        schedule = f"{minute} {hour} * * {weekday}"
        with wdb.conn.transaction():
            at = wdb.value("SELECT now()")
            wdb.rows("SELECT qobra_sync.alter_table('deals', schedule => %s)", (schedule,))
        expected = next_cron(at, zone, minute, hour, weekday)
        in_utc = next_cron(at, UTC, minute, hour, weekday)
        assert expected.date() != expected.astimezone(zone).date(), "the case must cross a day boundary"
        assert expected != in_utc
        reg = wdb.registration("deals")
        status = wdb.one("SELECT * FROM qobra_sync.status WHERE source = 'deals'::regclass")
        assert reg["next_run_at"] == expected, f"{schedule} in {zone_name}: {reg['next_run_at']} != {expected}"
        assert status["next_run_at"] == expected
    assert runs(wdb, "deals") == []


def test_alter_pause_and_resume_take_effect_without_a_restart(wdb, fake):
    """A quiet table altered to '1 second' is pushed within 3 s of the commit; pause() stops
    its runs, resume() brings them back within 3 s; back to the quiet schedule, next_run_at is
    the next 29 February and no run starts. The worker is the same process throughout."""
    create_deals(wdb, fake)
    pid = wait_worker(wdb)["pid"]

    altered_at = now(wdb)
    wdb.rows("SELECT qobra_sync.alter_table('deals', schedule => '1 second')")
    first = wait_runs(wdb, "deals", 1, timeout=3)[0]
    assert seconds(altered_at, first["started_at"]) < 3.0

    wdb.rows("SELECT qobra_sync.pause('deals')")
    paused_at = now(wdb)
    assert wdb.registration("deals")["paused"] is True
    time.sleep(3)  # a paused table must stay quiet
    late = [r for r in runs(wdb, "deals") if seconds(paused_at, r["started_at"]) > 0.5]
    assert late == [], f"runs started while paused: {late}"

    wdb.rows("SELECT qobra_sync.resume('deals')")
    resumed_at = now(wdb)
    assert wdb.registration("deals")["paused"] is False
    after = max(r["run_id"] for r in runs(wdb, "deals"))
    resumed = wait_runs(wdb, "deals", 1, after=after, timeout=3)[0]
    assert seconds(resumed_at, resumed["started_at"]) < 3.0

    wdb.rows("SELECT qobra_sync.alter_table('deals', schedule => %s)", (QUIET_SCHEDULE,))
    quiet_at = now(wdb)
    assert wdb.registration("deals")["next_run_at"] == next_feb_29(quiet_at)
    time.sleep(3)  # and stay quiet
    late = [r for r in runs(wdb, "deals") if seconds(quiet_at, r["started_at"]) > 0.5]
    assert late == [], f"runs started after the quiet schedule was set: {late}"
    assert wdb.registration("deals")["next_run_at"] == next_feb_29(quiet_at)
    assert worker(wdb)["pid"] == pid


def test_an_alter_committing_as_a_run_ends_is_not_overwritten(wdb, fake, connect):
    """alter_table() in a transaction still open when the worker finishes a run: the worker's
    rescheduling waits for that transaction and computes the next run from the new schedule,
    never writing back a time from the old one (a lost update)."""
    key = create_deals(wdb, fake, schedule="1 second")
    fake.add_faults(bulk_fault(key, {"delay_ms": 1500}, times=0))
    wait_worker_pushing(wdb, "deals", timeout=5)
    running = wait_runs(wdb, "deals", 1, timeout=2)[-1]
    conn = connect()
    with conn.transaction():
        conn.execute("SELECT qobra_sync.alter_table(%s::regclass, schedule => %s)",
                     (f"{wdb.schema}.deals", QUIET_SCHEDULE))
        assert wait_run_finished(wdb, running["run_id"], timeout=10)["status"] == "succeeded"
        wait_for(lambda: wdb.value("SELECT wait_event_type = 'Lock' FROM pg_stat_activity"
                                   " WHERE backend_type = %s", (WORKER_TYPE,)),
                 5, what="the worker to wait for the registration row")
        committed_at = now(wdb)
    fake.clear_faults()
    wait_worker_not_pushing(wdb, timeout=5)
    assert wdb.registration("deals")["next_run_at"] == next_feb_29(committed_at)
    time.sleep(2)  # a second run would have started by now on the old schedule
    assert [r["run_id"] for r in runs(wdb, "deals")] == [running["run_id"]]


def test_terminated_worker_comes_back_and_the_schedule_continues(wdb, fake):
    """pg_terminate_backend of the worker in the middle of a push: a new worker within 5 s,
    the cut run ends interrupted (or failed), and the next scheduled run pushes the table."""
    key = create_deals(wdb, fake, rows=CHUNKED_ROWS, schedule="2 seconds")
    fake.add_faults(bulk_fault(key, {"delay_ms": 1000}, times=0))
    old = wait_worker_pushing(wdb, "deals", timeout=6)
    cut = wait_runs(wdb, "deals", 1, timeout=2)[-1]
    assert cut["status"] == "running"
    assert wdb.value("SELECT pg_terminate_backend(%s)", (old["pid"],)) is True
    terminated_at = now(wdb)
    fake.clear_faults()

    new = wait_worker(wdb, other_than=old["pid"], timeout=5)
    assert new["datname"] == DBNAME
    cut = wait_run_finished(wdb, cut["run_id"], timeout=5)
    assert cut["status"] in ("interrupted", "failed"), cut
    assert cut["error"]

    def pushed_after_restart():
        done = [r for r in runs(wdb, "deals", "schedule", after=cut["run_id"])
                if r["status"] != "running"]
        return done and done[0]
    nxt = wait_for(pushed_after_restart, 10, interval=0.1, what="a scheduled run after the restart")
    assert nxt["status"] == "succeeded", nxt["error"]
    assert seconds(terminated_at, nxt["started_at"]) < 5.0
    assert_holds_table(wdb, fake, key)
    assert [r for r in runs(wdb, "deals") if r["status"] == "running" and r["run_id"] <= nxt["run_id"]] == []


def test_one_push_of_a_table_at_a_time(wdb, fake, connect):
    """While the worker pushes a table (its query says `pushing <schema>.deals`), sync_now of
    it fails with SQLSTATE 55P03 'already running'; a request made while a manual push runs
    never interleaves with it. In the fake's log, pushes are whole and one after the other,
    and runs that sent something never overlap."""
    key = create_deals(wdb, fake, rows=CHUNKED_ROWS)
    fake.add_faults(bulk_fault(key, {"delay_ms": 700}, times=0))
    observer = session(connect(), wdb.schema)

    # The worker pushes; a manual push is refused.
    wdb.rows("SELECT qobra_sync.request_sync('deals')")
    wait_worker_pushing(wdb, "deals", timeout=3)
    with pytest.raises(psycopg.Error) as refused:
        wdb.value("SELECT qobra_sync.sync_now('deals')")
    assert refused.value.sqlstate == "55P03", refused.value
    assert "already running" in str(refused.value)
    requested = wait_runs(wdb, "deals", 1, trigger="request", finished=True)[0]
    assert requested["status"] == "succeeded", requested["error"]
    assert requested["requests"] == CHUNKS

    # A manual push runs; the worker is asked to push meanwhile.
    wdb.rows("UPDATE deals SET name = 'renamed once' WHERE id = 1")
    thread, outcome = sync_in_background(wdb, "deals")
    wait_for(lambda: len(fake.bulk_requests(key)) > CHUNKS or not thread.is_alive(), 10,
             what="the manual push to send its first chunk")
    assert thread.is_alive(), f"the manual push ended too early: {outcome}"
    observer.rows("UPDATE deals SET name = 'renamed twice' WHERE id = 2")
    observer.rows("SELECT qobra_sync.request_sync('deals')")
    thread.join(30)
    assert not thread.is_alive()
    assert "run" in outcome, outcome
    assert outcome["run"]["status"] == "succeeded", outcome["run"]["error"]

    second = wait_runs(observer, "deals", 1, trigger="request", after=requested["run_id"],
                       finished=True, timeout=20)[0]
    if second["status"] == "succeeded":
        assert second["started_at"] >= outcome["run"]["finished_at"]
        assert_holds_table(observer, fake, key)
    else:  # a design where a busy table's request is refused must say so
        assert "already running" in (second["error"] or ""), second
    pushes = assert_pushes_never_interleave(fake.bulk_requests(key), CHUNKS)
    assert pushes >= 2
    assert pushes == sum(r["requests"] > 0 for r in runs(observer, "deals"))
    assert_runs_never_overlap(observer, "deals")


def test_a_request_waiting_behind_a_manual_push_does_not_spin(wdb, fake, connect):
    """A request for a table another session is pushing (each chunk delayed 1 s) waits for
    that push without spinning: the worker uses < 0.25 s of CPU meanwhile, then pushes the
    table (changed since the manual push's snapshot)."""
    key = create_deals(wdb, fake, rows=CHUNKED_ROWS)
    fake.add_faults(bulk_fault(key, {"delay_ms": 1000}, times=0))
    observer = session(connect(), wdb.schema)
    thread, outcome = sync_in_background(wdb, "deals")
    wait_for(lambda: fake.bulk_requests(key) or not thread.is_alive(), 10,
             what="the manual push to send its first chunk")
    assert thread.is_alive(), f"the manual push ended too early: {outcome}"
    pid = wait_worker(observer)["pid"]
    cpu_before, start = worker_cpu_seconds(pid), time.monotonic()
    observer.rows("UPDATE deals SET name = 'renamed' WHERE id = 1")
    observer.rows("SELECT qobra_sync.request_sync('deals')")
    thread.join(30)
    used, waited = worker_cpu_seconds(pid) - cpu_before, time.monotonic() - start
    assert outcome.get("run", {}).get("status") == "succeeded", outcome

    requested = wait_runs(observer, "deals", 1, trigger="request", finished=True)[0]
    assert requested["status"] == "succeeded", requested["error"]
    assert requested["started_at"] >= outcome["run"]["finished_at"]
    fake.clear_faults()
    assert_holds_table(observer, fake, key)
    assert used < 0.25, f"the worker used {used:.2f} s of CPU while waiting {waited:.1f} s for the table"


def test_a_hanging_table_does_not_starve_the_others(wdb, fake, system):
    """Table a's receiver hangs, table b is due every 5 s, qobra_sync.run_timeout_ms = 3000:
    a's runs fail after about 3 s, b's runs keep coming with gaps of at most 3 + 5 (+1) s and
    push b."""
    system.set("qobra_sync.run_timeout_ms", 3000)
    key_a = create_deals(wdb, fake, table="a", schedule="5 seconds")
    key_b = create_deals(wdb, fake, table="b", schedule="5 seconds")
    fake.add_faults(bulk_fault(key_a, {"hang": True}, times=0))

    b_runs = wait_runs(wdb, "b", 4, finished=True, timeout=35)
    assert all(g <= 9.0 for g in gaps(b_runs)), f"gaps between b's runs: {gaps(b_runs)}"
    assert b_runs[0]["status"] == "succeeded", b_runs[0]["error"]
    assert_holds_table(wdb, fake, key_b, table="b")

    a_runs = [r for r in runs(wdb, "a", "schedule") if r["status"] != "running"]
    assert len(a_runs) >= 2, a_runs
    for r in a_runs:
        assert r["status"] == "failed", r
        assert seconds(r["started_at"], r["finished_at"]) <= 4.5, r
        assert re.search(r"run_timeout|time.?out|timed out|took longer", r["error"] or "", re.I), r["error"]
    assert any(f["fault"] == "hang" for f in fake.bulk_requests(key_a))


def test_enabled_off_stops_scheduled_pushes_and_on_resumes_them(wdb, fake, system):
    """qobra_sync.enabled = off (ALTER SYSTEM + reload): no scheduled run starts (the worker
    stays); on again: they resume within 3 s."""
    create_deals(wdb, fake, schedule="1 second")
    wait_runs(wdb, "deals", 2, timeout=5)
    system.set("qobra_sync.enabled", "off")
    off_at = now(wdb)
    time.sleep(4)  # no scheduled run may start while disabled
    late = [r for r in runs(wdb, "deals", "schedule") if seconds(off_at, r["started_at"]) > 1.0]
    assert late == [], f"scheduled runs started while disabled: {late}"
    assert worker(wdb) is not None

    last = max(r["run_id"] for r in runs(wdb, "deals"))
    system.set("qobra_sync.enabled", "on")
    on_at = now(wdb)
    resumed = wait_runs(wdb, "deals", 1, after=last, timeout=4)[0]
    assert seconds(on_at, resumed["started_at"]) < 3.0


def test_idle_worker_uses_almost_no_cpu(wdb, fake, capsys):
    """With a registration but nothing due for 60 s, the worker uses < 0.5 s of CPU."""
    create_deals(wdb, fake)
    wait_worker_not_pushing(wdb)
    pid = wait_worker(wdb)["pid"]
    time.sleep(1)  # let a wake-up caused by the registration pass
    before, start = worker_cpu_seconds(pid), time.monotonic()
    time.sleep(60)
    used, elapsed = worker_cpu_seconds(pid) - before, time.monotonic() - start
    assert worker(wdb)["pid"] == pid, "the worker restarted during the measurement"
    with capsys.disabled():
        print(f"\nidle qobra_sync worker: {used:.3f} s of CPU (utime+stime) over {elapsed:.1f} s")
    (WORK / "worker-idle-cpu.txt").write_text(f"{used:.3f} s CPU over {elapsed:.1f} s\n")
    assert used < 0.5, f"{used:.3f} s of CPU in {elapsed:.1f} s"


# --------------------------------------------------------------------------- a spare cluster


class Spare:
    """The spare cluster, its own fake Qobra and ALTER SYSTEM settings; opens sessions in the
    current test's schema (again after a restart)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.fake = FakeQobra(WORK, "fake-qobra-spare")
        self.system = SystemSettings(cluster)
        self.schema = None
        self.opened = []

    def db(self, dbname=DBNAME):
        """A new superuser session in the current schema."""
        conn = self.cluster.connect(dbname)
        self.opened.append(conn)
        if self.schema:
            conn.execute(f"SET search_path = {self.schema}, public")
        conn.execute("SET statement_timeout = '100s'")
        return Db(conn, self.schema)

    def close(self):
        """Closes every session opened (a dead one too)."""
        for conn in self.opened:
            conn.close()
        self.opened.clear()


@pytest.fixture(scope="module")
def spare(spare_cluster):
    """The spare cluster (without the extension at first) and its fake."""
    s = Spare(spare_cluster)
    yield s
    s.close()
    s.fake.stop()


@pytest.fixture
def sdb(spare, request):
    """A session on the spare cluster: the extension created if needed, the destination set to
    the spare fake (reset), the reader role, a fresh schema. Afterwards: the worker quiet,
    registrations and schema dropped, settings reset."""
    with spare.cluster.connect() as conn:
        if not conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'qobra_sync'").fetchone():
            conn.execute("CREATE EXTENSION qobra_sync")
            conn.execute(f"CREATE ROLE {READER} NOLOGIN")
        conn.execute("SELECT qobra_sync.set_destination(%s, %s)", (spare.fake.api_key, spare.fake.base_url))
    spare.fake.reset()
    spare.schema = "s_" + re.sub(r"\W+", "_", request.node.name.lower())[:50]
    with spare.cluster.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {spare.schema} CASCADE; CREATE SCHEMA {spare.schema}")
        conn.execute(f"GRANT USAGE ON SCHEMA {spare.schema} TO {READER}")
    yield spare.db()
    spare.close()
    if not (spare.cluster.dir / "data/postmaster.pid").exists():
        spare.cluster.pg_ctl("start")  # a test stopped it and failed before starting it again
    spare.system.reset()
    with spare.cluster.connect() as conn:
        quiesce(Db(conn, spare.schema), spare.fake)
        conn.execute("SELECT qobra_sync.unregister_table(source) FROM qobra_sync.tables")
        conn.execute(f"DROP SCHEMA {spare.schema} CASCADE")


def worker_exits(cluster, since=0):
    """Lines of the server log after its first `since` bytes saying the worker exited."""
    with open(cluster.server_log, "rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if WORKER_TYPE in line and "exited" in line]


def test_worker_waits_for_the_extension_then_runs_schedules(spare, request):
    """In a database without the extension, the worker waits (connected, not exiting); once
    CREATE EXTENSION and a '1 second' registration are committed, the same worker pushes it."""
    probe = spare.db()
    if probe.value("SELECT count(*) FROM pg_extension WHERE extname = 'qobra_sync'"):
        pytest.skip("the spare cluster already has the extension (test run out of order)")
    w = wait_worker(probe)  # (it may have exited once before the fixture created the database)
    since = spare.cluster.server_log.stat().st_size
    assert w["datname"] == DBNAME
    time.sleep(3)  # it keeps waiting, without exiting and being restarted
    assert worker(probe)["pid"] == w["pid"]
    assert worker_exits(spare.cluster, since) == []

    db = request.getfixturevalue("sdb")  # CREATE EXTENSION, destination, schema
    key = create_deals(db, spare.fake, schedule="1 second")
    run = wait_runs(db, "deals", 1, finished=True, timeout=15)[0]
    assert run["status"] == "succeeded", run["error"]
    assert_holds_table(db, spare.fake, key)
    assert worker(db)["pid"] == w["pid"]
    assert worker_exits(spare.cluster, since) == []


def test_history_older_than_history_days_is_purged_at_start(sdb, spare):
    """A run of 400 days ago (and its run_errors) is deleted when the worker starts (here after a
    restart); a run of 10 days ago stays (history_days = 30)."""
    create_deals(sdb, spare.fake)
    ids = {}
    for age in (400, 10):
        ids[age] = sdb.value("""INSERT INTO qobra_sync.runs (source, source_name, data_table_key, trigger,
                                       status, started_at, finished_at)
                                VALUES ('deals'::regclass, %(n)s, 'old', 'manual', 'succeeded',
                                        now() - make_interval(days => %(age)s),
                                        now() - make_interval(days => %(age)s))
                                RETURNING run_id""", {"n": f"{sdb.schema}.deals", "age": age})
    sdb.rows("""INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, details)
                VALUES (%s, 'push', 1, 'old error')""", (ids[400],))
    assert sdb.value("SHOW qobra_sync.history_days") == "30"

    spare.cluster.restart("fast")
    db = spare.db()
    wait_for(lambda: db.value("SELECT count(*) FROM qobra_sync.runs WHERE run_id = %s", (ids[400],)) == 0,
             10, interval=0.2, what="the 400-day-old run to be purged")
    assert db.value("SELECT count(*) FROM qobra_sync.run_errors WHERE run_id = %s", (ids[400],)) == 0
    assert db.value("SELECT count(*) FROM qobra_sync.runs WHERE run_id = %s", (ids[10],)) == 1


def test_crash_mid_push_leaves_an_interrupted_run_and_the_next_push_is_whole(sdb, spare):
    """`pg_ctl restart -m immediate` while the worker pushes (each chunk delayed 1.5 s): after
    recovery that run is `interrupted`; the next requested run succeeds and Qobra holds
    exactly the table."""
    fake = spare.fake
    key = create_deals(sdb, fake, rows=CHUNKED_ROWS)
    fake.add_faults(bulk_fault(key, {"delay_ms": 1500}, times=0))
    sdb.rows("SELECT qobra_sync.request_sync('deals')")
    wait_worker_pushing(sdb, "deals", timeout=3)
    wait_for(lambda: len(fake.bulk_requests(key)) >= 1, 10, what="the first chunk to be accepted")
    cut = runs(sdb, "deals", "request")[-1]
    assert cut["status"] == "running"

    spare.cluster.restart("immediate")
    fake.clear_faults()
    db = spare.db()
    wait_worker(db)
    cut = wait_run_finished(db, cut["run_id"], timeout=10)
    assert cut["status"] == "interrupted", cut
    assert cut["finished_at"] is not None

    db.rows("SELECT qobra_sync.request_sync('deals')")
    nxt = wait_runs(db, "deals", 1, trigger="request", after=cut["run_id"], finished=True)[0]
    assert nxt["status"] == "succeeded", nxt["error"]
    assert nxt["rows_sent"] == CHUNKED_ROWS
    assert_holds_table(db, fake, key)
    assert [r["run_id"] for r in runs(db, "deals") if r["status"] == "running"] == []


def test_fast_stop_during_a_hanging_request_takes_under_5_seconds(sdb, spare):
    """`pg_ctl stop -m fast` while the worker waits on a receiver that never answers (30 s
    http_timeout_ms) returns within 5 s; after a start, no run is left `running`."""
    fake = spare.fake
    key = create_deals(sdb, fake)
    assert sdb.value("SHOW qobra_sync.http_timeout_ms") == "30s"
    fake.add_faults(bulk_fault(key, {"hang": True}, times=0))
    sdb.rows("SELECT qobra_sync.request_sync('deals')")
    wait_worker_pushing(sdb, "deals", timeout=3)
    wait_for(lambda: any(r["fault"] == "hang" for r in fake.bulk_requests(key)), 5,
             what="the push to reach the hanging receiver")
    hung = runs(sdb, "deals", "request")[-1]
    assert hung["status"] == "running"

    took = spare.cluster.pg_ctl("-m", "fast", "stop")
    assert took < 5.0, f"pg_ctl stop -m fast took {took:.1f} s"

    fake.clear_faults()
    spare.cluster.pg_ctl("start")
    db = spare.db()
    hung = wait_run_finished(db, hung["run_id"], timeout=10)
    assert hung["status"] in ("interrupted", "failed"), hung


def test_the_worker_waits_quietly_for_its_database():
    """A cluster whose qobra_sync.database_name does not exist yet: the worker fails to connect
    once, then waits connected to no database (saying so in pg_stat_activity) instead of dying
    every second; once the database is created it connects to it within seconds."""
    c = Cluster(WORK / "e2e-late-database", free_port())
    c.stop()
    try:
        c.start("qobra_sync.database_name = 'created_later'")
        with c.connect("postgres") as conn:
            def waiting():
                """The worker's (datname, query), once it says it waits."""
                row = conn.execute("SELECT datname, query FROM pg_stat_activity WHERE backend_type = %s",
                                   (WORKER_TYPE,)).fetchone()
                return row if row and "waiting for database" in row[1] else None
            datname, query = wait_for(waiting, 10, what="the worker to wait for its database")
            assert datname is None and '"created_later"' in query
            time.sleep(4)  # a worker dying every second would have logged 4 more FATALs by now
            log = c.server_log.read_text()
            assert log.count('FATAL:  database "created_later" does not exist') == 1, log[-3000:]
            conn.execute("CREATE DATABASE created_later")
            wait_for(lambda: conn.execute("SELECT 1 FROM pg_stat_activity WHERE backend_type = %s "
                                          "AND datname = 'created_later'", (WORKER_TYPE,)).fetchone(),
                     10, interval=0.2, what="the worker to connect to the new database")
    finally:
        c.stop()

"""next_runs() against cronsim (PyPI), an independent implementation of Debian cron's rules:
the same times for many expressions, from a day before every DST change of a year, in zones
with whole-hour, half-hour and 30-minute-DST offsets, and the worker's own next run."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest
from cronsim import CronSim

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe",
         "America/Santiago", "Pacific/Chatham"]
EXPRESSIONS = ["30 2 * * *", "15 2 * * *", "0 * * * *", "*/20 * * * *", "45 1 * * *", "0 3 * * *",
               "0 0 13 * 5", "0 9 * * 1-5", "30 3 * * 0", "0 12 1 JAN,JUL *",
               "5 0-3 * * *", "0 */6 * * *", "59 23 31 12 *", "0 2 * * SUN", "0 0 */2 * 1", "5,35 2-3 * * *",
               "0-59/5 1 * * *", "10-50/20 0-4 * * *"]
# cronsim steps over hours in real time for jobs with a starred hour, so after Lord Howe's
# 30-minute shift it lands on :30 and skips a run (06:00 after a change at 02:00): those are
# checked on their own below.
CRONSIM_OFF = {("Australia/Lord_Howe", "0 */6 * * *")}
NO_DST = {"UTC", "Asia/Kolkata"}
RUNS = 60


def dst_changes(zone, year=2027):
    """The UTC instants (to the hour) at which `zone` changes its offset during `year`."""
    z = ZoneInfo(zone)
    t = datetime(year, 1, 1, tzinfo=timezone.utc)
    changes = []
    while t.year == year:
        if t.astimezone(z).utcoffset() != (t + timedelta(hours=1)).astimezone(z).utcoffset():
            changes.append(t)
        t += timedelta(hours=1)
    return changes


def cronsim_runs(expr, zone, after, n):
    """cronsim's first `n` times after `after`, in UTC. Started inside an hour a DST change
    repeats, cronsim walks the wall clock from the start's wall time without its fold, and so
    yields the rest of that hour's first pass, which lies before the start: those are left out
    (a fixed-time job fires once, at the first pass)."""
    it = CronSim(expr, after.astimezone(ZoneInfo(zone)))
    times = []
    while len(times) < n:
        t = next(it).astimezone(timezone.utc)
        if t > after:
            times.append(t)
    return times


def next_runs(db, expr, zone, after, n):
    """next_runs()'s first `n` times after `after`, in UTC."""
    rows = db.rows("SELECT t FROM qobra_sync.next_runs(%s, %s, %s, %s) t", (expr, after, n, zone))
    return [r["t"].astimezone(timezone.utc) for r in rows]


@pytest.mark.parametrize("zone", ZONES)
def test_next_runs_agree_with_cronsim_across_dst_changes(db, zone):
    """From a day before each DST change of 2027 (and from New Year), every expression gives
    the same next times as cronsim."""
    changes = dst_changes(zone)
    # A day before each change, and from inside it: half an hour after the change's instant is
    # in the hour a fall-back repeats, and just past the hour a spring-forward skips.
    starts = [datetime(2027, 1, 1, 0, 7, tzinfo=timezone.utc)] + \
        [c - timedelta(days=1, minutes=-13) for c in changes] + \
        [c + timedelta(minutes=90) for c in changes]
    assert len(starts) == (1 if zone in NO_DST else 5), f"{zone}: {starts}"
    compared, differences = 0, []
    local = lambda t: t.astimezone(ZoneInfo(zone)).isoformat()  # noqa: E731
    for after in starts:
        for expr in EXPRESSIONS:
            if (zone, expr) in CRONSIM_OFF:
                continue
            ours = next_runs(db, expr, zone, after, RUNS)
            theirs = cronsim_runs(expr, zone, after, RUNS)
            first = next(((o, t) for o, t in zip(ours, theirs) if o != t), None)
            if first or len(ours) != len(theirs):
                differences.append(f"{expr!r} after {local(after)}: ours {first and local(first[0])}, "
                                   f"cronsim {first and local(first[1])}")
            compared += len(ours)
    assert differences == [], "\n".join(differences)
    skipped = sum(1 for z, _ in CRONSIM_OFF if z == zone)
    assert compared == len(starts) * (len(EXPRESSIONS) - skipped) * RUNS


def test_every_six_hours_keeps_the_wall_clock_across_a_half_hour_shift(db):
    """In Lord Howe (DST shifts by 30 minutes), every six hours fires at 00:00, 06:00, 12:00
    and 18:00 local time every day, transition days included."""
    zone = ZoneInfo("Australia/Lord_Howe")
    for change in dst_changes("Australia/Lord_Howe"):
        runs = [t.astimezone(zone) for t in next_runs(db, "0 */6 * * *", "Australia/Lord_Howe",
                                                     change - timedelta(days=2), 16)]
        walls = [t.replace(tzinfo=None) for t in runs]
        assert all(t.minute == 0 and t.hour % 6 == 0 for t in walls), walls
        assert all(b - a == timedelta(hours=6) for a, b in zip(walls, walls[1:])), walls


def test_nicknames_are_their_cron_expressions(db):
    """@yearly, @monthly, @weekly, @daily and @hourly fire as the expressions they stand for
    (cronsim does not read nicknames)."""
    after = datetime(2027, 3, 27, 22, 0, tzinfo=timezone.utc)
    for nickname, expr in [("@yearly", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
                           ("@daily", "0 0 * * *"), ("@hourly", "0 * * * *")]:
        assert next_runs(db, nickname, "Europe/Paris", after, 10) == next_runs(db, expr, "Europe/Paris", after, 10) \
            == cronsim_runs(expr, "Europe/Paris", after, 10), nickname


def test_next_runs_defaults_counts_and_errors(db, system):
    """Defaults come from now() and qobra_sync.timezone; intervals count from `after`; bad
    arguments are refused with their SQLSTATE."""
    system.set("qobra_sync.timezone", "Asia/Kolkata")
    times = db.rows("SELECT t FROM qobra_sync.next_runs('0 9 * * *') t")
    assert len(times) == 5
    assert all(t["t"].astimezone(ZoneInfo("Asia/Kolkata")).hour == 9 for t in times)
    assert times[0]["t"] > db.value("SELECT now()")
    after = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert next_runs(db, "90 minutes", "UTC", after, 3) == \
        [after + timedelta(minutes=90 * i) for i in (1, 2, 3)]
    assert next_runs(db, "@daily", "UTC", after, 0) == []
    for args, state in [(("0 25 * * *", after, 5, "UTC"), "22023"),
                        (("0 * * * *", after, -1, "UTC"), "22023"),
                        (("0 * * * *", after, 10_001, "UTC"), "22023"),
                        (("0 * * * *", after, 5, "Mars/Olympus"), "22023"),
                        (("0 * * * *", "infinity", 5, "UTC"), "22023"),
                        ((None, after, 5, "UTC"), "22004")]:
        with pytest.raises(psycopg.Error) as e:
            db.rows("SELECT qobra_sync.next_runs(%s, %s::timestamptz, %s, %s)", args)
        assert e.value.sqlstate == state, (args, e.value)


def test_the_worker_runs_when_next_runs_says(wdb, fake):
    """The worker's first two runs of a new registration fall at next_runs()'s first two times
    after the registration (an interval, counted as the worker counts it)."""
    from worker_helpers import create_deals, wait_runs
    create_deals(wdb, fake, rows=3, schedule="3 seconds")
    created = wdb.value("SELECT created_at FROM qobra_sync.registrations")
    planned = next_runs(wdb, "3 seconds", "UTC", created, 2)
    runs = wait_runs(wdb, "deals", 2, timeout=20)
    for run, due in zip(runs, planned):
        assert due <= run["started_at"] < due + timedelta(seconds=1.5), (run["started_at"], due)
    assert wdb.value("SELECT next_run_at FROM qobra_sync.tables") == \
        next_runs(wdb, "3 seconds", "UTC", created, 3)[2]

//! The background worker: runs every registration's schedule inside the database.
//!
//! One worker per database of `qobra_sync.database_name`, each keeping the schedules of its own
//! database's registrations and recording its own database's runs (while its database does not
//! exist, it waits for it, connected to no database, instead of failing every second). It sleeps on its latch until the next
//! due run or its next look at Qobra's pending imports (every 15 seconds, a second at most
//! each time, dropped at once for a push), and is woken by commits that change registrations
//! or request a push. Each due registration is pushed in turn, one at a time: the run row is committed as
//! `running` first (so a crash leaves it to be marked `interrupted` at the next start), the push
//! runs in its own transaction, and any error it raises is recorded as a failed run rather than
//! stopping the worker. A run is bounded by `qobra_sync.run_timeout_ms`, so a stuck destination
//! delays the other tables by that much at most. SIGTERM ends the worker at once, even in the
//! middle of an HTTP request (the push polls for interrupts every 100 ms).
//!
//! On a hot standby the postmaster does not start the worker at all (it starts once recovery
//! has finished, like pg_cron's): after a promotion it starts within a second, marks the runs
//! the old primary left `running` as `interrupted`, and runs what fell due meanwhile once.
//! While the extension is not created, or its SQL objects are of another version than the
//! library (between a library upgrade and `ALTER EXTENSION … UPDATE`), it waits, saying so
//! once in the log and in `pg_stat_activity`.

use crate::pg::activity;
use crate::pg::bgworker;
use crate::pg::catalog;
use crate::pg::error::{Result, SqlState};
use crate::pg::gucs;
use crate::pg::lifecycle;
use crate::pg::locks::{self, Holding};
use crate::pg::shared;
use crate::pg::spi::{execute, first_value};
use crate::pg::sqltypes::RegClass;
use crate::pg::xact;
use crate::pg::Oid;
use crate::registry;
use crate::sync::{imports, orphans, push, runs};
use pgrx::bgworkers::BackgroundWorker;
use qobra_sync_core::names::setting::DATABASE_NAME;
use qobra_sync_core::runs::Trigger;
use qobra_sync_core::schedule::{parse_zone, Schedule};
use std::time::{Duration, Instant};

/// The worker's type in `pg_stat_activity.backend_type`.
pub const WORKER_TYPE: &str = "qobra_sync worker";
/// Longest sleep: the worker looks at the schedules and purges history at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How often run history is purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often Qobra's pending imports are looked at.
const POLL_EVERY: Duration = Duration::from_secs(15);
/// How long one look at pending imports may keep a due push waiting; a look cut short (by
/// this, or by a wake) goes on where it stopped in the next round.
const POLL_BUDGET: Duration = Duration::from_secs(1);

/// Registers one worker per database of `qobra_sync.database_name` with the postmaster (from
/// `_PG_init`, when preloaded); each is told its database by its position in the list.
pub fn register() {
    for (i, database) in gucs::databases().iter().enumerate() {
        bgworker::register(
            &format!("{WORKER_TYPE} for {database}"),
            WORKER_TYPE,
            i,
            main,
        );
    }
}

/// A worker's life, given its position `me` in `qobra_sync.database_name`: it connects to its
/// database (waiting for it to exist), then keeps the schedules until it is told to stop.
fn main(me: usize) {
    let Some(database) = gucs::databases().get(me).cloned() else {
        // The list cannot change without a restart; should it, this worker has no database.
        bgworker::exit(0);
    };
    // The previous worker died connecting: rather than dying every second, wait for the database.
    if shared::set_connecting(me, true) {
        wait_for_database(me, &database);
    }
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    shared::set_connecting(me, false);
    // Every statement pins its own search_path (see `pinned`); the worker's session does too.
    bgworker::pin_search_path();
    bgworker::publish_pid(me);
    let mut state = State {
        started: false,
        last_purge: None,
        next_poll: Instant::now(),
        polled_up_to: 0,
        waiting: None,
    };
    loop {
        pgrx::check_for_interrupts!();
        bgworker::reload_if_asked();
        let sleep = tick(&mut state);
        if let Some(sleep) = sleep {
            if state.waiting.is_none() {
                activity::idle("idle");
            }
            BackgroundWorker::wait_latch(Some(sleep));
        }
    }
}

/// Waits, connected to no database, until `name` exists, then exits so that the postmaster
/// starts a worker that connects to it (a second later). Looks every 5 seconds; logs once.
fn wait_for_database(me: usize, name: &str) -> ! {
    BackgroundWorker::connect_worker_to_spi(None, None);
    let what = format!("waiting for database \"{name}\" ({DATABASE_NAME}) to be created");
    pgrx::log!("qobra_sync worker: {what}");
    activity::idle(&what);
    loop {
        pgrx::check_for_interrupts!();
        if bgworker::database_exists(name) {
            pgrx::log!(
                "qobra_sync worker: database \"{name}\" exists; restarting to connect to it"
            );
            shared::set_connecting(me, false);
            bgworker::exit(1);
        }
        BackgroundWorker::wait_latch(Some(Duration::from_secs(5)));
    }
}

/// What the worker remembers between ticks.
struct State {
    started: bool,
    last_purge: Option<Instant>,
    /// When to look at imports next: now after a look cut short, [`POLL_EVERY`] after one
    /// that went round all pending runs.
    next_poll: Instant,
    /// The run a look at imports cut short stopped after.
    polled_up_to: i64,
    /// What it waits for before it can keep the schedules, as last logged.
    waiting: Option<String>,
}

impl State {
    /// Notes what the worker waits for (None: nothing): shown in `pg_stat_activity`, and
    /// logged once each time it changes, not at every look.
    fn wait(&mut self, what: Option<&str>) {
        if let Some(what) = what {
            activity::idle(what);
            if self.waiting.as_deref() != Some(what) {
                pgrx::log!("qobra_sync worker: {what}");
            }
        }
        self.waiting = what.map(str::to_owned);
    }
}

/// What the worker must wait for before it keeps the schedules, if anything: the extension
/// to be created in its database, or its SQL objects to be updated to this library's version.
fn not_ready() -> Result<Option<String>> {
    let Some(sql) = lifecycle::sql_version()? else {
        return Ok(Some("waiting for CREATE EXTENSION qobra_sync".into()));
    };
    Ok(lifecycle::mismatch(&sql).map(|e| {
        format!(
            "waiting for ALTER EXTENSION qobra_sync UPDATE ({})",
            e.message
        )
    }))
}

/// A registration that is due.
struct Due {
    source: Oid,
    trigger: Trigger,
    due_at: chrono::DateTime<chrono::Utc>,
}

/// One round: housekeeping, then at most one due push. Returns how long to sleep, or None to
/// go on at once (another registration may be due).
fn tick(state: &mut State) -> Option<Duration> {
    let ready = in_transaction(|| {
        let waiting = not_ready()?;
        state.wait(waiting.as_deref());
        if waiting.is_some() {
            return Ok(false);
        }
        if !state.started {
            runs::mark_interrupted()?;
            state.started = true;
        }
        if state.last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
            runs::purge()?;
            state.last_purge = Some(Instant::now());
        }
        Ok(true)
    });
    if ready != Some(true) {
        return Some(Duration::from_secs(10));
    }
    record_orphans();
    if Instant::now() >= state.next_poll {
        poll_imports(state);
    }
    match in_transaction(next_due).flatten() {
        Some(due) => {
            run(due);
            None
        }
        None => {
            let until_poll = state.next_poll.saturating_duration_since(Instant::now());
            let sleep = in_transaction(sleep_time).unwrap_or(Duration::from_secs(10));
            Some(sleep.min(until_poll))
        }
    }
}

/// Looks at Qobra's pending imports for about [`POLL_BUDGET`], and gives way at once when woken
/// (a push was asked for): a look cut short goes on after the last run it looked at, next
/// round.
fn poll_imports(state: &mut State) {
    activity::running("checking Qobra imports");
    let polled = in_transaction(|| {
        imports::poll(
            state.polled_up_to,
            Some(POLL_BUDGET),
            &bgworker::latch_is_set,
        )
    });
    match polled {
        Some(imports::Polled {
            cut_after: Some(run),
            ..
        }) => state.polled_up_to = run,
        // Done, or failed (looked at again in POLL_EVERY).
        _ => {
            state.polled_up_to = 0;
            state.next_poll = Instant::now() + POLL_EVERY;
        }
    }
}

/// Runs `f` in its own transaction; an error is logged, the transaction rolled back, and None
/// returned, so that no error stops the worker. An error because DROP EXTENSION committed
/// between two steps is expected and not logged: the next round says what the worker waits for.
fn in_transaction<T>(f: impl FnOnce() -> Result<T>) -> Option<T> {
    match xact::attempt(f) {
        Ok(v) => Some(v),
        Err(e) => {
            // When even this look fails, the error is logged.
            if xact::attempt(lifecycle::sql_version).map_or(true, |v| v.is_some()) {
                pgrx::log!("qobra_sync worker: {}", e.message);
            }
            None
        }
    }
}

/// Records the runs of sessions whose transaction rolled back their row (see `orphans`), each
/// in its own transaction, and frees their slots; then frees those of dropped databases.
fn record_orphans() {
    for (i, slot) in shared::orphans() {
        let row = orphans::row(&slot, chrono::Utc::now());
        let logged = slot.phase == shared::Phase::Ended;
        in_transaction(|| runs::record_orphan(row, logged));
        shared::free(i, slot.run_id);
    }
    free_orphans_of_dropped_databases();
}

/// Frees the slots of runs orphaned in a database dropped before its worker recorded them: no
/// worker ever will (their history went with the database), and the slots would stay taken.
fn free_orphans_of_dropped_databases() {
    let elsewhere = shared::orphans_elsewhere();
    if elsewhere.is_empty() {
        return;
    }
    let gone = in_transaction(|| {
        let mut gone = vec![];
        for (i, slot) in &elsewhere {
            let exists: Option<bool> = first_value(
                "SELECT true FROM pg_catalog.pg_database WHERE oid OPERATOR(pg_catalog.=) $1",
                &[Oid::from(slot.database).into()],
            )?;
            if exists.is_none() {
                gone.push((*i, slot.run_id));
            }
        }
        Ok(gone)
    });
    for (i, run_id) in gone.into_iter().flatten() {
        shared::free(i, run_id);
    }
}

/// The registration to push now, if any: requests first, then the most overdue schedule.
fn next_due() -> Result<Option<Due>> {
    let busy = locks::push_lock_held_sql("source");
    let row: Option<pgrx::JsonB> = first_value(
        &format!("SELECT pg_catalog.jsonb_build_array(source::pg_catalog.oid::pg_catalog.int8,
                    requested_at IS NOT NULL, pg_catalog.to_char(COALESCE(requested_at, next_run_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
           FROM qobra_sync.registrations
          WHERE (requested_at IS NOT NULL OR ($1 AND NOT paused AND next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()))
            AND NOT {busy}   -- a push of it is running elsewhere
          ORDER BY requested_at IS NULL, COALESCE(requested_at, next_run_at) LIMIT 1"),
        &[gucs::ENABLED.get().into()],
    )?;
    Ok(row.and_then(|pgrx::JsonB(v)| {
        let due_at = chrono::DateTime::parse_from_rfc3339(v.get(2)?.as_str()?)
            .ok()?
            .with_timezone(&chrono::Utc);
        Some(Due {
            source: Oid::from(v.get(0)?.as_u64()? as u32),
            trigger: if v.get(1)?.as_bool()? {
                Trigger::Request
            } else {
                Trigger::Schedule
            },
            due_at,
        })
    }))
}

/// How long to sleep until the next scheduled run (at most [`MAX_SLEEP`]).
fn sleep_time() -> Result<Duration> {
    // A request waiting for another session's push of the same table: look again soon (that
    // session's commit does not wake the worker).
    if first_value::<bool>(
        "SELECT true FROM qobra_sync.registrations WHERE requested_at IS NOT NULL LIMIT 1",
        &[],
    )?
    .is_some()
    {
        return Ok(Duration::from_millis(500));
    }
    if !gucs::ENABLED.get() {
        return Ok(MAX_SLEEP);
    }
    let ms: Option<i64> = first_value(
        "SELECT GREATEST(0, pg_catalog.date_part('epoch', pg_catalog.min(next_run_at) OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8
           FROM qobra_sync.registrations WHERE NOT paused",
        &[],
    )?;
    Ok(ms
        .map(|ms| Duration::from_millis(ms as u64 + 5))
        .unwrap_or(MAX_SLEEP)
        .min(MAX_SLEEP))
}

/// Pushes one due registration: start (committed; a registration that follows its source by
/// name moves there), execute, and schedule its next run.
fn run(due: Due) {
    let name = in_transaction(|| catalog::describe(due.source).map(|s| s.name))
        .unwrap_or_else(|| due.source.to_u32().to_string());
    activity::running(&format!("pushing {name}"));
    let run_started = chrono::Utc::now();
    let started = in_transaction(|| start(&due));
    let busy = matches!(started, Some(Start::Busy));
    // The push may have followed its source by name to another relation.
    let due = match &started {
        Some(Start::Started(s)) => Due {
            source: s.source_oid(),
            ..due
        },
        _ => due,
    };
    if let Some(Start::Started(s)) = started {
        let run_id = s.run_id;
        if in_transaction(|| push::execute(*s, false)).is_none() {
            in_transaction(|| {
                runs::fail(run_id, "the run stopped on an error; see the server log")
            });
        }
    }
    // Whatever happened after the lock was taken (an error included), it is let go here.
    push::unlock(due.source);
    in_transaction(|| reschedule(&due, run_started, busy));
}

/// How starting a due registration went.
enum Start {
    /// The run is recorded as running and holds the push lock.
    Started(Box<push::Started>),
    /// Another session is pushing the source: look again soon.
    Busy,
    /// The run could not start (source dropped or renamed, no destination…): recorded as
    /// failed with the reason.
    Refused,
}

/// Starts the push of a due registration, telling a busy source from a refused run.
fn start(due: &Due) -> Result<Start> {
    match push::start(due.source, due.trigger, Holding::Session) {
        Ok(s) => Ok(Start::Started(Box::new(s))),
        Err(e) if e.state == SqlState::LockNotAvailable => Ok(Start::Busy),
        Err(e) => {
            let reg = registry::require(due.source)?;
            runs::refused(&reg, due.trigger, &e)?;
            Ok(Start::Refused)
        }
    }
}

/// Sets the next run time after a run: the schedule's next time after the due time (intervals
/// keep their cadence), never in the past, none without a schedule; 5 s from now when the table
/// was busy.
fn reschedule(due: &Due, run_started: chrono::DateTime<chrono::Utc>, busy: bool) -> Result<()> {
    // Lock the row before reading the schedule: an alter_table() committing in between would
    // otherwise be overwritten with a time computed from the old schedule.
    execute(
        "SELECT 1 FROM qobra_sync.registrations WHERE source OPERATOR(pg_catalog.=) $1 FOR UPDATE",
        &[RegClass(due.source).into()],
    )?;
    let Some(reg) = registry::load(due.source)? else {
        return Ok(());
    };
    let now = chrono::Utc::now();
    let next = match (busy, reg.schedule.as_deref()) {
        (true, Some(_)) => Some(now + chrono::Duration::seconds(5)),
        // A request stays (requested_at) and is taken again soon; nothing else is due.
        (_, None) => None,
        (false, Some(schedule)) => {
            let zone = parse_zone(&gucs::text(&gucs::TIMEZONE))?;
            let schedule = Schedule::parse(schedule)?;
            let from = if due.trigger == Trigger::Schedule {
                due.due_at
            } else {
                now
            };
            Some(match schedule.next_after(from, zone) {
                Some(t) if t > now => t,
                _ => schedule
                    .next_after(now, zone)
                    .unwrap_or(now + chrono::Duration::hours(1)),
            })
        }
    };
    execute(
        "UPDATE qobra_sync.registrations SET next_run_at = $2::pg_catalog.timestamptz,
                    requested_at = CASE WHEN requested_at OPERATOR(pg_catalog.<=) $3::pg_catalog.timestamptz THEN NULL ELSE requested_at END
              WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(due.source).into(), next.map(|t| t.to_rfc3339()).into(), if busy { "-infinity".to_owned() } else { run_started.to_rfc3339() }.into()],
    )
}

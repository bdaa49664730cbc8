//! Running: `sync_now`, `request_sync`, `poll_imports`, `next_runs`, and `_progress` behind the
//! progress view.

use super::{belongs_to_0_1_0, computes, reads, required, writes};
use crate::pg::error::{Error, OrRaise, Result, SqlState};
use crate::pg::roles;
use crate::pg::sqltypes::RegClass;
use crate::pg::time;
use crate::pg::Oid;
use crate::registry;
use pgrx::prelude::*;
use qobra_sync_core::schedule::{parse_zone, Schedule};

/// Pushes a registered source now, in this session, and returns the run id. Outcomes are in
/// `qobra_sync.runs`; `force` overrides the deletion guard and `skip_unchanged`; `raise_on_failure` fails
/// the statement when the run fails or is blocked, so that scripts see it.
#[pg_extern(volatile, name = "sync_now")]
#[search_path(pg_catalog, pg_temp)]
fn sync_now_or_raise(
    source: Option<RegClass>,
    force: default!(Option<bool>, false),
    raise_on_failure: default!(Option<bool>, false),
) -> i64 {
    let _entered = writes("sync_now()").or_raise();
    let source = required(source, "source").or_raise().0;
    crate::sync::push::sync(
        source,
        force.unwrap_or(false),
        raise_on_failure.unwrap_or(false),
        qobra_sync_core::runs::Trigger::Manual,
    )
    .or_raise()
}

/// `sync_now(source, force)` of version 0.1.0, whose SQL still calls it between a library
/// upgrade and `ALTER EXTENSION … UPDATE`: it says to update (the current `sync_now` has
/// another argument list, hence another symbol).
#[pg_extern(sql = false)]
fn sync_now(_source: Option<RegClass>, _force: Option<bool>) -> i64 {
    belongs_to_0_1_0("sync_now(regclass, boolean)")
}

/// Asks the background worker to push a registered source right after this transaction commits.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn request_sync(source: Option<RegClass>) {
    let _entered = writes("request_sync()").or_raise();
    registry::request(required(source, "source").or_raise().0).or_raise()
}

/// The pushes in flight in any session (read by the `qobra_sync.progress` view).
#[allow(clippy::type_complexity)] // the row type is the SQL TABLE(...) signature
#[pg_extern(volatile, name = "_progress")]
#[search_path(pg_catalog, pg_temp)]
fn progress() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(run_id, i64),
        name!(source, RegClass),
        name!(started_at, pgrx::datum::TimestampWithTimeZone),
        name!(chunks, i64),
        name!(rows_sent, i64),
        name!(bytes_sent, i64),
        name!(restarts, i64),
    ),
> {
    let _entered = reads("_progress()").or_raise();
    // Only the pushes of registrations whose owner (when the push started) the caller may act
    // for, as the progress view shows.
    let mut slots = vec![];
    for slot in crate::pg::shared::progress() {
        if roles::callers_may_act_for(Oid::from(slot.owner)).or_raise() {
            slots.push(slot);
        }
    }
    TableIterator::new(slots.into_iter().map(|s| {
        let started = crate::pg::time::timestamptz_from_unix_micros(s.started_us);
        (
            s.pid,
            s.run_id,
            RegClass(Oid::from(s.source)),
            started,
            s.chunks as i64,
            s.rows_sent as i64,
            s.bytes_sent as i64,
            s.restarts as i64,
        )
    }))
}

/// Looks once at Qobra's imports of recent runs and records their outcome (and parsing errors
/// in `run_errors`); returns how many runs were settled. The worker calls it on its own.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn poll_imports() -> i64 {
    let _entered = writes("poll_imports()").or_raise();
    crate::sync::imports::poll_imports().or_raise()
}

/// The most times `next_runs` lists at once.
const MAX_NEXT_RUNS: i32 = 10_000;

/// The next `count` times `schedule` fires after `after`, in `timezone`, computed by the code
/// the worker schedules with (intervals count from `after`).
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn next_runs(
    schedule: Option<&str>,
    after: default!(
        Option<pgrx::datum::TimestampWithTimeZone>,
        "pg_catalog.now()"
    ),
    count: default!(Option<i32>, 5),
    timezone: default!(
        Option<&str>,
        "pg_catalog.current_setting('qobra_sync.timezone')"
    ),
) -> SetOfIterator<'static, pgrx::datum::TimestampWithTimeZone> {
    let run = || -> Result<Vec<pgrx::datum::TimestampWithTimeZone>> {
        computes("next_runs()")?;
        let schedule = Schedule::parse(required(schedule, "schedule")?)?;
        let after = time::to_utc(required(after, "after")?)?;
        let count = required(count, "count")?;
        if !(0..=MAX_NEXT_RUNS).contains(&count) {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("count must be between 0 and {MAX_NEXT_RUNS}"),
            ));
        }
        let zone = parse_zone(required(timezone, "timezone")?)?;
        Ok(schedule
            .upcoming(after, zone, count as usize)
            .iter()
            .map(|t| time::timestamptz_from_unix_micros(t.timestamp_micros()))
            .collect())
    };
    SetOfIterator::new(run().or_raise())
}

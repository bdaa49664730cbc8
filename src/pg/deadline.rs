//! When a push must stop: the deadline of the run in progress in this backend
//! (`qobra_sync.run_timeout_ms`), and a cancel or termination asked of it.
//!
//! The deadline is set when a run starts and cleared when it ends. It bounds both sides of a
//! push: every read of the snapshot (as a statement timeout on each fetch, see `cursor`) and
//! every wait for Qobra ([`must_stop`], polled while waiting).

use pgrx::pg_sys;
use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline of a run, cleared when dropped.
pub struct Deadline;

impl Deadline {
    /// Starts the deadline of a run, `ms` milliseconds from now (none when `ms` is 0).
    pub fn set(ms: i32) -> Deadline {
        let at = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms as u64));
        DEADLINE.with(|d| d.set(at));
        Deadline
    }

    /// Whether the current run is past its deadline.
    pub fn passed() -> bool {
        Deadline::remaining().is_some_and(|left| left.is_zero())
    }

    /// Time left before the current run's deadline; None when no run deadline is set.
    pub fn remaining() -> Option<Duration> {
        DEADLINE
            .with(|d| d.get())
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

impl Drop for Deadline {
    /// Clears the deadline.
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(None));
    }
}

/// Whether a push must stop now: a cancel or termination is pending for this backend, or the
/// run is past its deadline.
pub fn must_stop() -> bool {
    cancel_pending() || Deadline::passed()
}

/// Whether Postgres has a cancel or termination request pending for this backend.
pub fn cancel_pending() -> bool {
    // SAFETY: plain reads of the interrupt flags PostgreSQL's signal handlers set for this process,
    // read on its only thread; a stale value only delays the stop until the next poll.
    unsafe {
        pg_sys::InterruptPending != 0
            && (pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0)
    }
}

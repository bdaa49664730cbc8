//! The deadline of the run in progress in this backend (`qobra_sync.run_timeout_ms`).
//!
//! Set when a run starts and cleared when it ends, it bounds both sides of a push: every read of
//! the snapshot (as a statement timeout on each fetch, see `reader`) and every wait for Qobra
//! (the push's interrupt check).

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

//! What `pg_stat_activity` says of this backend: the worker's query text, and the wait event
//! shown while a push waits for Qobra.

use pgrx::pg_sys;
use std::ffi::CString;

/// Shows this backend as idle in `pg_stat_activity`, with what it waits for as its query text.
pub fn idle(what: &str) {
    activity(pg_sys::BackendState::STATE_IDLE, what);
}

/// Shows this backend as running in `pg_stat_activity`, with what it does as its query text.
pub fn running(what: &str) {
    activity(pg_sys::BackendState::STATE_RUNNING, what);
}

/// Shows that this backend waits on Qobra: wait event `Extension` in `pg_stat_activity`.
pub fn waiting_on_qobra() {
    show_wait(pg_sys::PG_WAIT_EXTENSION);
}

/// Clears the wait event [`waiting_on_qobra`] set.
pub fn not_waiting() {
    show_wait(0);
}

/// Shows what this backend does in `pg_stat_activity` (state and query text).
fn activity(state: pg_sys::BackendState::Type, what: &str) {
    let text = CString::new(what).unwrap_or_default();
    // SAFETY: `text` is NUL-terminated and outlives the call; PostgreSQL copies it into this
    // backend's own pg_stat_activity entry (and does nothing when the backend has none).
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}

/// Sets this backend's wait event in `pg_stat_activity` (0: none), as PostgreSQL's own
/// `pgstat_report_wait_start` does (an inline function pgrx cannot call).
fn show_wait(event: u32) {
    // SAFETY: my_wait_event_info always points at a valid 4-byte slot of this backend (its
    // PGPROC's, or a local one before it has one); a volatile store is what Postgres does.
    unsafe { std::ptr::write_volatile(pg_sys::my_wait_event_info, event) };
}

//! Running a step in a subtransaction of its own.
//!
//! [`attempt`] is for steps whose error is an answer, not a failure (a filter that does not
//! parse, a check of `validate()` that cannot run): the subtransaction is kept on success and
//! rolled back on error, releasing whatever the step held, exactly as a PL/pgSQL `EXCEPTION`
//! block does. [`rolled_back`] is for reads as the reader: the subtransaction is rolled back
//! whatever happens, so nothing the read did is kept.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// A Postgres error caught by [`attempt`]: its message, detail and hint.
#[derive(Debug, Clone)]
pub struct Caught {
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Runs `f` in a subtransaction; a Postgres error inside it is returned as [`Caught`].
pub fn attempt<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    in_subtransaction(f, true).map_err(|e| {
        let report = match e.as_ref() {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        Caught {
            message: report.message().to_owned(),
            detail: report.detail().map(str::to_owned),
            hint: report.hint().map(str::to_owned),
        }
    })
}

/// Runs `f` in a subtransaction that is rolled back when `f` returns as when it fails; a
/// Postgres error inside it is returned, to be raised again (`CaughtError::rethrow`) once the
/// caller has cleaned up.
pub fn rolled_back<T>(f: impl FnOnce() -> T) -> Result<T, Box<CaughtError>> {
    in_subtransaction(f, false)
}

/// Runs `f` in a subtransaction, released on success when `keep`, rolled back otherwise. The
/// caller's memory context and resource owner are current again afterwards.
fn in_subtransaction<T>(f: impl FnOnce() -> T, keep: bool) -> Result<T, Box<CaughtError>> {
    // SAFETY: every caller runs inside a transaction, on the backend's only thread. The
    // subtransaction begun here is ended on every path (released or rolled back after `f`, rolled
    // back when `f` fails), and `restore` puts back the caller's memory context, which belongs to
    // the enclosing transaction and outlives the subtransaction, and its resource owner: the
    // sequence a PL/pgSQL EXCEPTION block runs.
    unsafe {
        let memory = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memory);
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(memory);
            pg_sys::CurrentResourceOwner = owner;
        };
        PgTryBuilder::new(AssertUnwindSafe(|| {
            let value = f();
            if keep {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
            restore();
            Ok(value)
        }))
        .catch_others(|e| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            Err(Box::new(e))
        })
        .execute()
    }
}

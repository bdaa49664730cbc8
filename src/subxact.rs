//! Running a step in its own subtransaction, so that a Postgres ERROR inside it becomes a value.
//!
//! Used where an error is an answer, not a failure: a filter that does not parse, a check of
//! `validate()` that cannot run. The subtransaction is rolled back on error, releasing whatever
//! the step held, exactly as a PL/pgSQL `EXCEPTION` block does.

use pgrx::pg_sys;
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
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            Ok(value)
        }))
        .catch_others(|e| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            let report = match &e {
                pg_sys::panic::CaughtError::PostgresError(r)
                | pg_sys::panic::CaughtError::ErrorReport(r) => r,
                pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport,
            };
            Err(Caught {
                message: report.message().to_owned(),
                detail: report.detail().map(str::to_owned),
                hint: report.hint().map(str::to_owned),
            })
        })
        .execute()
    }
}

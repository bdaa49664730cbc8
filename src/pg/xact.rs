//! Transactions as the layers above see them: a function run in a transaction of its own whose
//! error rolls it back (the worker's rounds), and the end of the current transaction and of its
//! subtransactions, told to functions registered once per backend.

use crate::pg::error::{Error, Result};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

/// A subtransaction, by PostgreSQL's id for it.
pub type SubXactId = pg_sys::SubTransactionId;

/// How a subtransaction ended.
pub enum SubXactEnd {
    /// Released: what it did now belongs to `parent`.
    Committed { parent: SubXactId },
    /// Rolled back.
    RolledBack,
}

/// The functions told of transaction ends: (`rolled_back`), and (the subtransaction, its end).
type Callbacks = (fn(bool), fn(SubXactId, SubXactEnd));

thread_local! {
    static CALLBACKS: Cell<Option<Callbacks>> = const { Cell::new(None) };
}

/// The current subtransaction.
pub fn current_subxact() -> SubXactId {
    // SAFETY: reads the current transaction state's id; called inside a transaction.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

/// Tells `xact` when a transaction ends (whether it rolled back) and `subxact` when a
/// subtransaction does, from now on in this backend; registers with PostgreSQL the first time
/// only (the functions of the first call are kept).
pub fn on_ends(xact: fn(bool), subxact: fn(SubXactId, SubXactEnd)) {
    if CALLBACKS.get().is_some() {
        return;
    }
    CALLBACKS.set(Some((xact, subxact)));
    // SAFETY: registers static functions with no argument pointer; PostgreSQL keeps the
    // registration for the backend's life, and this runs once per backend.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

/// Transaction end (PostgreSQL's callback): tells the registered function whether it rolled
/// back; other events (pre-commit, prepare's stages) are not ends.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let rolled_back = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => false,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => true,
        _ => return,
    };
    if let Some((xact, _)) = CALLBACKS.get() {
        xact(rolled_back);
    }
}

/// Subtransaction end (PostgreSQL's callback): tells the registered function.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    mine: SubXactId,
    parent: SubXactId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    let end = match event {
        SUBXACT_EVENT_COMMIT_SUB => SubXactEnd::Committed { parent },
        SUBXACT_EVENT_ABORT_SUB => SubXactEnd::RolledBack,
        _ => return,
    };
    if let Some((_, subxact)) = CALLBACKS.get() {
        subxact(mine, end);
    }
}

/// Runs `f` in a transaction of its own (a background worker's); an error it raises (but a
/// shutdown's, which goes on) rolls the transaction back and is returned.
pub fn attempt<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    // SAFETY: reads the current memory context pointer, to switch back to it after an abort.
    let memory = unsafe { pg_sys::CurrentMemoryContext };
    PgTryBuilder::new(AssertUnwindSafe(|| {
        BackgroundWorker::transaction(AssertUnwindSafe(f))
    }))
    .catch_others(|e| {
        // SAFETY: a plain read of the flag PostgreSQL's SIGTERM handler sets.
        if unsafe { pg_sys::ProcDiePending != 0 } {
            e.rethrow();
        }
        let message = match &e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_owned(),
            pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
        };
        // SAFETY: the error was caught inside the transaction `BackgroundWorker::transaction`
        // started: aborting it is what PostgreSQL's own error recovery does, and `memory` is
        // the context that was current before, which the abort does not free.
        unsafe {
            pg_sys::AbortCurrentTransaction();
            pg_sys::MemoryContextSwitchTo(memory);
        }
        Err(Error::internal(message))
    })
    .execute()
}

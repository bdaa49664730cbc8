//! The background worker's life as the postmaster runs it: its registration, its entry point
//! (which hands over to the function registered with it), its signals, settings and exit.

use crate::pg::shared;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;
use std::sync::OnceLock;
use std::time::Duration;

/// The function each worker runs, given its position in `qobra_sync.database_name`.
static MAIN: OnceLock<fn(usize)> = OnceLock::new();

unsafe extern "C-unwind" {
    /// Postgres' SIGTERM handler for backends: sets ProcDiePending and the latch.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// Registers worker `index` with the postmaster (from `_PG_init`, when preloaded): it runs
/// `main(index)`, of type `kind` in `pg_stat_activity`, restarted a second after it dies.
pub fn register(name: &str, kind: &str, index: usize, main: fn(usize)) {
    let _ = MAIN.set(main);
    BackgroundWorkerBuilder::new(name)
        .set_type(kind)
        .set_library("qobra_sync")
        .set_function("qobra_sync_worker_main")
        .set_argument(Some(pg_sys::Datum::from(index)))
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// The worker's entry point: PostgreSQL's signal handling (SIGTERM ends it at once, as it
/// does a backend), then the registered function.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn qobra_sync_worker_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SAFETY: installs PostgreSQL's own backend SIGTERM handler, as a backend has it.
    unsafe { backend_signal(libc::SIGTERM, postgres_die) };
    match MAIN.get() {
        Some(main) => main(arg.value()),
        None => exit(0),
    }
}

/// Installs `handler` for `signal` the way PostgreSQL's backends do (`pqsignal`): before 18 the
/// backend's function is `pqsignal`; 18 names it `pqsignal_be` (a C macro keeps the old name,
/// which bindings cannot see) and returns nothing.
///
/// # Safety
/// `handler` must be safe to run as a signal handler of this backend.
unsafe fn backend_signal(signal: i32, handler: unsafe extern "C-unwind" fn(i32)) {
    #[cfg(not(feature = "pg18"))]
    // SAFETY: the caller's handler; pqsignal only installs it with sigaction.
    unsafe {
        pg_sys::pqsignal(signal, Some(handler));
    }
    #[cfg(feature = "pg18")]
    // SAFETY: as above; pqsignal_be is the same function under its 18 name.
    unsafe {
        pg_sys::pqsignal_be(signal, Some(handler));
    }
}

/// Ends the worker process with `code` (0: not to be restarted; 1: restarted).
// 18's headers mark proc_exit noreturn in a way the bindings do not carry: it returns `()` there.
#[cfg_attr(not(feature = "pg18"), allow(unreachable_code))]
pub fn exit(code: i32) -> ! {
    // SAFETY: proc_exit runs the exit callbacks and never returns.
    unsafe { pg_sys::proc_exit(code) };
    unreachable!("proc_exit returned")
}

/// Pins the worker session's search_path to pg_catalog, pg_temp, as every statement does.
pub fn pin_search_path() {
    // SAFETY: both strings are static and NUL-terminated; the setting exists.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

/// Publishes worker `index`'s pid in shared memory, and clears it as the process exits (the
/// pid may then be given to another process, which no backend must signal).
pub fn publish_pid(index: usize) {
    // SAFETY: a plain read of this process's pid.
    shared::set_worker_pid(index, unsafe { pg_sys::MyProcPid });
    // SAFETY: registers a static function with a plain integer argument.
    unsafe { pg_sys::before_shmem_exit(Some(forget_pid), pg_sys::Datum::from(index)) };
}

/// Clears the worker's pid in shared memory as it exits (`before_shmem_exit`).
#[pg_guard]
unsafe extern "C-unwind" fn forget_pid(_code: std::ffi::c_int, index: pg_sys::Datum) {
    shared::set_worker_pid(index.value(), 0);
}

/// Reloads the configuration files when a SIGHUP asked for it.
pub fn reload_if_asked() {
    if BackgroundWorker::sighup_received() {
        // SAFETY: what a backend does at a SIGHUP, between statements, as here.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// Whether database `name` exists (read in a transaction of its own, connected to none).
pub fn database_exists(name: &str) -> bool {
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: `name` is NUL-terminated and outlives the call, made inside a transaction.
    BackgroundWorker::transaction(|| unsafe {
        pg_sys::get_database_oid(name.as_ptr(), true) != pg_sys::InvalidOid
    })
}

/// Whether this process is a background worker (the qobra_sync worker; the extension runs in
/// no other).
pub fn in_worker() -> bool {
    // SAFETY: MyBgworkerEntry is set once at a worker's start and never freed.
    unsafe { !pg_sys::MyBgworkerEntry.is_null() }
}

/// Whether the worker's latch is set: a commit asked for a push (or a signal came) since it
/// last slept.
pub fn latch_is_set() -> bool {
    // SAFETY: MyLatch points at this process's latch for its whole life.
    unsafe { (*pg_sys::MyLatch).is_set != 0 }
}

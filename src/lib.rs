//! qobra_sync: push PostgreSQL tables to Qobra, from inside the database.
//!
//! Vocabulary (defined once, used everywhere):
//! - **source**: a table, partitioned table, view or materialized view whose rows go to Qobra.
//! - **registration**: a source's row in `qobra_sync.tables`: the Qobra data table it feeds, how
//!   its columns map to fields, its filter, schedule and reader role (`run_as`).
//! - **snapshot**: every row of a source that passes the filter, read in one MVCC snapshot as
//!   the reader role.
//! - **record**: one row of a snapshot encoded as the JSON object Qobra receives.
//! - **push**: sending a whole snapshot to Qobra as one total synchronization.
//! - **run**: one attempt at a push, with its outcome, in `qobra_sync.runs`.
//!
//! Modules, in pipeline order: `catalog` (describe a source) → `registry` (store registrations) →
//! `filter` (analyse filters) → `reader` (read a snapshot as the reader) → `inspect` (mapping,
//! validation, preview) → `snapshot` (census, chunks) → `push` (runs) → `orphans` (runs a
//! rollback took away) → `worker` (schedules), with `shared` (shared memory) beside them. The pure
//! rules live in the `qobra_sync_core` crate; `api` is the SQL face.

use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

mod api;
mod inspect;
mod pg;
mod registry;
mod sync;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Whether the library was loaded by `shared_preload_libraries` (and so can run the worker).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Whether the library was preloaded in this server.
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Library entry point: registers settings and the log filter and, when preloaded, the shared
/// memory and the worker.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloading, Ordering::Relaxed);
    pg::gucs::register(preloading);
    pg::log_filter::install();
    if preloading {
        pg::shared::init();
        sync::worker::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod testing;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off setup before the tests run.
    pub fn setup(_options: Vec<&str>) {}

    /// Settings of the test cluster.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["qobra_sync.database_name = 'pgrx_tests'"]
    }
}

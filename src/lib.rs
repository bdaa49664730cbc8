//! qobra_sync: push PostgreSQL tables to Qobra, from inside the database.
//!
//! Vocabulary (defined in docs/design.md, used the same way everywhere): a **source** is a
//! relation whose rows go to Qobra; its **registration** says how (data table, column options,
//! **filter**, schedule, **reader**); a **snapshot** is the source's rows read as the reader in
//! one MVCC snapshot, counted first by the **census**; a **push** sends it as **records** in
//! **chunks**; a **run** records one attempt at a push, whose **import** Qobra does afterwards.
//! The **destination** is Qobra's API base URL and the key pushes authenticate with.
//!
//! Layers, top to bottom (a module imports only its own layer and the ones below): `api` (the
//! SQL functions), `inspect` and `sync` side by side (inspection; pushes, runs and the worker),
//! `registry` (what is registered, the destination), `pg` (PostgreSQL's machinery). The pure
//! rules live in the `qobra_sync_core` crate.

#![deny(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod api;
mod inspect;
mod pg;
mod registry;
mod sync;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Library entry point: registers settings and the log filter and, when preloaded, the shared
/// memory and the worker.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = pg::lifecycle::loading();
    // Errors reach users without Rust internals, whatever the server's environment: a Rust
    // backtrace (RUST_BACKTRACE) would otherwise land in the DETAIL of every error raised.
    // The process is single-threaded here, before any thread of ours starts.
    std::env::remove_var("RUST_BACKTRACE");
    std::env::remove_var("RUST_LIB_BACKTRACE");
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

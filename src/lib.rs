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
mod catalog;
mod deadline;
mod error;
mod filter;
mod gucs;
mod inspect;
mod locks;
mod log_filter;
mod orphans;
mod pinned;
mod push;
mod reader;
mod registry;
mod shared;
mod snapshot;
mod sqltypes;
mod subxact;
mod worker;

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
    gucs::register(preloading);
    log_filter::install();
    if preloading {
        shared::init();
        worker::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::sqltypes::{Name, NameArray};

    /// Sets up a source and a least-privileged reader inside the test's transaction.
    fn fixture() {
        Spi::run(
            "CREATE ROLE t_reader; CREATE TABLE t_deals (id int PRIMARY KEY, title text, closed date);
             INSERT INTO t_deals VALUES (1, 'a', '2026-01-02'), (2, 'b', '2025-12-31');
             GRANT SELECT ON t_deals TO t_reader;",
        )
        .unwrap();
    }

    /// The OID of a relation by name.
    fn oid(name: &str) -> pg_sys::Oid {
        Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regclass::oid"))
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn the_extension_loads() {
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM qobra_sync.tables").unwrap(),
            Some(0)
        );
    }

    #[pg_test]
    fn name_types_round_trip_through_postgres() {
        let n = Spi::get_one_with_args::<Name>("SELECT $1::text::name", &["owner_email".into()])
            .unwrap();
        assert_eq!(n, Some(Name("owner_email".into())));
        let arr = Spi::get_one::<NameArray>("SELECT '{a,\"b c\"}'::name[]").unwrap();
        assert_eq!(arr, Some(NameArray(vec!["a".into(), "b c".into()])));
        let back =
            Spi::get_one_with_args::<String>("SELECT $1::text", &[Name("x".repeat(80)).into()])
                .unwrap()
                .unwrap();
        assert_eq!(back.len(), 63, "names are cut at NAMEDATALEN - 1");
    }

    #[pg_test]
    fn the_reader_context_switches_user_and_restores_everything() {
        fixture();
        Spi::run("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Tokyo'").unwrap();
        let reader = Spi::get_one::<pg_sys::Oid>("SELECT 't_reader'::regrole::oid")
            .unwrap()
            .unwrap();
        let seen = crate::reader::as_reader(reader, || {
            crate::reader::one_row("SELECT current_user::text, current_setting('DateStyle'), current_setting('TimeZone'), current_setting('transaction_read_only')")
        })
        .unwrap();
        let seen: Vec<String> = seen.into_iter().map(Option::unwrap).collect();
        assert_eq!(seen, ["t_reader", "ISO, YMD", "UTC", "on"]);
        let after = Spi::get_one::<String>("SELECT current_user || ' ' || current_setting('DateStyle') || ' ' || current_setting('TimeZone') || ' ' || current_setting('transaction_read_only')").unwrap().unwrap();
        assert_eq!(after, "postgres SQL, DMY Asia/Tokyo off");
    }

    #[pg_test]
    fn a_write_inside_the_reader_context_fails() {
        fixture();
        let reader = Spi::get_one::<pg_sys::Oid>("SELECT 't_reader'::regrole::oid")
            .unwrap()
            .unwrap();
        // Even a reader that holds INSERT cannot write: the transaction is read-only meanwhile.
        Spi::run("GRANT INSERT ON t_deals TO t_reader").unwrap();
        // The read runs in a subtransaction of `attempt`, in which read-only queries see the
        // statement's snapshot: give it one that has the fixture.
        let caught = in_fresh_snapshot(|| {
            crate::subxact::attempt(|| {
                crate::reader::as_reader(reader, || {
                    crate::reader::one_row("WITH w AS (INSERT INTO public.t_deals VALUES (3, 'c', NULL) RETURNING 1) SELECT count(*)::text FROM w")
                })
            })
        });
        let message = caught.expect_err("the write must fail").message;
        assert!(
            message.contains("read-only transaction")
                || message.contains("not allowed in a non-volatile function"),
            "{message}"
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM t_deals").unwrap(),
            Some(2)
        );
    }

    #[pg_test]
    fn filters_are_canonicalised_and_checked_by_postgres() {
        fixture();
        let reader = Spi::get_one::<pg_sys::Oid>("SELECT 't_reader'::regrole::oid")
            .unwrap()
            .unwrap();
        let source = crate::catalog::describe_source(oid("t_deals")).unwrap();
        Spi::run("SET DateStyle = 'SQL, DMY'").unwrap();
        let canonical =
            crate::filter::canonical(&source, "closed >= '2026-01-01' and title <> 'x'", reader)
                .unwrap();
        assert_eq!(
            canonical,
            "((closed >= '2026-01-01'::date) AND (title <> 'x'::text))"
        );
        for bad in [
            "true; delete from t_deals",
            "id in (select 1)",
            "pg_sleep(1) is null",
            "xmin = '1'",
            "title",
        ] {
            assert!(
                crate::filter::canonical(&source, bad, reader).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM t_deals").unwrap(),
            Some(2)
        );
    }

    /// Runs `f` with an active snapshot that sees this test's own writes: read-only cursors
    /// read in the active snapshot, which predates them.
    fn in_fresh_snapshot<R>(f: impl FnOnce() -> R) -> R {
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let result = f();
        unsafe { pg_sys::PopActiveSnapshot() };
        result
    }

    #[pg_test]
    fn the_scan_reads_every_row_in_batches() {
        Spi::run("CREATE TABLE t_many AS SELECT g AS id, 'row ' || g AS title FROM generate_series(1, 2500) g").unwrap();
        let mut ids = vec![];
        let seen = in_fresh_snapshot(|| {
            crate::reader::scan(
                "SELECT id::text AS v, title FROM public.t_many ORDER BY t_many.id",
                1000,
                |row| {
                    ids.push(row[0].unwrap().parse::<i32>().unwrap());
                    assert_eq!(row[1].unwrap(), format!("row {}", ids.last().unwrap()));
                    Ok(true)
                },
            )
        })
        .unwrap();
        assert_eq!(seen, 2500);
        assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
    }
}

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

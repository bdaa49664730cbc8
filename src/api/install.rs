//! Installation: `_check_installation`, run last by `CREATE EXTENSION`.

use crate::pg::error::{raise, Error, OrRaise, SqlState};
use pgrx::prelude::*;

/// Checks where the extension is being created; run last by CREATE EXTENSION.
#[pg_extern(volatile, name = "_check_installation")]
#[search_path(pg_catalog, pg_temp)]
fn check_installation() {
    super::computes("_check_installation()").or_raise();
    crate::pg::lifecycle::require_utf8().or_raise();
    let wanted = crate::pg::gucs::databases();
    let here = crate::pg::catalog::current_database();
    if !crate::pg::lifecycle::preloaded() {
        pgrx::warning!(
            "qobra_sync is not preloaded: registration, inspection and sync_now() work, scheduled pushes do not. \
             Add qobra_sync to shared_preload_libraries, set qobra_sync.database_name = '{here}', and restart"
        );
        return;
    }
    if !wanted.contains(&here) {
        let list = wanted.join(", ");
        raise(
            Error::new(SqlState::ObjectNotInPrerequisiteState, format!("qobra_sync can only be created in the databases named by qobra_sync.database_name ({list})"))
                .detail("A qobra_sync worker runs in each database that qobra_sync.database_name lists, and in no other.")
                .hint(format!("Add {here} to qobra_sync.database_name in postgresql.conf (a comma-separated list) and restart, or connect to one of: {list}.")),
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn the_extension_loads() {
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM qobra_sync.tables").unwrap(),
            Some(0)
        );
    }
}

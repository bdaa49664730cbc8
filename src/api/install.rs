//! Installation: `_check_installation`, run last by `CREATE EXTENSION`.

use crate::pg::error::{raise, Error, SqlState};
use pgrx::prelude::*;

/// Checks where the extension is being created; run last by CREATE EXTENSION.
#[pg_extern(volatile, name = "_check_installation")]
#[search_path(pg_catalog, pg_temp)]
fn check_installation() {
    let wanted = crate::pg::gucs::text(&crate::pg::gucs::DATABASE_NAME);
    let here = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }
        .to_string_lossy()
        .into_owned();
    if !crate::preloaded() {
        pgrx::warning!(
            "qobra_sync is not preloaded: registration, inspection and sync_now() work, scheduled pushes do not. \
             Add qobra_sync to shared_preload_libraries, set qobra_sync.database_name = '{here}', and restart"
        );
        return;
    }
    if here != wanted {
        raise(
            Error::new(SqlState::ObjectNotInPrerequisiteState, format!("qobra_sync can only be created in database \"{wanted}\""))
                .detail("The qobra_sync worker runs in the database named by qobra_sync.database_name.")
                .hint(format!("Set qobra_sync.database_name = '{here}' in postgresql.conf and restart, or connect to \"{wanted}\".")),
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

//! Installation: `_check_installation`, run last by `CREATE EXTENSION`.

use crate::pg::error::{raise, Error, OrRaise, SqlState};
use pgrx::prelude::*;
use qobra_sync_core::names::setting::DATABASE_NAME;

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
             Add qobra_sync to shared_preload_libraries, set {DATABASE_NAME} = '{here}', and restart"
        );
        return;
    }
    if !wanted.contains(&here) {
        let list = wanted.join(", ");
        raise(
            Error::new(SqlState::ObjectNotInPrerequisiteState, format!("qobra_sync can only be created in the databases named by {DATABASE_NAME} ({list})"))
                .detail(format!("A qobra_sync worker runs in each database that {DATABASE_NAME} lists, and in no other."))
                .hint(format!("Add {here} to {DATABASE_NAME} in postgresql.conf (a comma-separated list) and restart, or connect to one of: {list}.")),
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use qobra_sync_core::names::{function, relation, setting};

    #[pg_test]
    fn the_extension_loads() {
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM qobra_sync.tables").unwrap(),
            Some(0)
        );
    }

    /// Every name messages use exists: a setting, function or relation renamed without its
    /// constant in names.rs fails here.
    #[pg_test]
    fn every_name_messages_use_exists() {
        for s in setting::ALL {
            let found = Spi::get_one_with_args::<bool>(
                "SELECT true FROM pg_catalog.pg_settings WHERE name = $1",
                &[s.name().into()],
            );
            assert_eq!(found, Ok(Some(true)), "{s}");
        }
        for f in function::ALL {
            let found = Spi::get_one_with_args::<bool>(
                "SELECT true FROM pg_catalog.pg_proc
                  WHERE pronamespace = 'qobra_sync'::regnamespace AND proname = $1 LIMIT 1",
                &[f.bare().into()],
            );
            assert_eq!(found, Ok(Some(true)), "{f}");
        }
        for r in relation::ALL {
            let found = Spi::get_one_with_args::<bool>(
                "SELECT true FROM pg_catalog.pg_class
                  WHERE relnamespace = 'qobra_sync'::regnamespace AND relname = $1",
                &[r.bare().into()],
            );
            assert_eq!(found, Ok(Some(true)), "{r}");
        }
    }
}

//! Where the server and the extension stand in their life: a hot standby (in recovery) only
//! reads, and a library of another version than the extension's SQL objects (between
//! replacing the library and `ALTER EXTENSION qobra_sync UPDATE`) must not touch them.

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::spi::first_value;
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// The version of this library, which its SQL objects must have.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether the library was loaded by `shared_preload_libraries` (and so can run the worker).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Notes, once at load (`_PG_init`), whether the library is being preloaded; returns it.
pub fn loading() -> bool {
    // SAFETY: a plain read of a flag the postmaster sets before loading preloaded libraries;
    // `_PG_init` runs on the process's only thread.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    PRELOADED.store(preloading, Ordering::Relaxed);
    preloading
}

/// Whether the library was preloaded in this server.
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Refuses a database whose encoding is not UTF8: values are read as UTF-8 text and sent as
/// JSON, and bytes of another encoding (LATIN1, SQL_ASCII's anything) would not be text.
pub fn require_utf8() -> Result<()> {
    // SAFETY: plain reads of the database's encoding, set when the backend connected.
    let (encoding, name) = unsafe {
        (
            pg_sys::GetDatabaseEncoding(),
            std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName()),
        )
    };
    if encoding == pg_sys::pg_enc::PG_UTF8 as i32 {
        return Ok(());
    }
    Err(Error::new(
        SqlState::FeatureNotSupported,
        format!(
            "qobra_sync needs a UTF8 database, and this one is {}",
            name.to_string_lossy()
        ),
    )
    .detail("Values are read as UTF-8 text and sent to Qobra as JSON.")
    .hint("Push from a UTF8 database: one that reads this one through postgres_fdw (see the README's Foreign tables) converts the text on the way."))
}

/// The server's OS user, which must own the files holding secrets.
pub fn server_uid() -> u32 {
    // SAFETY: geteuid only reads the process's effective user id.
    unsafe { libc::geteuid() }
}

/// Whether the server is a standby still in recovery (so nothing can be written).
pub fn in_recovery() -> bool {
    // SAFETY: RecoveryInProgress only reads shared state, valid in any backend once attached
    // to shared memory (every caller is a backend or the worker).
    unsafe { pg_sys::RecoveryInProgress() }
}

/// The error of `what` (a function that writes) called on a hot standby, or Ok on a primary.
pub fn require_primary(what: &str) -> Result<()> {
    if !in_recovery() {
        return Ok(());
    }
    Err(Error::new(
        SqlState::ReadOnlySqlTransaction,
        format!("{what} cannot run on a standby server"),
    )
    .detail("The server is in recovery: registrations and runs are written on the primary and replicated here.")
    .hint("Call it on the primary. On a standby, validate(), column_mapping(), preview() and csv_template() work, and the views show the primary's state."))
}

/// The version of the extension's SQL objects in this database (None when not created).
pub fn sql_version() -> Result<Option<String>> {
    first_value(
        "SELECT extversion::pg_catalog.text FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'qobra_sync'",
        &[],
    )
}

/// Why this library may not use SQL objects of version `sql`, if it may not: they are of
/// another version (the library was replaced and `ALTER EXTENSION … UPDATE` not run yet, or the
/// other way round).
pub fn mismatch(sql: &str) -> Option<Error> {
    if sql == LIBRARY_VERSION {
        return None;
    }
    let error = Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!("the qobra_sync library is version {LIBRARY_VERSION} but the extension in this database is version {sql}"),
    )
    .detail("The library was replaced and the extension's SQL objects were not updated to match it; nothing is pushed until they are.");
    Some(error.hint(format!(
        "Run ALTER EXTENSION qobra_sync UPDATE TO '{LIBRARY_VERSION}' in this database (or install the library of version {sql})."
    )))
}

/// Ok when the extension's SQL objects match this library, else the error saying to update.
pub fn require_current_sql() -> Result<()> {
    match sql_version()?.as_deref().and_then(mismatch) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

//! The SQL API (schema `qobra_sync`): only the `#[pg_extern]` functions, grouped as the README
//! groups them. Each parses its arguments, calls the module that does the work, and raises
//! errors in the one documented way (`pg::error`). Every function pins its `search_path`.
//!
//! The functions an operator may use (`qobra_sync_operator`, see `sql/finalize.sql`) are
//! `SECURITY DEFINER`: they run as the extension owner, so that nothing needs a grant on the
//! extension's tables, and check explicitly who calls them (`pg::roles::caller`): the owner of a
//! registration or a member of it, a reader the caller may act as.
//!
//! Every function that uses the extension's objects first checks where the server and the
//! extension stand (`reads`, `writes`): a hot standby refuses the functions that write, with
//! SQLSTATE 25006, and a library newer (or older) than the SQL objects refuses everything until
//! `ALTER EXTENSION qobra_sync UPDATE`.

mod destination;
mod inspection;
mod install;
mod registration;
mod running;

use crate::pg::error::{Error, Result};
use crate::pg::lifecycle;

/// A required argument, or the error naming it.
fn required<T>(value: Option<T>, argument: &str) -> Result<T> {
    value.ok_or_else(|| Error::null_argument(argument))
}

/// Checks that a function that only reads may run: the extension's SQL objects are of this
/// library's version (they may be older, between a library upgrade and `ALTER EXTENSION`).
fn reads() -> Result<()> {
    lifecycle::require_current_sql()
}

/// Checks that `what`, a function that writes, may run: as [`reads`], and on a primary.
fn writes(what: &str) -> Result<()> {
    lifecycle::require_current_sql()?;
    lifecycle::require_primary(what)
}

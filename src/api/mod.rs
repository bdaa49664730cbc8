//! The SQL API (schema `qobra_sync`): only the `#[pg_extern]` functions, grouped as the README
//! groups them. Each parses its arguments, calls the module that does the work, and raises
//! errors in the one documented way (`pg::error`). Every function pins its `search_path`.
//!
//! The functions an operator may use (`qobra_sync_operator`, see `sql/finalize.sql`) are
//! `SECURITY DEFINER`: they run as the extension owner, so that nothing needs a grant on the
//! extension's tables, and check explicitly who calls them (`pg::roles::caller`): the owner of a
//! registration or a member of it, a reader the caller may act as.

mod destination;
mod inspection;
mod install;
mod registration;
mod running;

use crate::pg::error::{Error, Result};

/// A required argument, or the error naming it.
fn required<T>(value: Option<T>, argument: &str) -> Result<T> {
    value.ok_or_else(|| Error::null_argument(argument))
}

//! The SQL API (schema `qobra_sync`): only the `#[pg_extern]` functions, grouped as the README
//! groups them. Each parses its arguments, calls the module that does the work, and raises
//! errors in the one documented way (`pg::error`). Every function pins its `search_path`.

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

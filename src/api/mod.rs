//! The SQL API (schema `qobra_sync`): only the `#[pg_extern]` functions, grouped as the README
//! groups them. Each parses its arguments, calls the module that does the work, and raises
//! errors in the one documented way (`pg::error`). Every function pins its `search_path`.
//!
//! Every function begins by entering (`pg::entry`): a call made while qobra_sync reads a source
//! (the source's own code calling back) or in another security-restricted operation is refused
//! at once; otherwise the body runs as the extension owner, as a `SECURITY DEFINER` function
//! would, so that nothing needs a grant on the extension's tables, and checks explicitly who
//! calls it (`pg::roles`): the owner of a registration or a member of it, a reader the caller
//! may act as — for both the session's role and the role current where the call was made.
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

use crate::pg::entry::{self, enter, Entered};
use crate::pg::error::{Error, OrRaise, Result};
use crate::pg::lifecycle;

/// A required argument, or the error naming it.
fn required<T>(value: Option<T>, argument: &str) -> Result<T> {
    value.ok_or_else(|| Error::null_argument(argument))
}

/// Checks that `what`, a function that only computes from its arguments, may be called
/// (`pg::entry::check`); it runs as its caller.
fn computes(what: &str) -> Result<()> {
    entry::check(what).map(|_| ())
}

/// Enters `what`, a function that only reads, once the extension's SQL objects are of this
/// library's version (they may be older, between a library upgrade and `ALTER EXTENSION`).
fn reads(what: &str) -> Result<Entered> {
    let entered = enter(what)?;
    lifecycle::require_current_sql()?;
    lifecycle::require_utf8()?;
    Ok(entered)
}

/// The end of a function of version 0.1.0 whose argument list changed since (its symbol is
/// kept, `#[pg_extern(sql = false)]`): the SQL of 0.1.0 still calls it between a library upgrade
/// and `ALTER EXTENSION … UPDATE`, and entering says to update; `signature` names it.
fn belongs_to_0_1_0(signature: &str) -> ! {
    let _entered = reads(signature).or_raise();
    crate::pg::error::raise(Error::internal(format!(
        "{signature} belongs to version 0.1.0"
    )))
}

/// Enters `what`, a function that writes: as [`reads`], and on a primary.
fn writes(what: &str) -> Result<Entered> {
    let entered = reads(what)?;
    lifecycle::require_primary(what)?;
    Ok(entered)
}

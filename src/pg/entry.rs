//! Entering qobra_sync from SQL: every SQL function of the extension begins with [`enter`].
//!
//! A call has two callers: the *current* role where the call is made (the owner of a
//! security-definer function that makes it, for one) and the *session's* role (after `SET
//! ROLE`). qobra_sync acts only where both may (`roles`), so that neither a function owned by a
//! lesser role, called by a superuser, nor a superuser's session lends its rights to the other.
//!
//! Two kinds of call are refused before anything else happens:
//! - a call made while qobra_sync reads a source (`reader`): the source's own code (its view, a
//!   row security policy, a function they call) calling back would run with the session's rights
//!   — a superuser's, in the worker;
//! - a call inside any other security-restricted operation: PostgreSQL running a table owner's
//!   code for `ANALYZE`, `REFRESH MATERIALIZED VIEW`, `CREATE INDEX`…, where the session's role
//!   is not the one acting either.
//!
//! Then the function's body runs as the extension's owner, as a `SECURITY DEFINER` function
//! would (so that no caller needs a grant on the extension's tables), until the [`Entered`]
//! guard is dropped.

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::pinned;
use crate::pg::spi::first_value;
use pgrx::pg_sys;
use std::cell::Cell;

/// The two roles behind a call of a qobra_sync function.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Callers {
    /// The role in effect where the call was made.
    pub current: pg_sys::Oid,
    /// The session's role (`SET ROLE` included).
    pub session: pg_sys::Oid,
}

thread_local! {
    /// The callers of the qobra_sync function running in this backend, if one is.
    static CALLERS: Cell<Option<Callers>> = const { Cell::new(None) };
}

/// A call in progress: dropping it gives the caller its own identity back.
pub struct Entered {
    user: pg_sys::Oid,
    context: i32,
    previous: Option<Callers>,
}

/// Refuses a call of the SQL function `what` (its name with parentheses, for messages) of the
/// kinds described above; returns the current user and security context.
pub fn check(what: &str) -> Result<(pg_sys::Oid, i32)> {
    if pinned::reading() {
        return Err(called_back(what));
    }
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: reads the backend's current user and security context into two locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    if context & pg_sys::SECURITY_RESTRICTED_OPERATION as i32 != 0 {
        return Err(restricted(what));
    }
    Ok((user, context))
}

/// Enters the SQL function `what`: refuses the calls described above ([`check`]), remembers
/// the callers, and becomes the extension's owner.
pub fn enter(what: &str) -> Result<Entered> {
    let (user, context) = check(what)?;
    let callers = Callers {
        current: user,
        // SAFETY: a plain read of a backend global, always set in a backend with a session.
        session: unsafe { pg_sys::GetOuterUserId() },
    };
    let owner = extension_owner()?;
    let previous = CALLERS.with(|c| c.replace(Some(callers)));
    if let Some(owner) = owner {
        // SAFETY: switches the current user as fmgr does for a SECURITY DEFINER function, with
        // SECURITY_LOCAL_USERID_CHANGE so that SET ROLE is refused meanwhile; `Entered::drop`
        // puts the saved identity back, and so does an abort of the (sub)transaction.
        unsafe {
            pg_sys::SetUserIdAndSecContext(
                owner,
                context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            )
        };
    }
    Ok(Entered {
        user,
        context,
        previous,
    })
}

impl Drop for Entered {
    /// Gives the caller its identity back.
    fn drop(&mut self) {
        CALLERS.with(|c| c.set(self.previous));
        // SAFETY: restores the identity `enter` saved, in the same backend and transaction.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// The callers of the qobra_sync function running now; outside one (the worker), the
/// backend's own current and session roles.
pub fn callers() -> Callers {
    CALLERS.with(Cell::get).unwrap_or_else(|| Callers {
        // SAFETY: plain reads of backend globals.
        current: unsafe { pg_sys::GetUserId() },
        // SAFETY: as above.
        session: unsafe { pg_sys::GetOuterUserId() },
    })
}

/// The role that owns the extension (and its tables), None when it is not created.
fn extension_owner() -> Result<Option<pg_sys::Oid>> {
    first_value(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'qobra_sync'",
        &[],
    )
}

/// The error of a qobra_sync function called by a source's code while qobra_sync reads it.
fn called_back(what: &str) -> Error {
    Error::new(
        SqlState::InsufficientPrivilege,
        format!("qobra_sync.{what} cannot be called while qobra_sync reads a source"),
    )
    .detail("The code of the source being read (its view, a row security policy, a function they call) called qobra_sync; it may only read as the reader.")
    .hint("Remove the call to qobra_sync from the source's code.")
}

/// The error of a qobra_sync function called in a security-restricted operation.
fn restricted(what: &str) -> Error {
    Error::new(
        SqlState::InsufficientPrivilege,
        format!("qobra_sync.{what} cannot be called within a security-restricted operation"),
    )
    .detail("PostgreSQL is running a table owner's code for ANALYZE, VACUUM, CREATE INDEX, REFRESH MATERIALIZED VIEW or a similar command, as that owner.")
    .hint("Call qobra_sync from a session of its own, not from an index expression, a materialized view or a function they call.")
}

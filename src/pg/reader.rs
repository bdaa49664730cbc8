//! The reader's sandbox: every read of a source runs inside [`as_reader`].
//!
//! Every read (validate, preview, csv_template, push) goes through [`as_reader`], which runs it
//! in a sandbox that nothing the source's own code does can outlive. PostgreSQL runs a table
//! owner's code the same way in ANALYZE, REINDEX, CLUSTER, REFRESH MATERIALIZED VIEW and CREATE
//! INDEX (autovacuum runs ANALYZE in a process of its own): the owner's user id in a
//! security-restricted operation, and a GUC nest level rolled back afterwards
//! (`AtEOXact_GUC(false, …)`), not kept as a function's SET clause keeps it; since 17 also a
//! restricted `search_path`. We do all of that, and more, since a read here is not a command of
//! its own but part of the caller's session:
//! - the user id is switched to the reader in a security-restricted operation (no PREPARE,
//!   DEALLOCATE, LISTEN, CLOSE, DISCARD, WITH HOLD cursors, temporary tables, SET ROLE), the
//!   transaction read-only;
//! - the read runs in a subtransaction that is always rolled back, so every setting the
//!   source's code changed (even with `set_config(…, false)`, for the session), every cursor and
//!   transaction lock it opened, is undone;
//! - the session's advisory locks, which no rollback undoes, are put back as they were
//!   ([`AdvisoryLocks`]);
//! - a reader PostgreSQL would let read everything (a superuser, BYPASSRLS, the file and program
//!   roles, `pg_read_all_data`, the monitoring roles) is refused before anything runs
//!   (`roles::reader_problem`);
//! - no connection to another server that another role opened is used by the read (`fdw`);
//! - nothing is read while the session holds a secret the source's code could see: a query
//!   string or a prepared statement passing a key (`log_filter`);
//! - no qobra_sync function may be called while the read runs (`entry`).
//!
//! While the read runs, every statement is parsed and executed under the settings `pinned` pins
//! for reads, and each fetch of a cursor is bounded in time (see `cursor`).

use crate::pg::deadline::Deadline;
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::fdw;
use crate::pg::locks::AdvisoryLocks;
use crate::pg::log_filter;
use crate::pg::pinned::{self, pinned};
use crate::pg::roles::{reader_problem, refused_reader};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use qobra_sync_core::names::setting::{API_KEY_FILE, RUN_TIMEOUT_MS};

/// Runs `f` as `reader` in the sandbox described above; returns what `f` returns. A Postgres
/// error inside `f` (the source's own, as a view that divides by zero or a privilege the reader
/// lacks) is returned once the sandbox is undone, with its SQLSTATE; a statement timeout at the
/// run's deadline becomes the run's own error ([`deadline_error`]); any other cancel is raised
/// again, since the caller asked for it.
pub fn as_reader<R>(reader: pg_sys::Oid, f: impl FnOnce() -> Result<R>) -> Result<R> {
    if let Some(why) = reader_problem(reader)? {
        return Err(refused_reader(why));
    }
    if log_filter::session_holds_secret()? {
        return Err(secret_in_session());
    }
    fdw::before_read(reader)?;
    let locks = AdvisoryLocks::held();
    let outcome = crate::pg::subxact::rolled_back(|| {
        let _reader = ReaderIdentity::assume(reader);
        pinned(f)
    });
    locks.restore()?;
    if !matches!(&outcome, Err(caught) if is_cancel(caught)) {
        fdw::after_read(reader)?;
    }
    match outcome {
        Ok(result) => result,
        Err(caught) if is_cancel(&caught) && Deadline::passed() => Err(deadline_error()),
        Err(caught) if is_cancel(&caught) => caught.rethrow(),
        Err(caught) => Err(crate::pg::error::from_caught(&caught)),
    }
}

/// The reader's identity for the length of a read: its user id in a security-restricted
/// operation, a read-only transaction. Dropping it restores the caller's.
struct ReaderIdentity {
    user: pg_sys::Oid,
    context: i32,
    read_only: bool,
    /// Whether a read was already in progress (reads do not nest today; this keeps them right
    /// if they ever do).
    was_reading: bool,
}

impl ReaderIdentity {
    /// Becomes `reader`.
    fn assume(reader: pg_sys::Oid) -> ReaderIdentity {
        let mut saved = ReaderIdentity {
            user: pg_sys::Oid::INVALID,
            context: 0,
            // SAFETY: a plain read of the transaction's read-only flag, inside a transaction.
            read_only: unsafe { pg_sys::XactReadOnly },
            was_reading: false,
        };
        // SAFETY: saves the user and security context into `saved`, then becomes `reader` in a
        // security-restricted operation, as PostgreSQL does for REFRESH MATERIALIZED VIEW, and
        // makes the transaction read-only. `drop` puts all three back; the rollback of the
        // subtransaction `as_reader` runs this in restores them too (AbortSubTransaction resets the
        // user, context and XactReadOnly to what they were when it began), on success as on error.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved.user, &mut saved.context);
            pg_sys::SetUserIdAndSecContext(
                reader,
                saved.context
                    | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION)
                        as i32,
            );
            pg_sys::XactReadOnly = true;
        }
        saved.was_reading = pinned::set_reading(true);
        saved
    }
}

impl Drop for ReaderIdentity {
    /// Becomes the caller again.
    fn drop(&mut self) {
        pinned::set_reading(self.was_reading);
        // SAFETY: restores the read-only flag, user and security context `assume` saved, in the
        // same backend and subtransaction.
        unsafe {
            pg_sys::XactReadOnly = self.read_only;
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}

/// The error of a read refused because the session holds a secret the source's code could read.
fn secret_in_session() -> Error {
    Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        "qobra_sync does not read a source while the session holds a secret",
    )
    .detail("The query string passes a key to qobra_sync, or a statement the session prepared does: the source's code could read it (current_query(), pg_prepared_statements).")
    .hint(format!("Send set_destination() in a query string of its own, DEALLOCATE the statements prepared with it, or keep the key in {API_KEY_FILE}."))
}

/// Whether a caught error is a query cancel (a statement timeout among them).
fn is_cancel(caught: &CaughtError) -> bool {
    let report = match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    report.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED
}

/// The error of a run stopped at its deadline.
pub fn deadline_error() -> Error {
    Error::new(
        SqlState::QueryCanceled,
        format!(
            "the run took longer than {RUN_TIMEOUT_MS} ({} ms) and was stopped",
            crate::pg::gucs::RUN_TIMEOUT_MS.get()
        ),
    )
    .hint(format!("Raise {RUN_TIMEOUT_MS}, or make the source faster to read (an index for its filter, a simpler view)."))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn the_reader_context_switches_user_and_restores_everything() {
        crate::testing::fixture();
        Spi::run("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Tokyo'").unwrap();
        let reader = crate::testing::role("t_reader");
        let seen = crate::pg::reader::as_reader(reader, || {
            crate::pg::cursor::one_row("SELECT current_user::text, current_setting('DateStyle'), current_setting('TimeZone'), current_setting('transaction_read_only')")
        })
        .unwrap();
        let seen: Vec<String> = seen.into_iter().map(Option::unwrap).collect();
        assert_eq!(seen, ["t_reader", "ISO, YMD", "UTC", "on"]);
        let after = Spi::get_one::<String>("SELECT current_user || ' ' || current_setting('DateStyle') || ' ' || current_setting('TimeZone') || ' ' || current_setting('transaction_read_only')").unwrap().unwrap();
        assert_eq!(after, "postgres SQL, DMY Asia/Tokyo off");
    }

    #[pg_test]
    fn a_write_inside_the_reader_context_fails() {
        crate::testing::fixture();
        let reader = crate::testing::role("t_reader");
        // Even a reader that holds INSERT cannot write: the transaction is read-only meanwhile.
        Spi::run("GRANT INSERT ON t_deals TO t_reader").unwrap();
        // The write's error comes back as the read's outcome, with PostgreSQL's SQLSTATE.
        let outcome = crate::testing::in_fresh_snapshot(|| {
            crate::pg::reader::as_reader(reader, || {
                crate::pg::cursor::one_row("WITH w AS (INSERT INTO public.t_deals VALUES (3, 'c', NULL) RETURNING 1) SELECT count(*)::text FROM w")
            })
        });
        let error = outcome.expect_err("the write must fail");
        assert!(matches!(
            error.state,
            crate::pg::error::SqlState::Postgres(_)
        ));
        let message = error.message;
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
}

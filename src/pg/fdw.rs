//! Connections to other servers that the session keeps, around a read: a reader never uses a
//! connection that another role opened.
//!
//! postgres_fdw keeps one connection per user mapping for the whole session. When two roles use
//! the same mapping (`PUBLIC`'s), a connection a superuser opened — without the password
//! postgres_fdw demands of other roles — would serve the reader too. So before a read, every
//! connection the session holds is closed, except those earlier reads of this transaction opened
//! as the same reader; a connection still in use by the transaction, which postgres_fdw cannot
//! close, makes the read fail instead. postgres_fdw 1.0 (before PostgreSQL 14) cannot list its
//! connections: reads are refused until `ALTER EXTENSION postgres_fdw UPDATE`.
//!
//! dblink's connections are opened by name (or the one unnamed) and used by any code that knows
//! the name, with the rights of whoever opened them: the unnamed one is closed before a read, and
//! a read is refused while named ones are open.

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::quote::quote_ident;
use crate::pg::spi::first_value;
use crate::pg::subxact::attempt;
use pgrx::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// The reader the reads of the current transaction used, and the servers the session was
    /// connected to after its last read: connections that reader opened.
    static OPENED_BY_READER: RefCell<Option<(pg_sys::Oid, Vec<String>)>> = const { RefCell::new(None) };
}

/// Before a read as `reader`: closes every connection another role may have opened, or fails
/// when one cannot be closed.
pub fn before_read(reader: pg_sys::Oid) -> Result<()> {
    close_dblink()?;
    let Some(schema) = fdw_schema()? else {
        return Ok(());
    };
    if others(&schema, reader)?.is_empty() {
        return Ok(());
    }
    first_value::<bool>(
        &format!("SELECT {schema}.postgres_fdw_disconnect_all()"),
        &[],
    )?;
    let left = others(&schema, reader)?;
    if left.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!(
            "this transaction holds a connection to foreign server {} that the reader did not open",
            left.join(", ")
        ),
    )
    .detail("postgres_fdw keeps a connection in use until the transaction ends, and a reader never reads through a connection another role opened.")
    .hint("Call it in a transaction that has not read the foreign server as another role."))
}

/// After a read as `reader`: remembers the connections it may have opened, until the
/// transaction ends.
pub fn after_read(reader: pg_sys::Oid) -> Result<()> {
    let Some(schema) = fdw_schema()? else {
        return Ok(());
    };
    let servers = connected(&schema)?;
    let first = OPENED_BY_READER.with(|o| o.replace(Some((reader, servers))).is_none());
    if first {
        let forget = || OPENED_BY_READER.with(|o| o.replace(None));
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
            forget();
        });
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, move || {
            forget();
        });
    }
    Ok(())
}

/// The servers the session is connected to that `reader`'s reads of this transaction did not
/// open.
fn others(schema: &str, reader: pg_sys::Oid) -> Result<Vec<String>> {
    let ours = OPENED_BY_READER.with(|o| match &*o.borrow() {
        Some((r, servers)) if *r == reader => servers.clone(),
        _ => vec![],
    });
    let mut servers = connected(schema)?;
    servers.retain(|s| !ours.contains(s));
    Ok(servers)
}

/// The foreign servers the session holds a postgres_fdw connection to.
fn connected(schema: &str) -> Result<Vec<String>> {
    Ok(first_value::<Vec<String>>(
        &format!(
            "SELECT pg_catalog.array_agg(pg_catalog.quote_ident(server_name) ORDER BY server_name)
               FROM {schema}.postgres_fdw_get_connections()"
        ),
        &[],
    )?
    .unwrap_or_default())
}

/// The schema of postgres_fdw's functions (quoted), when the extension is installed; an error
/// when it is at version 1.0, which cannot list its connections.
fn fdw_schema() -> Result<Option<String>> {
    let Some((schema, version)) = extension("postgres_fdw")? else {
        return Ok(None);
    };
    if version == "1.0" {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            "postgres_fdw is at version 1.0, which cannot tell which connections the session holds",
        )
        .hint("Run ALTER EXTENSION postgres_fdw UPDATE in this database."));
    }
    Ok(Some(schema))
}

/// The quoted schema and the version of extension `name`, when it is installed here.
fn extension(name: &str) -> Result<Option<(String, String)>> {
    let found: Option<Vec<String>> = first_value(
        "SELECT ARRAY[n.nspname::pg_catalog.text, e.extversion] FROM pg_catalog.pg_extension e
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
          WHERE e.extname OPERATOR(pg_catalog.=) $1",
        &[name.into()],
    )?;
    Ok(found.and_then(|v| match v.as_slice() {
        [schema, version] => Some((quote_ident(schema), version.clone())),
        _ => None,
    }))
}

/// Closes dblink's unnamed connection, if there is one, and refuses a read while named ones are
/// open (their names are the only thing that stands between them and the source's code).
fn close_dblink() -> Result<()> {
    let Some((schema, _)) = extension("dblink")? else {
        return Ok(());
    };
    // dblink_disconnect() fails when there is no unnamed connection: that answer is fine.
    let _ = attempt(|| first_value::<String>(&format!("SELECT {schema}.dblink_disconnect()"), &[]));
    let named: Option<Vec<String>> =
        first_value(&format!("SELECT {schema}.dblink_get_connections()"), &[])?;
    let named = named.unwrap_or_default();
    if named.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!(
            "the session holds dblink connections ({}), which the source's code could use",
            named.join(", ")
        ),
    )
    .detail("A dblink connection acts with the rights of whoever opened it, for any code that names it.")
    .hint("Close them with dblink_disconnect(name) first, or read in a session of its own."))
}

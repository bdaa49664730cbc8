//! The catalog side: describing a source relation and checking that it can be one.

use crate::error::{spi, Error, Result, SqlState};
use crate::pinned::pinned;
use crate::sqltypes::RegClass;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::error::quoted;
use qobra_sync_core::mapping::Source;

/// The query that describes a relation as one jsonb (see the file for its shape).
const DESCRIBE_SOURCE: &str = include_str!("../sql/describe_source.sql");

/// The first column of the first row of a read-only query, or None when there is no row. Runs
/// under the pinned settings, like every statement of the extension.
pub fn first_value<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>> {
    pinned(|| {
        Spi::connect(|client| {
            let table = client.select(sql, Some(1), args)?;
            if table.is_empty() {
                Ok(None)
            } else {
                table.first().get::<T>(1)
            }
        })
    })
    .map_err(spi)
}

/// Runs one statement that returns nothing useful (an INSERT, UPDATE or DELETE of our own tables).
pub fn execute(sql: &str, args: &[DatumWithOid<'_>]) -> Result<()> {
    writing(|client| client.update(sql, None, args).map(|_| ()))
}

/// Runs `f` with an SPI client that may write (several statements of our own tables, one
/// connection), under the pinned settings.
pub fn writing<R>(
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>) -> std::result::Result<R, pgrx::spi::Error>,
) -> Result<R> {
    pinned(|| Spi::connect_mut(f)).map_err(spi)
}

/// Describes the relation with OID `oid`, or says it does not exist (any more).
pub fn describe(oid: pg_sys::Oid) -> Result<Source> {
    let json: Option<JsonB> = first_value(DESCRIBE_SOURCE, &[RegClass(oid).into()])?;
    let Some(JsonB(value)) = json else {
        return Err(Error::new(SqlState::UndefinedTable, format!("relation with OID {} does not exist", oid.to_u32()))
            .hint("The source was dropped. Unregister it with qobra_sync.unregister_table(), or register the relation that replaces it."));
    };
    serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("cannot read the source description: {e}")))
}

/// Describes a relation and checks that its kind can be a source.
pub fn describe_source(oid: pg_sys::Oid) -> Result<Source> {
    let source = describe(oid)?;
    let kind = match source.relkind.as_str() {
        "r" | "p" | "v" | "m" => return Ok(source),
        "S" => "a sequence",
        "i" | "I" => "an index",
        "c" => "a composite type",
        "t" => "a TOAST table",
        "f" => "a foreign table",
        _ => "not a table",
    };
    Err(Error::new(
        SqlState::WrongObjectType,
        format!("{} is {kind}", quoted(&source.name)),
    )
    .detail("A source must be a table, a partitioned table, a view or a materialized view.")
    .hint(if source.relkind == "f" {
        "Register a view over the foreign table instead."
    } else {
        "Register the table or view that holds the rows to push."
    }))
}

/// Checks that a registered source still exists under the name it was registered with.
pub fn check_unchanged(oid: pg_sys::Oid, registered_name: &str) -> Result<Source> {
    let source = describe(oid).map_err(|e| {
        if e.state == SqlState::UndefinedTable {
            Error::new(
                SqlState::UndefinedTable,
                format!("registered source {registered_name} no longer exists"),
            )
            .detail(format!("No relation has OID {} any more.", oid.to_u32()))
            .hint(format!(
                "Unregister it: SELECT qobra_sync.unregister_table({});",
                oid.to_u32()
            ))
        } else {
            e
        }
    })?;
    if source.name != registered_name {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            format!("registered source {registered_name} is now called {}", source.name),
        )
        .detail("The relation was renamed or moved since it was registered; nothing is pushed until this is confirmed.")
        .hint(format!("Confirm with SELECT qobra_sync.alter_table('{}');", source.name.replace('\'', "''"))));
    }
    Ok(source)
}

/// The name of the role running this statement.
pub fn current_role() -> Result<(String, u32)> {
    let oid = unsafe { pg_sys::GetUserId() };
    let name = unsafe { pg_sys::GetUserNameFromId(oid, false) };
    let name = unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    Ok((name, oid.to_u32()))
}

/// Whether the current user is a superuser.
pub fn is_superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

//! The catalog side: describing a source relation and checking that it can be one.

use crate::pg::error::{Error, Result, SqlState};
use crate::pg::spi::first_value;
use crate::pg::sqltypes::RegClass;
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::error::quoted;
use qobra_sync_core::names::function::{ALTER_TABLE, UNREGISTER_TABLE};
use qobra_sync_core::source::Source;

/// The query that describes a relation as one jsonb (see the file for its shape).
const DESCRIBE_SOURCE: &str = include_str!("../../sql/describe_source.sql");

/// Describes the relation with OID `oid`, or says it does not exist (any more).
pub fn describe(oid: pg_sys::Oid) -> Result<Source> {
    let json: Option<JsonB> = first_value(DESCRIBE_SOURCE, &[RegClass(oid).into()])?;
    let Some(JsonB(value)) = json else {
        return Err(Error::new(SqlState::UndefinedTable, format!("relation with OID {} does not exist", oid.to_u32()))
            .hint(format!("The source was dropped. Unregister it with {UNREGISTER_TABLE}(), or register the relation that replaces it.")));
    };
    serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("cannot read the source description: {e}")))
}

/// The name of the database this backend is connected to (empty when it is gone). Reads the
/// catalog: call it inside a transaction.
pub fn current_database() -> String {
    // SAFETY: a syscache lookup by this backend's database OID (set once at connection), made
    // inside a transaction as documented; it returns a palloc'd copy or null.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: `name` is the non-null, NUL-terminated palloc'd copy returned above, in the current
    // memory context, and is copied into a String at once.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Describes a relation and checks that its kind can be a source.
pub fn describe_source(oid: pg_sys::Oid) -> Result<Source> {
    let source = describe(oid)?;
    let kind = source.kind();
    if kind.can_be_source() {
        return Ok(source);
    }
    Err(Error::new(
        SqlState::WrongObjectType,
        format!("{} is {}", quoted(&source.name), kind.with_article()),
    )
    .detail("A source must be a table, a partitioned table, a view, a materialized view or a foreign table.")
    .hint("Register the table or view that holds the rows to push."))
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
                "Unregister it: SELECT {UNREGISTER_TABLE}({});",
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
        .hint(format!("Confirm with SELECT {ALTER_TABLE}('{}');", source.name.replace('\'', "''"))));
    }
    Ok(source)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::testing::{fixture, oid};
    use qobra_sync_core::source::RelKind;

    #[pg_test]
    fn a_table_is_described_with_its_base_types() {
        fixture();
        Spi::run("CREATE DOMAIN t_email AS text; ALTER TABLE t_deals ADD COLUMN owner t_email, ADD COLUMN gone int;
                  ALTER TABLE t_deals DROP COLUMN gone").unwrap();
        let source = describe_source(oid("t_deals")).unwrap();
        assert_eq!(source.name, "public.t_deals");
        assert_eq!(source.kind(), RelKind::Table);
        let names: Vec<&str> = source.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["id", "title", "closed", "owner"],
            "dropped columns are left out"
        );
        let owner = source.column("owner").unwrap();
        assert_eq!(
            (owner.type_name.as_str(), owner.base_type_oid),
            ("public.t_email", 25)
        );
        assert!(source.column("id").unwrap().not_null);
    }

    #[pg_test]
    fn what_cannot_be_a_source_is_named() {
        Spi::run("CREATE SEQUENCE t_seq").unwrap();
        let e = describe_source(oid("t_seq")).unwrap_err();
        assert_eq!(e.state, SqlState::WrongObjectType);
        assert_eq!(e.message, "\"public.t_seq\" is a sequence");
    }

    #[pg_test]
    fn a_renamed_or_dropped_source_is_noticed() {
        fixture();
        let source = oid("t_deals");
        assert!(check_unchanged(source, "public.t_deals").is_ok());
        Spi::run("ALTER TABLE t_deals RENAME TO t_renamed").unwrap();
        let e = check_unchanged(source, "public.t_deals").unwrap_err();
        assert!(
            e.message.contains("is now called public.t_renamed"),
            "{}",
            e.message
        );
        Spi::run("DROP TABLE t_renamed").unwrap();
        let e = check_unchanged(source, "public.t_deals").unwrap_err();
        assert_eq!(e.state, SqlState::UndefinedTable);
    }
}

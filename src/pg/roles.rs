//! Roles: who may read for qobra_sync (the reader rule, in one place), role lookups, privileges.

use crate::pg::cursor::one_row;
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::quote::literal;
use crate::pg::spi::first_value;
use pgrx::prelude::*;
use qobra_sync_core::error::quoted;
use qobra_sync_core::mapping::Source;

/// The roles whose members may not be readers: each reads or runs more than a reader should.
const UNFIT_GROUPS: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
];

/// What makes a role unfit to read for qobra_sync, if anything: a superuser, a role that
/// bypasses row-level security, or a member of one of [`UNFIT_GROUPS`].
pub fn reader_problem(role: pg_sys::Oid) -> Result<Option<String>> {
    let groups = UNFIT_GROUPS
        .iter()
        .map(|g| format!("'{g}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let found: Option<pgrx::JsonB> = first_value(
        &format!(
            "SELECT pg_catalog.jsonb_build_array(r.rolname, r.rolsuper, r.rolbypassrls,
                    (SELECT pg_catalog.string_agg(g, ', ' ORDER BY g) FROM pg_catalog.unnest(ARRAY[{groups}]) AS g
                      WHERE pg_catalog.pg_has_role(r.oid, g::pg_catalog.name, 'MEMBER')))
               FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1"
        ),
        &[role.into()],
    )?;
    let Some(pgrx::JsonB(row)) = found else {
        return Ok(Some(format!("role {} does not exist", role.to_u32())));
    };
    let name = quoted(row[0].as_str().unwrap_or_default());
    Ok(if row[1].as_bool() == Some(true) {
        Some(format!("role {name} is a superuser"))
    } else if row[2].as_bool() == Some(true) {
        Some(format!("role {name} bypasses row-level security"))
    } else {
        row[3]
            .as_str()
            .map(|groups| format!("role {name} is a member of {groups}"))
    })
}

/// The error for reading as an unfit role.
pub fn refused_reader(why: String) -> Error {
    Error::new(SqlState::InsufficientPrivilege, format!("run_as refused: {why}"))
        .hint("Pass run_as => a role that can only read the source (see \"Security model\" in the README).")
}

/// A role's OID by name, or an error naming the argument.
pub fn role_oid(name: &str, argument: &str) -> Result<pg_sys::Oid> {
    let oid: Option<pg_sys::Oid> = first_value(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1",
        &[name.into()],
    )?;
    oid.ok_or_else(|| {
        Error::new(SqlState::UndefinedObject, format!("role {} does not exist", quoted(name)))
            .detail(format!("It is named in {argument}."))
            .hint("Create a role that can only read the source, e.g. CREATE ROLE qobra_reader; GRANT SELECT ON … TO qobra_reader;")
    })
}

/// Whether `role` may SELECT every column the push reads from `source`.
pub fn reader_can_select(
    role: pg_sys::Oid,
    source: &Source,
    columns: &[String],
) -> Result<Option<String>> {
    let mut missing = vec![];
    for column in columns {
        let row = one_row(&format!(
            "SELECT pg_catalog.has_column_privilege({}::pg_catalog.oid, {}::pg_catalog.oid, {}, 'SELECT')::pg_catalog.text",
            role.to_u32(),
            source.oid,
            literal(column)
        ))?;
        if row[0].as_deref() != Some("true") {
            missing.push(column.clone());
        }
    }
    let name = one_row(&format!(
        "SELECT {}::pg_catalog.regrole::pg_catalog.text",
        role.to_u32()
    ))?[0]
        .clone()
        .unwrap_or_default();
    Ok((!missing.is_empty()).then(|| {
        format!(
            "role {name} cannot SELECT {} of {}",
            missing.join(", "),
            source.name
        )
    }))
}

/// Refuses a reader that is unfit or cannot read the columns a push reads.
pub fn check_reader(role: pg_sys::Oid, source: &Source, columns: &[String]) -> Result<()> {
    if let Some(why) = reader_problem(role)? {
        return Err(refused_reader(why));
    }
    if let Some(why) = reader_can_select(role, source, columns)? {
        return Err(refused_reader(why).hint(format!(
            "GRANT SELECT ON {} TO the run_as role.",
            source.name
        )));
    }
    Ok(())
}

/// The write privileges `role` holds on `source`, if any.
pub fn write_privileges(role: pg_sys::Oid, source: &Source) -> Result<Option<String>> {
    let row = one_row(&format!(
        "SELECT pg_catalog.string_agg(p, ', ') FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
          WHERE pg_catalog.has_table_privilege({}::pg_catalog.oid, {}::pg_catalog.oid, p)",
        role.to_u32(),
        source.oid
    ))?;
    Ok(row[0].clone())
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

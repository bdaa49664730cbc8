//! Roles: who may read for qobra_sync (the reader rule, in one place), role lookups, privileges.

use crate::pg::cursor::one_row;
use crate::pg::entry;
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::quote::literal;
use crate::pg::spi::first_value;
use pgrx::prelude::*;
use qobra_sync_core::error::quoted;
use qobra_sync_core::source::Source;

/// The roles whose members may not be readers: each reads or runs more than a reader should.
/// The monitoring roles read every session's statements (`pg_stat_activity.query`) and every
/// setting: a source's code reading as their member would see what other sessions pass.
const UNFIT_GROUPS: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_monitor",
    "pg_read_all_stats",
    "pg_read_all_settings",
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
    if let Some((why, server)) = reader_lacks_user_mapping(role, source)? {
        return Err(refused_reader(why).hint(format!(
            "CREATE USER MAPPING FOR the run_as role SERVER {server} OPTIONS (user '…', password '…')."
        )));
    }
    Ok(())
}

/// For a foreign table of postgres_fdw, why `role` cannot read it through the server, if it
/// cannot: it has no user mapping there (neither its own nor PUBLIC's). Returns the reason and
/// the server's name.
pub fn reader_lacks_user_mapping(
    role: pg_sys::Oid,
    source: &Source,
) -> Result<Option<(String, String)>> {
    if source.relkind != "f" {
        return Ok(None);
    }
    let row = one_row(&format!(
        "SELECT (SELECT pg_catalog.quote_ident(s.srvname)
                   FROM pg_catalog.pg_foreign_table ft
                   JOIN pg_catalog.pg_foreign_server s ON s.oid OPERATOR(pg_catalog.=) ft.ftserver
                   JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw
                  WHERE ft.ftrelid OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid
                    AND w.fdwname OPERATOR(pg_catalog.=) 'postgres_fdw'
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_user_mapping um
                                     WHERE um.umserver OPERATOR(pg_catalog.=) s.oid
                                       AND um.umuser OPERATOR(pg_catalog.=) ANY (ARRAY[{role}::pg_catalog.oid, 0::pg_catalog.oid]))),
                {role}::pg_catalog.regrole::pg_catalog.text",
        oid = source.oid,
        role = role.to_u32(),
    ))?;
    let (Some(server), Some(name)) = (row[0].clone(), row[1].clone()) else {
        return Ok(None);
    };
    Ok(Some((
        format!(
            "role {name} has no user mapping for server {server}, through which {} is read",
            source.name
        ),
        server,
    )))
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

/// The role calling qobra_sync, as it is named and recorded (the owner of what it registers):
/// the role in effect in the session (`current_user` as the caller sees it, after any `SET
/// ROLE`), not the owner a security-definer function runs as. What it may do is checked for
/// the role current where the call was made too ([`callers`]).
pub fn caller() -> (String, pg_sys::Oid) {
    let oid = entry::callers().session;
    (role_name(oid), oid)
}

/// The role the session logged in as: `SET ROLE` changes the role in effect, not this one.
pub fn login_role() -> pg_sys::Oid {
    // SAFETY: a plain read of a backend global, set once the session is authenticated.
    unsafe { pg_sys::GetSessionUserId() }
}

/// Both roles behind the call: the session's and the one current where the call was made
/// (the same role, unless a security-definer function made the call). qobra_sync does for a
/// call only what both may do.
pub fn callers() -> [pg_sys::Oid; 2] {
    let c = entry::callers();
    [c.session, c.current]
}

/// Whether both callers are superusers.
pub fn caller_is_superuser() -> bool {
    callers()
        .iter()
        // SAFETY: a catalog lookup by OID, in a transaction.
        .all(|&role| unsafe { pg_sys::superuser_arg(role) })
}

/// A role's name, or its OID in digits when it does not exist (any more).
pub fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup by OID, inside a transaction; with noerr, a missing role gives null
    // instead of an error.
    let name = unsafe { pg_sys::GetUserNameFromId(oid, true) };
    if name.is_null() {
        return oid.to_u32().to_string();
    }
    // SAFETY: `name` is the non-null, NUL-terminated palloc'd copy returned above, copied at once.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Whether a role with OID `oid` exists.
fn role_exists(oid: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup by OID, inside a transaction; with noerr, a missing role gives
    // null; the palloc'd name is left to the memory context.
    unsafe { !pg_sys::GetUserNameFromId(oid, true).is_null() }
}

/// Whether `actor` may act as `role` as PostgreSQL allows `SET ROLE`: it is that role, a
/// superuser, or a member of it. (PostgreSQL 15 lets every member `SET ROLE`; from 16 on a
/// membership may be granted without the SET option, and the test becomes
/// `pg_has_role(actor, role, 'SET')`.)
pub fn may_act_as(actor: pg_sys::Oid, role: pg_sys::Oid) -> Result<bool> {
    if !role_exists(actor) || !role_exists(role) {
        return Ok(false);
    }
    // SAFETY: a catalog lookup by OID, in a transaction (false for a role that does not exist).
    if actor == role || unsafe { pg_sys::superuser_arg(actor) } {
        return Ok(true);
    }
    Ok(first_value::<bool>(
        "SELECT pg_catalog.pg_has_role($1, $2, 'MEMBER')",
        &[actor.into(), role.into()],
    )?
    .unwrap_or(false))
}

/// Refuses `actor` (`who` in the message: "you", "the owner …") acting as `role` unless
/// [`may_act_as`].
pub fn check_may_act_as(actor: pg_sys::Oid, role: pg_sys::Oid, argument: &str) -> Result<()> {
    if may_act_as(actor, role)? {
        return Ok(());
    }
    Err(Error::new(
        SqlState::InsufficientPrivilege,
        format!(
            "role {} may not act as {} ({argument})",
            quoted(&role_name(actor)),
            quoted(&role_name(role))
        ),
    )
    .detail("qobra_sync reads as a role only for a role that may SET ROLE to it.")
    .hint(format!(
        "Grant it first (GRANT {} TO {}), or choose a run_as it may act as.",
        role_name(role),
        role_name(actor)
    )))
}

/// Refuses both callers acting as `role` (see [`check_may_act_as`]) unless each may.
pub fn check_callers_may_act_as(role: pg_sys::Oid, argument: &str) -> Result<()> {
    callers()
        .iter()
        .try_for_each(|&actor| check_may_act_as(actor, role, argument))
}

/// Whether both callers may act for `owner`: each is that role, a member of it, or a superuser.
pub fn callers_may_act_for(owner: pg_sys::Oid) -> Result<bool> {
    for actor in callers() {
        if !may_act_as(actor, owner)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuses the caller acting on a registration owned by `owner` unless both callers are the
/// owner, members of the owner role, or superusers. The error does not name the owner: a role
/// that may not act for it learns nothing of it.
pub fn check_owner(owner: pg_sys::Oid, source: &str) -> Result<()> {
    if callers_may_act_for(owner)? {
        return Ok(());
    }
    Err(Error::new(
        SqlState::InsufficientPrivilege,
        format!(
            "{source} is registered by a role that role {} is not a member of",
            quoted(&caller().0)
        ),
    )
    .hint("Only the role that registered a source, its members and superusers may change, push or inspect it."))
}

//! Registrations that follow their source by name (`follow_name`): a deploy that drops and
//! recreates the relation (a dbt model, `CREATE TABLE … AS` and a rename swap, a migration)
//! leaves the registration's OID pointing at nothing, or at the old relation under another name.
//! Such a registration moves to the relation its name now resolves to — registration, baseline
//! and history together — once that relation's synced columns match the recorded shape by name
//! and type (the drift guard still in force), and only when the role that owned the source owns
//! it (a role that may create tables in the schema cannot put its own rows in the source's
//! place); until then nothing moves.

use super::load;
use crate::pg::catalog::{self, describe_source};
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::roles;
use crate::pg::spi::{first_value, first_written, writing};
use crate::pg::sqltypes::RegClass;
use crate::pg::Oid;
use pgrx::JsonB;
use qobra_sync_core::error::quoted;
use qobra_sync_core::names::function::{REGISTER_TABLE, UNREGISTER_TABLE};
use qobra_sync_core::names::relation::RUNS;
use qobra_sync_core::registration::Registration;
use qobra_sync_core::shape::{self, ShapeColumn};
use qobra_sync_core::source::Source;

/// The OID a push of `oid` acts on: `oid` itself, unless a registration that follows its
/// source by name is to move first — the one of `oid`, whose relation is gone or renamed while
/// another relation now has its name; or one whose name `oid` now has. Moves it (see [`move_to`]).
pub fn resolve(oid: Oid) -> Result<Oid> {
    match pending_move(oid)? {
        Some((reg, to)) => {
            move_to(&reg, to)?;
            Ok(to)
        }
        None => Ok(oid),
    }
}

/// The registration that follows its name to `oid` without having moved yet, as inspection
/// sees it (nothing is written): its shape matched to `oid`'s columns by name. None when it may
/// not follow there (another owner): `oid` is then inspected as the relation it is.
pub fn peek(oid: Oid) -> Result<Option<Registration>> {
    let (mut reg, to) = match pending_move(oid) {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(None),
        Err(e) if e.state == SqlState::InsufficientPrivilege => return Ok(None),
        Err(e) => return Err(e),
    };
    if to != oid {
        return Ok(None);
    }
    let source = describe_source(to)?;
    reg.shape = reg.shape.map(|s| shape::rebind(&s, &source));
    reg.source = to.to_u32();
    Ok(Some(reg))
}

/// The registration about to follow its name, and the relation it moves to, if any: only one
/// the callers may act on (another's is none of their business, and is not named to them).
fn pending_move(oid: Oid) -> Result<Option<(Registration, Oid)>> {
    if let Some(reg) = load(oid)? {
        if !reg.follow_name || still_named(&reg) || !may_act_on(&reg) {
            return Ok(None);
        }
        let Some(to) = named(&reg.source_name)? else {
            return Ok(None);
        };
        if to == oid || load(to)?.is_some() {
            return Ok(None);
        }
        check_same_owner(&reg, to)?;
        return Ok(Some((reg, to)));
    }
    let Ok(source) = catalog::describe(oid) else {
        return Ok(None);
    };
    let Some(reg) = following(&source.name)? else {
        return Ok(None);
    };
    if still_named(&reg) || !may_act_on(&reg) {
        return Ok(None);
    }
    check_same_owner(&reg, oid)?;
    Ok(Some((reg, oid)))
}

/// Refuses to follow to relation `to` when another role owns it than the one that owned the
/// registered source.
fn check_same_owner(reg: &Registration, to: Oid) -> Result<()> {
    let owners: Option<JsonB> = first_value(
        "SELECT pg_catalog.jsonb_build_array(c.relowner::pg_catalog.int8, c.relowner::pg_catalog.regrole::pg_catalog.text,
                    $2::pg_catalog.oid::pg_catalog.regrole::pg_catalog.text)
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[RegClass(to).into(), i64::from(reg.source_owner.unwrap_or(0)).into()],
    )?;
    let Some(JsonB(owners)) = owners else {
        return Ok(());
    };
    if reg
        .source_owner
        .is_some_and(|o| owners[0].as_i64() == Some(i64::from(o)))
    {
        return Ok(());
    }
    let name = |i: usize| owners[i].as_str().unwrap_or("?").to_owned();
    Err(Error::new(
        SqlState::InsufficientPrivilege,
        format!(
            "{} follows its name, but the relation now called so is owned by {}, not by {} who owned the registered one",
            quoted(&reg.source_name),
            quoted(&name(1)),
            quoted(&name(2))
        ),
    )
    .detail("A registration follows its name only to a relation of the same owner, so that a role that may create tables in the schema cannot put its rows in the source's place.")
    .hint(format!(
        "If it is the intended source, register it afresh: SELECT {UNREGISTER_TABLE}(data_table_key => '{}'), then {REGISTER_TABLE}().",
        reg.data_table_key.replace('\'', "''")
    )))
}

/// Whether the callers may act on the registration (its owner, a member, a superuser).
fn may_act_on(reg: &Registration) -> bool {
    roles::check_owner(Oid::from(reg.owner_oid), &reg.source_name).is_ok()
}

/// Whether the registration's relation still exists under the name it was registered with.
fn still_named(reg: &Registration) -> bool {
    catalog::describe(Oid::from(reg.source)).is_ok_and(|s| s.name == reg.source_name)
}

/// The relation `name` (schema-qualified, as registrations keep it) resolves to, if any.
fn named(name: &str) -> Result<Option<Oid>> {
    let oid: Option<i64> = first_value(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
        &[name.into()],
    )?;
    Ok(oid.map(|o| Oid::from(o as u32)))
}

/// The registration that follows the name `name`, if one does.
fn following(name: &str) -> Result<Option<Registration>> {
    let oid: Option<i64> = first_value(
        "SELECT source::pg_catalog.oid::pg_catalog.int8 FROM qobra_sync.registrations
          WHERE follow_name AND source_name OPERATOR(pg_catalog.=) $1 ORDER BY created_at LIMIT 1",
        &[name.into()],
    )?;
    match oid {
        Some(o) => load(Oid::from(o as u32)),
        None => Ok(None),
    }
}

/// Moves a registration to relation `to`, with its baseline and its run history, once `to`'s
/// columns match the recorded shape; says so to the caller (NOTICE) and in the server log. A
/// registration another transaction holds (a session pushing it) is left to it: that is a
/// push already running.
fn move_to(reg: &Registration, to: Oid) -> Result<()> {
    let source = describe_source(to)?;
    let shape = matched_shape(reg, &source)?;
    let from = RegClass(Oid::from(reg.source));
    lock_row(reg, &source.name)?;
    writing(|c| {
        c.update(
            &format!(
                "UPDATE qobra_sync.registrations SET source = $2, shape = COALESCE($3, shape),
                        shape_of = {}, updated_at = pg_catalog.now()
                  WHERE source OPERATOR(pg_catalog.=) $1",
                super::shape_here_sql("$2")
            ),
            None,
            &[from.into(), RegClass(to).into(), shape.into()],
        )?;
        for table in ["baselines", "runs"] {
            c.update(
                &format!("UPDATE qobra_sync.{table} SET source = $2 WHERE source OPERATOR(pg_catalog.=) $1"),
                None,
                &[from.into(), RegClass(to).into()],
            )?;
        }
        Ok(())
    })?;
    let moved = format!(
        "the registration of {} follows its name to a new relation (OID {} to {})",
        source.name,
        reg.source,
        to.to_u32()
    );
    pgrx::notice!("{moved}");
    pgrx::log!("qobra_sync: {moved}");
    Ok(())
}

/// Locks the registration's row, or says that a push of it is running (SQLSTATE 55P03, which
/// the worker takes as busy) when another transaction holds it.
fn lock_row(reg: &Registration, name: &str) -> Result<()> {
    // (Written, not read: a row lock is no read-only statement.)
    let locked: Result<Option<bool>> = first_written(
        "SELECT true FROM qobra_sync.registrations WHERE source OPERATOR(pg_catalog.=) $1 FOR UPDATE SKIP LOCKED",
        &[RegClass(Oid::from(reg.source)).into()],
    );
    match locked? {
        Some(_) => Ok(()),
        None => Err(Error::new(
            SqlState::LockNotAvailable,
            format!("a push of {name} is already running"),
        )
        .hint(format!(
            "Wait for it to finish (see {RUNS}), then try again."
        ))),
    }
}

/// The recorded shape matched to `source`'s columns by name, or the error saying why the
/// registration cannot follow: a synced column is missing or no longer of a type it can be
/// sent as.
fn matched_shape(reg: &Registration, source: &Source) -> Result<Option<JsonB>> {
    let Some(recorded) = reg.shape.as_deref() else {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            format!(
                "{} follows its name, but has no recorded shape to compare the relation now called so with",
                quoted(&reg.source_name)
            ),
        )
        .detail("A registration made before shapes were recorded gets one at its first push.")
        .hint(format!(
            "Register the relation afresh: SELECT {UNREGISTER_TABLE}(data_table_key => '{}'), then {REGISTER_TABLE}().",
            reg.data_table_key.replace('\'', "''")
        )));
    };
    let rebound: Vec<ShapeColumn> = shape::rebind(recorded, source);
    let changes = shape::drift(&rebound, source, &[]);
    if let Some(why) = shape::blocked(&source.name, &changes) {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            format!(
                "{} follows its name, but the relation now called so does not have its synced columns: {why}",
                quoted(&reg.source_name)
            ),
        )
        .hint(format!(
            "Check the new relation; to push it as it is, register it afresh: SELECT {UNREGISTER_TABLE}(data_table_key => '{}'), then {REGISTER_TABLE}().",
            reg.data_table_key.replace('\'', "''")
        )));
    }
    Ok(Some(JsonB(
        serde_json::to_value(&rebound).expect("a shape serialises"),
    )))
}

//! Registrations: storing, changing and reading back what is registered (`qobra_sync.registrations`),
//! and the destination (`destination`).

pub mod client;
pub mod destination;
pub mod follow;

use crate::pg::catalog::{self, describe_source};
use crate::pg::cursor::scan;
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::filter;
use crate::pg::gucs;
use crate::pg::reader;
use crate::pg::roles::{self, check_reader, role_oid};
use crate::pg::spi::{execute, first_value, writing};
use crate::pg::sqltypes::RegClass;
use crate::pg::Oid;
use pgrx::JsonB;
use qobra_sync_core::error::quoted;
use qobra_sync_core::mapping::ColumnOptions;
use qobra_sync_core::names::function::{ACCEPT_SHAPE, ALTER_TABLE, REGISTER_TABLE, SYNC_NOW};
use qobra_sync_core::names::relation::TABLES;
use qobra_sync_core::registration::{self as rules, Registration};
use qobra_sync_core::schedule::{parse_zone, Schedule};
use qobra_sync_core::shape::{self, ShapeColumn};
use qobra_sync_core::source::Source;

/// Everything a registration says, as given to `register_table` / merged by `alter_table`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub data_table_key: String,
    pub columns: ColumnOptions,
    /// The filter as the user wrote it (canonicalised before storing).
    pub filter: Option<String>,
    /// None: pushed only when asked.
    pub schedule: Option<String>,
    pub run_as: String,
    /// Whether the registration follows its source by name (see `follow`).
    pub follow_name: bool,
}

impl Spec {
    /// What a registration says, unchanged.
    pub fn of(reg: Registration) -> Spec {
        Spec {
            data_table_key: reg.data_table_key,
            columns: reg.columns,
            filter: reg.filter,
            schedule: reg.schedule,
            run_as: reg.run_as,
            follow_name: reg.follow_name,
        }
    }
}

/// Whether the source of `reg` only gained columns since its shape was recorded (or has no
/// shape yet), so that confirming it may accept them; when a synced column was renamed,
/// dropped or retyped, a WARNING says so and that `accept_shape` accepts it.
pub fn only_added_columns(source_oid: Oid, reg: &Registration) -> Result<bool> {
    let Some(recorded) = reg.shape.as_deref() else {
        return Ok(true);
    };
    // (`load` rebound a shape recorded on a restored copy's column numbers.)
    let source = describe_source(source_oid)?;
    let changes = shape::drift(recorded, &source, &[]);
    let Some(why) = shape::blocked(&source.name, &changes) else {
        return Ok(true);
    };
    pgrx::warning!(
        "{why}; the shape is not accepted (pushes stay blocked). Check the source, then accept it with {ACCEPT_SHAPE}('{}').",
        source.name.replace('\'', "''")
    );
    Ok(false)
}

/// SQL for the owner of the source `$1`, as `registrations.source_owner` keeps it.
const SOURCE_OWNER: &str = "(SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid)::pg_catalog.regrole";

/// SQL for where a shape recorded now on the source the parameter `param` holds belongs
/// (`shape_of`): this database (see `destination::THIS_DATABASE`) and the relation's OID. An
/// OID alone proves nothing after a restore: a fresh cluster hands out the same OIDs to other
/// relations.
fn shape_here_sql(param: &str) -> String {
    format!(
        "({} OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) {param}::pg_catalog.oid::pg_catalog.text)",
        destination::THIS_DATABASE
    )
}

/// Reads the registration of `source`, if there is one.
pub fn load(source: Oid) -> Result<Option<Registration>> {
    let json: Option<JsonB> = first_value(
        &format!(
            "SELECT pg_catalog.jsonb_build_object(
                 'source', r.source::pg_catalog.oid::pg_catalog.int8,
                 'source_name', r.source_name,
                 'data_table_key', r.data_table_key,
                 'columns', pg_catalog.jsonb_build_object(
                     'id_column', r.id_column, 'name_column', r.name_column,
                     'user_columns', r.user_columns, 'user_key', r.user_key,
                     'column_types', r.column_types, 'field_keys', r.field_keys,
                     'exclude_columns', r.exclude_columns),
                 'filter', r.filter, 'schedule', r.schedule,
                 'run_as', r.run_as::pg_catalog.text,
                 'run_as_oid', r.run_as::pg_catalog.oid::pg_catalog.int8,
                 'owner', r.owner::pg_catalog.text,
                 'owner_oid', r.owner::pg_catalog.oid::pg_catalog.int8,
                 'shape', r.shape,
                 'shape_here', COALESCE(r.shape_of OPERATOR(pg_catalog.=) {here}, false),
                 'paused', r.paused, 'follow_name', r.follow_name,
                 'source_owner', r.source_owner::pg_catalog.oid::pg_catalog.int8)
               FROM qobra_sync.registrations r WHERE r.source OPERATOR(pg_catalog.=) $1",
            here = shape_here_sql("$1")
        ),
        &[RegClass(source).into()],
    )?;
    let Some(JsonB(v)) = json else {
        return Ok(None);
    };
    let mut reg: Registration = serde_json::from_value(v)
        .map_err(|e| Error::internal(format!("cannot read a registration: {e}")))?;
    rebind_restored_shape(&mut reg);
    Ok(Some(reg))
}

/// A shape recorded on another copy of the source (a restored dump numbers columns afresh)
/// is matched to the source's columns by name; the push records it so (`record_shape`).
fn rebind_restored_shape(reg: &mut Registration) {
    if reg.shape_here {
        return;
    }
    let Some(recorded) = reg.shape.as_deref() else {
        return;
    };
    // A source that cannot be described is reported by whoever uses the registration.
    if let Ok(source) = catalog::describe(Oid::from(reg.source)) {
        reg.shape = Some(shape::rebind(recorded, &source));
    }
}

/// The registration of `source`, or an error saying it is not registered.
pub fn require(source: Oid) -> Result<Registration> {
    load(source)?.ok_or_else(|| not_registered(source))
}

/// The registration of `source`, if the caller may act on it: as its owner, a member of the
/// owner role, or a superuser.
pub fn require_owned(source: Oid) -> Result<Registration> {
    let reg = require(source)?;
    roles::check_owner(Oid::from(reg.owner_oid), &reg.source_name)?;
    Ok(reg)
}

/// The error for a relation that has no registration.
pub fn not_registered(source: Oid) -> Error {
    let name = catalog::describe(source)
        .map(|s| s.name)
        .unwrap_or_else(|_| source.to_u32().to_string());
    Error::new(
        SqlState::UndefinedObject,
        format!("{} is not registered", quoted(&name)),
    )
    .hint(format!(
        "Register it with {REGISTER_TABLE}(); {TABLES} lists what is registered."
    ))
}

/// The next run time of a schedule from now, in the configured time zone; none without a
/// schedule.
fn next_run(schedule: Option<&str>) -> Result<Option<String>> {
    let Some(schedule) = schedule else {
        return Ok(None);
    };
    let zone = parse_zone(&gucs::text(&gucs::TIMEZONE))?;
    Ok(Schedule::parse(schedule)?
        .next_after(crate::pg::time::transaction_start(), zone)
        .map(|t| t.to_rfc3339()))
}

/// What a checked registration stores beside its spec.
struct Checked {
    /// The canonical filter.
    filter: Option<String>,
    run_as: Oid,
    next_run_at: Option<String>,
    /// The synced shape to record.
    shape: Vec<ShapeColumn>,
}

/// Checks `spec` against `source` (the rules, the caller's right to read as `run_as`, the
/// reader, the filter) and returns the values to store.
fn checked(source: &Source, spec: &Spec) -> Result<Checked> {
    let mapping = rules::check(
        source,
        &spec.data_table_key,
        &spec.columns,
        spec.schedule.as_deref(),
    )?;
    let run_as = role_oid(&spec.run_as, "run_as")?;
    roles::check_callers_may_act_as(run_as, "run_as")?;
    let read: Vec<String> = mapping
        .iter()
        .filter(|m| m.synced)
        .map(|m| m.column_name.clone())
        .collect();
    check_reader(run_as, source, &read)?;
    let filter = spec
        .filter
        .as_deref()
        .map(|f| filter::canonical(source, f, run_as))
        .transpose()?;
    if let Some(f) = &filter {
        // The filter must also be readable by the reader: evaluate it once on no rows.
        let probe = format!(
            "SELECT NULL::pg_catalog.text FROM {} WHERE ({f}) LIMIT 0",
            source.name
        );
        reader::as_reader(run_as, || scan(&probe, 1, |_| Ok(true)))?;
    }
    Ok(Checked {
        filter,
        run_as,
        next_run_at: next_run(spec.schedule.as_deref())?,
        shape: shape::record(source, &mapping),
    })
}

/// Refuses a data table key another registration already pushes to. The other source is
/// named only to a caller that may act for its owner.
fn check_key_free(key: &str, except: Oid) -> Result<()> {
    let other: Option<JsonB> = first_value(
        "SELECT pg_catalog.jsonb_build_array(source::pg_catalog.text, owner::pg_catalog.oid::pg_catalog.int8)
           FROM qobra_sync.registrations WHERE data_table_key OPERATOR(pg_catalog.=) $1 AND source OPERATOR(pg_catalog.<>) $2",
        &[key.into(), RegClass(except).into()],
    )?;
    let Some(JsonB(other)) = other else {
        return Ok(());
    };
    let owner = Oid::from(other[1].as_u64().unwrap_or_default() as u32);
    let other = match roles::callers_may_act_for(owner)? {
        true => other[0].as_str().unwrap_or_default().to_owned(),
        false => "another registration".to_owned(),
    };
    Err(Error::new(
        SqlState::DuplicateObject,
        format!("data table {} is already fed by {other}", quoted(key)),
    )
    .detail("Each push replaces the whole data table, so two sources would erase each other.")
    .hint("Use another data table, or one view that unions both sources."))
}

/// Stores a new registration.
pub fn register(source_oid: Oid, spec: Spec) -> Result<()> {
    let source = describe_source(source_oid)?;
    if load(source_oid)?.is_some() {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("{} is already registered", quoted(&source.name)),
        )
        .hint(format!(
            "Change it with {ALTER_TABLE}(), or unregister it first."
        )));
    }
    check_key_free(&spec.data_table_key, source_oid)?;
    let checked = checked(&source, &spec)?;
    store(
        &format!("INSERT INTO qobra_sync.registrations (source, source_name, data_table_key, id_column, name_column,
             user_columns, user_key, column_types, field_keys, exclude_columns, filter, schedule, run_as, next_run_at, owner, shape, shape_of, follow_name, source_owner)
         VALUES ($1, $2, $3, $4::pg_catalog.name, $5::pg_catalog.name, $6::pg_catalog.name[], $7, $8, $9,
             $10::pg_catalog.name[], $11, $12, $13::pg_catalog.regrole, $14::pg_catalog.timestamptz, $15::pg_catalog.regrole, $16, {}, $17, {})", shape_here_sql("$1"), SOURCE_OWNER),
        &source,
        &spec,
        checked,
    )
}

/// Replaces a registration with `spec` (already merged with the stored values); the source's
/// current shape becomes the recorded one when `accept_shape`, else the recorded one stays.
pub fn update(source_oid: Oid, spec: Spec, accept_shape: bool) -> Result<()> {
    let source = describe_source(source_oid)?;
    check_key_free(&spec.data_table_key, source_oid)?;
    let checked = checked(&source, &spec)?;
    // $16 (the shape) is passed either way; left unused, the recorded shape stays.
    let shape = if accept_shape {
        format!(", shape = $16, shape_of = {}", shape_here_sql("$1"))
    } else {
        String::new()
    };
    store(
        &format!("UPDATE qobra_sync.registrations SET source_name = $2, data_table_key = $3, id_column = $4::pg_catalog.name,
             name_column = $5::pg_catalog.name, user_columns = $6::pg_catalog.name[], user_key = $7, column_types = $8,
             field_keys = $9, exclude_columns = $10::pg_catalog.name[], filter = $11, schedule = $12,
             run_as = $13::pg_catalog.regrole, next_run_at = $14::pg_catalog.timestamptz, follow_name = $17, source_owner = {SOURCE_OWNER},
             updated_at = pg_catalog.now(){shape}
         WHERE source OPERATOR(pg_catalog.=) $1"),
        &source,
        &spec,
        checked,
    )
}

/// Runs the INSERT or UPDATE of a registration with its seventeen parameters (the UPDATE leaves
/// the owner, $15, as it is); the worker is woken at commit to take the change into account.
fn store(sql: &str, source: &Source, spec: &Spec, checked: Checked) -> Result<()> {
    crate::pg::shared::wake_worker_at_commit();
    let c = &spec.columns;
    let to_json = |m: &std::collections::BTreeMap<String, String>| {
        JsonB(serde_json::to_value(m).expect("a map of strings serialises"))
    };
    writing(|client| {
        client
            .update(
                sql,
                None,
                &[
                    RegClass(Oid::from(source.oid)).into(),
                    source.name.clone().into(),
                    spec.data_table_key.clone().into(),
                    c.id_column.clone().into(),
                    c.name_column.clone().into(),
                    c.user_columns.clone().into(),
                    c.user_key.as_str().into(),
                    to_json(&c.column_types).into(),
                    to_json(&c.field_keys).into(),
                    c.exclude_columns.clone().into(),
                    checked.filter.into(),
                    spec.schedule.clone().into(),
                    checked.run_as.into(),
                    checked.next_run_at.into(),
                    roles::caller().1.into(),
                    JsonB(serde_json::to_value(&checked.shape).expect("a shape serialises")).into(),
                    spec.follow_name.into(),
                ],
            )
            .map(|_| ())
    })
}

/// Records the synced shape of a registration that has none yet (registered before shapes were
/// recorded) or whose shape was recorded on another copy of the source (restored from a dump;
/// [`load`] rebinds it by column name).
pub fn record_shape(source: Oid, shape: &[ShapeColumn]) -> Result<()> {
    execute(
        &format!("UPDATE qobra_sync.registrations r SET shape = $2, shape_of = {here}
          WHERE r.source OPERATOR(pg_catalog.=) $1 AND (r.shape IS NULL OR r.shape_of IS NULL OR r.shape_of OPERATOR(pg_catalog.<>) {here})",
          here = shape_here_sql("$1")),
        &[
            RegClass(source).into(),
            JsonB(serde_json::to_value(shape).expect("a shape serialises")).into(),
        ],
    )
}

/// Deletes a registration.
pub fn unregister(source: Oid) -> Result<()> {
    require_owned(source)?;
    crate::pg::shared::wake_worker_at_commit();
    execute(
        "WITH gone AS (DELETE FROM qobra_sync.registrations WHERE source OPERATOR(pg_catalog.=) $1
                       RETURNING source, owner)
         DELETE FROM qobra_sync.baselines b USING gone
          WHERE b.source OPERATOR(pg_catalog.=) gone.source AND b.owner OPERATOR(pg_catalog.=) gone.owner",
        &[RegClass(source).into()],
    )
}

/// The source of the registration that feeds data table `key`, whether or not the relation
/// still exists.
pub fn source_feeding(key: &str) -> Result<Oid> {
    let source: Option<i64> = first_value(
        "SELECT source::pg_catalog.oid::pg_catalog.int8 FROM qobra_sync.registrations
          WHERE data_table_key OPERATOR(pg_catalog.=) $1",
        &[key.into()],
    )?;
    match source {
        Some(oid) => Ok(Oid::from(oid as u32)),
        None => Err(Error::new(
            SqlState::UndefinedObject,
            format!("no registration feeds data table {}", quoted(key)),
        )
        .hint(format!(
            "{TABLES} lists the registrations and the data tables they feed."
        ))),
    }
}

/// The error of a call that must name a registration by its source or by its data table, and
/// named both or neither.
pub fn one_of_source_or_key() -> Error {
    Error::new(
        SqlState::InvalidParameterValue,
        "give either source or data_table_key",
    )
    .hint("Name the registration by its source, or by the data table it feeds when the source is gone: unregister_table(data_table_key => 'deals').")
}

/// Pauses or resumes a registration; resuming recomputes the next run time.
pub fn set_paused(source: Oid, paused: bool) -> Result<()> {
    let reg = require_owned(source)?;
    crate::pg::shared::wake_worker_at_commit();
    let next = if paused {
        None
    } else {
        next_run(reg.schedule.as_deref())?
    };
    execute(
        "UPDATE qobra_sync.registrations SET paused = $2, next_run_at = COALESCE($3::pg_catalog.timestamptz, next_run_at), updated_at = pg_catalog.now() WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into(), paused.into(), next.into()],
    )
}

/// Asks the worker to push `source` right after this transaction commits.
pub fn request(source: Oid) -> Result<()> {
    let source = follow::resolve(source)?;
    require_owned(source)?;
    if !crate::pg::lifecycle::preloaded() {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            "the qobra_sync worker is not running",
        )
        .detail("qobra_sync is not in shared_preload_libraries, so there is no worker to ask.")
        .hint(format!(
            "Use {SYNC_NOW}() instead, or preload the library (see the README)."
        )));
    }
    crate::pg::shared::wake_worker_at_commit();
    execute(
        "UPDATE qobra_sync.registrations SET requested_at = COALESCE(requested_at, pg_catalog.clock_timestamp()) WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into()],
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::testing::{fixture, in_fresh_snapshot, oid};
    use pgrx::prelude::*;
    use qobra_sync_core::mapping::ColumnOptions;

    /// A registration of `t_deals` read by `t_reader`.
    fn spec() -> Spec {
        Spec {
            data_table_key: "deals".into(),
            columns: ColumnOptions {
                id_column: Some("id".into()),
                name_column: Some("title".into()),
                ..Default::default()
            },
            filter: Some("closed > '2026-01-01'".into()),
            schedule: Some("15 minutes".into()),
            run_as: "t_reader".into(),
            follow_name: false,
        }
    }

    #[pg_test]
    fn a_registration_is_stored_read_back_changed_and_removed() {
        fixture();
        let source = oid("t_deals");
        in_fresh_snapshot(|| register(source, spec())).unwrap();
        let reg = load(source).unwrap().expect("registered");
        assert_eq!(reg.source_name, "public.t_deals");
        assert_eq!(reg.data_table_key, "deals");
        assert_eq!(reg.columns.id_column.as_deref(), Some("id"));
        assert_eq!(reg.filter.as_deref(), Some("(closed > '2026-01-01'::date)"));
        assert_eq!((reg.run_as.as_str(), reg.paused), ("t_reader", false));
        let again = in_fresh_snapshot(|| register(source, spec())).unwrap_err();
        assert_eq!(again.state, SqlState::DuplicateObject);
        let mut changed = spec();
        changed.schedule = Some("1 hour".into());
        changed.filter = None;
        in_fresh_snapshot(|| update(source, changed, true)).unwrap();
        let reg = require(source).unwrap();
        assert_eq!(
            (reg.schedule.as_deref(), reg.filter),
            (Some("1 hour"), None)
        );
        set_paused(source, true).unwrap();
        assert!(require(source).unwrap().paused);
        unregister(source).unwrap();
        assert!(load(source).unwrap().is_none());
        assert_eq!(
            require(source).unwrap_err().state,
            SqlState::UndefinedObject
        );
    }

    #[pg_test]
    fn a_superuser_reader_is_refused() {
        fixture();
        let mut s = spec();
        s.run_as = "postgres".into();
        let e = in_fresh_snapshot(|| register(oid("t_deals"), s)).unwrap_err();
        assert_eq!(e.state, SqlState::InsufficientPrivilege);
        assert!(e.message.contains("superuser"), "{}", e.message);
    }
}

//! Registrations: storing, changing and reading back what is registered, and the destination.

use crate::catalog::{self, describe_source, execute, first_value};
use crate::error::{Error, Result, SqlState};
use crate::filter;
use crate::gucs;
use crate::reader;
use crate::sqltypes::RegClass;
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::destination::{check_api_key, check_base_url};
use qobra_sync_core::error::quoted;
use qobra_sync_core::mapping::{ColumnOptions, Source};
use qobra_sync_core::registration::{self as rules, Registration};
use qobra_sync_core::schedule::{parse_zone, Schedule};

/// Everything a registration says, as given to `register_table` / merged by `alter_table`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub data_table_key: String,
    pub columns: ColumnOptions,
    /// The filter as the user wrote it (canonicalised before storing).
    pub filter: Option<String>,
    pub schedule: String,
    pub run_as: String,
}

/// Reads the registration of `source`, if there is one.
pub fn load(source: pg_sys::Oid) -> Result<Option<Registration>> {
    let json: Option<JsonB> = first_value(
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
                 'paused', r.paused)
               FROM qobra_sync.registrations r WHERE r.source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into()],
    )?;
    json.map(|JsonB(v)| {
        serde_json::from_value(v)
            .map_err(|e| Error::internal(format!("cannot read a registration: {e}")))
    })
    .transpose()
}

/// The registration of `source`, or an error saying it is not registered.
pub fn require(source: pg_sys::Oid) -> Result<Registration> {
    load(source)?.ok_or_else(|| not_registered(source))
}

/// The error for a relation that has no registration.
pub fn not_registered(source: pg_sys::Oid) -> Error {
    let name = catalog::describe(source)
        .map(|s| s.name)
        .unwrap_or_else(|_| source.to_u32().to_string());
    Error::new(
        SqlState::UndefinedObject,
        format!("{} is not registered", quoted(&name)),
    )
    .hint(
        "Register it with qobra_sync.register_table(); qobra_sync.tables lists what is registered.",
    )
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
        let row = reader::one_row(&format!(
            "SELECT pg_catalog.has_column_privilege({}::pg_catalog.oid, {}::pg_catalog.oid, {}, 'SELECT')::pg_catalog.text",
            role.to_u32(),
            source.oid,
            literal(column)
        ))?;
        if row[0].as_deref() != Some("true") {
            missing.push(column.clone());
        }
    }
    let name = reader::one_row(&format!(
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

/// Postgres' own quoting of a string literal.
pub fn literal(value: &str) -> String {
    let c = std::ffi::CString::new(value).expect("no NUL in SQL text");
    unsafe { std::ffi::CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// Refuses a reader that is unfit or cannot read the columns a push reads.
fn check_reader(role: pg_sys::Oid, source: &Source, columns: &[String]) -> Result<()> {
    if let Some(why) = reader::reader_problem(role)? {
        return Err(reader::refused_reader(why));
    }
    if let Some(why) = reader_can_select(role, source, columns)? {
        return Err(reader::refused_reader(why).hint(format!(
            "GRANT SELECT ON {} TO the run_as role.",
            source.name
        )));
    }
    Ok(())
}

/// The columns a push reads: the synced ones.
fn read_columns(source: &Source, columns: &ColumnOptions) -> Result<Vec<String>> {
    let rows = qobra_sync_core::mapping::map_columns(source, columns)?;
    Ok(rows
        .into_iter()
        .filter(|r| r.synced)
        .map(|r| r.column_name)
        .collect())
}

/// The next run time of a schedule from now, in the configured time zone.
fn next_run(schedule: &str) -> Result<Option<String>> {
    let zone = parse_zone(&gucs::text(&gucs::TIMEZONE))?;
    Ok(Schedule::parse(schedule)?
        .next_after(chrono_now(), zone)
        .map(|t| t.to_rfc3339()))
}

/// The transaction's start time, as Postgres' now() sees it.
fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    let micros = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    // Postgres timestamps count microseconds from 2000-01-01.
    chrono::DateTime::from_timestamp_micros(micros + 946_684_800_000_000).unwrap_or_default()
}

/// Checks `spec` against `source` and returns the values to store.
fn checked(source: &Source, spec: &Spec) -> Result<(Option<String>, pg_sys::Oid, Option<String>)> {
    rules::check(source, &spec.data_table_key, &spec.columns, &spec.schedule)?;
    let run_as = role_oid(&spec.run_as, "run_as")?;
    check_reader(run_as, source, &read_columns(source, &spec.columns)?)?;
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
        reader::as_reader(run_as, || reader::scan(&probe, 1, |_| Ok(true)))?;
    }
    Ok((filter, run_as, next_run(&spec.schedule)?))
}

/// Refuses a data table key another registration already pushes to.
fn check_key_free(key: &str, except: pg_sys::Oid) -> Result<()> {
    let other: Option<String> = first_value(
        "SELECT source::pg_catalog.text FROM qobra_sync.registrations WHERE data_table_key OPERATOR(pg_catalog.=) $1 AND source OPERATOR(pg_catalog.<>) $2",
        &[key.into(), RegClass(except).into()],
    )?;
    match other {
        Some(other) => Err(Error::new(
            SqlState::DuplicateObject,
            format!("data table {} is already fed by {other}", quoted(key)),
        )
        .detail("Each push replaces the whole data table, so two sources would erase each other.")
        .hint("Use another data table, or one view that unions both sources.")),
        None => Ok(()),
    }
}

/// Stores a new registration.
pub fn register(source_oid: pg_sys::Oid, spec: Spec) -> Result<()> {
    let source = describe_source(source_oid)?;
    if load(source_oid)?.is_some() {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("{} is already registered", quoted(&source.name)),
        )
        .hint("Change it with qobra_sync.alter_table(), or unregister it first."));
    }
    check_key_free(&spec.data_table_key, source_oid)?;
    let (filter, run_as, next_run_at) = checked(&source, &spec)?;
    store(
        "INSERT INTO qobra_sync.registrations (source, source_name, data_table_key, id_column, name_column,
             user_columns, user_key, column_types, field_keys, exclude_columns, filter, schedule, run_as, next_run_at)
         VALUES ($1, $2, $3, $4::pg_catalog.name, $5::pg_catalog.name, $6::pg_catalog.name[], $7, $8, $9,
             $10::pg_catalog.name[], $11, $12, $13::pg_catalog.regrole, $14::pg_catalog.timestamptz)",
        &source,
        &spec,
        filter,
        run_as,
        next_run_at,
    )
}

/// Replaces a registration with `spec` (already merged with the stored values).
pub fn update(source_oid: pg_sys::Oid, spec: Spec) -> Result<()> {
    let source = describe_source(source_oid)?;
    check_key_free(&spec.data_table_key, source_oid)?;
    let (filter, run_as, next_run_at) = checked(&source, &spec)?;
    store(
        "UPDATE qobra_sync.registrations SET source_name = $2, data_table_key = $3, id_column = $4::pg_catalog.name,
             name_column = $5::pg_catalog.name, user_columns = $6::pg_catalog.name[], user_key = $7, column_types = $8,
             field_keys = $9, exclude_columns = $10::pg_catalog.name[], filter = $11, schedule = $12,
             run_as = $13::pg_catalog.regrole, next_run_at = $14::pg_catalog.timestamptz, updated_at = pg_catalog.now()
         WHERE source OPERATOR(pg_catalog.=) $1",
        &source,
        &spec,
        filter,
        run_as,
        next_run_at,
    )
}

/// Runs the INSERT or UPDATE of a registration with its fourteen parameters; the worker is
/// woken at commit to take the change into account.
fn store(
    sql: &str,
    source: &Source,
    spec: &Spec,
    filter: Option<String>,
    run_as: pg_sys::Oid,
    next_run_at: Option<String>,
) -> Result<()> {
    crate::shared::wake_worker_at_commit();
    let c = &spec.columns;
    let to_json = |m: &std::collections::BTreeMap<String, String>| {
        JsonB(serde_json::to_value(m).expect("a map of strings serialises"))
    };
    catalog::writing(|client| {
        client
            .update(
                sql,
                None,
                &[
                    RegClass(pg_sys::Oid::from(source.oid)).into(),
                    source.name.clone().into(),
                    spec.data_table_key.clone().into(),
                    c.id_column.clone().into(),
                    c.name_column.clone().into(),
                    c.user_columns.clone().into(),
                    c.user_key.as_str().into(),
                    to_json(&c.column_types).into(),
                    to_json(&c.field_keys).into(),
                    c.exclude_columns.clone().into(),
                    filter.into(),
                    spec.schedule.clone().into(),
                    run_as.into(),
                    next_run_at.into(),
                ],
            )
            .map(|_| ())
    })
}

/// Deletes a registration.
pub fn unregister(source: pg_sys::Oid) -> Result<()> {
    require(source)?;
    crate::shared::wake_worker_at_commit();
    execute(
        "DELETE FROM qobra_sync.registrations WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into()],
    )
}

/// Pauses or resumes a registration; resuming recomputes the next run time.
pub fn set_paused(source: pg_sys::Oid, paused: bool) -> Result<()> {
    let reg = require(source)?;
    crate::shared::wake_worker_at_commit();
    let next = if paused {
        None
    } else {
        next_run(&reg.schedule)?
    };
    execute(
        "UPDATE qobra_sync.registrations SET paused = $2, next_run_at = COALESCE($3::pg_catalog.timestamptz, next_run_at), updated_at = pg_catalog.now() WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into(), paused.into(), next.into()],
    )
}

/// Asks the worker to push `source` right after this transaction commits.
pub fn request(source: pg_sys::Oid) -> Result<()> {
    require(source)?;
    if !crate::preloaded() {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            "the qobra_sync worker is not running",
        )
        .detail("qobra_sync is not in shared_preload_libraries, so there is no worker to ask.")
        .hint("Use qobra_sync.sync_now() instead, or preload the library (see the README)."));
    }
    crate::shared::wake_worker_at_commit();
    execute(
        "UPDATE qobra_sync.registrations SET requested_at = COALESCE(requested_at, pg_catalog.clock_timestamp()) WHERE source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into()],
    )
}

/// Stores the destination (superuser only). The key may be NULL when `qobra_sync.api_key_file`
/// provides it. Errors never echo the key; the statement, which holds it, is kept out of the
/// server log by `log_filter`.
pub fn set_destination(api_key: Option<&str>, base_url: &str) -> Result<()> {
    if !catalog::is_superuser() {
        return Err(Error::new(
            SqlState::InsufficientPrivilege,
            "permission denied to set the destination",
        )
        .detail("The API key gives write access to your Qobra data tables.")
        .hint("Call qobra_sync.set_destination() as a superuser."));
    }
    match api_key {
        Some(key) => check_api_key(key)?,
        None if gucs::text(&gucs::API_KEY_FILE).is_empty() => {
            return Err(Error::null_argument("api_key").hint(
                "Pass the API key, or set qobra_sync.api_key_file to a file that holds it and pass api_key => NULL.",
            ))
        }
        None => {}
    }
    let base_url = check_base_url(base_url)?;
    execute(
        "INSERT INTO qobra_sync.destination (singleton, base_url, api_key) VALUES (true, $1, $2)
             ON CONFLICT (singleton) DO UPDATE SET base_url = excluded.base_url, api_key = excluded.api_key, updated_at = pg_catalog.now()",
        &[base_url.into(), api_key.into()],
    )
}

/// Whether a destination is set.
pub fn destination_set() -> Result<bool> {
    Ok(first_value::<bool>("SELECT true FROM qobra_sync.destination", &[])?.is_some())
}

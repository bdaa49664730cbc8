//! The SQL API (schema `qobra_sync`): thin functions that parse arguments, call the modules that
//! do the work, and raise errors in the one documented way. Every function pins its
//! `search_path` and schema-qualifies what it calls.

use crate::error::{raise, Error, OrRaise, Result, SqlState};
use crate::inspect::{self, Overrides};
use crate::registry::{self, Spec};
use crate::sqltypes::{Name, NameArray, RegClass};
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::destination::DEFAULT_BASE_URL;
use qobra_sync_core::mapping::{string_map, ColumnOptions, UserKey};
use qobra_sync_core::registration::DEFAULT_SCHEDULE;

/// A required argument, or the error naming it.
fn required<T>(value: Option<T>, argument: &str) -> Result<T> {
    value.ok_or_else(|| Error::null_argument(argument))
}

/// Sets Qobra's API key and base URL (superuser only). The key is never shown again; it may be
/// NULL when `qobra_sync.api_key_file` provides it.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_destination(
    api_key: Option<&str>,
    base_url: default!(Option<&str>, "'https://api.qobra.co'"),
) {
    registry::set_destination(api_key, base_url.unwrap_or(DEFAULT_BASE_URL)).or_raise()
}

/// Registers a source for pushes to the Qobra data table `data_table_key`.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn register_table(
    source: Option<RegClass>,
    data_table_key: Option<&str>,
    id_column: Option<Name>,
    name_column: Option<Name>,
    user_columns: default!(Option<NameArray>, "'{}'"),
    user_key: default!(Option<&str>, "'email'"),
    column_types: default!(Option<JsonB>, "'{}'"),
    field_keys: default!(Option<JsonB>, "'{}'"),
    exclude_columns: default!(Option<NameArray>, "'{}'"),
    filter: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "'0 */6 * * *'"),
    run_as: default!(Option<Name>, "NULL"),
) {
    let run = || -> Result<()> {
        let source = required(source, "source")?;
        let columns = ColumnOptions {
            id_column: Some(required(id_column, "id_column")?.0),
            name_column: Some(required(name_column, "name_column")?.0),
            user_columns: user_columns.unwrap_or_default().0,
            user_key: UserKey::parse(user_key.unwrap_or("email"))?,
            column_types: string_map(
                "column_types",
                &column_types
                    .map(|j| j.0)
                    .unwrap_or_else(|| serde_json::json!({})),
            )?,
            field_keys: string_map(
                "field_keys",
                &field_keys
                    .map(|j| j.0)
                    .unwrap_or_else(|| serde_json::json!({})),
            )?,
            exclude_columns: exclude_columns.unwrap_or_default().0,
        };
        let run_as = match run_as {
            Some(n) => n.0,
            None => crate::catalog::current_role()?.0,
        };
        registry::register(
            source.0,
            Spec {
                data_table_key: required(data_table_key, "data_table_key")?.to_owned(),
                columns,
                filter: filter.map(str::to_owned),
                schedule: schedule.unwrap_or(DEFAULT_SCHEDULE).to_owned(),
                run_as,
            },
        )
    };
    run().or_raise()
}

/// Changes a registration; every argument left NULL keeps its value (`filter => ''` removes it).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn alter_table(
    source: Option<RegClass>,
    data_table_key: default!(Option<&str>, "NULL"),
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    user_columns: default!(Option<NameArray>, "NULL"),
    user_key: default!(Option<&str>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
    field_keys: default!(Option<JsonB>, "NULL"),
    exclude_columns: default!(Option<NameArray>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "NULL"),
    run_as: default!(Option<Name>, "NULL"),
) {
    let run = || -> Result<()> {
        let source = required(source, "source")?.0;
        let reg = registry::require(source)?;
        let mut columns = reg.columns.clone();
        if let Some(v) = id_column {
            columns.id_column = Some(v.0);
        }
        if let Some(v) = name_column {
            columns.name_column = Some(v.0);
        }
        if let Some(v) = user_columns {
            columns.user_columns = v.0;
        }
        if let Some(v) = user_key {
            columns.user_key = UserKey::parse(v)?;
        }
        if let Some(v) = column_types {
            columns.column_types = string_map("column_types", &v.0)?;
        }
        if let Some(v) = field_keys {
            columns.field_keys = string_map("field_keys", &v.0)?;
        }
        if let Some(v) = exclude_columns {
            columns.exclude_columns = v.0;
        }
        let filter = match filter {
            None => reg.filter.clone(),
            Some("") => None,
            Some(f) => Some(f.to_owned()),
        };
        registry::update(
            source,
            Spec {
                data_table_key: data_table_key
                    .map(str::to_owned)
                    .unwrap_or(reg.data_table_key),
                columns,
                filter,
                schedule: schedule.map(str::to_owned).unwrap_or(reg.schedule),
                run_as: run_as.map(|n| n.0).unwrap_or(reg.run_as),
            },
        )
    };
    run().or_raise()
}

/// Removes a registration (its run history stays until purged).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn unregister_table(source: Option<RegClass>) {
    registry::unregister(required(source, "source").or_raise().0).or_raise()
}

/// Stops scheduled pushes of a source until `resume()`.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn pause(source: Option<RegClass>) {
    registry::set_paused(required(source, "source").or_raise().0, true).or_raise()
}

/// Resumes scheduled pushes of a paused source.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn resume(source: Option<RegClass>) {
    registry::set_paused(required(source, "source").or_raise().0, false).or_raise()
}

/// How each column of a source maps to a Qobra field.
#[allow(clippy::type_complexity)] // the row type is the SQL TABLE(...) signature
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn column_mapping(
    source: Option<RegClass>,
    user_columns: default!(Option<NameArray>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(column_name, Name),
        name!(pg_type, String),
        name!(qobra_type, Option<String>),
        name!(allowed_types, Vec<String>),
        name!(field_key, Option<String>),
        name!(synced, bool),
        name!(note, Option<String>),
    ),
> {
    let source = required(source, "source").or_raise().0;
    let over = Overrides {
        user_columns: user_columns.map(|u| u.0),
        column_types: column_types.map(|j| j.0),
        ..Default::default()
    };
    let subject = inspect::subject(source, over).or_raise();
    let rows = inspect::column_mapping(&subject).or_raise();
    TableIterator::new(rows.into_iter().map(|r| {
        (
            Name(r.column_name),
            r.pg_type,
            r.qobra_type.map(|t| t.to_string()),
            r.allowed_types.iter().map(|t| t.to_string()).collect(),
            r.field_key,
            r.synced,
            r.note,
        )
    }))
}

/// Checks every requirement for pushing a source and reports each one.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn validate(
    source: Option<RegClass>,
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    user_columns: default!(Option<NameArray>, "NULL"),
    user_key: default!(Option<&str>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    run_as: default!(Option<Name>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(check_name, String),
        name!(ok, bool),
        name!(detail, String),
    ),
> {
    let source = required(source, "source").or_raise().0;
    let over = Overrides {
        id_column: id_column.map(|n| n.0),
        name_column: name_column.map(|n| n.0),
        user_columns: user_columns.map(|u| u.0),
        user_key: user_key.map(str::to_owned),
        column_types: None,
        filter: filter.map(str::to_owned),
        run_as: run_as.map(|n| n.0),
    };
    let subject = inspect::subject(source, over).or_raise();
    TableIterator::new(
        inspect::validate(&subject)
            .into_iter()
            .map(|c| (c.name.to_owned(), c.ok, c.detail)),
    )
}

/// The exact records a push would send, up to `max_rows`, ordered by id, read as the
/// registration's `run_as` (or the `run_as` given).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn preview(
    source: Option<RegClass>,
    max_rows: default!(Option<i32>, 10),
    run_as: default!(Option<Name>, "NULL"),
) -> SetOfIterator<'static, JsonB> {
    let source = required(source, "source").or_raise().0;
    let over = Overrides {
        run_as: run_as.map(|n| n.0),
        ..Default::default()
    };
    let subject = inspect::subject(source, over).or_raise();
    let records = inspect::preview(&subject, max_rows.unwrap_or(10)).or_raise();
    SetOfIterator::new(records.into_iter().map(JsonB))
}

/// A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand,
/// read as the registration's `run_as` (or the `run_as` given).
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn csv_template(
    source: Option<RegClass>,
    max_rows: default!(Option<i32>, 100),
    run_as: default!(Option<Name>, "NULL"),
) -> String {
    let source = required(source, "source").or_raise().0;
    let over = Overrides {
        run_as: run_as.map(|n| n.0),
        ..Default::default()
    };
    let subject = inspect::subject(source, over).or_raise();
    inspect::csv_template(&subject, max_rows.unwrap_or(100)).or_raise()
}

/// The Cloud SQL IAM database user of a GCP service account, to be used as `run_as`.
/// Reads only `type`, `client_email` and `project_id`; the private key is never kept or logged.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn reader_from_service_account(service_account: Option<JsonB>) -> Name {
    let account = required(service_account, "service_account").or_raise();
    Name(qobra_sync_core::cloudsql::iam_user(&account.0).or_raise())
}

/// Pushes a registered source now, in this session, and returns the run id. Outcomes are in
/// `qobra_sync.runs`; `force` overrides the deletion guard and `skip_unchanged`.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn sync_now(source: Option<RegClass>, force: default!(Option<bool>, false)) -> i64 {
    let source = required(source, "source").or_raise().0;
    crate::push::sync(source, force.unwrap_or(false), crate::push::Trigger::Manual).or_raise()
}

/// Asks the background worker to push a registered source right after this transaction commits.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn request_sync(source: Option<RegClass>) {
    registry::request(required(source, "source").or_raise().0).or_raise()
}

/// The pushes in flight in any session (read by the `qobra_sync.progress` view).
#[allow(clippy::type_complexity)] // the row type is the SQL TABLE(...) signature
#[pg_extern(volatile, name = "_progress")]
#[search_path(pg_catalog, pg_temp)]
fn progress() -> TableIterator<
    'static,
    (
        name!(pid, i32),
        name!(run_id, i64),
        name!(source, RegClass),
        name!(started_at, pgrx::datum::TimestampWithTimeZone),
        name!(chunks, i64),
        name!(rows_sent, i64),
        name!(bytes_sent, i64),
        name!(restarts, i64),
    ),
> {
    TableIterator::new(crate::shared::progress().into_iter().map(|s| {
        let started =
            pgrx::datum::TimestampWithTimeZone::try_from(s.started_us - 946_684_800_000_000)
                .unwrap_or_else(|_| {
                    pgrx::datum::TimestampWithTimeZone::try_from(0i64)
                        .expect("the epoch is a timestamp")
                });
        (
            s.pid,
            s.run_id,
            RegClass(pg_sys::Oid::from(s.source)),
            started,
            s.chunks as i64,
            s.rows_sent as i64,
            s.bytes_sent as i64,
            s.restarts as i64,
        )
    }))
}

/// Looks once at Qobra's imports of recent runs and records their outcome (and parsing errors
/// in `run_errors`); returns how many runs were settled. The worker calls it on its own.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn poll_imports() -> i64 {
    crate::push::poll_imports().or_raise()
}

/// Checks where the extension is being created; run last by CREATE EXTENSION.
#[pg_extern(volatile, name = "_check_installation")]
#[search_path(pg_catalog, pg_temp)]
fn check_installation() {
    let wanted = crate::gucs::text(&crate::gucs::DATABASE_NAME);
    let here = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }
        .to_string_lossy()
        .into_owned();
    if !crate::preloaded() {
        pgrx::warning!(
            "qobra_sync is not preloaded: registration, inspection and sync_now() work, scheduled pushes do not. \
             Add qobra_sync to shared_preload_libraries, set qobra_sync.database_name = '{here}', and restart"
        );
        return;
    }
    if here != wanted {
        raise(
            Error::new(SqlState::ObjectNotInPrerequisiteState, format!("qobra_sync can only be created in database \"{wanted}\""))
                .detail("The qobra_sync worker runs in the database named by qobra_sync.database_name.")
                .hint(format!("Set qobra_sync.database_name = '{here}' in postgresql.conf and restart, or connect to \"{wanted}\".")),
        );
    }
}

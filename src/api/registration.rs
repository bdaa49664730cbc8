//! Registration: `register_table`, `alter_table`, `unregister_table`, `pause`, `resume`, and
//! for Cloud SQL `reader_from_service_account`.

use super::{belongs_to_0_1_0, computes, required, writes};
use crate::pg::error::{OrRaise, Result};
use crate::pg::roles;
use crate::pg::sqltypes::{Name, NameArray, RegClass};
use crate::registry::{self, Spec};
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::mapping::{ColumnChanges, ColumnOptions};

/// Registers a source for pushes to the Qobra data table `data_table_key`, on `schedule` when
/// one is given (else only when asked: `sync_now`, `request_sync`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, name = "register_table")]
#[search_path(pg_catalog, pg_temp)]
fn register_table_following(
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
    schedule: default!(Option<&str>, "NULL"),
    run_as: default!(Option<Name>, "NULL"),
    follow_name: default!(Option<bool>, false),
) {
    let run = || -> Result<()> {
        let _entered = writes("register_table()")?;
        let source = required(source, "source")?;
        let changes = ColumnChanges {
            id_column: Some(required(id_column, "id_column")?.0),
            name_column: Some(required(name_column, "name_column")?.0),
            user_columns: user_columns.map(|v| v.0),
            user_key: user_key.map(str::to_owned),
            column_types: column_types.map(|j| j.0),
            field_keys: field_keys.map(|j| j.0),
            exclude_columns: exclude_columns.map(|v| v.0),
        };
        let columns = changes.apply(ColumnOptions::default())?;
        let run_as = match run_as {
            Some(n) => n.0,
            None => roles::caller().0,
        };
        registry::register(
            source.0,
            Spec {
                data_table_key: required(data_table_key, "data_table_key")?.to_owned(),
                columns,
                filter: filter.map(str::to_owned),
                schedule: schedule.map(str::to_owned),
                run_as,
                follow_name: follow_name.unwrap_or(false),
            },
        )
    };
    run().or_raise()
}

/// Changes a registration; every argument left NULL keeps its value (`filter => ''` and
/// `schedule => ''` remove them).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, name = "alter_table")]
#[search_path(pg_catalog, pg_temp)]
fn alter_table_following(
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
    follow_name: default!(Option<bool>, "NULL"),
) {
    let run = || -> Result<()> {
        let _entered = writes("alter_table()")?;
        let source = required(source, "source")?.0;
        let reg = registry::require_owned(source)?;
        let changes = ColumnChanges {
            id_column: id_column.map(|n| n.0),
            name_column: name_column.map(|n| n.0),
            user_columns: user_columns.map(|v| v.0),
            user_key: user_key.map(str::to_owned),
            column_types: column_types.map(|j| j.0),
            field_keys: field_keys.map(|j| j.0),
            exclude_columns: exclude_columns.map(|v| v.0),
        };
        // The shape is accepted by a call about columns; a call with no option at all (which
        // confirms a renamed relation) accepts added columns only, a lost or changed one being
        // for accept_shape() alone; changing only the schedule, filter, key or reader keeps the
        // recorded shape.
        let others_only = data_table_key.is_some()
            || filter.is_some()
            || schedule.is_some()
            || run_as.is_some()
            || follow_name.is_some();
        let accept_shape = match (changes.is_empty(), others_only) {
            (false, _) => true,
            (true, true) => false,
            (true, false) => registry::only_added_columns(source, &reg)?,
        };
        let columns = changes.apply(reg.columns.clone())?;
        let filter = kept_or_removed(filter, &reg.filter);
        let schedule = kept_or_removed(schedule, &reg.schedule);
        registry::update(
            source,
            Spec {
                data_table_key: data_table_key
                    .map(str::to_owned)
                    .unwrap_or(reg.data_table_key),
                columns,
                filter,
                schedule,
                run_as: run_as.map(|n| n.0).unwrap_or(reg.run_as),
                follow_name: follow_name.unwrap_or(reg.follow_name),
            },
            accept_shape,
        )
    };
    run().or_raise()
}

/// Accepts the source's current synced columns as the registration's shape, whatever changed
/// (columns renamed, dropped, retyped or added), and confirms a renamed relation.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn accept_shape(source: Option<RegClass>) {
    let run = || -> Result<()> {
        let _entered = writes("accept_shape()")?;
        let source = required(source, "source")?.0;
        let reg = registry::require_owned(source)?;
        registry::update(source, Spec::of(reg), true)
    };
    run().or_raise()
}

/// `register_table` and `alter_table` of version 0.1.0, whose SQL still calls them between a
/// library upgrade and `ALTER EXTENSION … UPDATE` (see `preview` in `inspection`).
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn register_table(
    _source: Option<RegClass>,
    _data_table_key: Option<&str>,
    _id_column: Option<Name>,
    _name_column: Option<Name>,
    _user_columns: Option<NameArray>,
    _user_key: Option<&str>,
    _column_types: Option<JsonB>,
    _field_keys: Option<JsonB>,
    _exclude_columns: Option<NameArray>,
    _filter: Option<&str>,
    _schedule: Option<&str>,
    _run_as: Option<Name>,
) {
    belongs_to_0_1_0("register_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name)")
}

/// See [`register_table`].
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn alter_table(
    _source: Option<RegClass>,
    _data_table_key: Option<&str>,
    _id_column: Option<Name>,
    _name_column: Option<Name>,
    _user_columns: Option<NameArray>,
    _user_key: Option<&str>,
    _column_types: Option<JsonB>,
    _field_keys: Option<JsonB>,
    _exclude_columns: Option<NameArray>,
    _filter: Option<&str>,
    _schedule: Option<&str>,
    _run_as: Option<Name>,
) {
    belongs_to_0_1_0("alter_table(regclass, text, name, name, name[], text, jsonb, jsonb, name[], text, text, name)")
}

/// An optional text of `alter_table`: NULL keeps the stored one, '' removes it.
fn kept_or_removed(given: Option<&str>, stored: &Option<String>) -> Option<String> {
    match given {
        None => stored.clone(),
        Some("") => None,
        Some(text) => Some(text.to_owned()),
    }
}

/// Removes a registration (its run history stays until purged), given its source or, when the
/// source is gone (dropped, or recreated by a deploy), the data table it feeds.
#[pg_extern(volatile, name = "unregister_table")]
#[search_path(pg_catalog, pg_temp)]
fn unregister_table_or_key(
    source: default!(Option<RegClass>, "NULL"),
    data_table_key: default!(Option<&str>, "NULL"),
) {
    let run = || -> Result<()> {
        let _entered = writes("unregister_table()")?;
        let source = match (source, data_table_key) {
            (Some(source), None) => source.0,
            (None, Some(key)) => registry::source_feeding(key)?,
            _ => return Err(registry::one_of_source_or_key()),
        };
        registry::unregister(source)
    };
    run().or_raise()
}

/// `unregister_table(source)` of version 0.1.0 (see `preview` in `inspection`).
#[pg_extern(sql = false)]
fn unregister_table(_source: Option<RegClass>) {
    belongs_to_0_1_0("unregister_table(regclass)")
}

/// Stops scheduled pushes of a source until `resume()`.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn pause(source: Option<RegClass>) {
    let _entered = writes("pause()").or_raise();
    registry::set_paused(required(source, "source").or_raise().0, true).or_raise()
}

/// Resumes scheduled pushes of a paused source.
#[pg_extern(volatile)]
#[search_path(pg_catalog, pg_temp)]
fn resume(source: Option<RegClass>) {
    let _entered = writes("resume()").or_raise();
    registry::set_paused(required(source, "source").or_raise().0, false).or_raise()
}

/// The Cloud SQL IAM database user of a GCP service account, to be used as `run_as`.
/// Reads only `type`, `client_email` and `project_id`; the private key is never kept or logged.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn reader_from_service_account(service_account: Option<JsonB>) -> Name {
    crate::pg::log_filter::passing_secret("reader_from_service_account()").or_raise();
    computes("reader_from_service_account()").or_raise();
    let account = required(service_account, "service_account").or_raise();
    Name(qobra_sync_core::cloudsql::iam_user(&account.0).or_raise())
}

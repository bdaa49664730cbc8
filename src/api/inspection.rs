//! Inspection: `column_mapping`, `validate`, `preview`, `csv_template`.

use super::{belongs_to_0_1_0, reads, required};
use crate::inspect::{self, sample, validate::validate as run_checks, Overrides};
use crate::pg::error::OrRaise;
use crate::pg::sqltypes::{Name, NameArray, RegClass};
use pgrx::prelude::*;
use pgrx::JsonB;
use qobra_sync_core::mapping::ColumnChanges;

/// How each column of a source maps to a Qobra field, under `register_table`'s column options
/// (each NULL keeping the registration's).
#[allow(clippy::type_complexity)] // the row type is the SQL TABLE(...) signature
#[pg_extern(volatile, name = "column_mapping")]
#[search_path(pg_catalog, pg_temp)]
fn column_mapping_with_options(
    source: Option<RegClass>,
    user_columns: default!(Option<NameArray>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    field_keys: default!(Option<JsonB>, "NULL"),
    exclude_columns: default!(Option<NameArray>, "NULL"),
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
    let _entered = reads("column_mapping()").or_raise();
    let source = required(source, "source").or_raise().0;
    let over = options(
        [id_column, name_column],
        user_columns,
        None,
        [column_types, field_keys],
        exclude_columns,
        None,
        None,
    );
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
            r.note.map(|n| n.to_string()),
        )
    }))
}

/// Checks every requirement for pushing a source and reports each one, under
/// `register_table`'s options (each NULL keeping the registration's).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, name = "validate")]
#[search_path(pg_catalog, pg_temp)]
fn validate_with_options(
    source: Option<RegClass>,
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    user_columns: default!(Option<NameArray>, "NULL"),
    user_key: default!(Option<&str>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
    run_as: default!(Option<Name>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
    field_keys: default!(Option<JsonB>, "NULL"),
    exclude_columns: default!(Option<NameArray>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(check_name, String),
        name!(ok, bool),
        name!(detail, String),
    ),
> {
    let _entered = reads("validate()").or_raise();
    let source = required(source, "source").or_raise().0;
    let over = options(
        [id_column, name_column],
        user_columns,
        user_key,
        [column_types, field_keys],
        exclude_columns,
        filter,
        run_as,
    );
    let subject = inspect::subject(source, over).or_raise();
    TableIterator::new(
        run_checks(&subject)
            .into_iter()
            .map(|c| (c.name.to_owned(), c.ok, c.detail)),
    )
}

/// The exact records a push would send, up to `max_rows`, ordered by id, read as the
/// registration's `run_as` (or the `run_as` given); before registering (or to try a change),
/// with `register_table`'s options, each NULL keeping the registration's.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, name = "preview")]
#[search_path(pg_catalog, pg_temp)]
fn preview_as(
    source: Option<RegClass>,
    max_rows: default!(Option<i32>, 10),
    run_as: default!(Option<Name>, "NULL"),
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    user_columns: default!(Option<NameArray>, "NULL"),
    user_key: default!(Option<&str>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
    field_keys: default!(Option<JsonB>, "NULL"),
    exclude_columns: default!(Option<NameArray>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
) -> SetOfIterator<'static, JsonB> {
    let _entered = reads("preview()").or_raise();
    let source = required(source, "source").or_raise().0;
    let over = options(
        [id_column, name_column],
        user_columns,
        user_key,
        [column_types, field_keys],
        exclude_columns,
        filter,
        run_as,
    );
    let subject = inspect::subject(source, over).or_raise();
    let records = sample::preview(&subject, max_rows.unwrap_or(10)).or_raise();
    SetOfIterator::new(records.into_iter().map(JsonB))
}

/// A CSV (header = field keys, then sample rows) to create the data table in Qobra by hand,
/// read as the registration's `run_as` (or the `run_as` given); before registering, with
/// `register_table`'s options, so that its header is what the registration will send.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, name = "csv_template")]
#[search_path(pg_catalog, pg_temp)]
fn csv_template_as(
    source: Option<RegClass>,
    max_rows: default!(Option<i32>, 100),
    run_as: default!(Option<Name>, "NULL"),
    id_column: default!(Option<Name>, "NULL"),
    name_column: default!(Option<Name>, "NULL"),
    user_columns: default!(Option<NameArray>, "NULL"),
    user_key: default!(Option<&str>, "NULL"),
    column_types: default!(Option<JsonB>, "NULL"),
    field_keys: default!(Option<JsonB>, "NULL"),
    exclude_columns: default!(Option<NameArray>, "NULL"),
    filter: default!(Option<&str>, "NULL"),
) -> String {
    let _entered = reads("csv_template()").or_raise();
    let source = required(source, "source").or_raise().0;
    let over = options(
        [id_column, name_column],
        user_columns,
        user_key,
        [column_types, field_keys],
        exclude_columns,
        filter,
        run_as,
    );
    let subject = inspect::subject(source, over).or_raise();
    sample::csv_template(&subject, max_rows.unwrap_or(100)).or_raise()
}

/// `register_table`'s options as an inspection takes them (id and name columns; column types
/// and field keys): each NULL keeps the registration's, or the default before registering.
fn options(
    [id_column, name_column]: [Option<Name>; 2],
    user_columns: Option<NameArray>,
    user_key: Option<&str>,
    [column_types, field_keys]: [Option<JsonB>; 2],
    exclude_columns: Option<NameArray>,
    filter: Option<&str>,
    run_as: Option<Name>,
) -> Overrides {
    Overrides {
        columns: ColumnChanges {
            id_column: id_column.map(|n| n.0),
            name_column: name_column.map(|n| n.0),
            user_columns: user_columns.map(|u| u.0),
            user_key: user_key.map(str::to_owned),
            column_types: column_types.map(|j| j.0),
            field_keys: field_keys.map(|j| j.0),
            exclude_columns: exclude_columns.map(|v| v.0),
        },
        filter: filter.map(str::to_owned),
        run_as: run_as.map(|n| n.0),
    }
}

/// `preview(source, max_rows)` of version 0.1.0, whose SQL still calls it between a library
/// upgrade and `ALTER EXTENSION … UPDATE`: it says to update (the current `preview` has
/// another argument list, hence another symbol).
#[pg_extern(sql = false)]
fn preview(_source: Option<RegClass>, _max_rows: Option<i32>) -> SetOfIterator<'static, JsonB> {
    belongs_to_0_1_0("preview(regclass, integer)")
}

/// `column_mapping(source, user_columns, column_types)` of version 0.1.0 (see [`preview`]).
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false)]
fn column_mapping(
    _source: Option<RegClass>,
    _user_columns: Option<NameArray>,
    _column_types: Option<JsonB>,
) -> TableIterator<'static, (name!(column_name, Name),)> {
    belongs_to_0_1_0("column_mapping(regclass, name[], jsonb)")
}

/// `validate(source, …)` of version 0.1.0 (see [`preview`]).
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn validate(
    _source: Option<RegClass>,
    _id_column: Option<Name>,
    _name_column: Option<Name>,
    _user_columns: Option<NameArray>,
    _user_key: Option<&str>,
    _filter: Option<&str>,
    _run_as: Option<Name>,
) -> TableIterator<'static, (name!(check_name, String),)> {
    belongs_to_0_1_0("validate(regclass, name, name, name[], text, text, name)")
}

/// `csv_template(source, max_rows)` of version 0.1.0 (see [`preview`]).
#[pg_extern(sql = false)]
fn csv_template(_source: Option<RegClass>, _max_rows: Option<i32>) -> String {
    belongs_to_0_1_0("csv_template(regclass, integer)")
}

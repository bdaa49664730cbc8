//! Inspection: `column_mapping()`, `validate()`, `preview()` and `csv_template()`.
//!
//! All four work before registering; arguments left NULL fall back to the registration when
//! there is one. Reads go through the snapshot reader as the reader role.

use crate::catalog::{self, describe_source};
use crate::error::{Error, Result, SqlState};
use crate::filter;
use crate::reader::{self, as_reader, quote_ident, scan, snapshot_query};
use crate::registry;
use crate::subxact::attempt;
use pgrx::prelude::*;
use qobra_sync_core::mapping::{map_columns, ColumnMapping, ColumnOptions, Role, Source, UserKey};
use qobra_sync_core::wire::{csv_document, RecordEncoder};

/// What an inspection works on: the source, its column options, filter and reader.
pub struct Subject {
    pub source: Source,
    pub columns: ColumnOptions,
    /// The filter as given or stored (not yet canonical).
    pub filter: Option<String>,
    pub reader: pg_sys::Oid,
    pub reader_name: String,
    /// Where the reader comes from.
    pub reader_from: ReaderFrom,
}

/// Where the reader of an inspection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderFrom {
    /// The registration's `run_as`.
    Registration,
    /// The call's `run_as` argument.
    Argument,
    /// The calling role: the source is not registered and no `run_as` was given.
    Caller,
}

/// The overrides an inspection call may pass; None = the registration's value.
#[derive(Default)]
pub struct Overrides {
    pub id_column: Option<String>,
    pub name_column: Option<String>,
    pub user_columns: Option<Vec<String>>,
    pub user_key: Option<String>,
    pub column_types: Option<serde_json::Value>,
    pub filter: Option<String>,
    pub run_as: Option<String>,
}

/// Resolves the subject of an inspection: the registration (if any) with the call's overrides.
pub fn subject(source_oid: pg_sys::Oid, over: Overrides) -> Result<Subject> {
    let reg = registry::load(source_oid)?;
    let source = match &reg {
        Some(r) => catalog::check_unchanged(source_oid, &r.source_name)?,
        None => describe_source(source_oid)?,
    };
    let mut columns = reg.as_ref().map(|r| r.columns.clone()).unwrap_or_default();
    let mut filter = reg.as_ref().and_then(|r| r.filter.clone());
    let (mut reader, mut reader_name, mut reader_from) = match &reg {
        Some(r) => (
            pg_sys::Oid::from(r.run_as_oid),
            r.run_as.clone(),
            ReaderFrom::Registration,
        ),
        None => {
            let (name, oid) = catalog::current_role()?;
            (pg_sys::Oid::from(oid), name, ReaderFrom::Caller)
        }
    };
    if over.id_column.is_some() {
        columns.id_column = over.id_column;
    }
    if over.name_column.is_some() {
        columns.name_column = over.name_column;
    }
    if let Some(u) = over.user_columns {
        columns.user_columns = u;
    }
    if let Some(k) = over.user_key {
        columns.user_key = UserKey::parse(&k)?;
    }
    if let Some(t) = over.column_types {
        columns.column_types = qobra_sync_core::mapping::string_map("column_types", &t)?;
    }
    if over.filter.is_some() {
        filter = over.filter;
    }
    if let Some(r) = over.run_as {
        reader = registry::role_oid(&r, "run_as")?;
        reader_name = r;
        reader_from = ReaderFrom::Argument;
    }
    Ok(Subject {
        source,
        columns,
        filter,
        reader,
        reader_name,
        reader_from,
    })
}

/// Refuses to read rows as a role `register_table` would refuse as `run_as` (a superuser
/// among them): nothing is read as it. The error says where the reader came from.
pub fn check_reader(subject: &Subject) -> Result<()> {
    let Some(why) = reader::reader_problem(subject.reader)? else {
        return Ok(());
    };
    Err(match subject.reader_from {
        ReaderFrom::Caller => Error::new(
            SqlState::InsufficientPrivilege,
            format!("{} is not registered, so it would be read as the calling role, and {why}", subject.source.name),
        )
        .hint("Pass run_as => a role that can only read the source (e.g. run_as => 'qobra_reader'), or register the source first."),
        _ => reader::refused_reader(why),
    })
}

/// The rows of `column_mapping()`.
pub fn column_mapping(subject: &Subject) -> Result<Vec<ColumnMapping>> {
    map_columns(&subject.source, &subject.columns)
}

/// Reads up to `max_rows` records as they would be sent, ordered by id, handing each row's
/// values to `each`; returns the encoder used, whose fields are the records' keys.
fn sample(
    subject: &Subject,
    max_rows: i32,
    mut each: impl FnMut(&RecordEncoder, &[Option<&str>]) -> Result<()>,
) -> Result<RecordEncoder> {
    let rows = map_columns(&subject.source, &subject.columns)?;
    let encoder = RecordEncoder::from_mapping(&rows, subject.columns.user_key);
    let filter = subject
        .filter
        .as_deref()
        .map(|f| filter::canonical(&subject.source, f, subject.reader))
        .transpose()?;
    let query = snapshot_query(
        &subject.source,
        &encoder,
        filter.as_deref(),
        subject.columns.id_column.as_deref(),
        Some(max_rows.max(0) as i64),
    );
    as_reader(subject.reader, || {
        scan(&query, 1000, |values| {
            each(&encoder, values)?;
            Ok(true)
        })
    })?;
    Ok(encoder)
}

/// Tells the caller that a sampled row is left out, as the push leaves it out.
fn skipped(rejection: qobra_sync_core::wire::Rejection) {
    pgrx::notice!(
        "row skipped: column {}: {}",
        rejection.column,
        rejection.reason
    );
}

/// The records `preview()` returns.
pub fn preview(subject: &Subject, max_rows: i32) -> Result<Vec<serde_json::Value>> {
    check_reader(subject)?;
    let mut out = vec![];
    let mut buf = Vec::new();
    sample(subject, max_rows, |encoder, values| {
        buf.clear();
        match encoder.encode(values, &mut buf) {
            Ok(()) => out.push(
                serde_json::from_slice(&buf)
                    .map_err(|e| Error::internal(format!("encoder wrote invalid JSON: {e}")))?,
            ),
            Err(rejection) => skipped(rejection),
        }
        Ok(())
    })?;
    Ok(out)
}

/// The CSV `csv_template()` returns: field keys as header, up to `max_rows` sample rows.
pub fn csv_template(subject: &Subject, max_rows: i32) -> Result<String> {
    check_reader(subject)?;
    let mut rows = vec![];
    let encoder = sample(subject, max_rows, |encoder, values| {
        match encoder.csv_row(values) {
            Ok(row) => rows.push(row),
            Err(rejection) => skipped(rejection),
        }
        Ok(())
    })?;
    Ok(csv_document(&encoder.csv_header(), &rows))
}

/// One row of `validate()`.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Runs every requirement check on the subject and reports each one.
pub fn validate(subject: &Subject) -> Vec<Check> {
    let mut checks = vec![];
    let mut push = |name, ok, detail: String| checks.push(Check { name, ok, detail });
    let source = &subject.source;
    push(
        "source",
        true,
        format!("{} ({})", source.name, kind_name(&source.relkind)),
    );

    let mapping = match map_columns(source, &subject.columns) {
        Ok(m) => {
            push(
                "column options",
                true,
                "user_columns, column_types, field_keys and exclude_columns are consistent".into(),
            );
            Some(m)
        }
        Err(e) => {
            push("column options", false, with_hint(&e));
            None
        }
    };
    let id = subject.columns.id_column.clone();
    let id_ok = match &id {
        None => {
            push(
                "id column present",
                false,
                "no id column given (id_column)".into(),
            );
            false
        }
        Some(c) => match source.column(c) {
            None => {
                push(
                    "id column present",
                    false,
                    format!("column {} does not exist", quote_ident(c)),
                );
                false
            }
            Some(col) => {
                let ok = col.pg_type().is_some_and(|t| t.can_identify());
                push(
                    "id column present",
                    ok,
                    format!(
                        "{} ({}){}",
                        quote_ident(c),
                        col.type_name,
                        if ok {
                            ""
                        } else {
                            ": not a text, integer, numeric or bit type"
                        }
                    ),
                );
                ok
            }
        },
    };
    match &subject.columns.name_column {
        None => push(
            "name column present",
            false,
            "no name column given (name_column)".into(),
        ),
        Some(c) => match source.column(c) {
            None => push(
                "name column present",
                false,
                format!("column {} does not exist", quote_ident(c)),
            ),
            Some(col) => push(
                "name column present",
                col.pg_type().is_some(),
                format!("{} ({})", quote_ident(c), col.type_name),
            ),
        },
    }
    if let Some(m) = &mapping {
        let unsupported: Vec<String> = m
            .iter()
            .filter(|r| r.kind.is_none() && r.note.as_deref() != Some("excluded"))
            .map(|r| format!("{} ({})", r.column_name, r.pg_type))
            .collect();
        let synced = m.iter().filter(|r| r.synced).count();
        push(
            "column types",
            true,
            if unsupported.is_empty() {
                format!("{synced} columns synced, every type mapped")
            } else {
                format!("{synced} columns synced; not synced (unsupported type, add to exclude_columns to silence): {}", unsupported.join(", "))
            },
        );
    }
    // Nothing is analysed or read as a reader that would be refused as run_as.
    let reader_problem = reader::reader_problem(subject.reader);
    let reader_fit = matches!(reader_problem, Ok(None));
    let filter = match &subject.filter {
        None => {
            push(
                "filter accepted",
                true,
                "no filter: every row is pushed".into(),
            );
            Some(None)
        }
        Some(_) if !reader_fit => {
            push(
                "filter accepted",
                false,
                "not checked: the reader is refused (see reader least-privileged)".into(),
            );
            None
        }
        Some(f) => match filter::canonical(source, f, subject.reader) {
            Ok(c) => {
                push("filter accepted", true, c.clone());
                Some(Some(c))
            }
            Err(e) => {
                push("filter accepted", false, with_hint(&e));
                None
            }
        },
    };
    let read_columns: Vec<String> = mapping
        .iter()
        .flatten()
        .filter(|r| r.synced)
        .map(|r| r.column_name.clone())
        .collect();
    let reader_ok = match reader_problem {
        Err(e) => {
            push("reader least-privileged", false, e.message);
            false
        }
        Ok(Some(why)) => {
            push(
                "reader least-privileged",
                false,
                format!("{why}: refused as run_as"),
            );
            false
        }
        Ok(None) => {
            push(
                "reader least-privileged",
                true,
                format!("role {}", quote_ident(&subject.reader_name)),
            );
            true
        }
    };
    let can_read = match registry::reader_can_select(subject.reader, source, &read_columns) {
        Ok(None) => {
            push(
                "reader can read",
                true,
                format!(
                    "role {} can SELECT the synced columns",
                    quote_ident(&subject.reader_name)
                ),
            );
            true
        }
        Ok(Some(why)) => {
            push("reader can read", false, why);
            false
        }
        Err(e) => {
            push("reader can read", false, e.message);
            false
        }
    };
    match write_privileges(subject.reader, source) {
        Ok(None) => push(
            "reader read-only",
            true,
            "no INSERT, UPDATE, DELETE or TRUNCATE on the source".into(),
        ),
        Ok(Some(p)) => push(
            "reader read-only",
            false,
            format!(
                "role {} holds {p} on {}: grant it SELECT only",
                quote_ident(&subject.reader_name),
                source.name
            ),
        ),
        Err(e) => push("reader read-only", false, e.message),
    }
    match registry::destination_set() {
        Ok(true) => push(
            "destination set",
            true,
            "qobra_sync.set_destination() was called".into(),
        ),
        _ => push(
            "destination set",
            false,
            "call qobra_sync.set_destination(api_key) before the first push".into(),
        ),
    }
    let (Some(mapping), Some(filter), true, true) = (mapping, filter, reader_ok, can_read) else {
        push(
            "rows",
            false,
            "not checked: fix the checks above first".into(),
        );
        return checks;
    };
    for (name, ok, detail) in data_checks(subject, &mapping, filter.as_deref(), id_ok) {
        checks.push(Check { name, ok, detail });
    }
    checks
}

/// The checks that read the snapshot: NULL and duplicate ids, and every row's values.
fn data_checks(
    subject: &Subject,
    mapping: &[ColumnMapping],
    filter: Option<&str>,
    id_ok: bool,
) -> Vec<(&'static str, bool, String)> {
    let source = &subject.source;
    let where_clause = filter.map(|f| format!(" WHERE ({f})")).unwrap_or_default();
    let mut out = vec![];
    let outcome = attempt(|| {
        as_reader(subject.reader, || {
            if let (true, Some(id)) = (id_ok, &subject.columns.id_column) {
                let id = quote_ident(id);
                let nulls = reader::one_row(&format!(
                    "SELECT pg_catalog.count(*)::pg_catalog.text, pg_catalog.count(*) FILTER (WHERE {id} IS NULL)::pg_catalog.text FROM {}{where_clause}",
                    source.name
                ))?;
                let total = nulls[0].clone().unwrap_or_default();
                let null_ids = nulls[1].clone().unwrap_or_default();
                out.push((
                    "id not null",
                    null_ids == "0",
                    format!("{null_ids} of {total} rows have a NULL id"),
                ));
                let dups = reader::one_row(&format!(
                    "SELECT pg_catalog.count(*)::pg_catalog.text, pg_catalog.string_agg(d.v OPERATOR(pg_catalog.||) ' (' OPERATOR(pg_catalog.||) d.n OPERATOR(pg_catalog.||) ' times)', ', ' ORDER BY d.n DESC, d.v) FILTER (WHERE d.rank OPERATOR(pg_catalog.<=) 5)
                       FROM (SELECT {id}::pg_catalog.text AS v, pg_catalog.count(*) AS n, pg_catalog.row_number() OVER (ORDER BY pg_catalog.count(*) DESC, {id}::pg_catalog.text) AS rank
                               FROM {}{where_clause} GROUP BY {id} HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1) d",
                    source.name
                ))?;
                let n = dups[0].clone().unwrap_or_default();
                out.push((
                    "id unique",
                    n == "0",
                    match n.as_str() {
                        "0" => "no duplicate ids".into(),
                        "1" => format!(
                            "1 id appears more than once: {}",
                            dups[1].clone().unwrap_or_default()
                        ),
                        _ => format!(
                            "{n} ids appear more than once: {}",
                            dups[1].clone().unwrap_or_default()
                        ),
                    },
                ));
            }
            let encoder = RecordEncoder::from_mapping(mapping, subject.columns.user_key);
            let query = snapshot_query(source, &encoder, filter, None, None);
            let users: Vec<&str> = mapping
                .iter()
                .filter(|r| {
                    r.qobra_type == Some(qobra_sync_core::types::QobraType::User)
                        && r.role == Role::Field
                })
                .map(|r| r.column_name.as_str())
                .collect();
            let (mut bad_users, mut bad_values, mut sent) =
                (Tally::default(), Tally::default(), 0u64);
            let id_column = subject.columns.id_column.as_deref();
            let mut buf = Vec::new();
            let total = scan(&query, 1000, |values| {
                buf.clear();
                match encoder.encode(values, &mut buf) {
                    Ok(()) => sent += 1,
                    Err(r) if Some(r.column.as_str()) == id_column => {}
                    Err(r) if users.contains(&r.column.as_str()) => bad_users.add(r.reason),
                    Err(r) => bad_values.add(format!("{}: {}", r.column, r.reason)),
                }
                Ok(true)
            })?;
            if !users.is_empty() {
                let what = if subject.columns.user_key == UserKey::Email {
                    "an email"
                } else {
                    "non-empty"
                };
                out.push((
                    "user values valid",
                    bad_users.count == 0,
                    bad_users.describe(&format!("every user value is {what}")),
                ));
            }
            out.push((
                "values representable",
                bad_values.count == 0,
                bad_values.describe("every value can be sent"),
            ));
            out.push((
                "rows",
                true,
                format!("{sent} of {total} rows would be sent"),
            ));
            Ok(())
        })
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.push(("rows", false, with_hint(&e))),
        Err(caught) => out.push((
            "rows",
            false,
            format!("reading the source failed: {}", caught.message),
        )),
    }
    out
}

/// Counts row rejections and keeps the first few reasons as samples.
#[derive(Default)]
struct Tally {
    count: u64,
    samples: Vec<String>,
}

impl Tally {
    /// Records one rejection.
    fn add(&mut self, reason: String) {
        self.count += 1;
        if self.samples.len() < 5 {
            self.samples.push(reason);
        }
    }

    /// The detail text: `fine` when nothing was rejected, else the count and samples.
    fn describe(&self, fine: &str) -> String {
        match self.count {
            0 => fine.into(),
            1 => format!("1 row rejected: {}", self.samples.join("; ")),
            n => format!("{n} rows rejected, e.g. {}", self.samples.join("; ")),
        }
    }
}

/// The write privileges `role` holds on `source`, if any.
fn write_privileges(role: pg_sys::Oid, source: &Source) -> Result<Option<String>> {
    let row = reader::one_row(&format!(
        "SELECT pg_catalog.string_agg(p, ', ') FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p
          WHERE pg_catalog.has_table_privilege({}::pg_catalog.oid, {}::pg_catalog.oid, p)",
        role.to_u32(),
        source.oid
    ))?;
    Ok(row[0].clone())
}

/// A relation kind in words.
fn kind_name(relkind: &str) -> &'static str {
    match relkind {
        "r" => "table",
        "p" => "partitioned table",
        "v" => "view",
        "m" => "materialized view",
        _ => "relation",
    }
}

/// An error's message followed by its hint, for a detail column.
fn with_hint(e: &Error) -> String {
    match &e.hint {
        Some(h) => format!("{} ({h})", e.message),
        None => e.message.clone(),
    }
}

//! `validate()`: every requirement for pushing a source, checked and reported one by one.
//!
//! The checks are an ordered list ([`CHECKS`]) of small functions, each reporting one row (the
//! last, [`rows`], several): what the source and the options are, whether the filter and the
//! reader are fit, and — only when all of that allows it — what reading the snapshot finds.
//! What a check learns that a later one needs (the mapping, the canonical filter, whether the
//! reader is fit) is kept in [`Facts`]. Nothing is analysed or read as a reader that
//! `register_table` would refuse as `run_as`.

use crate::inspect::Subject;
use crate::pg::cursor::{one_row, scan};
use crate::pg::error::{Error, Result};
use crate::pg::filter;
use crate::pg::query::{self, snapshot_query};
use crate::pg::quote::quote_ident;
use crate::pg::reader::as_reader;
use crate::pg::roles;
use crate::pg::subxact::attempt;
use crate::registry;
use qobra_sync_core::mapping::{map_columns, ColumnMapping, Note, Role, UserKey};
use qobra_sync_core::names::function::{CHECK_DESTINATION, SET_DESTINATION};
use qobra_sync_core::types::{identifying_kinds, QobraType};
use qobra_sync_core::wire::RecordEncoder;

/// One row of `validate()`.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    /// A row.
    fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok,
            detail: detail.into(),
        }
    }
}

/// What the checks learn as they go.
#[derive(Default)]
pub struct Facts {
    /// The column mapping, when the options are consistent.
    mapping: Option<Vec<ColumnMapping>>,
    /// The id column can identify records.
    id_ok: bool,
    /// The canonical filter (`Some(None)`: no filter), when it was accepted.
    filter: Option<Option<String>>,
    /// Why the reader would be refused as run_as (or why that could not be told), if it would.
    reader_refused: Option<String>,
    /// The reader can SELECT the synced columns.
    can_read: bool,
}

/// A check: reports on the subject, learning into the facts.
type CheckFn = fn(&Subject, &mut Facts) -> Vec<Check>;

/// Every check, in the order `validate()` reports them.
const CHECKS: [CheckFn; 12] = [
    source,
    column_options,
    id_column_present,
    name_column_present,
    column_types,
    shape_unchanged,
    filter_accepted,
    reader_least_privileged,
    reader_can_read,
    reader_read_only,
    destination_set,
    rows,
];

/// Runs every requirement check on the subject and reports each one.
pub fn validate(subject: &Subject) -> Vec<Check> {
    let mut facts = Facts {
        reader_refused: reader_refused(subject),
        ..Facts::default()
    };
    CHECKS
        .iter()
        .flat_map(|check| check(subject, &mut facts))
        .collect()
}

/// Why nothing may be read as the subject's reader, if anything: the caller may not act as it,
/// or it is a role `register_table` would refuse as run_as.
fn reader_refused(subject: &Subject) -> Option<String> {
    if let Err(e) = roles::check_callers_may_act_as(subject.reader, "run_as") {
        return Some(e.message);
    }
    match roles::reader_problem(subject.reader) {
        Ok(problem) => problem.map(|why| format!("{why}: refused as run_as")),
        Err(e) => Some(e.message),
    }
}

/// The source and its kind.
fn source(subject: &Subject, _: &mut Facts) -> Vec<Check> {
    let s = &subject.source;
    vec![Check::new(
        "source",
        true,
        format!("{} ({})", s.name, s.kind().name()),
    )]
}

/// Whether the column options fit together and the source (learns the mapping).
fn column_options(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    let check = match map_columns(&subject.source, &subject.columns) {
        Ok(m) => {
            facts.mapping = Some(m);
            Check::new(
                "column options",
                true,
                "user_columns, column_types, field_keys and exclude_columns are consistent",
            )
        }
        Err(e) => Check::new("column options", false, with_hint(&e)),
    };
    vec![check]
}

/// Whether the id column exists and can identify records.
fn id_column_present(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    const NAME: &str = "id column present";
    let Some(c) = &subject.columns.id_column else {
        return vec![Check::new(NAME, false, "no id column given (id_column)")];
    };
    let Some(col) = subject.source.column(c) else {
        return vec![Check::new(
            NAME,
            false,
            format!("column {} does not exist", quote_ident(c)),
        )];
    };
    facts.id_ok = col.pg_type().is_some_and(|t| t.can_identify());
    let why_not = if facts.id_ok {
        String::new()
    } else {
        format!(": not a {} type", identifying_kinds())
    };
    vec![Check::new(
        NAME,
        facts.id_ok,
        format!("{} ({}){why_not}", quote_ident(c), col.type_name),
    )]
}

/// Whether the name column exists and is of a supported type.
fn name_column_present(subject: &Subject, _: &mut Facts) -> Vec<Check> {
    const NAME: &str = "name column present";
    let check = match &subject.columns.name_column {
        None => Check::new(NAME, false, "no name column given (name_column)"),
        Some(c) => match subject.source.column(c) {
            None => Check::new(
                NAME,
                false,
                format!("column {} does not exist", quote_ident(c)),
            ),
            Some(col) => Check::new(
                NAME,
                col.pg_type().is_some(),
                format!("{} ({})", quote_ident(c), col.type_name),
            ),
        },
    };
    vec![check]
}

/// How many columns are synced, and which are not for want of a supported type (reported only
/// when the mapping could be made).
fn column_types(_: &Subject, facts: &mut Facts) -> Vec<Check> {
    let Some(m) = &facts.mapping else {
        return vec![];
    };
    let unsupported: Vec<String> = m
        .iter()
        .filter(|r| r.kind.is_none() && r.note != Some(Note::Excluded))
        .map(|r| format!("{} ({})", r.column_name, r.pg_type))
        .collect();
    let synced = m.iter().filter(|r| r.synced).count();
    let detail = if unsupported.is_empty() {
        format!("{synced} columns synced, every type mapped")
    } else {
        format!(
            "{synced} columns synced; not synced (unsupported type, add to exclude_columns to silence): {}",
            unsupported.join(", ")
        )
    };
    vec![Check::new("column types", true, detail)]
}

/// Whether the source still has the shape its registration recorded (only for a registration
/// inspected as it is): what blocks pushes, and what is new and not sent yet.
fn shape_unchanged(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    if subject.shape.is_none() {
        return vec![];
    }
    let changes = crate::inspect::drift(subject);
    let blocking: Vec<String> = changes
        .iter()
        .filter(|c| c.blocks())
        .map(|c| c.describe())
        .collect();
    let new: Vec<String> = changes
        .iter()
        .filter(|c| !c.blocks())
        .map(|c| c.describe())
        .collect();
    let waiting = if new.is_empty() {
        String::new()
    } else {
        format!(
            "; not sent until alter_table(source) accepts them: {}",
            new.join(", ")
        )
    };
    if !blocking.is_empty() {
        facts.mapping = None;
        return vec![Check::new(
            "shape unchanged",
            false,
            format!(
                "pushes are blocked until accept_shape(source) accepts the new shape: {}{waiting}",
                blocking.join("; ")
            ),
        )];
    }
    if let Some(m) = facts.mapping.take() {
        facts.mapping = Some(qobra_sync_core::shape::apply(
            m,
            subject.shape.as_deref().unwrap_or_default(),
        ));
    }
    vec![Check::new(
        "shape unchanged",
        true,
        format!("the synced columns are as registered{waiting}"),
    )]
}

/// Whether the filter is accepted, with its canonical text (learns it). Not analysed as a
/// reader that would be refused.
fn filter_accepted(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    const NAME: &str = "filter accepted";
    let check = match &subject.filter {
        None => {
            facts.filter = Some(None);
            Check::new(NAME, true, "no filter: every row is pushed")
        }
        Some(_) if facts.reader_refused.is_some() => Check::new(
            NAME,
            false,
            "not checked: the reader is refused (see reader least-privileged)",
        ),
        Some(f) => match filter::canonical(&subject.source, f, subject.reader) {
            Ok(c) => {
                facts.filter = Some(Some(c.clone()));
                Check::new(NAME, true, c)
            }
            Err(e) => Check::new(NAME, false, with_hint(&e)),
        },
    };
    vec![check]
}

/// Whether the reader is one `register_table` accepts as `run_as`.
fn reader_least_privileged(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    const NAME: &str = "reader least-privileged";
    vec![match &facts.reader_refused {
        Some(why) => Check::new(NAME, false, why.clone()),
        None => Check::new(
            NAME,
            true,
            format!("role {}", quote_ident(&subject.reader_name)),
        ),
    }]
}

/// Whether the reader may SELECT every synced column and, for a foreign table, reach its
/// server (learns it).
fn reader_can_read(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    const NAME: &str = "reader can read";
    let read: Vec<String> = facts
        .mapping
        .iter()
        .flatten()
        .filter(|r| r.synced)
        .map(|r| r.column_name.clone())
        .collect();
    let can =
        roles::reader_can_select(subject.reader, &subject.source, &read).and_then(
            |why| match why {
                Some(why) => Ok(Some(why)),
                None => roles::reader_lacks_user_mapping(subject.reader, &subject.source)
                    .map(|m| m.map(|(why, _)| why)),
            },
        );
    let check = match can {
        Ok(None) => {
            facts.can_read = true;
            Check::new(
                NAME,
                true,
                format!(
                    "role {} can SELECT the synced columns",
                    quote_ident(&subject.reader_name)
                ),
            )
        }
        Ok(Some(why)) => Check::new(NAME, false, why),
        Err(e) => Check::new(NAME, false, e.message),
    };
    vec![check]
}

/// Whether the reader holds no write privilege on the source.
fn reader_read_only(subject: &Subject, _: &mut Facts) -> Vec<Check> {
    const NAME: &str = "reader read-only";
    let check = match roles::write_privileges(subject.reader, &subject.source) {
        Ok(None) => Check::new(
            NAME,
            true,
            "no INSERT, UPDATE, DELETE or TRUNCATE on the source",
        ),
        Ok(Some(p)) => Check::new(
            NAME,
            false,
            format!(
                "role {} holds {p} on {}: grant it SELECT only",
                quote_ident(&subject.reader_name),
                subject.source.name
            ),
        ),
        Err(e) => Check::new(NAME, false, e.message),
    };
    vec![check]
}

/// Whether a destination is set, and whether it can be reached and takes the key (what
/// `check_destination()` finds, in one row).
fn destination_set(_: &Subject, _: &mut Facts) -> Vec<Check> {
    const NAME: &str = "destination set";
    const REACHABLE: &str = "destination reachable";
    let findings = registry::client::check(&crate::pg::deadline::must_stop);
    let Some((set, reach)) = findings.split_first().filter(|(set, _)| set.ok) else {
        return vec![Check::new(
            NAME,
            false,
            format!("call {SET_DESTINATION}(api_key) before the first push"),
        )];
    };
    let reachable = match reach.iter().find(|f| !f.ok) {
        Some(failed) => Check::new(
            REACHABLE,
            false,
            format!("{}: {}", failed.name, failed.detail),
        ),
        None => Check::new(
            REACHABLE,
            true,
            format!("Qobra's API answers and accepts the key (see {CHECK_DESTINATION}())"),
        ),
    };
    vec![Check::new(NAME, true, set.detail.clone()), reachable]
}

/// What reading the snapshot as the reader finds — when the mapping, the filter and the reader
/// allow reading it; otherwise one row saying it was not read.
fn rows(subject: &Subject, facts: &mut Facts) -> Vec<Check> {
    let (Some(mapping), Some(filter), None, true) = (
        &facts.mapping,
        &facts.filter,
        &facts.reader_refused,
        facts.can_read,
    ) else {
        return vec![Check::new(
            "rows",
            false,
            "not checked: fix the checks above first",
        )];
    };
    let mut out = vec![];
    let read = attempt(|| {
        as_reader(subject.reader, || {
            if facts.id_ok {
                out.extend(id_checks(subject, filter.as_deref())?);
            }
            out.extend(value_checks(subject, mapping, filter.as_deref())?);
            Ok(())
        })
    });
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) if matches!(e.state, qobra_sync_core::SqlState::Postgres(_)) => {
            out.push(Check::new(
                "rows",
                false,
                format!("reading the source failed: {}", e.message),
            ))
        }
        Ok(Err(e)) => out.push(Check::new("rows", false, with_hint(&e))),
        Err(caught) => out.push(Check::new(
            "rows",
            false,
            format!("reading the source failed: {}", caught.message),
        )),
    }
    out
}

/// NULL and duplicate ids in the snapshot, counted by the push's own census, with the most
/// repeated values.
fn id_checks(subject: &Subject, filter: Option<&str>) -> Result<Vec<Check>> {
    let source = &subject.source;
    let id = subject.columns.id_column.as_deref().unwrap_or_default();
    let census = one_row(&query::census(source, filter, Some(id)))?;
    let text = |i: usize| census[i].clone().unwrap_or_default();
    let (total, null_ids, duplicated) = (text(0), text(1), text(2));
    let samples = || -> Result<String> {
        Ok(one_row(&query::duplicate_ids(source, filter, id))?[0]
            .clone()
            .unwrap_or_default())
    };
    let unique = match duplicated.as_str() {
        "0" => "no duplicate ids".to_owned(),
        "1" => format!("1 id appears more than once: {}", samples()?),
        n => format!("{n} ids appear more than once: {}", samples()?),
    };
    Ok(vec![
        Check::new(
            "id not null",
            null_ids == "0",
            format!("{null_ids} of {total} rows have a NULL id"),
        ),
        Check::new("id unique", duplicated == "0", unique),
    ])
}

/// Every row encoded as a push would: user values that are not what `user_key` says, values
/// Qobra cannot take, and how many rows would be sent.
fn value_checks(
    subject: &Subject,
    mapping: &[ColumnMapping],
    filter: Option<&str>,
) -> Result<Vec<Check>> {
    let encoder = RecordEncoder::from_mapping(mapping, subject.columns.user_key);
    let query = snapshot_query(&subject.source, &encoder, filter, None, None);
    let users: Vec<&str> = mapping
        .iter()
        .filter(|r| r.qobra_type == Some(QobraType::User) && r.role == Role::Field)
        .map(|r| r.column_name.as_str())
        .collect();
    let (mut bad_users, mut bad_values, mut sent) = (Tally::default(), Tally::default(), 0u64);
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
    let mut out = vec![];
    if !users.is_empty() {
        let what = if subject.columns.user_key == UserKey::Email {
            "an email"
        } else {
            "non-empty"
        };
        out.push(Check::new(
            "user values valid",
            bad_users.count == 0,
            bad_users.describe(&format!("every user value is {what}")),
        ));
    }
    out.push(Check::new(
        "values representable",
        bad_values.count == 0,
        bad_values.describe("every value can be sent"),
    ));
    out.push(Check::new(
        "rows",
        true,
        format!("{sent} of {total} rows would be sent"),
    ));
    Ok(out)
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

/// An error's message followed by its hint, for a detail column.
fn with_hint(e: &Error) -> String {
    match &e.hint {
        Some(h) => format!("{} ({h})", e.message),
        None => e.message.clone(),
    }
}

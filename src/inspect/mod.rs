//! Inspection: `column_mapping()`, `validate()`, `preview()` and `csv_template()`.
//!
//! All four work before registering; arguments left NULL fall back to the registration when
//! there is one. [`subject`] resolves what an inspection works on; `sample` reads the records
//! of `preview()` and `csv_template()`, `validate` runs the requirement checks. Rows are only
//! ever read as a reader `register_table` would accept ([`check_reader`]).

pub mod sample;
pub mod validate;

use crate::pg::catalog::{self, describe_source};
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::roles;
use crate::pg::Oid;
use crate::registry;
use qobra_sync_core::mapping::{map_columns, ColumnChanges, ColumnMapping, ColumnOptions};
use qobra_sync_core::shape::{self, ShapeColumn};
use qobra_sync_core::source::Source;

/// What an inspection works on: the source, its column options, filter and reader.
pub struct Subject {
    pub source: Source,
    pub columns: ColumnOptions,
    /// The filter as given or stored (not yet canonical).
    pub filter: Option<String>,
    pub reader: Oid,
    pub reader_name: String,
    /// Where the reader comes from.
    pub reader_from: ReaderFrom,
    /// The registration's recorded shape, when the inspection is of the registration as it is
    /// (no column option overridden): what a push would send.
    pub shape: Option<Vec<ShapeColumn>>,
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

/// What an inspection call may give; None = the registration's value.
#[derive(Default)]
pub struct Overrides {
    pub columns: ColumnChanges,
    pub filter: Option<String>,
    pub run_as: Option<String>,
}

/// Resolves the subject of an inspection: the registration (if any) with the call's overrides.
pub fn subject(source_oid: Oid, over: Overrides) -> Result<Subject> {
    let reg = match registry::load(source_oid)? {
        Some(reg) => Some(reg),
        None => registry::follow::peek(source_oid)?,
    };
    if let Some(r) = &reg {
        roles::check_owner(Oid::from(r.owner_oid), &r.source_name)?;
    }
    let source = match &reg {
        Some(r) => catalog::check_unchanged(source_oid, &r.source_name)?,
        None => describe_source(source_oid)?,
    };
    let base = reg.as_ref().map(|r| r.columns.clone()).unwrap_or_default();
    let shape = match over.columns.is_empty() {
        true => reg.as_ref().and_then(|r| r.shape.clone()),
        false => None,
    };
    let columns = over.columns.apply(base)?;
    let filter = over
        .filter
        .or_else(|| reg.as_ref().and_then(|r| r.filter.clone()));
    let (reader, reader_name, reader_from) = match (over.run_as, &reg) {
        (Some(r), _) => (roles::role_oid(&r, "run_as")?, r, ReaderFrom::Argument),
        (None, Some(r)) => (
            Oid::from(r.run_as_oid),
            r.run_as.clone(),
            ReaderFrom::Registration,
        ),
        (None, None) => {
            let (name, oid) = roles::caller();
            (oid, name, ReaderFrom::Caller)
        }
    };
    Ok(Subject {
        source,
        columns,
        filter,
        reader,
        reader_name,
        reader_from,
        shape,
    })
}

/// Refuses to read rows as a role `register_table` would refuse as `run_as` (a superuser
/// among them): nothing is read as it. The error says where the reader came from.
pub fn check_reader(subject: &Subject) -> Result<()> {
    roles::check_callers_may_act_as(subject.reader, "run_as")?;
    let Some(why) = roles::reader_problem(subject.reader)? else {
        return Ok(());
    };
    Err(match subject.reader_from {
        ReaderFrom::Caller => Error::new(
            SqlState::InsufficientPrivilege,
            format!("{} is not registered, so it would be read as the calling role, and {why}", subject.source.name),
        )
        .hint("Pass run_as => a role that can only read the source (e.g. run_as => 'qobra_reader'), or register the source first."),
        _ => roles::refused_reader(why),
    })
}

/// The rows of `column_mapping()`: what a push would send now (columns added since the shape
/// was recorded are not synced yet).
pub fn column_mapping(subject: &Subject) -> Result<Vec<ColumnMapping>> {
    let mapping = map_columns(&subject.source, &subject.columns)?;
    Ok(match &subject.shape {
        Some(recorded) => shape::apply(mapping, recorded),
        None => mapping,
    })
}

/// How the source drifted from the registration's recorded shape (nothing when none is
/// recorded or the inspection overrides column options).
pub fn drift(subject: &Subject) -> Vec<shape::Change> {
    let Some(recorded) = &subject.shape else {
        return vec![];
    };
    let mapping = map_columns(&subject.source, &subject.columns).unwrap_or_default();
    shape::drift(recorded, &subject.source, &mapping)
}

/// Refuses to show records when the drift blocks pushes: nothing would be sent.
pub fn check_drift(subject: &Subject) -> Result<()> {
    let changes = drift(subject);
    match shape::blocked(&subject.source.name, &changes) {
        None => Ok(()),
        Some(why) => Err(Error::new(SqlState::ObjectNotInPrerequisiteState, why)
            .detail("Pushes of this source are blocked until the new shape is accepted.")
            .hint(shape::hint(
                &subject.source.name,
                &changes,
                &subject.columns.field_keys,
            ))),
    }
}

//! Sample records: what `preview()` and `csv_template()` show, read as a push reads them.

use crate::inspect::{check_drift, check_reader, column_mapping, Subject};
use crate::pg::cursor::scan;
use crate::pg::error::{Error, Result};
use crate::pg::filter;
use crate::pg::query::snapshot_query;
use crate::pg::reader::as_reader;
use qobra_sync_core::wire::{csv_document, RecordEncoder, Rejection};

/// The records `preview()` returns.
pub fn preview(subject: &Subject, max_rows: i32) -> Result<Vec<serde_json::Value>> {
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

/// Reads up to `max_rows` records as they would be sent, ordered by id, handing each row's
/// values to `each`; returns the encoder used, whose fields are the records' keys. Refuses an
/// unfit reader before anything is analysed or read.
fn sample(
    subject: &Subject,
    max_rows: i32,
    mut each: impl FnMut(&RecordEncoder, &[Option<&str>]) -> Result<()>,
) -> Result<RecordEncoder> {
    check_reader(subject)?;
    check_drift(subject)?;
    let rows = column_mapping(subject)?;
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
fn skipped(rejection: Rejection) {
    pgrx::notice!(
        "row skipped: column {}: {}",
        rejection.column,
        rejection.reason
    );
}

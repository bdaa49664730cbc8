//! The snapshot of a push: its census (pre-pass) and its records, chunk by chunk.
//!
//! Both read the source as the reader, through read-only cursors in the statement's snapshot, so
//! the census, the first pass and any restart from the top see exactly the same rows.

use crate::pg::cursor::{one_row, Cursor};
use crate::pg::error::{Error, Result};
use crate::pg::query;
use crate::pg::quote::literal;
use pgrx::prelude::*;
use qobra_sync_core::guard::{Census, Fingerprint};
use qobra_sync_core::mapping::Source;
use qobra_sync_core::push::{ChunkInfo, ChunkSource};
use qobra_sync_core::runs::Rejections;
use qobra_sync_core::wire::RecordEncoder;

/// Counts the snapshot and checks its ids, in one pass (the fingerprint, when needed, comes from
/// [`fingerprint`]). `id_guaranteed`: the catalog already guarantees the id is NOT NULL and unique.
pub fn census(
    source: &Source,
    filter: Option<&str>,
    id_column: &str,
    id_guaranteed: bool,
) -> Result<Census> {
    let checked = (!id_guaranteed).then_some(id_column);
    let row = one_row(&query::census(source, filter, checked))?;
    let number = |i: usize| -> u64 { row[i].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0) };
    Ok(Census {
        rows: number(0),
        fingerprint: None,
        null_ids: number(1),
        duplicate_ids: number(2),
    })
}

/// A description of how records are encoded, part of every fingerprint.
pub fn encoding_description(encoder: &RecordEncoder) -> String {
    encoder
        .fields
        .iter()
        .map(|f| format!("{}\u{1}{:?}\u{1}{}\u{2}", f.column, f.encoding, f.field_key))
        .collect()
}

/// The fingerprint of the payload a push would send, by reading and encoding the snapshot
/// without sending anything (used to skip unchanged snapshots).
pub fn fingerprint(query: &str, encoder: &RecordEncoder) -> Result<String> {
    Spi::connect(|_| {
        let mut chunks = Chunks::new(query.to_owned(), encoder, 10_000);
        let mut body = Vec::new();
        while chunks.next_chunk(&mut body)?.is_some() {
            body.clear();
        }
        Ok(chunks.fingerprint.digest(&encoding_description(encoder)))
    })
}

/// Whether the catalog guarantees that `column` of relation `oid` is NOT NULL and unique
/// (a valid, non-partial unique index on exactly that column).
pub fn id_guaranteed(oid: pg_sys::Oid, column: &str) -> Result<bool> {
    let row = one_row(&format!(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                         WHERE i.indrelid OPERATOR(pg_catalog.=) {}::pg_catalog.oid AND i.indisunique AND i.indisvalid AND i.indnkeyatts OPERATOR(pg_catalog.=) 1
                           AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull
                           AND a.attname OPERATOR(pg_catalog.=) {}::pg_catalog.name)::pg_catalog.text",
        oid.to_u32(),
        literal(column)
    ))?;
    Ok(row[0].as_deref() == Some("true"))
}

/// The records of a snapshot, written chunk by chunk for the push.
pub struct Chunks<'a> {
    query: String,
    encoder: &'a RecordEncoder,
    batch_rows: usize,
    cursor: Option<Cursor>,
    exhausted: bool,
    chunks: u64,
    /// Rows read in the current pass.
    pub rows_read: u64,
    /// Rows rejected in the current pass.
    pub rejections: Rejections,
    /// Fingerprint of the records written in the current pass.
    pub fingerprint: Fingerprint,
}

impl<'a> Chunks<'a> {
    /// Chunks of `batch_rows` records from `query` (whose columns are the encoder's fields).
    pub fn new(query: String, encoder: &'a RecordEncoder, batch_rows: usize) -> Chunks<'a> {
        Chunks {
            query,
            encoder,
            batch_rows: batch_rows.max(1),
            cursor: None,
            exhausted: false,
            chunks: 0,
            rows_read: 0,
            rejections: Rejections::default(),
            fingerprint: Fingerprint::default(),
        }
    }
}

impl ChunkSource for Chunks<'_> {
    /// Closes the cursor; the next chunk reopens it in the same snapshot.
    fn restart(&mut self) -> Result<(), Error> {
        self.cursor = None;
        self.exhausted = false;
        self.chunks = 0;
        self.rows_read = 0;
        self.rejections = Rejections::default();
        self.fingerprint = Fingerprint::default();
        Ok(())
    }

    /// Encodes up to `batch_rows` records into `out`; rejected rows are set aside, not sent.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
        if self.cursor.is_none() && !self.exhausted {
            self.cursor = Some(Cursor::open(&self.query)?);
        }
        out.push(b'[');
        let mut records = 0usize;
        while records < self.batch_rows && !self.exhausted {
            let cursor = self.cursor.as_mut().expect("opened above");
            let (encoder, rows_read, rejections, fingerprint) = (
                self.encoder,
                &mut self.rows_read,
                &mut self.rejections,
                &mut self.fingerprint,
            );
            let want = (self.batch_rows - records) as i64;
            let n = cursor.next_batch(want, |values| {
                *rows_read += 1;
                let mark = out.len();
                if records > 0 {
                    out.push(b',');
                }
                let record_start = out.len();
                match encoder.encode(values, out) {
                    Ok(()) => {
                        fingerprint.add(&out[record_start..]);
                        records += 1;
                    }
                    Err(rejection) => {
                        out.truncate(mark);
                        rejections.add(
                            *rows_read,
                            || encoder.row_json(values),
                            format!("column {}: {}", rejection.column, rejection.reason),
                        );
                    }
                }
                Ok(true)
            })?;
            if n == 0 {
                self.exhausted = true;
                self.cursor = None;
            }
        }
        out.push(b']');
        if records == 0 && self.chunks > 0 {
            out.clear();
            return Ok(None);
        }
        self.chunks += 1;
        Ok(Some(ChunkInfo {
            rows: records as u64,
        }))
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::pg::catalog::describe;
    use crate::testing::{in_fresh_snapshot, oid};

    #[pg_test]
    fn the_census_counts_rows_null_ids_and_repeated_ids() {
        Spi::run("CREATE TABLE t_ids (id int, name text);
                  INSERT INTO t_ids VALUES (1, 'a'), (1, 'b'), (1, 'c'), (NULL, 'd'), (NULL, 'e'), (2, 'f'), (3, 'g'), (3, 'h')").unwrap();
        let source = describe(oid("t_ids")).unwrap();
        let all = in_fresh_snapshot(|| census(&source, None, "id", false)).unwrap();
        assert_eq!(
            (all.rows, all.null_ids, all.duplicate_ids),
            (8, 2, 2),
            "ids 1 and 3 repeat"
        );
        let filtered =
            in_fresh_snapshot(|| census(&source, Some("name > 'c'"), "id", false)).unwrap();
        assert_eq!(
            (filtered.rows, filtered.null_ids, filtered.duplicate_ids),
            (5, 2, 1)
        );
        let trusted = in_fresh_snapshot(|| census(&source, None, "id", true)).unwrap();
        assert_eq!(
            (trusted.rows, trusted.null_ids, trusted.duplicate_ids),
            (8, 0, 0)
        );
    }

    #[pg_test]
    fn a_unique_index_on_a_not_null_id_guarantees_it() {
        Spi::run("CREATE TABLE t_keyed (id int PRIMARY KEY, other int, part int);
                  CREATE UNIQUE INDEX ON t_keyed (other); CREATE UNIQUE INDEX ON t_keyed (part) WHERE part > 0").unwrap();
        let guaranteed = |c: &str| in_fresh_snapshot(|| id_guaranteed(oid("t_keyed"), c)).unwrap();
        assert!(guaranteed("id"));
        assert!(!guaranteed("other"), "unique but nullable");
        assert!(!guaranteed("part"), "a partial index guarantees nothing");
    }
}

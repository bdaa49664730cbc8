//! The snapshot of a push: its census (pre-pass) and its records, chunk by chunk.
//!
//! Both read the source as the reader, through read-only cursors in the statement's snapshot, so
//! the census, the first pass and any restart from the top see exactly the same rows.

use crate::pg::cursor::{one_row, Cursor, Next};
use crate::pg::error::{Error, Result};
use crate::pg::gucs;
use crate::pg::query;
use crate::pg::quote::literal;
use crate::pg::Oid;
use pgrx::prelude::*;
use qobra_sync_core::guard::{Census, Fingerprint};
use qobra_sync_core::names::setting::BATCH_BYTES;
use qobra_sync_core::push::{ChunkInfo, ChunkSource};
use qobra_sync_core::runs::Rejections;
use qobra_sync_core::source::Source;
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
/// without sending anything (used to skip unchanged snapshots); None when the push would leave
/// a record out as larger than `batch_bytes`: such a snapshot is pushed, so that the run says
/// so, and is never skipped.
pub fn fingerprint(
    query: &str,
    encoder: &RecordEncoder,
    limits: ChunkLimits,
) -> Result<Option<String>> {
    Spi::connect(|_| {
        let limits = ChunkLimits {
            rows: 10_000,
            ..limits
        };
        let mut chunks = Chunks::new(query.to_owned(), encoder, limits);
        let mut body = Vec::new();
        while chunks.next_chunk(&mut body)?.is_some() {
            body.clear();
        }
        Ok((!chunks.left_out_for_size)
            .then(|| chunks.fingerprint.digest(&encoding_description(encoder))))
    })
}

/// Whether the catalog guarantees that `column` of relation `oid` is NOT NULL and unique
/// (a valid, non-partial unique index on exactly that column).
pub fn id_guaranteed(oid: Oid, column: &str) -> Result<bool> {
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

/// How large a chunk may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Records per chunk (`qobra_sync.batch_rows`).
    pub rows: usize,
    /// Bytes per request (`qobra_sync.batch_bytes`): a record larger than this alone, framed,
    /// is rejected.
    pub bytes: usize,
    /// The bytes a request adds around its array of records (the destination's body format).
    pub framing: usize,
}

impl ChunkLimits {
    /// The limits `qobra_sync.batch_rows` and `qobra_sync.batch_bytes` set, for requests that
    /// add `framing` bytes around their records.
    pub fn from_settings(framing: usize) -> ChunkLimits {
        ChunkLimits {
            rows: gucs::BATCH_ROWS.get() as usize,
            bytes: gucs::BATCH_BYTES.get() as usize,
            framing,
        }
    }

    /// The bytes a chunk's array of records may take.
    fn room(&self) -> usize {
        self.bytes.saturating_sub(self.framing)
    }
}

/// Bytes of rows one fetch should bring at most: the fetched rows' texts stay in memory until
/// all are written, so wide rows are fetched a few at a time and narrow ones by thousands.
const FETCH_BYTES: usize = 4 << 20;

/// Rows of the first fetch, before any row's width is known, and the most of any fetch.
const FETCH_ROWS: (usize, usize) = (100, 10_000);

/// The records of a snapshot, written chunk by chunk for the push.
pub struct Chunks<'a> {
    query: String,
    encoder: &'a RecordEncoder,
    limits: ChunkLimits,
    /// The byte size a 413 taught, below `limits.bytes`: chunks close there, and a larger
    /// record goes alone.
    learned_bytes: Option<usize>,
    cursor: Option<Cursor>,
    exhausted: bool,
    chunks: u64,
    /// Records written and their bytes, to size fetches by the rows' width.
    written: (u64, u64),
    /// Rows read in the current pass.
    pub rows_read: u64,
    /// Rows rejected in the current pass.
    pub rejections: Rejections,
    /// Whether a record was left out for its size (`batch_bytes`, or Qobra's 413 even alone) in
    /// the current pass: what Qobra holds then depends on a limit, not only on the rows.
    pub left_out_for_size: bool,
    /// Fingerprint of the records written in the current pass.
    pub fingerprint: Fingerprint,
}

impl<'a> Chunks<'a> {
    /// Chunks of records from `query` (whose columns are the encoder's fields) within `limits`.
    pub fn new(query: String, encoder: &'a RecordEncoder, limits: ChunkLimits) -> Chunks<'a> {
        Chunks {
            query,
            encoder,
            limits: ChunkLimits {
                rows: limits.rows.max(1),
                bytes: limits.bytes.max(64 + limits.framing),
                framing: limits.framing,
            },
            learned_bytes: None,
            cursor: None,
            exhausted: false,
            chunks: 0,
            written: (0, 0),
            rows_read: 0,
            rejections: Rejections::default(),
            left_out_for_size: false,
            fingerprint: Fingerprint::default(),
        }
    }

    /// Where the current chunk closes, in bytes.
    fn close_at(&self) -> usize {
        self.learned_bytes
            .map_or(self.limits.room(), |b| b.min(self.limits.room()))
    }

    /// Rows to fetch next for a chunk that has `records` records: what fits in
    /// [`FETCH_BYTES`] at the width seen so far, never more than the chunk still takes.
    fn fetch_size(&self, records: usize) -> i64 {
        let (count, bytes) = self.written;
        let by_width = match bytes.checked_div(count) {
            Some(width) => FETCH_BYTES / (width as usize).max(1),
            None => FETCH_ROWS.0,
        };
        let left = self.limits.rows - records;
        by_width.clamp(1, FETCH_ROWS.1).min(left) as i64
    }
}

impl ChunkSource for Chunks<'_> {
    /// Closes the cursor; the next chunk reopens it in the same snapshot. What a 413 taught is
    /// kept.
    fn restart(&mut self) -> Result<(), Error> {
        self.cursor = None;
        self.exhausted = false;
        self.chunks = 0;
        self.rows_read = 0;
        self.rejections = Rejections::default();
        self.left_out_for_size = false;
        self.fingerprint = Fingerprint::default();
        Ok(())
    }

    /// Encodes records into `out` until the chunk is full (`batch_rows` records, or the next
    /// record would pass the byte limit: it starts the next chunk); rejected rows are set aside.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
        if self.cursor.is_none() && !self.exhausted {
            self.cursor = Some(Cursor::open(&self.query)?);
        }
        out.push(b'[');
        let mut chunk = Chunk {
            records: 0,
            full: false,
            close_at: self.close_at(),
        };
        while !chunk.full && chunk.records < self.limits.rows && !self.exhausted {
            let fetch = self.fetch_size(chunk.records);
            let mut writer = Writer {
                encoder: self.encoder,
                limits: self.limits,
                rows_read: &mut self.rows_read,
                rejections: &mut self.rejections,
                left_out_for_size: &mut self.left_out_for_size,
                fingerprint: &mut self.fingerprint,
                written: &mut self.written,
            };
            let cursor = self.cursor.as_mut().expect("opened above");
            let taken =
                cursor.next_rows(fetch, |values| Ok(writer.write(values, out, &mut chunk)))?;
            if taken.is_none() {
                self.exhausted = true;
                self.cursor = None;
            }
        }
        out.push(b']');
        if chunk.records == 0 && self.chunks > 0 {
            out.clear();
            return Ok(None);
        }
        self.chunks += 1;
        Ok(Some(ChunkInfo {
            rows: chunk.records as u64,
        }))
    }

    /// Keeps a record Qobra refused even alone among the rejected rows, by its id.
    fn reject(&mut self, record: &[u8], reason: String) {
        self.left_out_for_size = true;
        let encoder = self.encoder;
        self.rejections
            .add(None, || encoder.id_json_of_record(record), reason);
    }

    /// Closes later chunks at `max_bytes`.
    fn shrink(&mut self, max_bytes: usize) {
        let learned = self.learned_bytes.map_or(max_bytes, |b| b.min(max_bytes));
        self.learned_bytes = Some(learned.max(64));
    }
}

/// The chunk being written.
struct Chunk {
    records: usize,
    /// The next record would not fit.
    full: bool,
    close_at: usize,
}

/// Writes rows into a chunk, counting what it reads, rejects and writes.
struct Writer<'a> {
    encoder: &'a RecordEncoder,
    limits: ChunkLimits,
    rows_read: &'a mut u64,
    rejections: &'a mut Rejections,
    left_out_for_size: &'a mut bool,
    fingerprint: &'a mut Fingerprint,
    written: &'a mut (u64, u64),
}

impl Writer<'_> {
    /// Writes one row's record into `out`, or sets the row aside (it cannot be encoded, or its
    /// record alone passes `batch_bytes`), or leaves it for the next chunk (it would not fit
    /// in this one).
    fn write(&mut self, values: &[Option<&str>], out: &mut Vec<u8>, chunk: &mut Chunk) -> Next {
        let mark = out.len();
        if chunk.records > 0 {
            out.push(b',');
        }
        let start = out.len();
        if let Err(rejection) = self.encoder.encode(values, out) {
            out.truncate(mark);
            self.reject(
                values,
                format!("column {}: {}", rejection.column, rejection.reason),
                false,
            );
            return Next::More;
        }
        let len = out.len() - start;
        // `[`, the record, `]`, framed: a record that cannot fit even alone.
        if len + 2 > self.limits.room() {
            out.truncate(mark);
            // Its width still sizes the next fetches: wide rows are fetched few at a time.
            self.written.0 += 1;
            self.written.1 += len as u64;
            let reason = format!(
                "the record is {len} bytes: a request holding it alone ({} bytes) is more than {BATCH_BYTES} ({} bytes)",
                len + 2 + self.limits.framing,
                self.limits.bytes
            );
            self.reject(values, reason, true);
            *self.left_out_for_size = true;
            return Next::More;
        }
        if chunk.records > 0 && out.len() + 1 > chunk.close_at {
            out.truncate(mark);
            chunk.full = true;
            return Next::Leave;
        }
        *self.rows_read += 1;
        self.fingerprint.add(&out[start..]);
        self.written.0 += 1;
        self.written.1 += len as u64;
        chunk.records += 1;
        if chunk.records == self.limits.rows || out.len() + 1 >= chunk.close_at {
            chunk.full = true;
            return Next::Stop;
        }
        Next::More
    }

    /// Counts a row read and sets it aside: its values cut to a bounded size, or by its id when
    /// it is too large to send. A row rejected for a value still sizes the next fetches by its
    /// width, so that a source of wide rows Qobra cannot take is fetched a few rows at a time.
    fn reject(&mut self, values: &[Option<&str>], reason: String, too_large: bool) {
        *self.rows_read += 1;
        if !too_large {
            self.written.0 += 1;
            self.written.1 += values
                .iter()
                .map(|v| v.map_or(4, str::len) as u64 + 8)
                .sum::<u64>();
        }
        let encoder = self.encoder;
        let row = || match too_large {
            true => encoder.id_json(values),
            false => encoder.row_json(values),
        };
        self.rejections.add(Some(*self.rows_read), row, reason);
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

    /// Creates `public.t_wide (id, note)`: `rows` rows of 900-byte notes, the one of id `wide`
    /// holding `wide_len` bytes instead.
    fn create_wide(rows: u32, wide: u32, wide_len: u32) {
        Spi::run(&format!(
            "CREATE TABLE t_wide (id int PRIMARY KEY, note text);
             INSERT INTO t_wide SELECT g, repeat('n', 900) FROM generate_series(1, {rows}) g;
             UPDATE t_wide SET note = repeat('w', {wide_len}) WHERE id = {wide};"
        ))
        .unwrap();
    }

    /// The encoder of `t_wide`'s records: `id`, `note`.
    fn wide_encoder() -> RecordEncoder {
        use qobra_sync_core::wire::{Encoding, WireField};
        RecordEncoder {
            fields: vec![
                WireField::new("id", "id", Encoding::Id),
                WireField::new("note", "note", Encoding::Text),
            ],
        }
    }

    /// Chunks of `public.t_wide` within `limits`.
    fn wide_chunks(encoder: &RecordEncoder, limits: ChunkLimits) -> Chunks<'_> {
        let query = "SELECT id, note FROM public.t_wide ORDER BY id".to_owned();
        Chunks::new(query, encoder, limits)
    }

    /// Every chunk `chunks` writes, parsed.
    fn all_chunks(chunks: &mut Chunks<'_>) -> Vec<(usize, Vec<serde_json::Value>)> {
        let mut out = vec![];
        loop {
            let mut body = vec![];
            let Some(info) = chunks.next_chunk(&mut body).unwrap() else {
                return out;
            };
            let records: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            assert_eq!(records.len() as u64, info.rows);
            out.push((body.len(), records));
        }
    }

    #[pg_test]
    fn chunks_close_at_their_byte_limit_and_a_record_too_large_is_set_aside() {
        create_wide(300, 150, 20000);
        let encoder = wide_encoder();
        // Requests framed as {"data": …}: the records' array gets what the framing leaves.
        let framing = qobra_sync_core::wire::BodyFormat::Data.overhead();
        let limits = ChunkLimits {
            rows: 1000,
            bytes: 10_000,
            framing,
        };
        let written = in_fresh_snapshot(|| {
            Spi::connect(|_| {
                let mut chunks = wide_chunks(&encoder, limits);
                let written = all_chunks(&mut chunks);
                (written, chunks.rows_read, chunks.rejections.clone())
            })
        });
        let (written, rows_read, rejections) = written;
        assert!(written.iter().all(|(len, _)| *len + framing <= 10_000));
        let (_, full) = written.split_last().unwrap();
        assert!(
            full.iter().all(|(len, _)| *len > 10_000 - 1000),
            "chunks are filled"
        );
        let ids: Vec<String> = written
            .iter()
            .flat_map(|(_, r)| r.iter().map(|r| r["id"].as_str().unwrap().to_owned()))
            .collect();
        let expected: Vec<String> = (1..=300)
            .filter(|i| *i != 150)
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ids, expected, "every record once, in order, across fetches");
        assert_eq!(rows_read, 300);
        assert_eq!(rejections.count, 1);
        let (line, row, reason) = &rejections.kept[0];
        assert_eq!(*line, Some(150));
        assert_eq!(
            *row,
            serde_json::json!({"id": "150"}),
            "kept by its id alone"
        );
        assert!(reason.contains("qobra_sync.batch_bytes"), "{reason}");
    }

    #[pg_test]
    fn a_learned_limit_closes_later_chunks_sooner_and_a_larger_record_goes_alone() {
        create_wide(100, 80, 5000);
        let encoder = wide_encoder();
        let limits = ChunkLimits {
            rows: 20,
            bytes: 1 << 20,
            framing: 0,
        };
        let written = in_fresh_snapshot(|| {
            Spi::connect(|_| {
                let mut chunks = wide_chunks(&encoder, limits);
                let mut first = vec![];
                let info = chunks.next_chunk(&mut first).unwrap().unwrap();
                chunks.shrink(3000);
                (info.rows, all_chunks(&mut chunks), chunks.rejections.count)
            })
        });
        let (first, later, rejected) = written;
        assert_eq!(first, 20);
        assert_eq!(rejected, 0);
        for (len, records) in &later {
            let alone = records.len() == 1 && records[0]["id"] == "80";
            assert!(
                *len <= 3000 || alone,
                "{len} bytes, {} records",
                records.len()
            );
            assert!(records.len() >= 2 || alone || records[0]["id"] == "100");
        }
        let ids: Vec<u32> = later
            .iter()
            .flat_map(|(_, r)| r.iter().map(|r| r["id"].as_str().unwrap().parse().unwrap()))
            .collect();
        assert_eq!(ids, (21..=100).collect::<Vec<_>>());
        assert!(later.iter().any(|(len, _)| *len > 3000), "id 80 went alone");
    }
}

//! Cursors over snapshot queries: rows handed out batch by batch as the text Postgres prints.
//!
//! Each fetch runs under the pinned settings and is bounded by `qobra_sync.statement_timeout_ms`
//! and by what is left of the run's deadline (`qobra_sync.run_timeout_ms`), whichever comes
//! first; the session's own statement timeout still applies when it comes sooner.

use crate::pg::deadline::Deadline;
use crate::pg::error::{Error, Result};
use crate::pg::pinned::pinned;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgTupleDesc};
use std::ffi::CString;

/// A cursor over a snapshot query, read in the statement's snapshot, handing out each value as
/// the text Postgres prints for it.
///
/// It is opened read-only, so Postgres runs it in the current active snapshot: reopening it
/// (a push restarting from the top) sees exactly the same rows. Values are turned into text the
/// way COPY does: text-like values are read in place, others through their type's output
/// function (called directly, no SQL cast). Must be used inside an SPI connection
/// (`Spi::connect`). Each fetch's tuples and texts are freed before the next fetch, so memory is
/// bounded by the fetch size, not the table.
pub struct Cursor {
    portal: pg_sys::Portal,
    values_cx: PgMemoryContexts,
    texts: Vec<Option<&'static str>>,
    columns: Vec<ColumnText>,
    /// One row's values and NULL flags, deformed in one call.
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    /// Rows fetched and not all handed out yet.
    fetched: Option<Fetched>,
}

/// How one result column becomes text.
enum ColumnText {
    /// text, varchar (and domains over them): the value is the text.
    Varlena,
    /// character(n): the text without its padding, as a cast to text gives.
    Padded,
    /// Anything else: the type's output function.
    Output(Box<pg_sys::FmgrInfo>),
}

impl ColumnText {
    /// The converter for a column of type `typid`.
    fn for_type(typid: pg_sys::Oid) -> ColumnText {
        // SAFETY: a syscache lookup by type OID; cursors are only opened inside a transaction.
        let base = unsafe { pg_sys::getBaseType(typid) };
        if base == pg_sys::TEXTOID || base == pg_sys::VARCHAROID {
            return ColumnText::Varlena;
        }
        if base == pg_sys::BPCHAROID {
            return ColumnText::Padded;
        }
        // SAFETY: a catalog lookup by type OID into two locals; an all-zero FmgrInfo is the empty
        // value fmgr_info_cxt fills, and what it allocates goes in TopTransactionContext, which
        // outlives the cursor (no cursor outlives the transaction its portal belongs to).
        unsafe {
            let mut output = pg_sys::Oid::INVALID;
            let mut is_varlena = false;
            pg_sys::getTypeOutputInfo(typid, &mut output, &mut is_varlena);
            let mut info: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
            pg_sys::fmgr_info_cxt(output, info.as_mut(), pg_sys::TopTransactionContext);
            ColumnText::Output(info)
        }
    }

    /// The text of a non-NULL value (allocated, when needed, in the current memory context).
    unsafe fn text(&mut self, datum: pg_sys::Datum) -> &'static str {
        // SAFETY: the caller passes a non-NULL datum of this column's type, just deformed from a
        // row of the fetched table; its text lies in that row or in the current (batch) memory
        // context, and the 'static lifetime is never used past the reset that frees it (see
        // `next_rows`). The unchecked UTF-8 conversions assume the database encoding is UTF-8.
        unsafe {
            match self {
                ColumnText::Varlena => pgrx::varlena::text_to_rust_str_unchecked(inline(datum)),
                ColumnText::Padded => {
                    pgrx::varlena::text_to_rust_str_unchecked(inline(datum)).trim_end_matches(' ')
                }
                ColumnText::Output(info) => {
                    let c = pg_sys::OutputFunctionCall(info.as_mut(), datum);
                    std::str::from_utf8_unchecked(std::ffi::CStr::from_ptr(c).to_bytes())
                }
            }
        }
    }
}

/// A varlena value in memory, uncompressed: as stored when it is inline (no copy, no call into
/// Postgres), detoasted when it is compressed or stored out of line.
unsafe fn inline(datum: pg_sys::Datum) -> *const pg_sys::varlena {
    use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u};
    // SAFETY: the caller passes a non-NULL datum of a varlena type: an inline, uncompressed value
    // is used where it lies, anything else goes through pg_detoast_datum_packed, which returns a
    // copy in the current memory context (or raises an error).
    unsafe {
        let v = datum.cast_mut_ptr::<pg_sys::varlena>();
        if varatt_is_4b_u(v) || (varatt_is_1b(v) && !varatt_is_1b_e(v)) {
            v
        } else {
            pg_sys::pg_detoast_datum_packed(v)
        }
    }
}

impl Cursor {
    /// Opens a read-only cursor over `query`.
    pub fn open(query: &str) -> Result<Cursor> {
        let sql = CString::new(query).map_err(|_| Error::internal("query text contains NUL"))?;
        // Parsed, planned and started under the pinned settings: what it means is fixed here.
        // SAFETY: called inside the SPI connection a Cursor requires, with no parameters (null
        // arrays for nargs 0) and `sql` alive for the call; it returns an open portal or raises an
        // error.
        let portal = pinned(|| unsafe {
            pg_sys::SPI_cursor_open_with_args(
                std::ptr::null(),
                sql.as_ptr(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null(),
                true,
                0,
            )
        });
        // SAFETY: the portal was just opened for a query that returns rows, so its tupDesc is set
        // and lives as long as the portal; the wrapper neither releases nor frees it. Its
        // attributes are read through pgrx, which knows where each major keeps them (18 moved
        // them behind an array of compact attributes).
        let desc = unsafe { PgTupleDesc::from_pg_unchecked((*portal).tupDesc) };
        let columns: Vec<ColumnText> = desc
            .iter()
            .map(|a| ColumnText::for_type(a.atttypid))
            .collect();
        let n = columns.len();
        Ok(Cursor {
            portal,
            values_cx: PgMemoryContexts::new("qobra_sync batch"),
            texts: Vec::with_capacity(n),
            columns,
            values: vec![pg_sys::Datum::from(0usize); n],
            nulls: vec![false; n],
            fetched: None,
        })
    }

    /// Hands rows to `each` (see [`Next`]), from the rows already fetched or, when none are
    /// left, from a new fetch of up to `fetch` rows. Returns how many rows `each` took, or
    /// `None` at the end of the query. Call again for more.
    pub fn next_rows(
        &mut self,
        fetch: i64,
        mut each: impl FnMut(&[Option<&str>]) -> Result<Next>,
    ) -> Result<Option<usize>> {
        if self.fetched.is_none() {
            self.fetched = self.fetch(fetch);
        }
        let Some(fetched) = self.fetched.as_mut() else {
            return Ok(None);
        };
        let (texts, columns, values, nulls) = (
            &mut self.texts,
            &mut self.columns,
            &mut self.values,
            &mut self.nulls,
        );
        // SAFETY: the texts made in the batch context are only handed to `each` and forgotten
        // before the context is reset, after each row: a row's detoasted values and texts are
        // freed before the next is read, however wide the rows of a fetch.
        let taken = unsafe {
            self.values_cx.switch_to(|cx| -> Result<usize> {
                let mut taken = 0;
                while fetched.next < fetched.rows {
                    fetched.texts_of_next(columns, values, nulls, texts);
                    let next = each(texts);
                    texts.clear();
                    cx.reset();
                    match next? {
                        Next::Leave => break,
                        Next::Stop => {
                            fetched.next += 1;
                            taken += 1;
                            break;
                        }
                        Next::More => {
                            fetched.next += 1;
                            taken += 1;
                        }
                    }
                }
                Ok(taken)
            })
        };
        if taken.is_err() || fetched.next == fetched.rows {
            self.release();
        }
        taken.map(Some)
    }

    /// Fetches up to `fetch` rows, or `None` at the end of the query.
    fn fetch(&mut self, fetch: i64) -> Option<Fetched> {
        pgrx::check_for_interrupts!();
        // SAFETY: the portal is open (only `drop` closes it) and we are inside the SPI connection
        // it was opened in; SPI_tuptable and SPI_processed are read right after the fetch that set
        // them, and an empty table is freed here, before anything else can use it.
        unsafe {
            pinned(|| {
                let _timeout = FetchTimeout::arm();
                pg_sys::SPI_cursor_fetch(self.portal, true, fetch.max(1) as std::ffi::c_long);
            });
            let table = pg_sys::SPI_tuptable;
            let rows = pg_sys::SPI_processed as usize;
            if table.is_null() {
                return None;
            }
            if rows == 0 {
                pg_sys::SPI_freetuptable(table);
                return None;
            }
            Some(Fetched {
                table,
                rows,
                next: 0,
            })
        }
    }

    /// Frees the fetched rows and the texts made from them.
    fn release(&mut self) {
        if let Some(fetched) = self.fetched.take() {
            // SAFETY: no text made in the context outlives the rows it was made from.
            unsafe {
                self.values_cx.reset();
                pg_sys::SPI_freetuptable(fetched.table);
            }
        }
    }
}

/// What the caller of [`Cursor::next_rows`] did with the row it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Took it; hand the next one.
    More,
    /// Took it; stop for now.
    Stop,
    /// Did not take it: stop, and hand it first at the next call.
    Leave,
}

/// Rows fetched and not all handed out yet.
struct Fetched {
    table: *mut pg_sys::SPITupleTable,
    rows: usize,
    /// The next row to hand out.
    next: usize,
}

impl Fetched {
    /// Puts the texts of the next row's values into `texts` (allocated, when needed, in the
    /// current memory context).
    unsafe fn texts_of_next(
        &self,
        columns: &mut [ColumnText],
        values: &mut [pg_sys::Datum],
        nulls: &mut [bool],
        texts: &mut Vec<Option<&'static str>>,
    ) {
        // SAFETY: the caller has checked `self.next < self.rows`, so `vals[next]` is a tuple of
        // this fetched table, still alive; `values` and `nulls` have one entry per column of the
        // portal's descriptor, which the table's descriptor is a copy of.
        unsafe {
            let tuple = *(*self.table).vals.add(self.next);
            let desc = (*self.table).tupdesc;
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            texts.clear();
            for (col, column) in columns.iter_mut().enumerate() {
                texts.push(if nulls[col] {
                    None
                } else {
                    Some(column.text(values[col]))
                });
            }
        }
    }
}

/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` (utils/timeout.h; pgrx does not bind it): 3
/// since 9.3, where the enum's first four members were set and have not moved since.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn enable_timeout_at(id: std::ffi::c_int, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn get_timeout_active(id: std::ffi::c_int) -> bool;
    fn get_timeout_finish_time(id: std::ffi::c_int) -> pg_sys::TimestampTz;
}

/// The statement timeout of one cursor fetch: `qobra_sync.statement_timeout_ms` or what is left
/// of the run's deadline, whichever is sooner. The session's own statement timeout, when it
/// runs and comes sooner still, is left alone; when ours comes first, the session's is put back
/// afterwards.
struct FetchTimeout {
    armed: bool,
    /// The session's own timeout, to put back: when it would have fired.
    session: Option<pg_sys::TimestampTz>,
}

impl FetchTimeout {
    /// Arms the timeout of a fetch, if there is one to arm.
    fn arm() -> FetchTimeout {
        let none = FetchTimeout {
            armed: false,
            session: None,
        };
        let setting = crate::pg::gucs::STATEMENT_TIMEOUT_MS.get();
        let setting = (setting > 0).then_some(setting as i64);
        // Rounded up, and a millisecond more: the timer must fire after the deadline, never just
        // before it, so that the cancel it raises is known for the deadline's (`reader`).
        let left = Deadline::remaining().map(|d| d.as_micros().div_ceil(1000) as i64 + 1);
        let Some(ms) = [setting, left].into_iter().flatten().min() else {
            return none;
        };
        let ms = ms.min(i32::MAX as i64) as std::ffi::c_int;
        // SAFETY: plain calls into PostgreSQL's timeout module on the backend's only thread, each
        // behind pg_guard_ffi_boundary; the declarations above match utils/timeout.h,
        // STATEMENT_TIMEOUT is registered by InitPostgres in every backend and every worker
        // connected to a database, and `drop` puts the session's own timer back.
        unsafe {
            let active =
                pg_sys::ffi::pg_guard_ffi_boundary(|| get_timeout_active(STATEMENT_TIMEOUT));
            let session = active.then(|| {
                pg_sys::ffi::pg_guard_ffi_boundary(|| get_timeout_finish_time(STATEMENT_TIMEOUT))
            });
            let ours = pg_sys::GetCurrentTimestamp() + ms as i64 * 1000;
            if session.is_some_and(|at| at <= ours) {
                return none;
            }
            pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_after(STATEMENT_TIMEOUT, ms));
            FetchTimeout {
                armed: true,
                session,
            }
        }
    }
}

impl Drop for FetchTimeout {
    /// Disarms the timeout it armed, putting the session's own back.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // SAFETY: puts back the timer `arm` replaced: the session's own, at the time it would have
        // fired, or none.
        unsafe {
            match self.session {
                Some(at) => {
                    pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_at(STATEMENT_TIMEOUT, at))
                }
                None => {
                    pg_sys::ffi::pg_guard_ffi_boundary(|| disable_timeout(STATEMENT_TIMEOUT, false))
                }
            }
        }
    }
}

impl Drop for Cursor {
    /// Frees the rows still fetched and closes the portal (both would go at the end of the
    /// transaction anyway).
    fn drop(&mut self) {
        self.release();
        // SAFETY: the portal opened in `open`, closed only here; a Cursor is dropped inside the
        // closure that opened it, before any rollback of its (sub)transaction could drop the
        // portal, and PortalDrop accepts a portal a failed fetch marked failed.
        unsafe { pg_sys::SPI_cursor_close(self.portal) };
    }
}

/// Runs a text-only query through a [`Cursor`] and hands each row to `each`, `batch` rows at a
/// time; `each` returns false to stop early. Returns the number of rows handed over.
pub fn scan(
    query: &str,
    batch: i64,
    mut each: impl FnMut(&[Option<&str>]) -> Result<bool>,
) -> Result<u64> {
    Spi::connect(|_client| -> Result<u64> {
        let mut cursor = Cursor::open(query)?;
        let mut seen = 0u64;
        let mut stopped = false;
        loop {
            let taken = cursor.next_rows(batch, |row| {
                stopped = !each(row)?;
                Ok(if stopped { Next::Stop } else { Next::More })
            })?;
            match taken {
                Some(n) => seen += n as u64,
                None => return Ok(seen),
            }
            if stopped {
                return Ok(seen);
            }
        }
    })
}

/// One value of a single-row query whose columns are all text.
pub fn one_row(query: &str) -> Result<Vec<Option<String>>> {
    let mut out = None;
    scan(query, 1, |row| {
        out = Some(row.iter().map(|v| v.map(str::to_owned)).collect());
        Ok(false)
    })?;
    out.ok_or_else(|| Error::internal(format!("no row from {query}")))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn the_scan_reads_every_row_in_batches() {
        Spi::run("CREATE TABLE t_many AS SELECT g AS id, 'row ' || g AS title FROM generate_series(1, 2500) g").unwrap();
        let mut ids = vec![];
        let seen = crate::testing::in_fresh_snapshot(|| {
            crate::pg::cursor::scan(
                "SELECT id::text AS v, title FROM public.t_many ORDER BY t_many.id",
                1000,
                |row| {
                    ids.push(row[0].unwrap().parse::<i32>().unwrap());
                    assert_eq!(row[1].unwrap(), format!("row {}", ids.last().unwrap()));
                    Ok(true)
                },
            )
        })
        .unwrap();
        assert_eq!(seen, 2500);
        assert_eq!(ids, (1..=2500).collect::<Vec<_>>());
    }
}

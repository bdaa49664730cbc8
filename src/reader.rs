//! The snapshot reader: reads a source's rows as the reader role, as text, batch by batch.
//!
//! Every read (validate, preview, csv_template, push) goes through [`as_reader`]: the user id is
//! switched to the registration's reader in a security-restricted context (as ANALYZE does for a
//! table's owner), the transaction is read-only for the duration, and the settings that shape
//! value text are pinned (`DateStyle = ISO`, `TimeZone = UTC`, `extra_float_digits = 1`,
//! `search_path = pg_catalog, pg_temp`, `lock_timeout`, `jit = off`) and restored afterwards.
//! Each fetch of a snapshot cursor is bounded by `qobra_sync.statement_timeout_ms` (unless the
//! session's own statement timeout is already running).

use crate::error::{Error, Result};
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use qobra_sync_core::mapping::Source;
use qobra_sync_core::types::PgType;
use qobra_sync_core::wire::RecordEncoder;
use std::ffi::CString;

/// Runs `f` as `reader` in a security-restricted, read-only context with pinned settings.
pub fn as_reader<R>(reader: pg_sys::Oid, f: impl FnOnce() -> Result<R>) -> Result<R> {
    let settings: [(&str, &str); 6] = [
        ("DateStyle", "ISO, YMD"),
        ("TimeZone", "UTC"),
        ("extra_float_digits", "1"),
        ("search_path", "pg_catalog, pg_temp"),
        ("lock_timeout", "10000"),
        // JIT buys nothing on a plain scan and costs ~60 MB of LLVM per backend.
        ("jit", "off"),
    ];
    unsafe {
        let mut saved_user = pg_sys::Oid::INVALID;
        let mut saved_context: i32 = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        let saved_read_only = pg_sys::XactReadOnly;
        let nest_level = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            let name = CString::new(name).expect("no NUL in setting names");
            let value = CString::new(value).expect("no NUL in setting values");
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        pg_sys::SetUserIdAndSecContext(
            reader,
            saved_context
                | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION)
                    as i32,
        );
        pg_sys::XactReadOnly = true;
        // An ERROR inside `f` aborts the transaction, which restores all three by itself.
        let result = f();
        pg_sys::XactReadOnly = saved_read_only;
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        pg_sys::AtEOXact_GUC(true, nest_level);
        result
    }
}

/// Postgres' own quoting of an identifier.
pub fn quote_ident(name: &str) -> String {
    let c = CString::new(name).expect("identifiers have no NUL");
    unsafe { std::ffi::CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// The SELECT that reads the encoder's fields of `source` as text, with the filter and order.
/// Sampling reads (`limit` given) are ordered by `order_by`, or the first column, to be repeatable.
pub fn snapshot_query(
    source: &Source,
    encoder: &RecordEncoder,
    filter: Option<&str>,
    order_by: Option<&str>,
    limit: Option<i64>,
) -> String {
    let list: Vec<String> = encoder
        .fields
        .iter()
        .map(|f| {
            let column = source
                .column(&f.column)
                .expect("encoder fields come from the source");
            let ident = quote_ident(&f.column);
            // money prints with a currency symbol; its numeric value is what Qobra takes.
            if column.pg_type() == Some(PgType::Money) {
                format!("{ident}::pg_catalog.numeric")
            } else {
                ident
            }
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        if list.is_empty() {
            "NULL".into()
        } else {
            list.join(", ")
        },
        source.name
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({filter})"));
    }
    match order_by {
        Some(column) => sql.push_str(&format!(" ORDER BY {} NULLS FIRST", quote_ident(column))),
        None if limit.is_some() && !list.is_empty() => sql.push_str(" ORDER BY 1"),
        None => {}
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    sql
}

/// A cursor over a snapshot query, read in the statement's snapshot, handing out each value as
/// the text Postgres prints for it.
///
/// It is opened read-only, so Postgres runs it in the current active snapshot: reopening it
/// (a push restarting from the top) sees exactly the same rows. Values are turned into text the
/// way COPY does: text-like values are read in place, others through their type's output
/// function (called directly, no SQL cast). Must be used inside an SPI connection
/// (`Spi::connect`). Each batch's tuples and texts are freed before the next fetch, so memory is
/// bounded by the batch size, not the table.
pub struct Cursor {
    portal: pg_sys::Portal,
    values_cx: PgMemoryContexts,
    texts: Vec<Option<&'static str>>,
    columns: Vec<ColumnText>,
    /// One row's values and NULL flags, deformed in one call.
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
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
        let base = unsafe { pg_sys::getBaseType(typid) };
        if base == pg_sys::TEXTOID || base == pg_sys::VARCHAROID {
            return ColumnText::Varlena;
        }
        if base == pg_sys::BPCHAROID {
            return ColumnText::Padded;
        }
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
        let portal = unsafe {
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
        };
        let columns: Vec<ColumnText> = unsafe {
            let desc = (*portal).tupDesc;
            (0..(*desc).natts as usize)
                .map(|i| ColumnText::for_type((*(*desc).attrs.as_ptr().add(i)).atttypid))
                .collect()
        };
        let n = columns.len();
        Ok(Cursor {
            portal,
            values_cx: PgMemoryContexts::new("qobra_sync batch"),
            texts: Vec::with_capacity(n),
            columns,
            values: vec![pg_sys::Datum::from(0usize); n],
            nulls: vec![false; n],
        })
    }

    /// Fetches up to `batch` rows and hands each to `each` (which returns false to stop).
    /// Returns how many rows were handed over; 0 means the end.
    pub fn next_batch(
        &mut self,
        batch: i64,
        mut each: impl FnMut(&[Option<&str>]) -> Result<bool>,
    ) -> Result<usize> {
        pgrx::check_for_interrupts!();
        unsafe {
            {
                let _timeout = FetchTimeout::arm();
                pg_sys::SPI_cursor_fetch(self.portal, true, batch as std::ffi::c_long);
            }
            let tuptable = pg_sys::SPI_tuptable;
            let n = pg_sys::SPI_processed as usize;
            if tuptable.is_null() || n == 0 {
                return Ok(0);
            }
            let tupdesc = (*tuptable).tupdesc;
            let (texts, columns, values, nulls) = (
                &mut self.texts,
                &mut self.columns,
                &mut self.values,
                &mut self.nulls,
            );
            let result = self.values_cx.switch_to(|_| -> Result<usize> {
                for i in 0..n {
                    let tuple = *(*tuptable).vals.add(i);
                    pg_sys::heap_deform_tuple(
                        tuple,
                        tupdesc,
                        values.as_mut_ptr(),
                        nulls.as_mut_ptr(),
                    );
                    texts.clear();
                    for (col, column) in columns.iter_mut().enumerate() {
                        texts.push(if nulls[col] {
                            None
                        } else {
                            Some(column.text(values[col]))
                        });
                    }
                    if !each(texts)? {
                        texts.clear();
                        return Ok(i + 1);
                    }
                }
                texts.clear();
                Ok(n)
            });
            self.values_cx.reset();
            pg_sys::SPI_freetuptable(tuptable);
            result
        }
    }
}

/// `STATEMENT_TIMEOUT` in PostgreSQL's `TimeoutId` (utils/timeout.h; pgrx does not bind it): 3
/// since 9.3, where the enum's first four members were set and have not moved since.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;

unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
    fn get_timeout_active(id: std::ffi::c_int) -> bool;
}

/// The statement timeout of one cursor fetch (`qobra_sync.statement_timeout_ms`), disarmed when
/// dropped. Not armed when the session's own statement timeout is already running.
struct FetchTimeout(bool);

impl FetchTimeout {
    /// Arms the timeout, if one is set and none is running.
    fn arm() -> FetchTimeout {
        let ms = crate::gucs::STATEMENT_TIMEOUT_MS.get();
        if ms <= 0 {
            return FetchTimeout(false);
        }
        unsafe {
            if pg_sys::ffi::pg_guard_ffi_boundary(|| get_timeout_active(STATEMENT_TIMEOUT)) {
                return FetchTimeout(false);
            }
            pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_after(STATEMENT_TIMEOUT, ms));
        }
        FetchTimeout(true)
    }
}

impl Drop for FetchTimeout {
    /// Disarms the timeout it armed.
    fn drop(&mut self) {
        if self.0 {
            unsafe {
                pg_sys::ffi::pg_guard_ffi_boundary(|| disable_timeout(STATEMENT_TIMEOUT, false))
            };
        }
    }
}

impl Drop for Cursor {
    /// Closes the portal (it would be closed at the end of the transaction anyway).
    fn drop(&mut self) {
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
            let n = cursor.next_batch(batch, |row| {
                let go_on = each(row)?;
                stopped = !go_on;
                Ok(go_on)
            })?;
            seen += n as u64;
            if n == 0 || stopped {
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

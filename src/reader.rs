//! The snapshot reader: reads a source's rows as the reader role, as text, batch by batch.
//!
//! Every read (validate, preview, csv_template, push) goes through [`as_reader`], which runs it
//! in a sandbox that nothing the source's own code does can outlive. PostgreSQL runs a table
//! owner's code the same way in ANALYZE, REINDEX, CLUSTER, REFRESH MATERIALIZED VIEW and CREATE
//! INDEX (autovacuum runs ANALYZE in a process of its own): the owner's user id in a
//! security-restricted operation, and a GUC nest level rolled back afterwards
//! (`AtEOXact_GUC(false, …)`), not kept as a function's SET clause keeps it; since 17 also a
//! restricted `search_path`. We do all of that, and more, since a read here is not a command of
//! its own but part of the caller's session:
//! - the user id is switched to the reader in a security-restricted operation (no PREPARE,
//!   DEALLOCATE, LISTEN, CLOSE, DISCARD, WITH HOLD cursors, temporary tables, SET ROLE), the
//!   transaction read-only;
//! - the read runs in a subtransaction that is always rolled back, so every setting the
//!   source's code changed (even with `set_config(…, false)`, for the session), every cursor and
//!   transaction lock it opened, is undone;
//! - the session's advisory locks, which no rollback undoes, are put back as they were
//!   ([`AdvisoryLocks`]);
//! - a reader PostgreSQL would let read everything (a superuser, BYPASSRLS, the file and program
//!   roles, `pg_read_all_data`) is refused before anything runs ([`reader_problem`]).
//!
//! Every statement the extension runs — its own bookkeeping as well as the reads — is parsed and
//! executed in a GUC nest level of its own with pinned settings ([`pinned`]): at least
//! `search_path = pg_catalog, pg_temp`, so that no operator or function can be re-resolved to
//! another schema's; while reading, also the settings that shape value text (`DateStyle = ISO`,
//! `TimeZone = UTC`, `extra_float_digits = 1`), `lock_timeout` and `jit = off`. Each fetch of a
//! snapshot cursor is bounded by `qobra_sync.statement_timeout_ms` and by what is left of the
//! run's deadline (`qobra_sync.run_timeout_ms`), whichever comes first.

use crate::deadline::Deadline;
use crate::error::{Error, Result, SqlState};
use crate::locks::AdvisoryLocks;
use crate::pinned::{self, pinned};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use qobra_sync_core::error::quoted;
use qobra_sync_core::mapping::Source;
use qobra_sync_core::types::PgType;
use qobra_sync_core::wire::RecordEncoder;
use std::ffi::CString;

/// The roles whose members may not be readers: each reads or runs more than a reader should.
const UNFIT_GROUPS: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
];

/// Runs `f` as `reader` in the sandbox described above; returns what `f` returns. A Postgres
/// error inside `f` is raised again once the sandbox is undone, except a statement timeout at
/// the run's deadline, which becomes the run's own error ([`deadline_error`]).
pub fn as_reader<R>(reader: pg_sys::Oid, f: impl FnOnce() -> Result<R>) -> Result<R> {
    if let Some(why) = reader_problem(reader)? {
        return Err(refused_reader(why));
    }
    let locks = AdvisoryLocks::held();
    let outcome = crate::subxact::rolled_back(|| {
        let _reader = ReaderIdentity::assume(reader);
        pinned(f)
    });
    locks.restore()?;
    match outcome {
        Ok(result) => result,
        Err(caught) if is_cancel(&caught) && Deadline::passed() => Err(deadline_error()),
        Err(caught) => caught.rethrow(),
    }
}

/// The reader's identity for the length of a read: its user id in a security-restricted
/// operation, a read-only transaction. Dropping it restores the caller's.
struct ReaderIdentity {
    user: pg_sys::Oid,
    context: i32,
    read_only: bool,
    /// Whether a read was already in progress (reads do not nest today; this keeps them right
    /// if they ever do).
    was_reading: bool,
}

impl ReaderIdentity {
    /// Becomes `reader`.
    fn assume(reader: pg_sys::Oid) -> ReaderIdentity {
        let mut saved = ReaderIdentity {
            user: pg_sys::Oid::INVALID,
            context: 0,
            read_only: unsafe { pg_sys::XactReadOnly },
            was_reading: false,
        };
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved.user, &mut saved.context);
            pg_sys::SetUserIdAndSecContext(
                reader,
                saved.context
                    | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION)
                        as i32,
            );
            pg_sys::XactReadOnly = true;
        }
        saved.was_reading = pinned::set_reading(true);
        saved
    }
}

impl Drop for ReaderIdentity {
    /// Becomes the caller again.
    fn drop(&mut self) {
        pinned::set_reading(self.was_reading);
        unsafe {
            pg_sys::XactReadOnly = self.read_only;
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}

/// Whether a caught error is a query cancel (a statement timeout among them).
fn is_cancel(caught: &CaughtError) -> bool {
    let report = match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    report.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED
}

/// The error of a run stopped at its deadline.
pub fn deadline_error() -> Error {
    Error::new(
        SqlState::QueryCanceled,
        format!(
            "the run took longer than qobra_sync.run_timeout_ms ({} ms) and was stopped",
            crate::gucs::RUN_TIMEOUT_MS.get()
        ),
    )
    .hint("Raise qobra_sync.run_timeout_ms, or make the source faster to read (an index for its filter, a simpler view).")
}

/// What makes a role unfit to read for qobra_sync, if anything: a superuser, a role that
/// bypasses row-level security, or a member of one of [`UNFIT_GROUPS`].
pub fn reader_problem(role: pg_sys::Oid) -> Result<Option<String>> {
    let groups = UNFIT_GROUPS
        .iter()
        .map(|g| format!("'{g}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let found: Option<pgrx::JsonB> = crate::catalog::first_value(
        &format!(
            "SELECT pg_catalog.jsonb_build_array(r.rolname, r.rolsuper, r.rolbypassrls,
                    (SELECT pg_catalog.string_agg(g, ', ' ORDER BY g) FROM pg_catalog.unnest(ARRAY[{groups}]) AS g
                      WHERE pg_catalog.pg_has_role(r.oid, g::pg_catalog.name, 'MEMBER')))
               FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1"
        ),
        &[role.into()],
    )?;
    let Some(pgrx::JsonB(row)) = found else {
        return Ok(Some(format!("role {} does not exist", role.to_u32())));
    };
    let name = quoted(row[0].as_str().unwrap_or_default());
    Ok(if row[1].as_bool() == Some(true) {
        Some(format!("role {name} is a superuser"))
    } else if row[2].as_bool() == Some(true) {
        Some(format!("role {name} bypasses row-level security"))
    } else {
        row[3]
            .as_str()
            .map(|groups| format!("role {name} is a member of {groups}"))
    })
}

/// The error for reading as an unfit role.
pub fn refused_reader(why: String) -> Error {
    Error::new(SqlState::InsufficientPrivilege, format!("run_as refused: {why}"))
        .hint("Pass run_as => a role that can only read the source (see \"Security model\" in the README).")
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
        // Parsed, planned and started under the pinned settings: what it means is fixed here.
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
            pinned(|| {
                let _timeout = FetchTimeout::arm();
                pg_sys::SPI_cursor_fetch(self.portal, true, batch as std::ffi::c_long);
            });
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
        let setting = crate::gucs::STATEMENT_TIMEOUT_MS.get();
        let setting = (setting > 0).then_some(setting as i64);
        let left = Deadline::remaining().map(|d| (d.as_millis() as i64).max(1));
        let Some(ms) = [setting, left].into_iter().flatten().min() else {
            return none;
        };
        let ms = ms.min(i32::MAX as i64) as std::ffi::c_int;
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

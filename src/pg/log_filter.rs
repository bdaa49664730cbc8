//! Keeps the secrets passed to qobra_sync out of the server log, `pg_stat_activity` and
//! `pg_stat_statements`.
//!
//! `set_destination(api_key, …)` and `reader_from_service_account(service_account)` take a
//! secret as an argument, so the statement that calls them holds it. PostgreSQL logs statement
//! text in several ways: the `STATEMENT:` line of an error (`log_min_error_statement`, even for
//! an error raised before the function runs: a missing privilege, a wrong argument type, an
//! error elsewhere in the statement), the `QUERY:` line of an error inside a DO block or a
//! function, `log_statement`, `log_min_duration_statement`, the parameters of an
//! extended-protocol call in a DETAIL or CONTEXT line. A statement holds a secret when its words
//! (read as PostgreSQL's lexer reads them: a comment or a string names nothing) call one of
//! those functions, itself, in the code of a DO block or a function it defines, or through a
//! prepared statement it `EXECUTE`s; or when one of them ran during its query string (which
//! keeps that query string secret until the next, whatever it deallocated). For an error, a
//! statement that merely names one (a broken call) holds a secret too; for the lines of
//! statements that ran, which an audit trail needs, only a call counts. While such a
//! statement runs, every message on its way to the server log goes through [`filter`]
//! (PostgreSQL's `emit_log_hook`), which:
//! - drops the `STATEMENT:`, `QUERY:` and `CONTEXT:` lines;
//! - for PostgreSQL's own messages: drops the DETAIL line (a note says so), replaces a message
//!   that quotes the statement (log_statement, durations) with a note, and redacts from the
//!   message and hint every string literal of the statement and every long word of it (a key
//!   passed without quotes comes back as an identifier), since messages such as
//!   `invalid input syntax for type integer: "…"` quote them back — to the caller too.
//!
//! The functions themselves ([`passing_secret`]) take a secret only from a statement that calls
//! them itself — not from a DO block, a function or dynamic SQL, whose text would keep it in
//! `pg_proc` or `pg_stat_statements` (which keeps a plain call with its constants replaced) — and
//! replace the statement's text in `pg_stat_activity`.
//!
//! Messages qobra_sync raises itself are written never to hold a secret and are kept whole.
//! The hook is in place in every backend when the library is preloaded; otherwise only from the
//! first call of a qobra_sync function in a session (see the README).

use crate::pg::activity;
use crate::pg::entry;
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::spi::first_value;
use pgrx::pg_sys;
use pgrx::prelude::*;
use qobra_sync_core::names::{function::SET_DESTINATION, setting::API_KEY_FILE};
use qobra_sync_core::secret::{
    calls_secret_function, calls_secret_function_directly, executed_statements,
    mentions_secret_function, redact, secret_words,
};
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, CString};

/// The `funcname` of every error qobra_sync raises (see `error::raise`).
const OUR_FUNCNAME: &str = "qobra_sync";

/// What replaces a message that quotes the statement.
const STATEMENT_NOTE: &str = "statement not logged: it passes a secret to qobra_sync (set_destination or reader_from_service_account)";
/// What `pg_stat_activity` shows instead of a statement that passes a secret.
const ACTIVITY_NOTE: &str = "-- statement hidden: it passes a secret to qobra_sync";
/// What the server log shows instead of the DETAIL line.
const DETAIL_NOTE: &str = "(detail not logged: the statement passes a secret to qobra_sync)";

static mut PREVIOUS: pg_sys::emit_log_hook_type = None;
static mut PREVIOUS_ANALYZE: pg_sys::post_parse_analyze_hook_type = None;

/// Puts the filter in front of PostgreSQL's log output, and the check of hidden statements
/// after parse analysis (from `_PG_init`, once per process).
pub fn install() {
    // SAFETY: _PG_init runs once per process, before any query: the hooks are chained as
    // PostgreSQL expects, each keeping the one installed before it.
    unsafe {
        PREVIOUS = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(filter);
        PREVIOUS_ANALYZE = pg_sys::post_parse_analyze_hook;
        pg_sys::post_parse_analyze_hook = Some(after_analysis);
    }
}

/// The hook: hides what the statement holds, then hands the message to the previous hook.
unsafe extern "C-unwind" fn filter(edata: *mut pg_sys::ErrorData) {
    // Never unwind into PostgreSQL's error machinery: a failure here leaves the message alone.
    // SAFETY: `edata` is the ErrorData PostgreSQL is emitting, valid and ours to edit for this
    // call; the rest reads only this backend's own state (thread-locals, debug_query_string, its
    // prepared statements).
    let _ = std::panic::catch_unwind(|| unsafe {
        if RELOGGING.with(Cell::get) {
            // A line of our own: its message is the statement to log, without the query
            // string PostgreSQL would add (a LOG line gets a STATEMENT: line).
            (*edata).hide_stmt = true;
            return;
        }
        let evidence = match (*edata).elevel >= pgrx::PgLogLevel::ERROR as i32 {
            true => Evidence::Name,
            false => Evidence::Call,
        };
        if let Some(statement) = secret_statement(evidence) {
            hide(&mut *edata, &statement);
        }
    });
    // SAFETY: the previous hook gets the same ErrorData, as hooks are chained; nothing here needs
    // dropping, should it raise an error.
    unsafe {
        if let Some(previous) = PREVIOUS {
            previous(edata);
        }
    }
}

thread_local! {
    /// The query string during which a function whose arguments are secret ran, and when it
    /// started: it stays secret until it ends, whatever it prepared or deallocated meanwhile.
    static RAN_SECRET: RefCell<Option<(String, pg_sys::TimestampTz)>> = const { RefCell::new(None) };
    /// The query string whose `log_statement` line the filter hid, and when it started: its
    /// statements are looked at again once analysed.
    static HIDDEN: RefCell<Option<(String, pg_sys::TimestampTz)>> = const { RefCell::new(None) };
    /// Set while the filter writes a line of its own, which it lets through.
    static RELOGGING: Cell<bool> = const { Cell::new(false) };
}

/// The post-parse-analysis hook: a statement of a query string whose `log_statement` line was
/// hidden is logged after all, unless it really calls one of qobra_sync's functions whose
/// arguments are secret. The line was hidden before PostgreSQL resolved any name (it logs
/// statements before analysing them); now the function the statement calls is known, so a
/// function of someone else's named `set_destination`, and the other statements of the query
/// string, hide nothing from an audit trail.
#[pg_guard]
unsafe extern "C-unwind" fn after_analysis(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
    jstate: *mut pg_sys::JumbleState,
) {
    // SAFETY: the hook's arguments come from PostgreSQL, valid for this call; the previous
    // hook is called with them unchanged.
    unsafe {
        if let Some(previous) = PREVIOUS_ANALYZE {
            previous(pstate, query, jstate);
        }
        if let Some(statement) = hidden_statement(pstate, query) {
            // A utility statement (DO, EXECUTE, CREATE FUNCTION) is not resolved by analysis:
            // what its words name is all there is to go by.
            let holds_secret = match (*query).commandType == pg_sys::CmdType::CMD_UTILITY {
                true => calls_secret_function(&statement) || executes_secret(&statement),
                false => calls_secret_function(&statement) && calls_ours(query),
            };
            if !holds_secret {
                RELOGGING.with(|r| r.set(true));
                pgrx::log!("statement: {statement}");
                RELOGGING.with(|r| r.set(false));
            }
        }
    }
}

/// The text of the statement being analysed, when it belongs to the query string whose
/// `log_statement` line was hidden (a statement qobra_sync's own SQL or a function runs has
/// other text).
unsafe fn hidden_statement(
    pstate: *mut pg_sys::ParseState,
    query: *mut pg_sys::Query,
) -> Option<String> {
    let hidden = HIDDEN.with_borrow(|h| h.clone())?;
    if hidden.1 != query_started() {
        return None;
    }
    // SAFETY: p_sourcetext is the NUL-terminated query string being analysed (or null).
    let source = unsafe { (*pstate).p_sourcetext };
    if source.is_null() {
        return None;
    }
    // SAFETY: `source` is the non-null, NUL-terminated p_sourcetext checked above, alive while the
    // statement is analysed.
    let source = unsafe { CStr::from_ptr(source) }.to_string_lossy();
    if source != hidden.0 {
        return None;
    }
    // SAFETY: query points at the Query being analysed.
    let (at, len) = unsafe { ((*query).stmt_location, (*query).stmt_len) };
    let start = usize::try_from(at).unwrap_or(0).min(source.len());
    let end = match len {
        0 => source.len(),
        n => (start + n as usize).min(source.len()),
    };
    source.get(start..end).map(|s| s.trim().to_owned())
}

/// Whether an analysed statement calls one of qobra_sync's functions whose arguments are
/// secret (by OID, as PostgreSQL resolved the names).
unsafe fn calls_ours(query: *mut pg_sys::Query) -> bool {
    let ours: Vec<pg_sys::Oid> = secret_signatures()
        .iter()
        .filter_map(|signature| {
            // SAFETY: to_regprocedure takes one text argument and returns NULL when the
            // function does not exist.
            unsafe {
                pgrx::direct_function_call::<pg_sys::Oid>(
                    pg_sys::to_regprocedure,
                    &[signature.into_datum()],
                )
            }
        })
        .collect();
    // SAFETY: nodeToString reads the tree and returns a palloc'd string.
    let tree = unsafe { CStr::from_ptr(pg_sys::nodeToString(query.cast())) }.to_string_lossy();
    ours.iter()
        .any(|oid| tree.contains(&format!(":funcid {} ", oid.to_u32())))
}

/// The SQL functions whose arguments are secret, by signature.
fn secret_signatures() -> [String; 2] {
    [
        format!("{SET_DESTINATION}(text,text,text)"),
        "qobra_sync.reader_from_service_account(jsonb)".to_owned(),
    ]
}

/// When the query string being run started (the same for all its statements, a new time for
/// the next one even if its text is the same).
fn query_started() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend global, set as each query string (or protocol message) begins.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

/// The query string being run, if any.
fn query_string() -> Option<String> {
    // SAFETY: debug_query_string is null or points at the NUL-terminated text of the query
    // string this backend runs, alive while it runs.
    let query = unsafe { pg_sys::debug_query_string };
    (!query.is_null()).then(|| {
        // SAFETY: `query` is the non-null debug_query_string read above, copied at once.
        unsafe { CStr::from_ptr(query) }
            .to_string_lossy()
            .into_owned()
    })
}

/// How much of a statement must point at a secret function for it to be kept out of a line.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Evidence {
    /// A call of it (its name and `(`): for the lines of statements that ran (log_statement,
    /// durations), which an audit trail must have whenever they hold no secret.
    Call,
    /// Its name anywhere: for errors, raised also by a statement whose call is broken.
    Name,
}

/// The statement being run, when it holds a secret: it calls (or, with `Evidence::Name`,
/// names) a function whose arguments are secret, itself or in the code of a DO block or
/// function it holds, or through a prepared statement it runs (`EXECUTE p('…')`), or such a
/// function ran during it.
fn secret_statement(evidence: Evidence) -> Option<String> {
    let text = query_string()?;
    let in_text = match evidence {
        Evidence::Call => calls_secret_function(&text),
        Evidence::Name => mentions_secret_function(&text),
    };
    let secret = in_text
        || executes_secret(&text)
        || RAN_SECRET.with_borrow(|ran| {
            ran.as_ref()
                .is_some_and(|(ran, at)| *ran == text && *at == query_started())
        });
    secret.then_some(text)
}

/// Whether the session holds a secret where a source's code could read it while it is read:
/// the query string being run passes one (`current_query()` shows it), or a statement the
/// session prepared names a function that takes one (`pg_prepared_statements` shows it).
pub fn session_holds_secret() -> Result<bool> {
    if secret_statement(Evidence::Name).is_some() {
        return Ok(true);
    }
    let prepared: Option<Vec<String>> = first_value(
        "SELECT pg_catalog.array_agg(statement) FROM pg_catalog.pg_prepared_statements",
        &[],
    )?;
    Ok(prepared
        .unwrap_or_default()
        .iter()
        .any(|sql| calls_secret_function(sql)))
}

/// Called by a function whose arguments are secret (`what`, for messages), before it uses
/// them: keeps the query string out of the server log until it ends, and replaces it in
/// `pg_stat_activity`, where monitoring roles read it; then refuses a call that does not come
/// straight from the statement the session runs (from a DO block, a function's body, dynamic
/// SQL: their text keeps the secret where no filter reaches, in `pg_proc` or
/// `pg_stat_statements`).
pub fn passing_secret(what: &str) -> Result<()> {
    let text = query_string().unwrap_or_default();
    let direct = calls_secret_function_directly(&text)
        || executed_statements(&text).iter().any(|name| {
            prepared_from(name).is_some_and(|sql| calls_secret_function_directly(&sql))
        });
    RAN_SECRET.with_borrow_mut(|ran| *ran = Some((text, query_started())));
    activity::running(ACTIVITY_NOTE);
    // A call from a source's code, while qobra_sync reads it, is refused as such first.
    entry::check(what)?;
    if !direct {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("qobra_sync.{what} takes its secret only from a statement that calls it itself"),
        )
        .detail("Called from a DO block, a function or dynamic SQL, the secret would stay in their text: in pg_proc, pg_stat_statements or the server log.")
        .hint(format!("Call it directly, as SELECT {SET_DESTINATION}(…) does; or keep the API key in the file {API_KEY_FILE} names.")));
    }
    Ok(())
}

/// Whether SQL text runs (`EXECUTE name`) a statement the session prepared that calls a
/// function whose arguments are secret.
fn executes_secret(text: &str) -> bool {
    executed_statements(text)
        .iter()
        .any(|name| prepared_from(name).is_some_and(|sql| calls_secret_function(&sql)))
}

/// The text the session's prepared statement `name` was prepared from, if there is one (a
/// lookup in the session's own table: no catalog, no allocation in PostgreSQL).
fn prepared_from(name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    // SAFETY: with throwError false, FetchPreparedStatement only looks `name` up in this session's
    // own table and returns null when it is absent; the plansource and its query string, checked
    // for null, belong to that prepared statement and are copied at once.
    unsafe {
        let prepared = pg_sys::FetchPreparedStatement(name.as_ptr(), false);
        if prepared.is_null() || (*prepared).plansource.is_null() {
            return None;
        }
        let source = (*(*prepared).plansource).query_string;
        (!source.is_null()).then(|| CStr::from_ptr(source).to_string_lossy().into_owned())
    }
}

/// Hides from the server log what `edata` may carry of `statement`.
unsafe fn hide(edata: &mut pg_sys::ErrorData, statement: &str) {
    // SAFETY: the caller passes the ErrorData being emitted (see `filter`); its strings are
    // NUL-terminated or null (checked), and replacements are allocated in its own assoc_context, as
    // PostgreSQL's own edits of a message are.
    unsafe {
        edata.hide_stmt = true;
        edata.hide_ctx = true;
        // The statement of a DO block or function that raised the error (the QUERY: line).
        edata.internalquery = std::ptr::null_mut();
        edata.internalpos = 0;
        let ours = !edata.funcname.is_null()
            && CStr::from_ptr(edata.funcname).to_bytes() == OUR_FUNCNAME.as_bytes();
        if ours {
            return;
        }
        if !edata.detail.is_null() || !edata.detail_log.is_null() {
            edata.detail_log = copy(edata.assoc_context, DETAIL_NOTE);
        }
        let secrets = secret_words(statement);
        let context = edata.assoc_context;
        for field in [&mut edata.message, &mut edata.hint] {
            if field.is_null() {
                continue;
            }
            let text = CStr::from_ptr(*field).to_string_lossy().into_owned();
            let replaced = if text.contains(statement.trim()) {
                if edata.elevel < pgrx::PgLogLevel::ERROR as i32 {
                    // A statement line (log_statement): looked at again once analysed.
                    HIDDEN.with_borrow_mut(|h| *h = Some((statement.to_owned(), query_started())));
                }
                STATEMENT_NOTE.to_owned()
            } else {
                redact(&text, &secrets)
            };
            if replaced != text {
                *field = copy(context, &replaced);
            }
        }
    }
}

/// A copy of `text` in `context` (the error's own memory context).
unsafe fn copy(context: pg_sys::MemoryContext, text: &str) -> *mut std::ffi::c_char {
    let c = CString::new(text.replace('\0', "")).unwrap_or_default();
    // SAFETY: `context` is the error's memory context, alive while the message is emitted; `c` is
    // NUL-terminated and outlives the call, which copies it.
    unsafe { pg_sys::MemoryContextStrdup(context, c.as_ptr()) }
}

//! Keeps the secrets passed to qobra_sync out of the server log.
//!
//! `set_destination(api_key, …)` and `reader_from_service_account(service_account)` take a
//! secret as an argument, so the statement that calls them holds it. PostgreSQL logs statement
//! text in several ways: the `STATEMENT:` line of an error (`log_min_error_statement`, even for
//! an error raised before the function runs: a missing privilege, a wrong argument type, an
//! error elsewhere in the statement), `log_statement`, `log_min_duration_statement`, the
//! parameters of an extended-protocol call in a DETAIL or CONTEXT line. While the statement being
//! run calls one of those functions (itself, or through a prepared statement it `EXECUTE`s), every message on its way to the server log goes through
//! [`filter`] (PostgreSQL's `emit_log_hook`), which:
//! - drops the `STATEMENT:` and `CONTEXT:` lines;
//! - for PostgreSQL's own messages: drops the DETAIL line (a note says so), replaces a message
//!   that quotes the statement (log_statement, durations) with a note, and redacts from the
//!   message and hint every string literal of the statement and every long word of it (a key
//!   passed without quotes comes back as an identifier), since messages such as
//!   `invalid input syntax for type integer: "…"` quote them back — to the caller too.
//!
//! Messages qobra_sync raises itself are written never to hold a secret and are kept whole.
//! The hook is in place in every backend when the library is preloaded; otherwise only from the
//! first call of a qobra_sync function in a session (see the README).

use pgrx::pg_sys;
use qobra_sync_core::secret::{calls_secret_function, executed_statements, redact, secret_words};
use std::ffi::{CStr, CString};

/// The `funcname` of every error qobra_sync raises (see `error::raise`).
const OUR_FUNCNAME: &str = "qobra_sync";

/// What replaces a message that quotes the statement.
const STATEMENT_NOTE: &str = "statement not logged: it passes a secret to qobra_sync (set_destination or reader_from_service_account)";
/// What the server log shows instead of the DETAIL line.
const DETAIL_NOTE: &str = "(detail not logged: the statement passes a secret to qobra_sync)";

static mut PREVIOUS: pg_sys::emit_log_hook_type = None;

/// Puts the filter in front of PostgreSQL's log output (from `_PG_init`, once per process).
pub fn install() {
    unsafe {
        PREVIOUS = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(filter);
    }
}

/// The hook: hides what the statement holds, then hands the message to the previous hook.
unsafe extern "C-unwind" fn filter(edata: *mut pg_sys::ErrorData) {
    // Never unwind into PostgreSQL's error machinery: a failure here leaves the message alone.
    let _ = std::panic::catch_unwind(|| unsafe {
        if let Some(statement) = secret_statement() {
            hide(&mut *edata, &statement);
        }
    });
    unsafe {
        if let Some(previous) = PREVIOUS {
            previous(edata);
        }
    }
}

/// The statement being run, when it calls a function whose arguments are secret, itself or
/// through a prepared statement it runs (`EXECUTE p('…')`).
fn secret_statement() -> Option<String> {
    let query = unsafe { pg_sys::debug_query_string };
    if query.is_null() {
        return None;
    }
    let text = unsafe { CStr::from_ptr(query) }.to_string_lossy();
    let secret = calls_secret_function(&text)
        || executed_statements(&text)
            .iter()
            .any(|name| prepared_from(name).is_some_and(|sql| calls_secret_function(&sql)));
    secret.then(|| text.into_owned())
}

/// The text the session's prepared statement `name` was prepared from, if there is one (a
/// lookup in the session's own table: no catalog, no allocation in PostgreSQL).
fn prepared_from(name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
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
    unsafe {
        edata.hide_stmt = true;
        edata.hide_ctx = true;
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
    unsafe { pg_sys::MemoryContextStrdup(context, c.as_ptr()) }
}

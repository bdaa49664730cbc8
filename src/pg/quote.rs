//! Postgres' own quoting of identifiers and literals, for the SQL the extension builds.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// Postgres' own quoting of an identifier.
pub fn quote_ident(name: &str) -> String {
    let c = CString::new(name).expect("identifiers have no NUL");
    // SAFETY: `c` is NUL-terminated and alive until the end of the function; quote_identifier
    // returns either that same string (when no quoting is needed) or a palloc'd copy in the current
    // memory context, both read here before either goes away.
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// Postgres' own quoting of a string literal.
pub fn literal(value: &str) -> String {
    let c = CString::new(value).expect("no NUL in SQL text");
    // SAFETY: `c` is NUL-terminated and outlives the call; quote_literal_cstr returns a palloc'd,
    // NUL-terminated string in the current memory context, copied at once.
    unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(c.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

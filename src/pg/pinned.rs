//! Pinned settings: what every statement of the extension is parsed and executed under.
//!
//! Each statement runs in a GUC nest level of its own, with settings set there and rolled back
//! afterwards ([`pinned`]): at least `search_path = pg_catalog, pg_temp`, so that no name in the
//! extension's SQL — and none in a stored filter — can be resolved to another schema's object
//! whatever the session (or the code of a source that was just read) did to its own
//! `search_path`; while a read as the reader is in progress, also the settings that shape value
//! text and bound what a read may cost.

use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CString;

/// The settings every statement of the extension runs under.
const OWN_SETTINGS: &[(&str, &str)] = &[("search_path", "pg_catalog, pg_temp")];

/// The settings every statement of a read runs under: the value text the encoder expects, and
/// bounds on what a read may cost.
const READ_SETTINGS: &[(&str, &str)] = &[
    ("search_path", "pg_catalog, pg_temp"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
    ("lock_timeout", "10000"),
    // JIT buys nothing on a plain scan and costs ~60 MB of LLVM per backend.
    ("jit", "off"),
];

thread_local! {
    /// Whether a read as the reader is in progress in this backend.
    static READING: Cell<bool> = const { Cell::new(false) };
}

/// Says that a read as the reader begins (true) or ends (false): statements in between run
/// under [`READ_SETTINGS`]. Returns what was said before, to be said again at the end.
pub fn set_reading(reading: bool) -> bool {
    READING.with(|r| r.replace(reading))
}

/// Whether a read as the reader is in progress in this backend.
pub fn reading() -> bool {
    READING.with(Cell::get)
}

/// Runs `f` in a GUC nest level of its own with the pinned settings ([`READ_SETTINGS`] while
/// reading, [`OWN_SETTINGS`] otherwise), and rolls every setting changed in it back afterwards.
/// On a Postgres error the enclosing (sub)transaction's abort rolls the level back.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    let settings = if reading() {
        READ_SETTINGS
    } else {
        OWN_SETTINGS
    };
    // SAFETY: opens a GUC nest level, inside a transaction; it is closed by `AtEOXact_GUC` below,
    // or, when `f` raises an error, by the abort of the enclosing (sub)transaction.
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    for (name, value) in settings {
        let name = CString::new(*name).expect("no NUL in setting names");
        let value = CString::new(*value).expect("no NUL in setting values");
        // SAFETY: `name` and `value` are NUL-terminated and outlive the call; GUC_ACTION_SAVE ties
        // the change to the nest level opened above, so it is undone when that level closes, and an
        // elevel of 0 makes a refused value an error rather than a silent no-op.
        unsafe {
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
    }
    let result = f();
    // SAFETY: closes the level opened above, rolling back what was set in it; any level `f` opened
    // inside it has been closed already.
    unsafe { pg_sys::AtEOXact_GUC(false, level) };
    result
}

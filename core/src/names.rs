//! The names users read in messages — settings, SQL functions and relations — each spelled once,
//! here. A message writes one with `{}` (it displays qualified: `qobra_sync.api_key_file`); the
//! settings are registered under the same constant. `tests/lint/names.py` refuses the names as
//! string literals anywhere else, and the extension's tests check that each one exists.

use std::ffi::CStr;
use std::fmt;

/// The schema every name below lives in.
pub const SCHEMA: &str = "qobra_sync";

/// A setting of the extension, as `postgresql.conf` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting(&'static CStr);

impl Setting {
    /// The name as a C string, for registering the setting with PostgreSQL.
    pub const fn c_name(self) -> &'static CStr {
        self.0
    }

    /// The name: `qobra_sync.api_key_file`.
    pub fn name(self) -> &'static str {
        // Every name below is ASCII, so the conversion cannot fail.
        self.0.to_str().unwrap_or_default()
    }
}

impl fmt::Display for Setting {
    /// The qualified name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SQL function or relation of the extension, displayed qualified: `qobra_sync.runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object(&'static str);

impl Object {
    /// The name without its schema: `runs`.
    pub fn bare(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Object {
    /// The qualified name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEMA}.{}", self.0)
    }
}

/// Declares each constant of a list, and `ALL`, every one of them, from one list: the checks
/// that each name exists cannot miss one.
macro_rules! listed {
    ($ty:ty: $($id:ident = $value:expr,)*) => {
        $(pub const $id: $ty = $value;)*

        /// Every name of this list, for the checks that each exists.
        pub const ALL: [$ty; [$(stringify!($id),)*].len()] = [$($id,)*];
    };
}

/// The settings (`qobra_sync.*`), in the order of the README's table.
pub mod setting {
    use super::Setting;

    listed! { Setting:
        DATABASE_NAME = Setting(c"qobra_sync.database_name"),
        ENABLED = Setting(c"qobra_sync.enabled"),
        BATCH_ROWS = Setting(c"qobra_sync.batch_rows"),
        BATCH_BYTES = Setting(c"qobra_sync.batch_bytes"),
        MAX_IN_FLIGHT = Setting(c"qobra_sync.max_in_flight"),
        MAX_PUSHES = Setting(c"qobra_sync.max_pushes"),
        DEBOUNCE_SECONDS = Setting(c"qobra_sync.debounce_seconds"),
        HTTP_TIMEOUT_MS = Setting(c"qobra_sync.http_timeout_ms"),
        MAX_RETRIES = Setting(c"qobra_sync.max_retries"),
        RETRY_WAIT_MAX_MS = Setting(c"qobra_sync.retry_wait_max_ms"),
        RUN_TIMEOUT_MS = Setting(c"qobra_sync.run_timeout_ms"),
        STATEMENT_TIMEOUT_MS = Setting(c"qobra_sync.statement_timeout_ms"),
        DELETION_GUARD = Setting(c"qobra_sync.deletion_guard"),
        SKIP_UNCHANGED = Setting(c"qobra_sync.skip_unchanged"),
        HISTORY_DAYS = Setting(c"qobra_sync.history_days"),
        API_KEY_FILE = Setting(c"qobra_sync.api_key_file"),
        CA_FILE = Setting(c"qobra_sync.ca_file"),
        HTTPS_PROXY = Setting(c"qobra_sync.https_proxy"),
        HTTPS_PROXY_AUTH_FILE = Setting(c"qobra_sync.https_proxy_auth_file"),
        TIMEZONE = Setting(c"qobra_sync.timezone"),
    }
}

/// The SQL functions messages point users to.
pub mod function {
    use super::Object;

    listed! { Object:
        SET_DESTINATION = Object("set_destination"),
        CHECK_DESTINATION = Object("check_destination"),
        REGISTER_TABLE = Object("register_table"),
        ALTER_TABLE = Object("alter_table"),
        UNREGISTER_TABLE = Object("unregister_table"),
        ACCEPT_SHAPE = Object("accept_shape"),
        PREVIEW = Object("preview"),
        CSV_TEMPLATE = Object("csv_template"),
        SYNC_NOW = Object("sync_now"),
    }
}

/// The tables and views messages point users to.
pub mod relation {
    use super::Object;

    listed! { Object:
        RUNS = Object("runs"),
        RUN_ERRORS = Object("run_errors"),
        TABLES = Object("tables"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_in_the_schema_and_display_as_named() {
        for s in setting::ALL {
            assert!(s.name().starts_with("qobra_sync."), "{s}");
            assert_eq!(s.to_string(), s.name());
            assert!(s.name().is_ascii() && !s.name().contains(char::is_uppercase));
        }
        assert_eq!(setting::API_KEY_FILE.to_string(), "qobra_sync.api_key_file");
    }

    #[test]
    fn objects_display_qualified() {
        assert_eq!(
            function::SET_DESTINATION.to_string(),
            "qobra_sync.set_destination"
        );
        assert_eq!(relation::RUNS.to_string(), "qobra_sync.runs");
        assert_eq!(function::SYNC_NOW.bare(), "sync_now");
    }
}

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

/// The settings (`qobra_sync.*`), in the order of the README's table.
pub mod setting {
    use super::Setting;

    pub const DATABASE_NAME: Setting = Setting(c"qobra_sync.database_name");
    pub const ENABLED: Setting = Setting(c"qobra_sync.enabled");
    pub const BATCH_ROWS: Setting = Setting(c"qobra_sync.batch_rows");
    pub const BATCH_BYTES: Setting = Setting(c"qobra_sync.batch_bytes");
    pub const MAX_IN_FLIGHT: Setting = Setting(c"qobra_sync.max_in_flight");
    pub const MAX_PUSHES: Setting = Setting(c"qobra_sync.max_pushes");
    pub const DEBOUNCE_SECONDS: Setting = Setting(c"qobra_sync.debounce_seconds");
    pub const HTTP_TIMEOUT_MS: Setting = Setting(c"qobra_sync.http_timeout_ms");
    pub const MAX_RETRIES: Setting = Setting(c"qobra_sync.max_retries");
    pub const RETRY_WAIT_MAX_MS: Setting = Setting(c"qobra_sync.retry_wait_max_ms");
    pub const RUN_TIMEOUT_MS: Setting = Setting(c"qobra_sync.run_timeout_ms");
    pub const STATEMENT_TIMEOUT_MS: Setting = Setting(c"qobra_sync.statement_timeout_ms");
    pub const DELETION_GUARD: Setting = Setting(c"qobra_sync.deletion_guard");
    pub const SKIP_UNCHANGED: Setting = Setting(c"qobra_sync.skip_unchanged");
    pub const HISTORY_DAYS: Setting = Setting(c"qobra_sync.history_days");
    pub const API_KEY_FILE: Setting = Setting(c"qobra_sync.api_key_file");
    pub const CA_FILE: Setting = Setting(c"qobra_sync.ca_file");
    pub const HTTPS_PROXY: Setting = Setting(c"qobra_sync.https_proxy");
    pub const HTTPS_PROXY_AUTH_FILE: Setting = Setting(c"qobra_sync.https_proxy_auth_file");
    pub const TIMEZONE: Setting = Setting(c"qobra_sync.timezone");

    /// Every setting, for the checks that each is registered.
    pub const ALL: [Setting; 20] = [
        DATABASE_NAME,
        ENABLED,
        BATCH_ROWS,
        BATCH_BYTES,
        MAX_IN_FLIGHT,
        MAX_PUSHES,
        DEBOUNCE_SECONDS,
        HTTP_TIMEOUT_MS,
        MAX_RETRIES,
        RETRY_WAIT_MAX_MS,
        RUN_TIMEOUT_MS,
        STATEMENT_TIMEOUT_MS,
        DELETION_GUARD,
        SKIP_UNCHANGED,
        HISTORY_DAYS,
        API_KEY_FILE,
        CA_FILE,
        HTTPS_PROXY,
        HTTPS_PROXY_AUTH_FILE,
        TIMEZONE,
    ];
}

/// The SQL functions messages point users to.
pub mod function {
    use super::Object;

    pub const SET_DESTINATION: Object = Object("set_destination");
    pub const CHECK_DESTINATION: Object = Object("check_destination");
    pub const REGISTER_TABLE: Object = Object("register_table");
    pub const ALTER_TABLE: Object = Object("alter_table");
    pub const UNREGISTER_TABLE: Object = Object("unregister_table");
    pub const ACCEPT_SHAPE: Object = Object("accept_shape");
    pub const PREVIEW: Object = Object("preview");
    pub const CSV_TEMPLATE: Object = Object("csv_template");
    pub const SYNC_NOW: Object = Object("sync_now");

    /// Every function above, for the check that each exists.
    pub const ALL: [Object; 9] = [
        SET_DESTINATION,
        CHECK_DESTINATION,
        REGISTER_TABLE,
        ALTER_TABLE,
        UNREGISTER_TABLE,
        ACCEPT_SHAPE,
        PREVIEW,
        CSV_TEMPLATE,
        SYNC_NOW,
    ];
}

/// The tables and views messages point users to.
pub mod relation {
    use super::Object;

    pub const RUNS: Object = Object("runs");
    pub const RUN_ERRORS: Object = Object("run_errors");
    pub const TABLES: Object = Object("tables");

    /// Every relation above, for the check that each exists.
    pub const ALL: [Object; 3] = [RUNS, RUN_ERRORS, TABLES];
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

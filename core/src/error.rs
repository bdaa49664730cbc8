//! The one error type of qobra_sync.
//!
//! Every failure the product reports to a user is an [`Error`]: a message that names the offending
//! value, an optional detail, a hint with the fix, and a [`SqlState`] class. The extension turns it
//! into a Postgres error in exactly one place (`src/error.rs` of the extension crate).

/// The SQLSTATE classes qobra_sync raises; the extension maps each to Postgres' own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlState {
    /// 22023 invalid_parameter_value: an argument that is wrong in itself.
    InvalidParameterValue,
    /// 22004 null_value_not_allowed: a required argument is NULL.
    NullValueNotAllowed,
    /// 42703 undefined_column: a named column does not exist.
    UndefinedColumn,
    /// 42704 undefined_object: a role, registration or other object does not exist.
    UndefinedObject,
    /// 42P01 undefined_table: the source relation is gone.
    UndefinedTable,
    /// 42710 duplicate_object: something is already registered or used twice.
    DuplicateObject,
    /// 42809 wrong_object_type: a relation kind that cannot be a source.
    WrongObjectType,
    /// 42804 datatype_mismatch: a column whose type cannot play the role asked of it.
    DatatypeMismatch,
    /// 42501 insufficient_privilege: the caller or reader may not do this.
    InsufficientPrivilege,
    /// 42601 syntax_error: a filter or schedule that does not parse.
    SyntaxError,
    /// 0A000 feature_not_supported: a construct we refuse on purpose.
    FeatureNotSupported,
    /// 55000 object_not_in_prerequisite_state: something must be set up first.
    ObjectNotInPrerequisiteState,
    /// 53400 configuration_limit_exceeded: a limit a setting sets was reached.
    ConfigurationLimitExceeded,
    /// 55P03 lock_not_available: a push of the same source is already running.
    LockNotAvailable,
    /// 22P02 invalid_text_representation: a value that does not parse.
    InvalidTextRepresentation,
    /// 58000 system_error: talking to the destination failed.
    ExternalFailure,
    /// 57014 query_canceled: a run stopped at its deadline.
    QueryCanceled,
    /// 25006 read_only_sql_transaction: a change asked of a hot standby.
    ReadOnlySqlTransaction,
    /// F0000 config_file_error: a file a setting names cannot be used.
    ConfigFileError,
    /// XX000 internal_error: a bug of ours.
    Internal,
    /// An error PostgreSQL raised while the source was read (a missing privilege, a view that
    /// divides by zero…), with its SQLSTATE as PostgreSQL encodes it.
    Postgres(i32),
}

impl SqlState {
    /// The five characters of a SQLSTATE as PostgreSQL packs them in an int (`MAKE_SQLSTATE`):
    /// six bits a character, from `'0'`.
    pub fn unpack(code: i32) -> String {
        (0..5)
            .map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char)
            .collect()
    }
}

/// A user-facing failure: message, optional detail and hint, and its SQLSTATE class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub state: SqlState,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Error {
    /// An error of the given class with its primary message.
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error {
            state,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds the DETAIL line.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the HINT line: what the user should do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A required argument was NULL.
    pub fn null_argument(argument: &str) -> Self {
        Error::new(
            SqlState::NullValueNotAllowed,
            format!("argument \"{argument}\" must not be NULL"),
        )
    }

    /// A bug: something that should not happen whatever the input.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(SqlState::Internal, message)
    }

    /// The error as one line, for `runs.error`: the message, then the detail in parentheses,
    /// then the hint; an error PostgreSQL raised ends with its SQLSTATE.
    pub fn one_line(&self) -> String {
        let mut text = self.message.clone();
        if let SqlState::Postgres(code) = self.state {
            text.push_str(&format!(" [SQLSTATE {}]", SqlState::unpack(code)));
        }
        if let Some(d) = &self.detail {
            text.push_str(&format!(" ({d})"));
        }
        if let Some(h) = &self.hint {
            text.push_str(&format!(" Hint: {h}"));
        }
        text
    }
}

/// The result type of every fallible core function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Quotes a user-supplied value for a message the way Postgres does: in double quotes.
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_unpack_as_postgres_packs_them() {
        // MAKE_SQLSTATE('4','2','5','0','1') and ('2','2','0','1','2')
        let pack = |s: &str| {
            s.bytes()
                .enumerate()
                .map(|(i, b)| ((b - b'0') as i32) << (6 * i))
                .sum::<i32>()
        };
        for code in ["42501", "22012", "57014", "XX000"] {
            assert_eq!(SqlState::unpack(pack(code)), code);
        }
        let e = Error::new(SqlState::Postgres(pack("22012")), "division by zero");
        assert_eq!(e.one_line(), "division by zero [SQLSTATE 22012]");
    }
}

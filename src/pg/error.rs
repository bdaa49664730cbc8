//! The one conversion of a qobra_sync [`Error`] into a Postgres error.
//!
//! Every `#[pg_extern]` returns `Result<_, Error>` internally and calls [`raise`] on failure,
//! so the user always gets SQLSTATE + message + DETAIL + HINT, the way Postgres reports its own.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
pub use qobra_sync_core::{Error, Result, SqlState};

/// The Postgres error code of each class.
fn code(state: SqlState) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match state {
        SqlState::InvalidParameterValue => ERRCODE_INVALID_PARAMETER_VALUE,
        SqlState::NullValueNotAllowed => ERRCODE_NULL_VALUE_NOT_ALLOWED,
        SqlState::UndefinedColumn => ERRCODE_UNDEFINED_COLUMN,
        SqlState::UndefinedObject => ERRCODE_UNDEFINED_OBJECT,
        SqlState::UndefinedTable => ERRCODE_UNDEFINED_TABLE,
        SqlState::DuplicateObject => ERRCODE_DUPLICATE_OBJECT,
        SqlState::WrongObjectType => ERRCODE_WRONG_OBJECT_TYPE,
        SqlState::DatatypeMismatch => ERRCODE_DATATYPE_MISMATCH,
        SqlState::InsufficientPrivilege => ERRCODE_INSUFFICIENT_PRIVILEGE,
        SqlState::SyntaxError => ERRCODE_SYNTAX_ERROR,
        SqlState::FeatureNotSupported => ERRCODE_FEATURE_NOT_SUPPORTED,
        SqlState::ObjectNotInPrerequisiteState => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        SqlState::LockNotAvailable => ERRCODE_LOCK_NOT_AVAILABLE,
        SqlState::ConfigurationLimitExceeded => ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        SqlState::InvalidTextRepresentation => ERRCODE_INVALID_TEXT_REPRESENTATION,
        SqlState::ExternalFailure => ERRCODE_SYSTEM_ERROR,
        SqlState::QueryCanceled => ERRCODE_QUERY_CANCELED,
        SqlState::ReadOnlySqlTransaction => ERRCODE_READ_ONLY_SQL_TRANSACTION,
        SqlState::ConfigFileError => ERRCODE_CONFIG_FILE_ERROR,
        SqlState::Internal => ERRCODE_INTERNAL_ERROR,
        SqlState::Postgres(code) => PgSqlErrorCode::from(code),
    }
}

/// Raises `error` as a Postgres ERROR; never returns.
pub fn raise(error: Error) -> ! {
    let mut report = ErrorReport::new(code(error.state), error.message, "qobra_sync");
    if let Some(detail) = error.detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = error.hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a result at the SQL boundary, raising the error if there is one.
pub trait OrRaise<T> {
    /// The value, or the error raised as a Postgres ERROR.
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// An error PostgreSQL raised (and a subtransaction caught) as our error type, with its
/// SQLSTATE, message, detail and hint.
pub fn from_caught(caught: &pgrx::pg_sys::panic::CaughtError) -> Error {
    use pgrx::pg_sys::panic::CaughtError;
    let report = match caught {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    Error {
        state: SqlState::Postgres(report.sql_error_code() as i32),
        message: report.message().to_owned(),
        detail: report.detail().map(str::to_owned),
        hint: report.hint().map(str::to_owned),
    }
}

/// Turns an SPI failure into our error type (a bug of ours, or a concurrent catalog change).
pub fn spi(e: pgrx::spi::Error) -> Error {
    Error::internal(format!("SPI error: {e}"))
}

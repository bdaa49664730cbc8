//! PostgreSQL's clock: its timestamps count microseconds from 2000-01-01, Unix time from 1970.

use crate::pg::error::{Error, Result, SqlState};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 00:00 UTC).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The transaction's start time, as Postgres' `now()` sees it.
pub fn transaction_start() -> chrono::DateTime<chrono::Utc> {
    // SAFETY: a plain read of a timestamp the backend keeps for its current transaction.
    let micros = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    chrono::DateTime::from_timestamp_micros(micros + POSTGRES_EPOCH_UNIX_MICROS).unwrap_or_default()
}

/// A `timestamptz` from microseconds since the Unix epoch (the epoch itself if out of range).
pub fn timestamptz_from_unix_micros(micros: i64) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(micros - POSTGRES_EPOCH_UNIX_MICROS).unwrap_or_else(|_| {
        TimestampWithTimeZone::try_from(0i64).expect("the epoch is a timestamp")
    })
}

/// A finite `timestamptz` as a UTC time (`infinity` and `-infinity` are refused).
pub fn to_utc(ts: TimestampWithTimeZone) -> Result<chrono::DateTime<chrono::Utc>> {
    let micros = pg_sys::TimestampTz::from(ts);
    micros
        .checked_add(POSTGRES_EPOCH_UNIX_MICROS)
        .filter(|_| micros != i64::MAX && micros != i64::MIN)
        .and_then(chrono::DateTime::from_timestamp_micros)
        .ok_or_else(|| Error::new(SqlState::InvalidParameterValue, "the time must be finite"))
}

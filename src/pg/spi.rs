//! SPI, the one way the extension runs its own SQL: every statement under the pinned settings.

use crate::pg::error::{spi, Result};
use crate::pg::pinned::pinned;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The first column of the first row of a read-only query, or None when there is no row. Runs
/// under the pinned settings, like every statement of the extension.
pub fn first_value<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>> {
    pinned(|| {
        Spi::connect(|client| {
            let table = client.select(sql, Some(1), args)?;
            if table.is_empty() {
                Ok(None)
            } else {
                table.first().get::<T>(1)
            }
        })
    })
    .map_err(spi)
}

/// Runs one statement that returns nothing useful (an INSERT, UPDATE or DELETE of our own tables).
pub fn execute(sql: &str, args: &[DatumWithOid<'_>]) -> Result<()> {
    writing(|client| client.update(sql, None, args).map(|_| ()))
}

/// The first column of the first row a writing statement returns (`… RETURNING x`), or None
/// when it returns no row.
pub fn first_written<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> Result<Option<T>> {
    writing(|client| {
        let table = client.update(sql, None, args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get::<T>(1)
        }
    })
}

/// Runs `f` with an SPI client that may write (several statements of our own tables, one
/// connection), under the pinned settings.
pub fn writing<R>(
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>) -> std::result::Result<R, pgrx::spi::Error>,
) -> Result<R> {
    pinned(|| Spi::connect_mut(f)).map_err(spi)
}

/// Runs `f` with an active snapshot that sees the transaction's own writes so far (tests only:
/// read-only cursors read in the active snapshot, which predates them).
#[cfg(any(test, feature = "pg_test"))]
pub fn in_fresh_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: inside a transaction; the snapshot pushed here is popped below, after `f`, which
    // leaves the snapshot stack as it found it (an error aborts the transaction, which resets it).
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

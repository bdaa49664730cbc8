//! Pushes: a registered source's snapshot sent to Qobra, and the runs that record them.
//!
//! `snapshot` reads it (census, chunks), `push` runs one push from its checks to its record,
//! `runs` keeps the run rows, `imports` follows Qobra's imports afterwards, `orphans` records
//! the runs a rollback took away, and `worker` keeps every registration's schedule.

pub mod imports;
pub mod orphans;
pub mod push;
pub mod runs;
pub mod snapshot;
pub mod worker;

//! The pure core of qobra_sync: everything that can be decided without a database.
//!
//! Vocabulary (used the same way everywhere in the code and the docs):
//! - **source**: a table, partitioned table, view or materialized view whose rows go to Qobra.
//! - **registration**: one row of `qobra_sync.tables`: a source, the Qobra data table it feeds,
//!   how its columns map to Qobra fields, its filter, schedule and reader role.
//! - **snapshot**: every row of a source that passes the filter, read in one MVCC snapshot.
//! - **record**: one row of a snapshot, encoded as the JSON object Qobra receives.
//! - **push**: sending a whole snapshot to Qobra as one total synchronization.
//! - **run**: one attempt at a push, recorded in `qobra_sync.runs` with its outcome.
//! - **destination**: Qobra's API base URL and the API key pushes authenticate with.

pub mod client;
pub mod cloudsql;
pub mod destination;
pub mod error;
pub mod guard;
pub mod imports;
pub mod mapping;
pub mod push;
pub mod registration;
pub mod requirements;
pub mod retry;
pub mod runs;
pub mod schedule;
pub mod secret;
pub mod types;
pub mod wire;

pub use error::{Error, Result, SqlState};

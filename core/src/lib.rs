//! The pure core of qobra_sync: everything that can be decided without a database.
//!
//! Vocabulary (defined in docs/design.md, used the same way everywhere): a **source** is a
//! relation whose rows go to Qobra; its **registration** says how (data table, column options,
//! **filter**, schedule, **reader**); a **snapshot** is the source's rows read as the reader in
//! one MVCC snapshot, counted first by the **census**; a **push** sends it as **records** in
//! **chunks**; a **run** records one attempt at a push, whose **import** Qobra does afterwards.
//! The **destination** is Qobra's API base URL and the key pushes authenticate with.

pub mod client;
pub mod cloudsql;
pub mod destination;
pub mod error;
pub mod guard;
pub mod home;
pub mod imports;
pub mod mapping;
pub mod names;
pub mod push;
pub mod reach;
pub mod registration;
pub mod requirements;
pub mod retry;
pub mod runs;
pub mod schedule;
pub mod secret;
pub mod shape;
pub mod source;
pub mod sql_text;
pub mod types;
pub mod wire;

pub use error::{Error, Result, SqlState};

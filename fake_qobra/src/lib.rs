//! A small, fast fake of Qobra's bulk-ingest HTTP API, for tests, demos and benchmarks.
//!
//! Public API (with `X-API-Key`): `POST /v1/tables/{key}/records/bulk`,
//! `GET /v1/imports/{id}`, `GET /v2/reporting/{key}/records`.
//! Control API (no key, loopback only): everything under `/_fake/`; see README.md.

pub mod api;
pub mod clock;
pub mod control;
pub mod faults;
pub mod fields;
pub mod http;
pub mod reqlog;
pub mod server;
pub mod store;

pub use server::Server;

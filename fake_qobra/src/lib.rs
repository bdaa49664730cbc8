//! A small, fast fake of Qobra's bulk-ingest HTTP API, for tests, demos and benchmarks.
//!
//! Public API (with `X-API-Key`): `POST /v1/tables/{key}/records/bulk`,
//! `GET /v1/imports/{id}`, `GET /v2/reporting/{key}/records`.
//! Control API (no key, loopback only): everything under `/_fake/`; see README.md.
//!
//! Modules, each using only those below it: `server` (listener, connections, TLS) →
//! `service` (one request: faults, body, latency, log, routing) → `control`, `api`
//! (handlers) → `state` (what connections share) → `store`, `faults`, `reqlog`, `fields`,
//! `settings`; `socket`, `tls`, `body` and `message` are the pieces the server and service
//! are made of.

pub mod api;
pub mod body;
pub mod clock;
pub mod control;
pub mod faults;
pub mod fields;
pub mod message;
pub mod reqlog;
pub mod server;
pub mod service;
pub mod settings;
pub mod socket;
pub mod state;
pub mod store;
pub mod tls;

pub use server::{Options, Server};
pub use settings::BodyFormat;
pub use tls::Tls;

//! A small, fast fake of Qobra's bulk-ingest HTTP API, for tests, demos and benchmarks.
//!
//! Public API (with `X-API-Key`): `POST /v1/tables/{key}/records/bulk`,
//! `GET /v1/imports/{id}`, `GET /v2/reporting/{key}/records`.
//! Control API (no key, loopback only): everything under `/_fake/`; see README.md.
//!
//! Modules, each using only those below it: `server` (listener, connections) →
//! `service` (one request: faults, body, log, routing) → `control`, `api` (handlers) →
//! `state` (what connections share) → `store`, `faults`, `reqlog`, `fields`;
//! `socket`, `body` and `message` are the pieces the server and service are made of.

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
pub mod socket;
pub mod state;
pub mod store;

pub use server::Server;

//! The PostgreSQL edges: everything that touches PostgreSQL's own machinery (SPI, the catalog,
//! the parser, locks, settings, shared memory, the log), each module one concern. Nothing here
//! knows registrations, pushes or the SQL API; every module above builds on these.

/// A PostgreSQL object identifier, as the layers above name relations and roles.
pub use pgrx::pg_sys::Oid;

pub mod activity;
pub mod bgworker;
pub mod catalog;
pub mod cursor;
pub mod deadline;
pub mod entry;
pub mod error;
pub mod fdw;
pub mod filter;
pub mod gucs;
pub mod lifecycle;
pub mod locks;
pub mod log_filter;
pub mod pinned;
pub mod query;
pub mod quote;
pub mod reader;
pub mod roles;
pub mod shared;
pub mod spi;
pub mod sqltypes;
pub mod subxact;
pub mod time;
pub mod xact;

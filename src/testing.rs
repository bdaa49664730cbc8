//! Fixtures of the `#[pg_test]`s, which sit beside the modules they exercise. Each test runs in
//! one transaction that is rolled back.

use crate::pg::Oid;
use pgrx::prelude::*;

/// Sets up a source (`public.t_deals`) and a least-privileged reader (`t_reader`) inside the
/// test's transaction.
pub fn fixture() {
    Spi::run(
        "CREATE ROLE t_reader; CREATE TABLE t_deals (id int PRIMARY KEY, title text, closed date);
         INSERT INTO t_deals VALUES (1, 'a', '2026-01-02'), (2, 'b', '2025-12-31');
         GRANT SELECT ON t_deals TO t_reader;",
    )
    .unwrap();
}

/// The OID of a relation by name.
pub fn oid(name: &str) -> Oid {
    Spi::get_one::<Oid>(&format!("SELECT '{name}'::regclass::oid"))
        .unwrap()
        .unwrap()
}

/// The OID of a role by name.
pub fn role(name: &str) -> Oid {
    Spi::get_one::<Oid>(&format!("SELECT '{name}'::regrole::oid"))
        .unwrap()
        .unwrap()
}

/// Runs `f` with an active snapshot that sees this test's own writes: read-only cursors read in
/// the active snapshot, which predates them.
pub fn in_fresh_snapshot<R>(f: impl FnOnce() -> R) -> R {
    crate::pg::spi::in_fresh_snapshot(f)
}

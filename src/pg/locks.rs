//! Locks: the push lock of a source, and the advisory locks a read must leave as it found them.
//!
//! **The push lock** makes one push of a source run at a time, whoever starts it. It is a
//! PostgreSQL object lock (`pg_locks.locktype = 'object'`) whose class is [`PUSH_LOCK_CLASS`],
//! a number no catalog has as its OID, on the source's OID. SQL cannot take or release such a
//! lock (advisory-lock functions, `pg_advisory_unlock_all()` included, only reach advisory
//! locks), so code the source runs while it is read cannot free it.
//!
//! **Advisory locks** are session state that outlives a rolled-back subtransaction: a session
//! lock the source's code takes while it is read would stay with the caller's session (or the
//! worker) for good, and a lock it releases would be gone. [`AdvisoryLocks`] records how many
//! times each advisory lock is held at session level before a read and puts that back after.

use crate::pg::error::{Error, Result, SqlState};
use pgrx::pg_sys;

/// The class of push locks: `hashtext('qobra_sync')`, far above every catalog's OID.
pub const PUSH_LOCK_CLASS: u32 = 520_169_983;

/// SQL that is true when some session holds the push lock of `source` (a column or expression
/// of type regclass named by `source`) in this database: for queries that skip busy sources.
pub fn push_lock_held_sql(source: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                  WHERE l.locktype OPERATOR(pg_catalog.=) 'object' AND l.granted
                    AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                            WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                    AND l.classid OPERATOR(pg_catalog.=) {PUSH_LOCK_CLASS}::pg_catalog.oid
                    AND l.objid OPERATOR(pg_catalog.=) ({source})::pg_catalog.oid)"
    )
}

/// How long a run holds the push lock of its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Until the end of the transaction (`sync_now`: the whole run is one transaction).
    Transaction,
    /// Until [`release_push_lock`] (the worker runs a push in several transactions).
    Session,
}

/// The lock tag of `source`'s push lock.
fn push_tag(source: pg_sys::Oid) -> pg_sys::LOCKTAG {
    pg_sys::LOCKTAG {
        // SAFETY: a plain read of the backend's database OID, set once at connection.
        locktag_field1: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field2: PUSH_LOCK_CLASS,
        locktag_field3: source.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    }
}

/// Takes the push lock of `source` without waiting; false when another session holds it.
pub fn try_push_lock(source: pg_sys::Oid, holding: Holding) -> bool {
    let tag = push_tag(source);
    let session = holding == Holding::Session;
    // SAFETY: `tag` outlives the call and dontWait is true, so this never blocks; a
    // transaction-level hold goes to the current resource owner, inside a transaction.
    let got = unsafe { pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, session, true) };
    got != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// Releases a push lock taken with [`Holding::Session`], if this session holds it.
pub fn release_push_lock(source: pg_sys::Oid) {
    let tag = push_tag(source);
    let mode = pg_sys::ExclusiveLock as i32;
    // SAFETY: LockHeldByMe only reads this backend's local lock table; LockRelease then drops a
    // session hold (if the lock is held for the transaction only, PostgreSQL warns and releases
    // nothing).
    unsafe {
        if held_by_me(&tag, mode) {
            pg_sys::LockRelease(&tag, mode, true);
        }
    }
}

/// One advisory lock in one mode, and how many times this session holds it at session level.
#[derive(Clone, Copy)]
struct Held {
    tag: pg_sys::LOCKTAG,
    mode: pg_sys::LOCKMODE,
    session_holds: i64,
}

/// The advisory locks this session holds at session level, as recorded before a read.
pub struct AdvisoryLocks(Vec<Held>);

impl AdvisoryLocks {
    /// The advisory locks held now, with their session-level counts.
    pub fn held() -> AdvisoryLocks {
        AdvisoryLocks(held_now())
    }

    /// Puts the session's advisory locks back as they were recorded: session holds taken since
    /// are released, holds released since are taken again. Fails, naming the lock, when one
    /// that was released has been taken by another session meanwhile.
    pub fn restore(&self) -> Result<()> {
        let now = held_now();
        for h in &now {
            let before = self.count(&h.tag, h.mode);
            for _ in before..h.session_holds {
                // SAFETY: releases one of the session holds `held_now` just counted beyond the
                // recorded ones, so each release has a hold to drop.
                unsafe { pg_sys::LockRelease(&h.tag, h.mode, true) };
            }
        }
        for h in &self.0 {
            let after = now
                .iter()
                .find(|n| same(&n.tag, &h.tag) && n.mode == h.mode)
                .map_or(0, |n| n.session_holds);
            for _ in after..h.session_holds {
                // SAFETY: takes a session hold back without waiting; the tag is a copy of one read
                // from the lock table.
                let got = unsafe { pg_sys::LockAcquire(&h.tag, h.mode, true, true) };
                if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
                    return Err(lost(&h.tag));
                }
            }
        }
        Ok(())
    }

    /// How many session holds of (`tag`, `mode`) were recorded.
    fn count(&self, tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) -> i64 {
        self.0
            .iter()
            .find(|h| same(&h.tag, tag) && h.mode == mode)
            .map_or(0, |h| h.session_holds)
    }
}

/// Whether two lock tags name the same lock.
fn same(a: &pg_sys::LOCKTAG, b: &pg_sys::LOCKTAG) -> bool {
    (
        a.locktag_field1,
        a.locktag_field2,
        a.locktag_field3,
        a.locktag_field4,
        a.locktag_type,
    ) == (
        b.locktag_field1,
        b.locktag_field2,
        b.locktag_field3,
        b.locktag_field4,
        b.locktag_type,
    )
}

/// The error for a session advisory lock the source's code released and another session took.
fn lost(tag: &pg_sys::LOCKTAG) -> Error {
    Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!(
            "the source's code released this session's advisory lock ({}, {}) while it was read, and another session holds it now",
            tag.locktag_field2, tag.locktag_field3
        ),
    )
    .detail("A read as the reader leaves the session's locks as it found them; this one could not be taken back.")
    .hint("Find what the source (its view, policies or functions) does with advisory locks, and remove it.")
}

/// Every advisory lock this backend holds, in each mode, with its session-level count.
fn held_now() -> Vec<Held> {
    let mut out = vec![];
    // SAFETY: GetLockStatusData returns a palloc'd copy of the lock table with `nelements` entries
    // in `locks`, read here before its memory context is reset; called inside a transaction, as
    // `session_holds` needs.
    unsafe {
        let data = pg_sys::GetLockStatusData();
        let me = pg_sys::MyProcPid;
        for i in 0..(*data).nelements as usize {
            let lock = &*(*data).locks.add(i);
            if lock.pid != me
                || lock.locktag.locktag_type != pg_sys::LockTagType::LOCKTAG_ADVISORY as u8
            {
                continue;
            }
            for mode in 1..=pg_sys::MaxLockMode as i32 {
                if lock.holdMask & (1 << mode) != 0 {
                    out.push(Held {
                        tag: lock.locktag,
                        mode,
                        session_holds: session_holds(&lock.locktag, mode),
                    });
                }
            }
        }
    }
    out
}

/// How many times this session holds (`tag`, `mode`) at session level (not for a transaction).
///
/// The count is in the backend's local lock table, which PostgreSQL only hands out through
/// `LockAcquireExtended`: take the lock once more for the current transaction (it is ours, so
/// this never waits), read the count of the session's holds, and release that extra hold.
fn session_holds(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) -> i64 {
    // SAFETY: inside a transaction, so CurrentResourceOwner is set and the extra hold is a
    // transaction one, apart from the session's. The lock is already held by this backend, so the
    // acquisition is granted locally and `local` points at its LOCALLOCK, whose lockOwners array
    // (numLockOwners entries) is read before LockRelease drops that extra hold.
    unsafe {
        let mut local: *mut pg_sys::LOCALLOCK = std::ptr::null_mut();
        let got = acquire_for_transaction(tag, mode, &mut local);
        if got == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL || local.is_null() {
            return 0;
        }
        let owners =
            std::slice::from_raw_parts((*local).lockOwners, (*local).numLockOwners as usize);
        let count = owners
            .iter()
            .filter(|o| o.owner.is_null())
            .map(|o| o.nLocks)
            .sum();
        pg_sys::LockRelease(tag, mode, false);
        count
    }
}

/// Whether this backend holds `tag` in exactly `mode` (a stronger mode does not count).
///
/// # Safety
/// Inside a backend; reads its local lock table only.
unsafe fn held_by_me(tag: &pg_sys::LOCKTAG, mode: pg_sys::LOCKMODE) -> bool {
    // 17 added `orstronger`; false keeps the exact-mode answer of 15 and 16.
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    // SAFETY: the caller's; LockHeldByMe reads the local lock table.
    let held = unsafe { pg_sys::LockHeldByMe(tag, mode) };
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    // SAFETY: as above.
    let held = unsafe { pg_sys::LockHeldByMe(tag, mode, false) };
    held
}

/// Takes (`tag`, `mode`) for the current transaction without waiting, and points `local` at its
/// entry of the local lock table.
///
/// # Safety
/// Inside a transaction (CurrentResourceOwner set); `local` is written by PostgreSQL.
unsafe fn acquire_for_transaction(
    tag: &pg_sys::LOCKTAG,
    mode: pg_sys::LOCKMODE,
    local: &mut *mut pg_sys::LOCALLOCK,
) -> pg_sys::LockAcquireResult::Type {
    // 18 added `logLockFailure` (for log_lock_failures); false: nothing logged, as before 18.
    #[cfg(not(feature = "pg18"))]
    // SAFETY: the caller's; session lock false, don't wait, report memory errors.
    let got = unsafe { pg_sys::LockAcquireExtended(tag, mode, false, true, true, local) };
    #[cfg(feature = "pg18")]
    // SAFETY: as above.
    let got = unsafe { pg_sys::LockAcquireExtended(tag, mode, false, true, true, local, false) };
    got
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::testing::{fixture, oid};
    use pgrx::prelude::*;

    /// Whether the advisory lock on `key` is held by this session, in any mode.
    fn advisory_held(key: i64) -> bool {
        Spi::get_one_with_args::<bool>(
            "SELECT count(*) > 0 FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'
                AND objid = ($1::int8 & 4294967295)::oid",
            &[key.into()],
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn a_push_lock_is_an_object_lock_sql_sees_and_cannot_release() {
        fixture();
        let source = oid("t_deals");
        let held = || {
            Spi::get_one::<bool>(&format!(
                "SELECT {}",
                push_lock_held_sql(&format!("{}::regclass", source.to_u32()))
            ))
            .unwrap()
            .unwrap()
        };
        assert!(!held());
        assert!(try_push_lock(source, Holding::Session));
        assert!(held());
        Spi::run("SELECT pg_advisory_unlock_all()").unwrap();
        assert!(held(), "advisory-lock functions do not reach the push lock");
        release_push_lock(source);
        assert!(!held());
        release_push_lock(source); // not held: nothing happens, no warning
        assert!(try_push_lock(source, Holding::Transaction));
        assert!(held());
    }

    #[pg_test]
    fn advisory_locks_are_put_back_exactly() {
        Spi::run("SELECT pg_advisory_lock(11), pg_advisory_lock(11), pg_advisory_xact_lock(14)")
            .unwrap();
        let before = AdvisoryLocks::held();
        Spi::run(
            "SELECT pg_advisory_lock(12), pg_advisory_unlock(11), pg_advisory_lock_shared(13), pg_advisory_lock(11), pg_advisory_lock(11)",
        )
        .unwrap();
        before.restore().unwrap();
        assert!(!advisory_held(12) && !advisory_held(13));
        assert!(advisory_held(14), "transaction locks are not touched");
        let unlock = || {
            Spi::get_one::<bool>("SELECT pg_advisory_unlock(11)")
                .unwrap()
                .unwrap()
        };
        assert!(
            unlock() && unlock(),
            "held twice at session level, as before"
        );
        assert!(!advisory_held(11));
        Spi::run("SELECT pg_advisory_unlock_all()").unwrap();
    }
}

//! Guards of a push: what stops a snapshot from replacing Qobra's table (`docs/design.md`).
//!
//! Decided before anything is sent, from a pre-pass over the snapshot (row count, content
//! fingerprint, id checks) and the last successful run of the same registration.

use crate::names::function::SYNC_NOW;

/// The fingerprint of a payload: a digest of its records that does not depend on their order, so
/// that the same rows read in another order give the same fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    records: u64,
    sum: u128,
}

impl Fingerprint {
    /// Adds one encoded record.
    pub fn add(&mut self, record: &[u8]) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(record));
    }

    /// SHA-256 (hex) of the record count, the sum of the records' hashes and `encoding` (a
    /// description of the field keys and encodings, so that a mapping change is a change).
    pub fn digest(&self, encoding: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(encoding.as_bytes());
        hash.update(self.records.to_le_bytes());
        hash.update(self.sum.to_le_bytes());
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What the pre-pass learned about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// Rows in the snapshot (filter applied), before any row rejection.
    pub rows: u64,
    /// The payload's fingerprint ([`Fingerprint::digest`]), when it was computed before pushing.
    pub fingerprint: Option<String>,
    /// Rows whose id is NULL.
    pub null_ids: u64,
    /// Id values that appear more than once.
    pub duplicate_ids: u64,
}

/// The last successful run of the same registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSuccess {
    pub rows_read: u64,
    pub fingerprint: Option<String>,
}

/// The settings that shape the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guards {
    /// Smallest allowed snapshot as a fraction of the last successful one (0 = off).
    pub deletion_guard: f64,
    pub skip_unchanged: bool,
    /// Set by `sync_now(force => true)`: overrides the deletion guard and skip_unchanged.
    pub force: bool,
}

/// What to do with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Push,
    /// Not pushed; the reason goes into the run's `error`.
    Blocked(String),
    /// Not pushed because nothing changed.
    Skipped(String),
}

/// Decides whether a snapshot may be pushed. Table-level violations block even a forced run.
pub fn decide(census: &Census, last: Option<&LastSuccess>, guards: Guards) -> Decision {
    if census.null_ids > 0 {
        return Decision::Blocked(format!("{} rows have a NULL id", census.null_ids));
    }
    if census.duplicate_ids > 0 {
        return Decision::Blocked(format!(
            "{} id values appear more than once",
            census.duplicate_ids
        ));
    }
    let Some(last) = last else {
        return Decision::Push;
    };
    if guards.force {
        return Decision::Push;
    }
    if guards.skip_unchanged
        && census.fingerprint.is_some()
        && last.fingerprint == census.fingerprint
    {
        return Decision::Skipped("the snapshot is the same as the last successful push".into());
    }
    let floor = guards.deletion_guard * last.rows_read as f64;
    if guards.deletion_guard > 0.0 && (census.rows as f64) < floor {
        return Decision::Blocked(format!(
            "deletion guard: the snapshot has {} rows, fewer than {:.0}% of the {} rows of the last successful push; \
             run {SYNC_NOW}(source, force => true) if this is intended",
            census.rows,
            guards.deletion_guard * 100.0,
            last.rows_read
        ));
    }
    Decision::Push
}

#[cfg(test)]
mod tests {
    use super::*;

    fn census(rows: u64) -> Census {
        Census {
            rows,
            fingerprint: Some(format!("f{rows}")),
            null_ids: 0,
            duplicate_ids: 0,
        }
    }
    const GUARDS: Guards = Guards {
        deletion_guard: 0.5,
        skip_unchanged: true,
        force: false,
    };

    #[test]
    fn a_first_push_goes_through() {
        assert_eq!(decide(&census(0), None, GUARDS), Decision::Push);
    }

    #[test]
    fn id_violations_block_even_when_forced() {
        let mut c = census(10);
        c.null_ids = 2;
        let forced = Guards {
            force: true,
            ..GUARDS
        };
        assert!(
            matches!(decide(&c, None, forced), Decision::Blocked(m) if m.contains("2 rows have a NULL id"))
        );
        c.null_ids = 0;
        c.duplicate_ids = 3;
        assert!(
            matches!(decide(&c, None, forced), Decision::Blocked(m) if m.contains("3 id values"))
        );
    }

    #[test]
    fn the_deletion_guard_blocks_a_shrunken_snapshot_unless_forced() {
        let last = LastSuccess {
            rows_read: 100,
            fingerprint: Some("old".into()),
        };
        assert_eq!(
            decide(&census(50), Some(&last), GUARDS),
            Decision::Push,
            "exactly the fraction is allowed"
        );
        assert!(
            matches!(decide(&census(49), Some(&last), GUARDS), Decision::Blocked(m) if m.contains("deletion guard") && m.contains("force => true"))
        );
        assert_eq!(
            decide(
                &census(49),
                Some(&last),
                Guards {
                    force: true,
                    ..GUARDS
                }
            ),
            Decision::Push
        );
        assert_eq!(
            decide(
                &census(0),
                Some(&last),
                Guards {
                    deletion_guard: 0.0,
                    ..GUARDS
                }
            ),
            Decision::Push,
            "0 turns it off"
        );
    }

    #[test]
    fn fingerprints_ignore_order_but_not_content_or_encoding() {
        let (mut a, mut b, mut c) = (
            Fingerprint::default(),
            Fingerprint::default(),
            Fingerprint::default(),
        );
        for r in [&b"{\"id\":\"1\"}"[..], b"{\"id\":\"2\"}"] {
            a.add(r);
        }
        for r in [&b"{\"id\":\"2\"}"[..], b"{\"id\":\"1\"}"] {
            b.add(r);
        }
        for r in [&b"{\"id\":\"2\"}"[..], b"{\"id\":\"3\"}"] {
            c.add(r);
        }
        assert_eq!(a.digest("e"), b.digest("e"));
        assert_ne!(a.digest("e"), c.digest("e"));
        assert_ne!(a.digest("e"), a.digest("f"));
        assert_eq!(a.digest("e").len(), 64);
    }

    #[test]
    fn an_unchanged_snapshot_is_skipped_when_asked() {
        let last = LastSuccess {
            rows_read: 7,
            fingerprint: Some("f7".into()),
        };
        assert!(matches!(
            decide(&census(7), Some(&last), GUARDS),
            Decision::Skipped(_)
        ));
        assert_eq!(
            decide(
                &census(7),
                Some(&last),
                Guards {
                    skip_unchanged: false,
                    ..GUARDS
                }
            ),
            Decision::Push
        );
        assert_eq!(
            decide(
                &census(7),
                Some(&last),
                Guards {
                    force: true,
                    ..GUARDS
                }
            ),
            Decision::Push
        );
    }
}

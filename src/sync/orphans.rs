//! Runs whose row a rollback took away.
//!
//! `sync_now` records its run in the caller's transaction. When that transaction, or the
//! savepoint around the call, rolls back (a cancel, a statement timeout, an error after the call,
//! a `ROLLBACK`, a terminated session), the run's row goes with it, although Qobra has already
//! received some or all of the snapshot. So a push keeps its shared-memory slot until its
//! transaction ends, holding the run's row as JSON: the start, then the outcome. On rollback the
//! slot is handed to the worker, which records the run in a transaction of its own: as
//! `interrupted` (possibly partial once sending began) when the push had not ended, with its
//! outcome otherwise. The worker's own runs commit their row before pushing: their slot is simply
//! freed when their transaction ends. Should a database be dropped before its worker recorded
//! such a run, any other database's worker frees the slot (the history went with the database).

use crate::pg::shared::{self, Phase, Slot};
use crate::pg::xact::{self, SubXactEnd, SubXactId};
use std::cell::RefCell;

/// A slot held by this backend until its transaction (or subtransaction) ends.
struct Held {
    slot: usize,
    run_id: i64,
    /// The subtransaction whose rollback would take the run's row away.
    subxact: SubXactId,
    /// Whether the run's row is in the caller's transaction (a session's run).
    hand_over: bool,
    /// Whether a worker serves this database, to record the run if its row is rolled back
    /// (learned here, in the transaction: at its end the catalog cannot be read).
    served: bool,
}

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

/// The error recorded for a session's run cut short by a rollback.
pub const CUT_SHORT: &str = "sync_now() did not finish: it was cancelled, timed out or hit an error, or its session ended, \
     and its transaction rolled back; the run was recorded afterwards by the qobra_sync worker";

/// Keeps slot `slot` of run `run_id` until the current transaction ends.
pub fn hold(slot: usize, run_id: i64, hand_over: bool) {
    xact::on_ends(on_xact, on_subxact);
    let subxact = xact::current_subxact();
    let served = hand_over && shared::database_served();
    HELD.with_borrow_mut(|held| {
        held.push(Held {
            slot,
            run_id,
            subxact,
            hand_over,
            served,
        })
    });
}

/// A push ended: a worker run's slot is freed; a session's keeps the run's outcome (`record`)
/// until the transaction ends.
pub fn ended(slot: Option<usize>, run_id: i64, record: shared::Record) {
    let Some(i) = slot else {
        return;
    };
    let hand_over = HELD.with_borrow_mut(|held| {
        let at = held
            .iter()
            .position(|h| h.slot == i && h.run_id == run_id)?;
        let hand_over = held[at].hand_over;
        if !hand_over {
            held.remove(at);
        }
        Some(hand_over)
    });
    if hand_over == Some(true) {
        shared::with_slot(i, run_id, |s| {
            s.phase = Phase::Ended;
            s.record = record;
        });
    } else {
        shared::free(i, run_id);
    }
}

/// Transaction end: frees the held slots on commit, hands them to the worker on abort.
fn on_xact(rolled_back: bool) {
    release(|_| true, rolled_back);
}

/// Subtransaction end: on commit the held runs now belong to the parent; on abort their rows
/// are gone.
fn on_subxact(mine: SubXactId, end: SubXactEnd) {
    match end {
        SubXactEnd::Committed { parent } => HELD.with_borrow_mut(|held| {
            for h in held.iter_mut().filter(|h| h.subxact == mine) {
                h.subxact = parent;
            }
        }),
        SubXactEnd::RolledBack => release(|h| h.subxact == mine, true),
    }
}

/// Lets go of the held slots that `which` selects: handed to the worker (and the worker woken)
/// when a session's run row was rolled back, freed otherwise.
fn release(which: impl Fn(&Held) -> bool, rolled_back: bool) {
    let released: Vec<Held> = HELD.with_borrow_mut(|held| {
        let (out, kept) = std::mem::take(held).into_iter().partition(|h| which(h));
        *held = kept;
        out
    });
    let mut orphaned = false;
    for h in released {
        // Without a worker for this database nobody would record the run: its slot is freed.
        if rolled_back && h.hand_over && h.served {
            shared::with_slot(h.slot, h.run_id, |s| s.orphaned = true);
            orphaned = true;
        } else {
            shared::free(h.slot, h.run_id);
        }
    }
    if orphaned {
        shared::wake_worker();
    }
}

/// The row to record for an orphaned run: its outcome when its push had ended, otherwise its
/// start, marked interrupted, with what the slot says was sent.
pub fn row(slot: &Slot, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let mut row: serde_json::Value =
        serde_json::from_str(slot.record.text()).unwrap_or_else(|_| serde_json::json!({}));
    if slot.phase != Phase::Ended {
        row["status"] = "interrupted".into();
        row["finished_at"] = now.to_rfc3339().into();
        row["rows_sent"] = slot.rows_sent.into();
        row["bytes_sent"] = slot.bytes_sent.into();
        row["restarts"] = slot.restarts.into();
        row["possibly_partial"] = (slot.phase == Phase::Sending).into();
        row["error"] = CUT_SHORT.into();
    }
    row["run_id"] = slot.run_id.into();
    row["source"] = slot.source.into();
    row
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::pg::shared::{Record, Slot};
    use pgrx::prelude::*;

    /// A slot of run 7 whose row was recorded at its start.
    fn slot(phase: Phase) -> Slot {
        Slot {
            pid: 1,
            run_id: 7,
            source: 16384,
            rows_sent: 10,
            bytes_sent: 99,
            restarts: 1,
            phase,
            record: Record::new(r#"{"run_id": 7, "status": "succeeded", "error": null}"#).unwrap(),
            ..Slot::default()
        }
    }

    #[pg_test]
    fn a_run_cut_short_is_recorded_as_interrupted() {
        let now = chrono::Utc::now();
        let sending = row(&slot(Phase::Sending), now);
        assert_eq!(sending["status"], "interrupted");
        assert_eq!(sending["possibly_partial"], true);
        assert_eq!(
            (
                sending["rows_sent"].as_u64(),
                sending["bytes_sent"].as_u64()
            ),
            (Some(10), Some(99))
        );
        assert_eq!(sending["error"], CUT_SHORT);
        let checking = row(&slot(Phase::Checking), now);
        assert_eq!(checking["possibly_partial"], false, "nothing was sent yet");
    }

    #[pg_test]
    fn a_run_that_had_ended_keeps_its_outcome() {
        let ended = row(&slot(Phase::Ended), chrono::Utc::now());
        assert_eq!(ended["status"], "succeeded");
        assert_eq!(
            (ended["run_id"].as_i64(), ended["source"].as_u64()),
            (Some(7), Some(16384))
        );
    }
}

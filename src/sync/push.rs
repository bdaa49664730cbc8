//! A push: one run of a registered source, from its checks to its record.
//!
//! [`start`] checks the registration, takes the source's push lock (one push of a table at a
//! time) and records the run as running; [`execute`] checks the registration again (mapping,
//! filter re-analysed, reader fit), then as the reader: [`decide`] (a census of the snapshot,
//! the guards: id violations and the deletion guard block, an unchanged snapshot is skipped),
//! [`send`] (the records, chunk by chunk), and finally records the outcome in `qobra_sync.runs`
//! and the rejected rows in `qobra_sync.run_errors` (see `runs`).

use crate::pg::activity;
use crate::pg::catalog;
use crate::pg::deadline::{cancel_pending, must_stop, Deadline};
use crate::pg::error::{Error, Result, SqlState};
use crate::pg::filter;
use crate::pg::gucs;
use crate::pg::locks::{self, Holding};
use crate::pg::query::snapshot_query;
use crate::pg::reader::{as_reader, deadline_error};
use crate::pg::roles;
use crate::pg::shared;
use crate::pg::Oid;
use crate::registry;
use crate::registry::client::client;
use crate::sync::orphans;
use crate::sync::runs;
use crate::sync::snapshot::{self, ChunkLimits, Chunks};
use pgrx::prelude::*;
use qobra_sync_core::client::QobraClient;
use qobra_sync_core::error::quoted;
use qobra_sync_core::guard::{decide as judge, Decision, Guards, LastSuccess};
use qobra_sync_core::mapping::map_columns;
use qobra_sync_core::names::relation::RUNS;
use qobra_sync_core::push::{
    push, ChunkInfo, ChunkSource, Progress, PushFailure, PushReport, PushSettings, QobraTable,
};
use qobra_sync_core::registration::Registration;
use qobra_sync_core::runs::{Outcome, RunHead, RunStatus, Trigger};
use qobra_sync_core::shape;
use qobra_sync_core::source::Source;
use qobra_sync_core::wire::RecordEncoder;

/// How many times a push may restart from the top after a late failure.
const RESTART_BUDGET: u32 = 2;

/// A run that has started: its row is in `qobra_sync.runs` with status `running`.
pub struct Started {
    pub run_id: i64,
    trigger: Trigger,
    source: Source,
    reg: Registration,
    /// The client, built before the run is recorded: an unusable key file, CA file or proxy
    /// is an error of the call, as a missing destination is.
    client: QobraClient,
}

impl Started {
    /// The relation the run pushes (another than asked for when the registration followed its
    /// source's name).
    pub fn source_oid(&self) -> Oid {
        Oid::from(self.source.oid)
    }
}

/// Pushes a registered source now and records the run; returns the run id. Push outcomes
/// (failed, blocked, skipped) are recorded, not raised, unless `raise_on_failure`: then a run that ended
/// failed or blocked is raised too, once recorded (its row, rolled back with the statement, is
/// recorded by the worker from its slot). Misuse raises.
pub fn sync(source: Oid, force: bool, raise_on_failure: bool, trigger: Trigger) -> Result<i64> {
    let started = start(source, trigger, Holding::Transaction)?;
    let (run_id, name) = (started.run_id, started.source.name.clone());
    let outcome = execute(started, force)?;
    match (raise_on_failure, outcome.status) {
        (true, RunStatus::Failed | RunStatus::Blocked) => {
            Err(unsuccessful(run_id, &name, &outcome))
        }
        _ => Ok(run_id),
    }
}

/// The error of a push asked to raise its failure, whose run failed or was blocked.
fn unsuccessful(run_id: i64, name: &str, outcome: &Outcome) -> Error {
    let state = match outcome.status {
        RunStatus::Blocked => SqlState::ObjectNotInPrerequisiteState,
        _ => SqlState::ExternalFailure,
    };
    Error::new(
        state,
        format!(
            "run {run_id} of {name} {}: {}",
            outcome.status.as_str(),
            outcome.error.as_deref().unwrap_or("no reason recorded")
        ),
    )
    .detail(format!("sync_now(…, raise_on_failure => true) fails the statement when the push does not succeed; the run stays in {RUNS}."))
    .hint(format!("See {RUNS} and run_errors for the run; a skipped run (Qobra already holds the snapshot) is no failure."))
}

/// Checks a registration, takes the push lock and records a new run as running.
pub fn start(source: Oid, trigger: Trigger, holding: Holding) -> Result<Started> {
    crate::pg::lifecycle::require_utf8()?;
    let source = registry::follow::resolve(source)?;
    let reg = registry::require_owned(source)?;
    let described = catalog::check_unchanged(source, &reg.source_name)?;
    let client = client()?;
    lock(source, &described.name, holding)?;
    let run_id = runs::start(&reg, trigger)?;
    Ok(Started {
        run_id,
        trigger,
        source: described,
        reg,
        client,
    })
}

/// Runs a started push to its end and records the outcome; returns it.
pub fn execute(started: Started, force: bool) -> Result<Outcome> {
    let Started {
        run_id,
        trigger,
        source,
        reg,
        client,
    } = started;
    let head = RunHead {
        run_id,
        source: source.oid,
        source_name: reg.source_name.clone(),
        data_table_key: reg.data_table_key.clone(),
        owner: reg.owner_oid,
        trigger,
        started_at: chrono::Utc::now(),
    };
    let pusher = match trigger {
        Trigger::Manual => shared::Pusher::Session {
            role: roles::login_role().to_u32(),
        },
        _ => shared::Pusher::Worker,
    };
    let slot = shared::progress_start(
        run_id,
        source.oid,
        reg.owner_oid,
        runs::slot_record(&head, &Outcome::default()),
        pusher,
    )?;
    if let Some(i) = slot {
        // A session's run row is in the caller's transaction: if that rolls back, the worker
        // records the run from the slot.
        orphans::hold(i, run_id, trigger == Trigger::Manual);
    }
    let _deadline = Deadline::set(gucs::RUN_TIMEOUT_MS.get());
    let outcome = outcome(&source, &reg, &client, force, slot)?;
    orphans::ended(slot, run_id, runs::slot_record(&head, &outcome));
    runs::finish(run_id, &outcome)?;
    runs::report(run_id, &source.name, &outcome);
    Ok(outcome)
}

/// What a run comes to: a blocked run when this database is a copy of the destination's home
/// or its owner may no longer act as its reader; a failed
/// run when the registration no longer checks out, the source fails to read or a read stopped
/// at the run's deadline; otherwise the push's own outcome. Other errors are raised.
fn outcome(
    source: &Source,
    reg: &Registration,
    client: &QobraClient,
    force: bool,
    slot: Option<usize>,
) -> Result<Outcome> {
    let reader = Oid::from(reg.run_as_oid);
    if let Some(copy) = registry::destination::copy_refusal()? {
        return Ok(Outcome::ended(RunStatus::Blocked, copy.one_line()));
    }
    if let Some(why) = owner_refused(reg)? {
        return Ok(Outcome::ended(RunStatus::Blocked, why));
    }
    if let Some(why) = drifted(source, reg) {
        return Ok(Outcome::ended(RunStatus::Blocked, why));
    }
    let (encoder, filter) = match prepare(source, reg, reader) {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Outcome::ended(RunStatus::Failed, e.one_line())),
    };
    let job = Job {
        source,
        reg,
        reader,
        client,
        encoder: &encoder,
        filter: filter.as_deref(),
        force,
        slot,
    };
    match run(job) {
        // A read stopped at the run's deadline, or the source failed to read (its own error,
        // with its SQLSTATE): the run failed, like one Qobra refused.
        Err(e) if matches!(e.state, SqlState::QueryCanceled | SqlState::Postgres(_)) => {
            Ok(Outcome::ended(RunStatus::Failed, e.one_line()))
        }
        other => other,
    }
}

/// Why the registration's owner may no longer have its source read as its run_as (membership
/// revoked, a role dropped), if it may not: such a run is blocked, nothing is read or sent.
fn owner_refused(reg: &Registration) -> Result<Option<String>> {
    let (owner, reader) = (Oid::from(reg.owner_oid), Oid::from(reg.run_as_oid));
    if roles::may_act_as(owner, reader)? {
        return Ok(None);
    }
    let (owner, reader) = (roles::role_name(owner), roles::role_name(reader));
    let why = Error::new(
        SqlState::InsufficientPrivilege,
        format!(
            "the registration's owner {} may no longer act as its run_as {}",
            quoted(&owner),
            quoted(&reader)
        ),
    )
    .hint(format!(
        "GRANT {reader} TO {owner} again, or alter_table(source, run_as => …) as a role that may act as the new reader."
    ));
    Ok(Some(why.one_line()))
}

/// Why the source no longer matches the registration's recorded shape (a synced column renamed,
/// dropped or retyped), if it does not: such a run is blocked, Qobra is left untouched.
fn drifted(source: &Source, reg: &Registration) -> Option<String> {
    let changes = shape::drift(reg.shape.as_deref()?, source, &[]);
    let why = shape::blocked(&source.name, &changes)?;
    Some(
        Error::new(SqlState::ObjectNotInPrerequisiteState, why)
            .hint(shape::hint(&source.name, &changes, &reg.columns.field_keys))
            .one_line(),
    )
}

/// Releases the session-level push lock taken by [`start`] with [`Holding::Session`].
pub fn unlock(source: Oid) {
    locks::release_push_lock(source);
}

/// Takes the push lock of a source, or says that a push of it is already running (SQLSTATE
/// 55P03, which the worker tells apart from other refusals).
fn lock(source: Oid, name: &str, holding: Holding) -> Result<()> {
    if locks::try_push_lock(source, holding) {
        return Ok(());
    }
    Err(Error::new(
        SqlState::LockNotAvailable,
        format!("a push of {name} is already running"),
    )
    .detail("One push of a table runs at a time.")
    .hint(format!(
        "Wait for it to finish (see {RUNS}), then try again."
    )))
}

/// Re-checks a registration before its run: mapping, reader (fit, and able to read the synced
/// columns) and filter (re-analysed); returns the encoder and the canonical filter.
fn prepare(
    source: &Source,
    reg: &Registration,
    reader: Oid,
) -> Result<(RecordEncoder, Option<String>)> {
    let mapping = map_columns(source, &reg.columns)?;
    // Columns added since the shape was recorded are not sent; a registration from before
    // shapes were recorded gets its shape now, as it pushes, and a shape rebound after a
    // restore is recorded as rebound.
    let mapping = match &reg.shape {
        Some(recorded) => {
            if !reg.shape_here {
                registry::record_shape(Oid::from(source.oid), recorded)?;
            }
            shape::apply(mapping, recorded)
        }
        None => {
            registry::record_shape(Oid::from(source.oid), &shape::record(source, &mapping))?;
            mapping
        }
    };
    let read: Vec<String> = mapping
        .iter()
        .filter(|m| m.synced)
        .map(|m| m.column_name.clone())
        .collect();
    roles::check_reader(reader, source, &read)?;
    let filter = reg
        .filter
        .as_deref()
        .map(|f| filter::canonical(source, f, reader))
        .transpose()?;
    Ok((
        RecordEncoder::from_mapping(&mapping, reg.columns.user_key),
        filter,
    ))
}

/// Everything a run works with once its registration is checked.
#[derive(Clone, Copy)]
struct Job<'a> {
    source: &'a Source,
    reg: &'a Registration,
    reader: Oid,
    client: &'a QobraClient,
    encoder: &'a RecordEncoder,
    /// The canonical filter, re-analysed for this run.
    filter: Option<&'a str>,
    force: bool,
    /// The run's progress slot in shared memory, if it got one.
    slot: Option<usize>,
}

/// Decides, then sends when the guards let it, all as the reader; returns what happened.
fn run(job: Job<'_>) -> Result<Outcome> {
    let id_column = job.reg.columns.id_column.clone().unwrap_or_default();
    let source_oid = Oid::from(job.source.oid);
    let guaranteed = snapshot::id_guaranteed(source_oid, &id_column)?;
    let last = runs::last_success(source_oid)?;
    let query = snapshot_query(job.source, job.encoder, job.filter, None, None);
    as_reader(job.reader, || {
        let mut outcome = Outcome::default();
        match decide(
            job,
            &query,
            &id_column,
            guaranteed,
            last.as_ref(),
            &mut outcome,
        )? {
            Decision::Blocked(why) => outcome.end_with(RunStatus::Blocked, why),
            Decision::Skipped(why) => outcome.end_with(RunStatus::Skipped, why),
            Decision::Push => send(job, &query, &mut outcome),
        }
        Ok(outcome)
    })
}

/// The census and the guards: id violations and the deletion guard first; then, only when it
/// can matter, the snapshot is read once without sending to see whether it changed. Fills the
/// outcome's row count (and fingerprint, when computed).
fn decide(
    job: Job<'_>,
    query: &str,
    id_column: &str,
    guaranteed: bool,
    last: Option<&LastSuccess>,
    outcome: &mut Outcome,
) -> Result<Decision> {
    let guards = Guards {
        deletion_guard: gucs::DELETION_GUARD.get(),
        skip_unchanged: gucs::SKIP_UNCHANGED.get(),
        force: job.force,
    };
    let mut census = snapshot::census(job.source, job.filter, id_column, guaranteed)?;
    outcome.rows_read = census.rows;
    let decision = judge(&census, last, guards);
    let may_skip =
        guards.skip_unchanged && !job.force && last.is_some_and(|l| l.fingerprint.is_some());
    if decision != Decision::Push || !may_skip {
        return Ok(decision);
    }
    let limits = ChunkLimits::from_settings(job.client.body_format().overhead());
    census.fingerprint = snapshot::fingerprint(query, job.encoder, limits)?;
    outcome.fingerprint = census.fingerprint.clone();
    Ok(judge(&census, last, guards))
}

/// Sends the snapshot's records (its cursors live in one SPI connection) and fills the outcome
/// with what was read, rejected and sent, and how the push ended.
// The push's failure comes back once per run, so its size does not matter (as in the core).
#[allow(clippy::result_large_err)]
fn send(job: Job<'_>, query: &str, outcome: &mut Outcome) {
    let encoding = snapshot::encoding_description(job.encoder);
    let limits = ChunkLimits::from_settings(job.client.body_format().overhead());
    let table = QobraTable {
        client: job.client,
        data_table_key: &job.reg.data_table_key,
        debounce_seconds: gucs::DEBOUNCE_SECONDS.get() as u32,
    };
    let settings = PushSettings {
        restart_budget: RESTART_BUDGET,
        max_in_flight: gucs::MAX_IN_FLIGHT.get() as usize,
    };
    let result = Spi::connect(|_| {
        let mut chunks = Chunks::new(query.to_owned(), job.encoder, limits);
        let mut on_progress = |p: &Progress| progressed(job, p);
        shared::progress_sending(job.slot);
        activity::waiting_on_qobra();
        let result = push(
            &mut ShowingWaits(&mut chunks),
            &table,
            settings,
            &must_stop,
            &mut on_progress,
        );
        activity::not_waiting();
        outcome.rows_read = chunks.rows_read;
        // A record left out for its size would stay out of Qobra if a later run were skipped as
        // unchanged after the limit was raised: such a run gives no fingerprint.
        outcome.fingerprint =
            (!chunks.left_out_for_size).then(|| chunks.fingerprint.digest(&encoding));
        outcome.rows_rejected = chunks.rejections.count;
        outcome.rejections = std::mem::take(&mut chunks.rejections);
        result
    });
    record_push(outcome, result);
}

/// Shows a push's progress after an accepted chunk: in its shared-memory slot, and in the
/// worker's `pg_stat_activity` entry (a session's entry keeps the user's own statement).
fn progressed(job: Job<'_>, p: &Progress) {
    shared::progress_update(job.slot, p.rows_sent, p.bytes_sent, p.chunk, p.restarts);
    if crate::pg::bgworker::in_worker() {
        activity::running(&format!(
            "pushing {}: {} rows sent in {} chunks",
            job.source.name, p.rows_sent, p.chunk
        ));
    }
}

/// Puts how a push ended into the outcome: succeeded, or failed with the error (the run's
/// deadline's own when that stopped it) and whether Qobra may hold a partial table. A push
/// stopped by a cancel lets Postgres raise it now.
fn record_push(outcome: &mut Outcome, result: std::result::Result<PushReport, PushFailure>) {
    let report = match result {
        Ok(report) => {
            outcome.status = RunStatus::Succeeded;
            report
        }
        Err(failure) => {
            if failure.interrupted && cancel_pending() {
                pgrx::check_for_interrupts!();
            }
            let error = if failure.interrupted && Deadline::passed() {
                deadline_error()
            } else {
                failure.error
            };
            outcome.status = RunStatus::Failed;
            outcome.possibly_partial = failure.possibly_partial;
            outcome.error = Some(error.one_line());
            failure.report
        }
    };
    outcome.rows_sent = report.rows_sent;
    outcome.bytes_sent = report.bytes_sent;
    outcome.requests = report.requests;
    outcome.retries = report.retries;
    outcome.restarts = report.restarts;
    outcome.import_ids = report.import_ids;
}

/// The chunks of a push, read with no wait event shown: in between, the push waits for Qobra,
/// and `pg_stat_activity` shows it (`wait_event_type` `Extension`).
struct ShowingWaits<'a, 'b>(&'a mut Chunks<'b>);

impl ChunkSource for ShowingWaits<'_, '_> {
    /// Rewinds the chunks.
    fn restart(&mut self) -> std::result::Result<(), qobra_sync_core::Error> {
        self.0.restart()
    }

    /// Reads the next chunk, shown as working, not waiting.
    fn next_chunk(
        &mut self,
        out: &mut Vec<u8>,
    ) -> std::result::Result<Option<ChunkInfo>, qobra_sync_core::Error> {
        activity::not_waiting();
        let read = self.0.next_chunk(out);
        activity::waiting_on_qobra();
        read
    }

    /// Sets the record aside.
    fn reject(&mut self, record: &[u8], reason: String) {
        self.0.reject(record, reason)
    }

    /// Closes later chunks smaller.
    fn shrink(&mut self, max_bytes: usize) {
        self.0.shrink(max_bytes)
    }
}

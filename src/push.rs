//! Runs: one push of a registered source, from the checks to the run record.
//!
//! A run takes the source's push lock (one push of a table at a time), checks the registration
//! again (source unchanged, filter re-analysed, reader fit), takes a census of the snapshot, lets
//! the guards decide (id violations and the deletion guard block, an unchanged snapshot is
//! skipped), pushes the records, and records the outcome in `qobra_sync.runs` and the rejected
//! rows in `qobra_sync.run_errors`.

use crate::catalog::{self, first_value};
use crate::deadline::Deadline;
use crate::error::{Error, Result, SqlState};
use crate::filter;
use crate::gucs;
use crate::locks::{self, Holding};
use crate::reader::{self, as_reader, snapshot_query};
use crate::registry;
use crate::snapshot::{self, Chunks, Rejections};
use crate::sqltypes::RegClass;
use pgrx::prelude::*;
use qobra_sync_core::client::{ApiKey, ClientConfig, QobraClient};
use qobra_sync_core::destination::read_key_file;
use qobra_sync_core::error::quoted;
use qobra_sync_core::guard::{decide, Decision, Guards, LastSuccess};
use qobra_sync_core::mapping::map_columns;
use qobra_sync_core::push::{push, ChunkInfo, ChunkSource};
use qobra_sync_core::retry::RetryPolicy;
use qobra_sync_core::wire::RecordEncoder;
use std::time::Duration;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Schedule,
    Request,
}

impl Trigger {
    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Request => "request",
        }
    }
}

/// How many times a push may restart from the top after a late failure.
const RESTART_BUDGET: u32 = 2;

/// A run's outcome, as recorded.
#[derive(Debug, Default)]
struct Outcome {
    status: &'static str,
    rows_read: u64,
    rows_sent: u64,
    rows_rejected: u64,
    bytes_sent: u64,
    requests: u32,
    retries: u32,
    restarts: u32,
    import_ids: Vec<String>,
    fingerprint: Option<String>,
    possibly_partial: bool,
    error: Option<String>,
    rejections: Rejections,
}

/// Whether the push must stop now: a cancel or termination request is pending for this
/// backend, or the run is past its deadline.
fn interrupted() -> bool {
    cancel_pending() || Deadline::passed()
}

/// Whether Postgres has a cancel or termination request pending for this backend.
fn cancel_pending() -> bool {
    unsafe {
        pg_sys::InterruptPending != 0
            && (pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0)
    }
}

/// The API base URL and key, or the error saying to set them. The key comes from the file
/// `qobra_sync.api_key_file` names when it is set, else from `set_destination`.
fn destination() -> Result<(String, String)> {
    let json: Option<pgrx::JsonB> = first_value(
        "SELECT pg_catalog.jsonb_build_array(base_url, api_key) FROM qobra_sync.destination",
        &[],
    )?;
    let Some(pgrx::JsonB(serde_json::Value::Array(v))) = json else {
        return Err(Error::new(
            SqlState::ObjectNotInPrerequisiteState,
            "no destination is set",
        )
        .hint("Call qobra_sync.set_destination(api_key) first."));
    };
    let base_url = v.first().and_then(|x| x.as_str()).unwrap_or_default();
    let key_file = gucs::text(&gucs::API_KEY_FILE);
    let key = if !key_file.is_empty() {
        let server_uid = unsafe { libc_geteuid() };
        read_key_file(std::path::Path::new(&key_file), server_uid)?
    } else {
        match v.get(1).and_then(|x| x.as_str()) {
            Some(key) => key.to_owned(),
            None => return Err(Error::new(
                SqlState::ObjectNotInPrerequisiteState,
                "no API key is set",
            )
            .detail("set_destination() was called without a key and qobra_sync.api_key_file is not set.")
            .hint("Set qobra_sync.api_key_file to the file that holds the key, or call qobra_sync.set_destination(api_key).")),
        }
    };
    Ok((base_url.to_owned(), key))
}

unsafe extern "C" {
    /// The server's OS user, which must own the key file.
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// The HTTP client of a push, configured from the settings.
fn client() -> Result<QobraClient> {
    let (base_url, key) = destination()?;
    let mut config = ClientConfig::new(base_url, ApiKey::new(key));
    let timeout = Duration::from_millis(gucs::HTTP_TIMEOUT_MS.get() as u64);
    config.request_timeout = timeout;
    config.connect_timeout = timeout.min(Duration::from_secs(10));
    let wait_max = Duration::from_millis(gucs::RETRY_WAIT_MAX_MS.get() as u64);
    config.retry = RetryPolicy {
        max_retries: gucs::MAX_RETRIES.get() as u32,
        max_backoff: wait_max,
        retry_after_cap: wait_max,
        ..RetryPolicy::default()
    };
    QobraClient::new(&config)
}

/// Takes the push lock of a source, or says that a push of it is already running.
fn lock(source: pg_sys::Oid, name: &str, holding: Holding) -> Result<()> {
    if locks::try_push_lock(source, holding) {
        return Ok(());
    }
    Err(Error::new(
        SqlState::ObjectNotInPrerequisiteState,
        format!("a push of {name} is already running"),
    )
    .detail("One push of a table runs at a time.")
    .hint("Wait for it to finish (see qobra_sync.runs), then try again."))
}

/// The last successful run of a source, for the guards.
fn last_success(source: pg_sys::Oid) -> Result<Option<LastSuccess>> {
    let json: Option<pgrx::JsonB> = first_value(
        "SELECT pg_catalog.jsonb_build_array(rows_read, snapshot_sha256) FROM qobra_sync.runs
          WHERE source OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'succeeded' ORDER BY run_id DESC LIMIT 1",
        &[RegClass(source).into()],
    )?;
    Ok(json.and_then(|pgrx::JsonB(v)| {
        Some(LastSuccess {
            rows_read: v.get(0)?.as_u64().unwrap_or(0),
            fingerprint: v.get(1).and_then(|f| f.as_str()).map(str::to_owned),
        })
    }))
}

/// A run that has started: its row is in `qobra_sync.runs` with status `running`.
pub struct Started {
    pub run_id: i64,
    trigger: Trigger,
    source: qobra_sync_core::mapping::Source,
    reg: qobra_sync_core::registration::Registration,
}

/// Pushes a registered source now and records the run; returns the run id.
/// Push outcomes (failed, blocked, skipped) are recorded, not raised; misuse raises.
pub fn sync(source: pg_sys::Oid, force: bool, trigger: Trigger) -> Result<i64> {
    let started = start(source, trigger, Holding::Transaction)?;
    let run_id = started.run_id;
    execute(started, force)?;
    Ok(run_id)
}

/// Checks a registration, takes the push lock and records a new run as running.
pub fn start(source: pg_sys::Oid, trigger: Trigger, holding: Holding) -> Result<Started> {
    let reg = registry::require(source)?;
    let described = catalog::check_unchanged(source, &reg.source_name)?;
    destination()?;
    lock(source, &described.name, holding)?;
    let run_id = start_run(source, &reg.source_name, &reg.data_table_key, trigger)?;
    Ok(Started {
        run_id,
        trigger,
        source: described,
        reg,
    })
}

/// Runs a started push to its end and records the outcome; returns the run's status.
pub fn execute(started: Started, force: bool) -> Result<&'static str> {
    let Started {
        run_id,
        trigger,
        source: described,
        reg,
    } = started;
    let reader = pg_sys::Oid::from(reg.run_as_oid);
    let client = client()?;
    let head = RunHead {
        run_id,
        source: described.oid,
        source_name: &reg.source_name,
        data_table_key: &reg.data_table_key,
        trigger,
        started_at: chrono::Utc::now(),
    };
    let slot =
        crate::shared::progress_start(run_id, described.oid, head.record(&Outcome::default()));
    if let Some(i) = slot {
        // A session's run row is in the caller's transaction: if that rolls back, the worker
        // records the run from the slot.
        crate::orphans::hold(i, run_id, trigger == Trigger::Manual);
    }
    let _deadline = Deadline::set(gucs::RUN_TIMEOUT_MS.get());
    let outcome = match prepare(&described, &reg, reader) {
        Err(e) => Outcome {
            status: "failed",
            error: Some(message(&e)),
            ..Default::default()
        },
        Ok((encoder, filter)) => match run(Job {
            source: &described,
            reg: &reg,
            reader,
            client: &client,
            encoder: &encoder,
            filter: filter.as_deref(),
            force,
            slot,
        }) {
            Ok(outcome) => outcome,
            // A read stopped at the run's deadline: the run failed, like one that timed out
            // waiting for Qobra.
            Err(e) if e.state == SqlState::QueryCanceled => Outcome {
                status: "failed",
                error: Some(message(&e)),
                ..Default::default()
            },
            Err(e) => return Err(e),
        },
    };
    crate::orphans::ended(slot, run_id, head.record(&outcome));
    finish_run(run_id, &outcome)?;
    report(run_id, &described.name, &outcome);
    Ok(outcome.status)
}

/// Releases the session-level push lock taken by [`start`] with [`Holding::Session`].
pub fn unlock(source: pg_sys::Oid) {
    locks::release_push_lock(source);
}

/// Records a run that could not run to its end (an error raised while it ran).
pub fn fail(run_id: i64, error: &str) -> Result<()> {
    catalog::execute(
        "UPDATE qobra_sync.runs SET status = 'failed', finished_at = pg_catalog.clock_timestamp(), error = $2 WHERE run_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) 'running'",
        &[run_id.into(), error.into()],
    )
}

/// Re-checks a registration before its run: mapping, filter (re-analysed) and reader.
fn prepare(
    source: &qobra_sync_core::mapping::Source,
    reg: &qobra_sync_core::registration::Registration,
    reader: pg_sys::Oid,
) -> Result<(RecordEncoder, Option<String>)> {
    let mapping = map_columns(source, &reg.columns)?;
    if let Some(why) = reader::reader_problem(reader)? {
        return Err(reader::refused_reader(why));
    }
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
    source: &'a qobra_sync_core::mapping::Source,
    reg: &'a qobra_sync_core::registration::Registration,
    reader: pg_sys::Oid,
    client: &'a QobraClient,
    encoder: &'a RecordEncoder,
    /// The canonical filter, re-analysed for this run.
    filter: Option<&'a str>,
    force: bool,
    /// The run's progress slot in shared memory, if it got one.
    slot: Option<usize>,
}

/// Census, guards and push, as the reader; returns what happened.
fn run(job: Job<'_>) -> Result<Outcome> {
    let Job {
        source,
        reg,
        reader,
        client,
        encoder,
        filter,
        force,
        slot,
    } = job;
    let id_column = reg.columns.id_column.clone().unwrap_or_default();
    let guaranteed = snapshot::id_guaranteed(pg_sys::Oid::from(source.oid), &id_column)?;
    let last = last_success(pg_sys::Oid::from(source.oid))?;
    let guards = Guards {
        deletion_guard: gucs::DELETION_GUARD.get(),
        skip_unchanged: gucs::SKIP_UNCHANGED.get(),
        force,
    };
    let query = snapshot_query(source, encoder, filter, None, None);
    let debounce = gucs::DEBOUNCE_SECONDS.get() as u32;
    let batch_rows = gucs::BATCH_ROWS.get() as usize;
    let encoding = snapshot::encoding_description(encoder);
    as_reader(reader, || {
        let mut census = snapshot::census(source, filter, &id_column, guaranteed)?;
        let mut outcome = Outcome {
            rows_read: census.rows,
            ..Default::default()
        };
        // Id violations and the deletion guard first; then, only when it can matter, read the
        // snapshot once without sending to see whether it changed.
        let mut decision = decide(&census, last.as_ref(), guards);
        let may_skip = guards.skip_unchanged
            && !force
            && last.as_ref().is_some_and(|l| l.fingerprint.is_some());
        if decision == Decision::Push && may_skip {
            census.fingerprint = Some(snapshot::fingerprint(&query, encoder)?);
            outcome.fingerprint = census.fingerprint.clone();
            decision = decide(&census, last.as_ref(), guards);
        }
        match decision {
            Decision::Blocked(why) => {
                outcome.status = "blocked";
                outcome.error = Some(why);
                return Ok(outcome);
            }
            Decision::Skipped(why) => {
                outcome.status = "skipped";
                outcome.error = Some(why);
                return Ok(outcome);
            }
            Decision::Push => {}
        }
        // The cursors of the push live in one SPI connection.
        let (result, rows_read, rejections, fingerprint) = Spi::connect(|_| {
            let mut chunks = Chunks::new(query.clone(), encoder, batch_rows);
            let mut on_progress = |p: &qobra_sync_core::push::Progress| {
                crate::shared::progress_update(
                    slot,
                    p.rows_sent,
                    p.bytes_sent,
                    p.chunk,
                    p.restarts,
                );
                // The worker's pg_stat_activity entry says how far it is (a session's entry keeps
                // the user's own statement).
                if unsafe { !pg_sys::MyBgworkerEntry.is_null() } {
                    crate::worker::activity(
                        pg_sys::BackendState::STATE_RUNNING,
                        &format!(
                            "pushing {}: {} rows sent in {} chunks",
                            source.name, p.rows_sent, p.chunk
                        ),
                    );
                }
            };
            crate::shared::progress_sending(slot);
            show_wait(pg_sys::PG_WAIT_EXTENSION);
            let result = push(
                &mut ShowingWaits(&mut chunks),
                client,
                &reg.data_table_key,
                debounce,
                RESTART_BUDGET,
                &interrupted,
                &mut on_progress,
            );
            show_wait(0);
            let fingerprint = chunks.fingerprint.digest(&encoding);
            (
                result,
                chunks.rows_read,
                std::mem::take(&mut chunks.rejections),
                fingerprint,
            )
        });
        outcome.rows_read = rows_read;
        outcome.fingerprint = Some(fingerprint);
        outcome.rows_rejected = rejections.count;
        outcome.rejections = rejections;
        let report = match result {
            Ok(report) => {
                outcome.status = "succeeded";
                report
            }
            Err(failure) => {
                if failure.interrupted && cancel_pending() {
                    pgrx::check_for_interrupts!();
                }
                outcome.status = "failed";
                outcome.possibly_partial = failure.possibly_partial;
                outcome.error = Some(if failure.interrupted && Deadline::passed() {
                    message(&reader::deadline_error())
                } else {
                    message(&failure.error)
                });
                failure.report
            }
        };
        outcome.rows_sent = report.rows_sent;
        outcome.bytes_sent = report.bytes_sent;
        outcome.requests = report.requests;
        outcome.retries = report.retries;
        outcome.restarts = report.restarts;
        outcome.import_ids = report.import_ids;
        Ok(outcome)
    })
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
        show_wait(0);
        let read = self.0.next_chunk(out);
        show_wait(pg_sys::PG_WAIT_EXTENSION);
        read
    }
}

/// Sets this backend's wait event in `pg_stat_activity` (0: none), as PostgreSQL's own
/// `pgstat_report_wait_start` does (an inline function pgrx cannot call).
fn show_wait(event: u32) {
    // SAFETY: my_wait_event_info always points at a valid 4-byte slot of this backend (its
    // PGPROC's, or a local one before it has one); a volatile store is what Postgres does.
    unsafe { std::ptr::write_volatile(pg_sys::my_wait_event_info, event) };
}

/// What a run's row says from its start.
struct RunHead<'a> {
    run_id: i64,
    source: u32,
    source_name: &'a str,
    data_table_key: &'a str,
    trigger: Trigger,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl RunHead<'_> {
    /// The run's row (`qobra_sync.runs` columns as JSON) with `outcome` (none yet while its
    /// status is empty), cut to fit a progress slot: what the worker records if a rollback takes
    /// the row away (see `orphans`).
    fn record(&self, o: &Outcome) -> crate::shared::Record {
        let ended = !o.status.is_empty();
        let mut row = serde_json::json!({
            "run_id": self.run_id,
            "source": self.source,
            "source_name": self.source_name,
            "data_table_key": self.data_table_key,
            "trigger": self.trigger.as_str(),
            "status": if ended { o.status } else { "running" },
            "started_at": self.started_at.to_rfc3339(),
            "finished_at": ended.then(|| chrono::Utc::now().to_rfc3339()),
            "rows_read": o.rows_read,
            "rows_sent": o.rows_sent,
            "rows_rejected": o.rows_rejected,
            "bytes_sent": o.bytes_sent,
            "requests": o.requests,
            "retries": o.retries,
            "restarts": o.restarts,
            "import_ids": o.import_ids,
            "import_status": (!o.import_ids.is_empty()).then_some("pending"),
            "snapshot_sha256": o.fingerprint,
            "possibly_partial": o.possibly_partial,
            "error": o.error,
        });
        crate::shared::Record::new(&row.to_string())
            .or_else(|| {
                // Too long (a long error, many imports): keep the error's start, drop the ids.
                let error = o
                    .error
                    .as_deref()
                    .map(|e| e.chars().take(500).collect::<String>());
                row["error"] = error.into();
                row["import_ids"] = serde_json::json!([]);
                row["import_status"] = (!o.import_ids.is_empty()).then_some("unknown").into();
                crate::shared::Record::new(&row.to_string())
            })
            .unwrap_or_default()
    }
}

/// Records a new run as running and returns its id.
fn start_run(source: pg_sys::Oid, name: &str, key: &str, trigger: Trigger) -> Result<i64> {
    catalog::writing(|c| {
        c.update(
            "INSERT INTO qobra_sync.runs (source, source_name, data_table_key, trigger, status)
             VALUES ($1, $2, $3, $4, 'running') RETURNING run_id",
            Some(1),
            &[
                RegClass(source).into(),
                name.into(),
                key.into(),
                trigger.as_str().into(),
            ],
        )?
        .first()
        .get::<i64>(1)
    })?
    .ok_or_else(|| Error::internal("no run id"))
}

/// Records a run's outcome and its rejected rows.
fn finish_run(run_id: i64, o: &Outcome) -> Result<()> {
    let import_status = if o.import_ids.is_empty() {
        None
    } else {
        Some("pending")
    };
    catalog::writing(|c| -> std::result::Result<(), pgrx::spi::Error> {
        c.update(
            "UPDATE qobra_sync.runs SET status = $2, finished_at = pg_catalog.clock_timestamp(), rows_read = $3,
                    rows_sent = $4, rows_rejected = $5, bytes_sent = $6, requests = $7, retries = $8, restarts = $9,
                    import_ids = $10, import_status = $11, snapshot_sha256 = $12, possibly_partial = $13, error = $14
              WHERE run_id OPERATOR(pg_catalog.=) $1",
            None,
            &[
                run_id.into(),
                o.status.into(),
                (o.rows_read as i64).into(),
                (o.rows_sent as i64).into(),
                (o.rows_rejected as i64).into(),
                (o.bytes_sent as i64).into(),
                (o.requests as i32).into(),
                (o.retries as i32).into(),
                (o.restarts as i32).into(),
                o.import_ids.clone().into(),
                import_status.into(),
                o.fingerprint.clone().into(),
                o.possibly_partial.into(),
                o.error.clone().into(),
            ],
        )?;
        for (line, row, details) in &o.rejections.kept {
            c.update(
                "INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, \"row\", details) VALUES ($1, 'push', $2, $3, $4)",
                None,
                &[run_id.into(), (*line as i64).into(), pgrx::JsonB(row.clone()).into(), details.as_str().into()],
            )?;
        }
        Ok(())
    })
}

/// Tells the caller how the run went: a NOTICE on success, a WARNING otherwise.
fn report(run_id: i64, name: &str, o: &Outcome) {
    let summary = format!(
        "run {run_id} of {name}: {} — {} rows read, {} sent, {} rejected, {} bytes in {} requests ({} retries, {} restarts)",
        o.status, o.rows_read, o.rows_sent, o.rows_rejected, o.bytes_sent, o.requests, o.retries, o.restarts
    );
    match (o.status, &o.error) {
        ("succeeded", _) => pgrx::notice!("{summary}"),
        ("skipped", Some(e)) => pgrx::notice!("{summary}: {e}"),
        (_, Some(e)) => pgrx::warning!("{summary}: {e}"),
        _ => pgrx::warning!("{summary}"),
    }
}

/// An error as one line for `runs.error`: message, detail and hint.
fn message(e: &Error) -> String {
    let mut text = e.message.clone();
    if let Some(d) = &e.detail {
        text.push_str(&format!(" ({d})"));
    }
    if let Some(h) = &e.hint {
        text.push_str(&format!(" Hint: {h}"));
    }
    text
}

/// Checks Qobra's imports of recent runs once each and records their outcome; returns how many
/// runs were settled. Never waits for an import: a pending one is looked at again next time.
pub fn poll_imports() -> Result<i64> {
    let pending: Option<pgrx::JsonB> = first_value(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(run_id, import_ids) ORDER BY run_id)
           FROM qobra_sync.runs WHERE import_status OPERATOR(pg_catalog.=) 'pending'
            AND started_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => 2))",
        &[],
    )?;
    let Some(pgrx::JsonB(serde_json::Value::Array(pending))) = pending else {
        return Ok(0);
    };
    let client = client()?;
    let mut settled = 0;
    for entry in pending {
        let run_id = entry[0].as_i64().unwrap_or_default();
        let ids: Vec<String> = entry[1]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let mut all_finished = true;
        let mut errors: Vec<(Option<u64>, Option<serde_json::Value>, String)> = vec![];
        for id in &ids {
            show_wait(pg_sys::PG_WAIT_EXTENSION);
            let answer = client.import_status(id, &interrupted);
            show_wait(0);
            let status = match answer {
                Ok(s) => s,
                Err(e) => {
                    if interrupted() {
                        pgrx::check_for_interrupts!();
                    }
                    pgrx::warning!(
                        "import {} of run {run_id}: {}",
                        quoted(id),
                        Error::from(e).message
                    );
                    all_finished = false;
                    continue;
                }
            };
            if !status.is_finished() {
                all_finished = false;
                continue;
            }
            for (_, p) in status.parsing_errors() {
                errors.push((
                    p.line_number,
                    p.row.clone(),
                    p.details.clone().unwrap_or_else(|| "parsing error".into()),
                ));
            }
            for t in &status.data_tables_details {
                if let Some(err) = &t.error {
                    if err.parsing_error_details.is_empty() {
                        errors.push((
                            None,
                            None,
                            format!(
                                "{}: {}",
                                err.title.clone().unwrap_or_default(),
                                err.description.clone().unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
        }
        if !all_finished {
            continue;
        }
        catalog::writing(|c| -> std::result::Result<(), pgrx::spi::Error> {
            for (line, row, details) in &errors {
                c.update(
                    "INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, \"row\", details) VALUES ($1, 'import', $2, $3, $4)",
                    None,
                    &[run_id.into(), line.map(|l| l as i64).into(), row.clone().map(pgrx::JsonB).into(), details.as_str().into()],
                )?;
            }
            c.update(
                "UPDATE qobra_sync.runs SET import_status = $2 WHERE run_id OPERATOR(pg_catalog.=) $1",
                None,
                &[run_id.into(), (if errors.is_empty() { "finished" } else { "failed" }).into()],
            )?;
            Ok(())
        })?;
        settled += 1;
    }
    Ok(settled)
}

//! Run rows: `qobra_sync.runs` and `qobra_sync.run_errors`, the one place that writes them.
//!
//! A run's row is written when it starts (`running`) and updated when it ends; the worker also
//! records runs that could not start, runs a rollback took away (from their shared-memory slot,
//! see `orphans`), marks runs a crash left `running` as interrupted, and purges old history.
//! Every status and trigger is bound from [`RunStatus`] and [`Trigger`], never spelled here.

use crate::pg::error::{Error, Result};
use crate::pg::gucs;
use crate::pg::shared::{Record, RECORD_BYTES};
use crate::pg::spi::{execute, first_value, first_written, writing};
use crate::pg::sqltypes::RegClass;
use crate::pg::Oid;
use qobra_sync_core::guard::LastSuccess;
use qobra_sync_core::registration::Registration;
use qobra_sync_core::runs::{Ended, ImportSettled, Outcome, RunHead, RunStatus, Trigger, CHANNEL};

/// The error recorded for a run a crash, a restart or the worker's termination cut short.
const CRASHED: &str = "the run was interrupted (server restart, crash or worker termination); the next run pushes the whole table again";

/// Records a new run of `reg` as running and returns its id.
pub fn start(reg: &Registration, trigger: Trigger) -> Result<i64> {
    writing(|c| {
        c.update(
            "INSERT INTO qobra_sync.runs (source, source_name, data_table_key, trigger, status, owner)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING run_id",
            Some(1),
            &[
                RegClass(Oid::from(reg.source)).into(),
                reg.source_name.as_str().into(),
                reg.data_table_key.as_str().into(),
                trigger.as_str().into(),
                RunStatus::Running.as_str().into(),
                Oid::from(reg.owner_oid).into(),
            ],
        )?
        .first()
        .get::<i64>(1)
    })?
    .ok_or_else(|| Error::internal("no run id"))
}

/// Records a run's outcome and its rejected rows.
pub fn finish(run_id: i64, o: &Outcome) -> Result<()> {
    writing(|c| -> std::result::Result<(), pgrx::spi::Error> {
        c.update(
            "UPDATE qobra_sync.runs SET status = $2, finished_at = pg_catalog.clock_timestamp(), rows_read = $3,
                    rows_sent = $4, rows_rejected = $5, bytes_sent = $6, requests = $7, retries = $8, restarts = $9,
                    import_ids = $10, import_status = $11, snapshot_sha256 = $12, possibly_partial = $13, error = $14
              WHERE run_id OPERATOR(pg_catalog.=) $1",
            None,
            &[
                run_id.into(),
                o.status.as_str().into(),
                (o.rows_read as i64).into(),
                (o.rows_sent as i64).into(),
                (o.rows_rejected as i64).into(),
                (o.bytes_sent as i64).into(),
                (o.requests as i32).into(),
                (o.retries as i32).into(),
                (o.restarts as i32).into(),
                o.import_ids.clone().into(),
                o.import_status().into(),
                o.fingerprint.clone().into(),
                o.possibly_partial.into(),
                o.error.clone().into(),
            ],
        )?;
        for (line, row, details) in &o.rejections.kept {
            c.update(
                "INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, \"row\", details) VALUES ($1, 'push', $2, $3, $4)",
                None,
                &[run_id.into(), line.map(|l| l as i64).into(), pgrx::JsonB(row.clone()).into(), details.as_str().into()],
            )?;
        }
        Ok(())
    })?;
    ended(run_id, true)
}

/// Records a run that could not run to its end (an error raised while it ran), if it is still
/// recorded as running.
pub fn fail(run_id: i64, error: &str) -> Result<()> {
    let failed: Option<i64> = first_written(
        "UPDATE qobra_sync.runs SET status = $3, finished_at = pg_catalog.clock_timestamp(), error = $2
          WHERE run_id OPERATOR(pg_catalog.=) $1 AND status OPERATOR(pg_catalog.=) $4 RETURNING run_id",
        &[
            run_id.into(),
            error.into(),
            RunStatus::Failed.as_str().into(),
            RunStatus::Running.as_str().into(),
        ],
    )?;
    failed.map_or(Ok(()), |id| ended(id, true))
}

/// Records a run of `reg` that could not even start (source dropped or renamed, no
/// destination…).
pub fn refused(reg: &Registration, trigger: Trigger, e: &Error) -> Result<()> {
    let run_id: Option<i64> = first_written(
        "INSERT INTO qobra_sync.runs (source, source_name, data_table_key, trigger, status, finished_at, error, owner)
             VALUES ($1, $2, $3, $4, $5, pg_catalog.clock_timestamp(), $6, $7) RETURNING run_id",
        &[
            RegClass(Oid::from(reg.source)).into(),
            reg.source_name.as_str().into(),
            reg.data_table_key.as_str().into(),
            trigger.as_str().into(),
            RunStatus::Failed.as_str().into(),
            e.message.as_str().into(),
            Oid::from(reg.owner_oid).into(),
        ],
    )?;
    run_id.map_or(Ok(()), |id| ended(id, true))
}

/// Records the run of a session whose transaction rolled its row back, from `row` (the columns
/// of `qobra_sync.runs` as JSON), unless the session's own row made it after all. The session
/// logged the run's end if it got there (`logged`); its notification went with the rollback.
pub fn record_orphan(row: serde_json::Value, logged: bool) -> Result<()> {
    let run_id: Option<i64> = first_written(
        "INSERT INTO qobra_sync.runs
         SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::qobra_sync.runs, $1) r
          WHERE NOT EXISTS (SELECT 1 FROM qobra_sync.runs x WHERE x.run_id OPERATOR(pg_catalog.=) r.run_id)
         RETURNING run_id",
        &[pgrx::JsonB(row).into()],
    )?;
    run_id.map_or(Ok(()), |id| ended(id, !logged))
}

/// Marks runs left running by a previous life of the worker (or a crashed server) as
/// interrupted. Runs of live sessions are never seen: they are not committed.
pub fn mark_interrupted() -> Result<()> {
    let marked: Option<Vec<i64>> = first_written(
        "WITH marked AS (
             UPDATE qobra_sync.runs SET status = $1, finished_at = pg_catalog.clock_timestamp(),
                    error = $3, possibly_partial = true
              WHERE status OPERATOR(pg_catalog.=) $2 RETURNING run_id)
         SELECT pg_catalog.array_agg(run_id ORDER BY run_id) FROM marked",
        &[
            RunStatus::Interrupted.as_str().into(),
            RunStatus::Running.as_str().into(),
            CRASHED.into(),
        ],
    )?;
    marked
        .unwrap_or_default()
        .into_iter()
        .try_for_each(|id| ended(id, true))
}

/// What follows the end of run `run_id`, whoever wrote it: the guards' baseline kept up to
/// date, then the run told ([`announce`]).
fn ended(run_id: i64, log: bool) -> Result<()> {
    settle_baseline(run_id)?;
    announce(run_id, log)
}

/// Tells that run `run_id` ended: a NOTIFY on channel `qobra_sync` with the run as JSON,
/// delivered when the transaction that wrote the run's end commits (never if it rolls back),
/// and, when `log`, the run's line in the server log.
fn announce(run_id: i64, log: bool) -> Result<()> {
    let ended: Option<Ended> = read_run(
        "SELECT pg_catalog.jsonb_build_object('run_id', run_id, 'source', source::pg_catalog.text,
                    'data_table_key', data_table_key, 'trigger', trigger, 'status', status,
                    'rows_sent', rows_sent, 'rows_rejected', rows_rejected,
                    'possibly_partial', possibly_partial, 'error', error, 'requests', requests,
                    'retries', retries,
                    'duration_ms', COALESCE(pg_catalog.round(pg_catalog.date_part('epoch',
                        finished_at OPERATOR(pg_catalog.-) started_at) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, 0))
           FROM qobra_sync.runs WHERE run_id OPERATOR(pg_catalog.=) $1",
        run_id,
    )?;
    let Some(ended) = ended else {
        return Ok(());
    };
    notify(&ended.notification())?;
    if log {
        pgrx::log!("{}", ended.log_line());
    }
    Ok(())
}

/// Tells that the imports of run `run_id` were settled: a NOTIFY on channel `qobra_sync` with
/// the run's id and import status, and its LOG line, so that an import Qobra failed reaches the
/// same alerts as a run that failed.
pub fn announce_import(run_id: i64) -> Result<()> {
    let settled: Option<ImportSettled> = read_run(
        "SELECT pg_catalog.jsonb_build_object('run_id', r.run_id, 'source', r.source::pg_catalog.text,
                    'data_table_key', r.data_table_key, 'import_status', r.import_status,
                    'import_errors', (SELECT pg_catalog.count(*) FROM qobra_sync.run_errors e
                                       WHERE e.run_id OPERATOR(pg_catalog.=) r.run_id
                                         AND e.origin OPERATOR(pg_catalog.=) 'import'))
           FROM qobra_sync.runs r WHERE r.run_id OPERATOR(pg_catalog.=) $1",
        run_id,
    )?;
    if let Some(settled) = settled {
        notify(&settled.notification())?;
        pgrx::log!("{}", settled.log_line());
    }
    Ok(())
}

/// What `sql` (one jsonb of run `$1`) says of run `run_id`, read into `T`; None without the run.
fn read_run<T: serde::de::DeserializeOwned>(sql: &str, run_id: i64) -> Result<Option<T>> {
    let Some(pgrx::JsonB(run)) = first_value::<pgrx::JsonB>(sql, &[run_id.into()])? else {
        return Ok(None);
    };
    serde_json::from_value(run)
        .map(Some)
        .map_err(|e| Error::internal(format!("cannot read run {run_id}: {e}")))
}

/// Sends `payload` on channel `qobra_sync`, delivered when the transaction commits.
fn notify(payload: &str) -> Result<()> {
    execute(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[CHANNEL.into(), payload.into()],
    )
}

/// Deletes run history older than `qobra_sync.history_days`.
pub fn purge() -> Result<()> {
    execute(
        "DELETE FROM qobra_sync.runs WHERE started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))",
        &[gucs::HISTORY_DAYS.get().into()],
    )
}

/// The last successful run of a source's registration, for the guards: its baseline, which a
/// purge of the history does not touch. Its fingerprint is left out when a later run may have
/// left Qobra's table partial: the snapshot must then be pushed again, even unchanged.
pub fn last_success(source: Oid) -> Result<Option<LastSuccess>> {
    let success: Option<pgrx::JsonB> = first_value(
        "SELECT b.success FROM qobra_sync.baselines b
           JOIN qobra_sync.registrations g ON g.source OPERATOR(pg_catalog.=) b.source
                                          AND g.owner OPERATOR(pg_catalog.=) b.owner
          WHERE b.source OPERATOR(pg_catalog.=) $1",
        &[RegClass(source).into()],
    )?;
    Ok(success.and_then(|pgrx::JsonB(v)| {
        Some(LastSuccess {
            rows_read: v.get("rows")?.as_u64().unwrap_or(0),
            fingerprint: v.get("sha256").and_then(|f| f.as_str()).map(str::to_owned),
        })
    }))
}

/// Keeps the guards' baseline of the registration a run belongs to (same source, same owner)
/// up to date with how the run ended: a success is the new baseline, a run that may have left
/// Qobra partial voids its fingerprint, a success or a skip says Qobra holds the snapshot. In a
/// table of its own, so that no lock on the registration's row (an `alter_table()` in progress)
/// holds up the end of a run.
fn settle_baseline(run_id: i64) -> Result<()> {
    let statuses = [RunStatus::Succeeded.as_str(), RunStatus::Skipped.as_str()];
    execute(
        "INSERT INTO qobra_sync.baselines (source, owner, success, alive_at)
         SELECT r.source, r.owner,
                CASE WHEN r.status OPERATOR(pg_catalog.=) $2 THEN pg_catalog.jsonb_build_object(
                     'run_id', r.run_id, 'rows', r.rows_read, 'sent', r.rows_sent,
                     'sha256', r.snapshot_sha256, 'at', r.finished_at) END,
                CASE WHEN r.status OPERATOR(pg_catalog.=) ANY (ARRAY[$2, $3]) THEN r.finished_at END
           FROM qobra_sync.runs r
          WHERE r.run_id OPERATOR(pg_catalog.=) $1 AND r.owner IS NOT NULL
         ON CONFLICT (source, owner) DO UPDATE
            SET success = COALESCE(excluded.success, baselines.success),
                alive_at = COALESCE(excluded.alive_at, baselines.alive_at)",
        &[run_id.into(), statuses[0].into(), statuses[1].into()],
    )?;
    execute(
        "UPDATE qobra_sync.baselines SET success = pg_catalog.jsonb_set(success, '{sha256}', 'null')
           FROM qobra_sync.runs r
          WHERE r.run_id OPERATOR(pg_catalog.=) $1 AND r.possibly_partial
            AND baselines.source OPERATOR(pg_catalog.=) r.source AND baselines.owner OPERATOR(pg_catalog.=) r.owner",
        &[run_id.into()],
    )
}

/// The run's row as a progress slot keeps it (what the worker records if a rollback takes the
/// row away); an empty record when even a shortened row does not fit.
pub fn slot_record(head: &RunHead, o: &Outcome) -> Record {
    head.row(o, chrono::Utc::now(), RECORD_BYTES)
        .and_then(|text| Record::new(&text))
        .unwrap_or_default()
}

/// Tells the caller how the run went: a NOTICE on success or a skip, a WARNING otherwise.
pub fn report(run_id: i64, name: &str, o: &Outcome) {
    let summary = o.summary(run_id, name);
    match (o.status, &o.error, &o.note) {
        (RunStatus::Succeeded, ..) => pgrx::notice!("{summary}"),
        (RunStatus::Skipped, _, Some(note)) => pgrx::notice!("{summary}: {note}"),
        (RunStatus::Skipped, ..) => pgrx::notice!("{summary}"),
        (_, Some(e), _) => pgrx::warning!("{summary}: {e}"),
        _ => pgrx::warning!("{summary}"),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::testing::{fixture, oid};
    use pgrx::prelude::*;

    /// The values a CHECK constraint of `qobra_sync.runs` allows for `column`.
    fn allowed(column: &str) -> Vec<String> {
        let definition = Spi::get_one_with_args::<String>(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
              WHERE c.conrelid = 'qobra_sync.runs'::regclass AND c.contype = 'c'
                AND pg_get_constraintdef(c.oid) LIKE '%(' || $1 || ' %'",
            &[column.into()],
        )
        .unwrap()
        .unwrap();
        definition
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[pg_test]
    fn statuses_and_triggers_are_those_the_schema_allows() {
        let statuses: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(allowed("status"), statuses);
        let triggers: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(allowed("trigger"), triggers);
        use qobra_sync_core::runs::ImportOutcome;
        let outcomes: Vec<&str> = ImportOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(allowed("import_status"), outcomes);
    }

    #[pg_test]
    fn a_run_row_is_started_finished_and_found_as_the_last_success() {
        fixture();
        let source = oid("t_deals");
        let reg = Registration {
            source: source.to_u32(),
            source_name: "public.t_deals".into(),
            data_table_key: "deals".into(),
            columns: Default::default(),
            filter: None,
            schedule: Some("1 hour".into()),
            run_as: "t_reader".into(),
            run_as_oid: crate::testing::role("t_reader").to_u32(),
            owner: "postgres".into(),
            owner_oid: 10,
            shape: None,
            shape_here: false,
            follow_name: false,
            source_owner: None,
            paused: false,
        };
        Spi::run(
            "INSERT INTO qobra_sync.registrations (source, source_name, data_table_key, id_column, name_column,
                                                   schedule, run_as, owner)
             VALUES ('t_deals', 'public.t_deals', 'deals', 'id', 'title', '1 hour', 't_reader', 'postgres')",
        )
        .unwrap();
        // A baseline left by another owner's registration of the same source is not this one's.
        Spi::run("INSERT INTO qobra_sync.baselines VALUES ('t_deals', 't_reader', '{\"rows\": 99}', NULL)").unwrap();
        let run_id = start(&reg, Trigger::Manual).unwrap();
        assert!(last_success(source).unwrap().is_none());
        let outcome = Outcome {
            status: RunStatus::Succeeded,
            rows_read: 2,
            fingerprint: Some("abc".into()),
            ..Outcome::default()
        };
        finish(run_id, &outcome).unwrap();
        let last = last_success(source).unwrap().unwrap();
        assert_eq!(
            (last.rows_read, last.fingerprint.as_deref()),
            (2, Some("abc"))
        );
        // The baseline is the registration's: purging the history leaves it.
        Spi::run("DELETE FROM qobra_sync.runs").unwrap();
        assert_eq!(last_success(source).unwrap().unwrap().rows_read, 2);
        // A later run that may have left Qobra partial voids its fingerprint, not its size.
        let partial = start(&reg, Trigger::Manual).unwrap();
        let cut = Outcome {
            status: RunStatus::Failed,
            possibly_partial: true,
            ..Outcome::default()
        };
        finish(partial, &cut).unwrap();
        let last = last_success(source).unwrap().unwrap();
        assert_eq!((last.rows_read, last.fingerprint), (2, None));
        let run_id = start(&reg, Trigger::Manual).unwrap();
        finish(run_id, &outcome).unwrap();
        fail(run_id, "too late").unwrap();
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM qobra_sync.runs WHERE run_id = $1",
            &[run_id.into()],
        )
        .unwrap();
        assert_eq!(
            status.as_deref(),
            Some("succeeded"),
            "fail() only touches running runs"
        );
    }
}

//! Import polling: Qobra imports a push's records in the background; its outcome (finished,
//! rows it could not parse) is looked at afterwards and lands in `runs` and `run_errors`.

use crate::pg::activity;
use crate::pg::deadline::must_stop;
use crate::pg::error::{Error, Result};
use crate::pg::spi::{first_value, first_written, writing};
use crate::registry::client::client;
use crate::sync::runs::announce_import;
use qobra_sync_core::client::{PushError, QobraClient};
use qobra_sync_core::error::quoted;
use qobra_sync_core::runs::{ImportOutcome, IMPORTS_SETTLE_DAYS};
use std::time::{Duration, Instant};

/// The rows an import rejected: (line number, row, details).
type ErrorRows = Vec<(Option<u64>, Option<serde_json::Value>, String)>;

/// Checks Qobra's imports of recent runs once each and records their outcome; returns how many
/// runs were settled. Never waits for an import: a pending one is looked at again next time.
pub fn poll_imports() -> Result<i64> {
    Ok(poll(0, None, &|| false)?.settled)
}

/// What one look at the pending imports did.
pub struct Polled {
    /// Runs settled.
    pub settled: i64,
    /// When the look was cut short before the newest pending run: the run it goes on after.
    pub cut_after: Option<i64>,
}

/// Looks at the pending imports run by run, from the oldest after run `after` to the newest,
/// and records the outcome of the runs whose imports are over. Stops before the
/// next run once `budget` is spent, and at once (the request to Qobra dropped) when `give_way`
/// says so: the worker has a push to run.
pub fn poll(after: i64, budget: Option<Duration>, give_way: &dyn Fn() -> bool) -> Result<Polled> {
    let began = Instant::now();
    let expired = settle_expired()?;
    let mut pending = pending_runs()?;
    let mut polled = Polled {
        settled: expired,
        cut_after: None,
    };
    if pending.is_empty() {
        return Ok(polled);
    }
    // Oldest first after `after`: a look cut short goes on there next time, and one that
    // reaches the newest run is whole (the next starts from the oldest, POLL_EVERY later).
    let first = pending.partition_point(|(run_id, _)| *run_id <= after);
    pending.drain(..first);
    let client = client()?;
    let count = pending.len();
    let mut looked = after;
    for (i, (run_id, ids)) in pending.into_iter().enumerate() {
        match look(&client, run_id, &ids, give_way) {
            Look::Over(outcome) => polled.settled += i64::from(record(run_id, &outcome)?),
            Look::NotYet => {}
            Look::GaveWay => {
                polled.cut_after = Some(looked);
                break;
            }
        }
        looked = run_id;
        let spent = budget.is_some_and(|b| began.elapsed() >= b);
        if i + 1 < count && (spent || give_way()) {
            polled.cut_after = Some(looked);
            break;
        }
    }
    Ok(polled)
}

/// Settles as `unknown` the runs whose imports were still pending [`IMPORTS_SETTLE_DAYS`]
/// after they started (Qobra was not reached in time, or never finished them), each with a row
/// in `run_errors` saying so, and announces them; returns how many.
fn settle_expired() -> Result<i64> {
    let expired: Option<Vec<i64>> = first_written(
        "WITH expired AS (
              UPDATE qobra_sync.runs SET import_status = $2
               WHERE import_status OPERATOR(pg_catalog.=) $3
                 AND started_at OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))
              RETURNING run_id),
              told AS (
              INSERT INTO qobra_sync.run_errors (run_id, origin, details)
              SELECT run_id, 'import', pg_catalog.format('Qobra''s imports were not over %s days after the push: how they ended is not known', $1)
                FROM expired RETURNING run_id)
         SELECT pg_catalog.array_agg(run_id ORDER BY run_id) FROM told",
        &[
            IMPORTS_SETTLE_DAYS.into(),
            ImportOutcome::Unknown.as_str().into(),
            ImportOutcome::Pending.as_str().into(),
        ],
    )?;
    let expired = expired.unwrap_or_default();
    for &run_id in &expired {
        announce_import(run_id)?;
    }
    Ok(expired.len() as i64)
}

/// The runs of the last [`IMPORTS_SETTLE_DAYS`] days whose imports Qobra has not finished, with
/// their import ids, by run id.
fn pending_runs() -> Result<Vec<(i64, Vec<String>)>> {
    let pending: Option<pgrx::JsonB> = first_value(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(run_id, import_ids) ORDER BY run_id)
           FROM qobra_sync.runs WHERE import_status OPERATOR(pg_catalog.=) $2
            AND started_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => $1))",
        &[IMPORTS_SETTLE_DAYS.into(), ImportOutcome::Pending.as_str().into()],
    )?;
    let Some(pgrx::JsonB(serde_json::Value::Array(pending))) = pending else {
        return Ok(vec![]);
    };
    Ok(pending
        .iter()
        .map(|entry| {
            let ids = entry[1]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            (entry[0].as_i64().unwrap_or_default(), ids)
        })
        .collect())
}

/// What a look at one run's imports found.
enum Look {
    /// Every import is finished or unknown to Qobra.
    Over(Settled),
    /// Some import is not over, or could not be read (a WARNING says why).
    NotYet,
    /// The look was dropped to give way to a push.
    GaveWay,
}

/// How a run's imports ended, once every one of them is over.
struct Settled {
    /// The rows Qobra rejected, and one row for each import Qobra does not know.
    errors: ErrorRows,
    /// Some import is unknown to Qobra: what it did with that part of the push cannot be known.
    lost: bool,
}

/// Looks at the imports `ids` of run `run_id`: over once each is finished or unknown to Qobra
/// (404: it will not become known).
fn look(client: &QobraClient, run_id: i64, ids: &[String], give_way: &dyn Fn() -> bool) -> Look {
    let mut settled = Settled {
        errors: vec![],
        lost: false,
    };
    let mut all_over = true;
    for id in ids {
        activity::waiting_on_qobra();
        let answer = client.import_status(id, &|| must_stop() || give_way());
        activity::not_waiting();
        match answer {
            Ok(status) if status.is_finished() => settled.errors.extend(status.error_rows()),
            Ok(_) => all_over = false,
            Err(e) if e.is_not_found() => {
                settled.lost = true;
                settled.errors.push((
                    None,
                    None,
                    format!(
                        "Qobra does not know import {} ({}): how it ended cannot be known",
                        quoted(id),
                        Error::from(e).message
                    ),
                ));
            }
            Err(PushError::Interrupted) if !must_stop() => return Look::GaveWay,
            Err(e) => {
                if must_stop() {
                    pgrx::check_for_interrupts!();
                }
                pgrx::warning!(
                    "import {} of run {run_id}: {}",
                    quoted(id),
                    Error::from(e).message
                );
                all_over = false;
            }
        }
    }
    if all_over {
        Look::Over(settled)
    } else {
        Look::NotYet
    }
}

/// Records a run's settled imports: `import_status` (`unknown` when Qobra does not know one of
/// them) and their rejected rows, and announces them. Returns false when another session settled the run first (the
/// worker and `poll_imports()` may look at once): its rows are not recorded twice.
fn record(run_id: i64, settled: &Settled) -> Result<bool> {
    let status = if settled.lost {
        ImportOutcome::Unknown
    } else if settled.errors.is_empty() {
        ImportOutcome::Finished
    } else {
        ImportOutcome::Failed
    }
    .as_str();
    let recorded = writing(|c| -> std::result::Result<bool, pgrx::spi::Error> {
        // The row lock makes a second settler wait, then find the run no longer pending.
        let updated = c.update(
            "UPDATE qobra_sync.runs SET import_status = $2
              WHERE run_id OPERATOR(pg_catalog.=) $1 AND import_status OPERATOR(pg_catalog.=) 'pending'",
            None,
            &[run_id.into(), status.into()],
        )?;
        if updated.is_empty() {
            return Ok(false);
        }
        for (line, row, details) in &settled.errors {
            c.update(
                "INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, \"row\", details) VALUES ($1, 'import', $2, $3, $4)",
                None,
                &[run_id.into(), line.map(|l| l as i64).into(), row.clone().map(pgrx::JsonB).into(), details.as_str().into()],
            )?;
        }
        Ok(true)
    })?;
    if recorded {
        announce_import(run_id)?;
    }
    Ok(recorded)
}

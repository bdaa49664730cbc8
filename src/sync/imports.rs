//! Import polling: Qobra imports a push's records in the background; its outcome (finished,
//! rows it could not parse) is looked at afterwards and lands in `runs` and `run_errors`.

use crate::pg::activity::show_wait;
use crate::pg::deadline::must_stop;
use crate::pg::error::{Error, Result};
use crate::pg::spi::{first_value, writing};
use crate::sync::client::client;
use pgrx::prelude::*;
use qobra_sync_core::client::QobraClient;
use qobra_sync_core::error::quoted;

/// The rows an import rejected: (line number, row, details).
type ErrorRows = Vec<(Option<u64>, Option<serde_json::Value>, String)>;

/// Checks Qobra's imports of recent runs once each and records their outcome; returns how many
/// runs were settled. Never waits for an import: a pending one is looked at again next time.
pub fn poll_imports() -> Result<i64> {
    let pending = pending_runs()?;
    if pending.is_empty() {
        return Ok(0);
    }
    let client = client()?;
    let mut settled = 0;
    for (run_id, ids) in pending {
        if let Some(errors) = finished_imports(&client, run_id, &ids) {
            record(run_id, &errors)?;
            settled += 1;
        }
    }
    Ok(settled)
}

/// The runs of the last two days whose imports Qobra has not finished, with their import ids.
fn pending_runs() -> Result<Vec<(i64, Vec<String>)>> {
    let pending: Option<pgrx::JsonB> = first_value(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(run_id, import_ids) ORDER BY run_id)
           FROM qobra_sync.runs WHERE import_status OPERATOR(pg_catalog.=) 'pending'
            AND started_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => 2))",
        &[],
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

/// The rows Qobra rejected in the imports `ids` of run `run_id`, once every one of them is
/// finished; None while one is not (or cannot be read: a WARNING says why).
fn finished_imports(client: &QobraClient, run_id: i64, ids: &[String]) -> Option<ErrorRows> {
    let mut errors = vec![];
    let mut all_finished = true;
    for id in ids {
        show_wait(pg_sys::PG_WAIT_EXTENSION);
        let answer = client.import_status(id, &must_stop);
        show_wait(0);
        match answer {
            Ok(status) if status.is_finished() => errors.extend(status.error_rows()),
            Ok(_) => all_finished = false,
            Err(e) => {
                if must_stop() {
                    pgrx::check_for_interrupts!();
                }
                pgrx::warning!(
                    "import {} of run {run_id}: {}",
                    quoted(id),
                    Error::from(e).message
                );
                all_finished = false;
            }
        }
    }
    all_finished.then_some(errors)
}

/// Records a run's settled imports: their rejected rows, and `import_status`.
fn record(run_id: i64, errors: &ErrorRows) -> Result<()> {
    writing(|c| -> std::result::Result<(), pgrx::spi::Error> {
        for (line, row, details) in errors {
            c.update(
                "INSERT INTO qobra_sync.run_errors (run_id, origin, line_number, \"row\", details) VALUES ($1, 'import', $2, $3, $4)",
                None,
                &[run_id.into(), line.map(|l| l as i64).into(), row.clone().map(pgrx::JsonB).into(), details.as_str().into()],
            )?;
        }
        c.update(
            "UPDATE qobra_sync.runs SET import_status = $2 WHERE run_id OPERATOR(pg_catalog.=) $1",
            None,
            &[
                run_id.into(),
                (if errors.is_empty() {
                    "finished"
                } else {
                    "failed"
                })
                .into(),
            ],
        )?;
        Ok(())
    })
}

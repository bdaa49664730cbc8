//! Runs: what started one, how it ended, and its row in `qobra_sync.runs`.
//!
//! The text forms of [`RunStatus`] and [`Trigger`] are the values the schema's CHECK
//! constraints allow (a test of the extension compares them); nothing else spells them.

use serde_json::{json, Value};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `sync_now()` in a session.
    Manual,
    /// The worker, on the registration's schedule.
    Schedule,
    /// The worker, after `request_sync()`.
    Request,
}

impl Trigger {
    /// Every trigger, in the order of the schema's CHECK constraint.
    pub const ALL: [Trigger; 3] = [Trigger::Manual, Trigger::Schedule, Trigger::Request];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
            Trigger::Request => "request",
        }
    }
}

/// Where a run is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunStatus {
    /// Started and not ended (or ended by a crash, until marked interrupted).
    #[default]
    Running,
    /// Qobra accepted every chunk.
    Succeeded,
    /// The push could not be completed (Qobra, the network, the source, the deadline).
    Failed,
    /// A guard refused to push (NULL or duplicate ids, the deletion guard).
    Blocked,
    /// The snapshot equals the last successful one: nothing was sent.
    Skipped,
    /// The run was cut short by a crash, a restart or a rollback of its session.
    Interrupted,
}

impl RunStatus {
    /// Every status, in the order of the schema's CHECK constraint.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Blocked,
        RunStatus::Skipped,
        RunStatus::Interrupted,
    ];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Blocked => "blocked",
            RunStatus::Skipped => "skipped",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the run has ended.
    pub fn ended(self) -> bool {
        self != RunStatus::Running
    }
}

/// How many rejected rows of a run are kept in full for `run_errors`.
pub const KEPT_REJECTIONS: usize = 1000;

/// Rows rejected before sending: the first [`KEPT_REJECTIONS`] in full, the rest counted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rejections {
    pub count: u64,
    /// (line number in the snapshot when known, the row's values by column, reason)
    pub kept: Vec<(Option<u64>, Value, String)>,
}

impl Rejections {
    /// Counts one rejected row; keeps it in full while fewer than [`KEPT_REJECTIONS`] are kept
    /// (`row` is only called then).
    pub fn add(&mut self, line: Option<u64>, row: impl FnOnce() -> Value, reason: String) {
        self.count += 1;
        if self.kept.len() < KEPT_REJECTIONS {
            self.kept.push((line, row(), reason));
        }
    }
}

/// A run's outcome, as recorded in its row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub status: RunStatus,
    pub rows_read: u64,
    pub rows_sent: u64,
    pub rows_rejected: u64,
    pub bytes_sent: u64,
    pub requests: u32,
    pub retries: u32,
    pub restarts: u32,
    pub import_ids: Vec<String>,
    pub fingerprint: Option<String>,
    pub possibly_partial: bool,
    pub error: Option<String>,
    pub rejections: Rejections,
    /// What the caller is told beside the summary that is not an error: why a run was skipped
    /// (Qobra already holds the snapshot). Not recorded.
    pub note: Option<String>,
}

impl Outcome {
    /// An outcome that ended with `status` and an error, nothing read or sent.
    pub fn ended(status: RunStatus, error: String) -> Outcome {
        Outcome {
            status,
            error: Some(error),
            ..Outcome::default()
        }
    }

    /// Ends the run with `status` and the reason for it: its error, but for a skip, which is no
    /// error (Qobra holds the snapshot) and is only told.
    pub fn end_with(&mut self, status: RunStatus, why: String) {
        self.status = status;
        match status {
            RunStatus::Skipped => self.note = Some(why),
            _ => self.error = Some(why),
        }
    }

    /// The status of the imports a run started: pending while Qobra has not said.
    pub fn import_status(&self) -> Option<&'static str> {
        (!self.import_ids.is_empty()).then_some(ImportOutcome::Pending.as_str())
    }

    /// The one-line summary shown to the caller at the end of a run.
    pub fn summary(&self, run_id: i64, source: &str) -> String {
        format!(
            "run {run_id} of {source}: {} — {} rows read, {} sent, {} rejected, {} bytes in {} requests ({} retries, {} restarts)",
            self.status.as_str(), self.rows_read, self.rows_sent, self.rows_rejected,
            self.bytes_sent, self.requests, self.retries, self.restarts
        )
    }
}

/// What a run's row says from its start.
#[derive(Debug, Clone)]
pub struct RunHead {
    pub run_id: i64,
    pub source: u32,
    pub source_name: String,
    pub data_table_key: String,
    /// The OID of the registration's owner: who may see the run.
    pub owner: u32,
    pub trigger: Trigger,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

impl RunHead {
    /// The run's row (the columns of `qobra_sync.runs` as JSON) with outcome `o` (none while
    /// it runs), ended at `now`; when longer than `max_bytes` (a long error, many imports), the
    /// error is cut to its start and the import ids dropped (`import_status` then `unknown`).
    /// None when even that does not fit.
    pub fn row(
        &self,
        o: &Outcome,
        now: chrono::DateTime<chrono::Utc>,
        max_bytes: usize,
    ) -> Option<String> {
        let ended = o.status.ended();
        let mut row = json!({
            "run_id": self.run_id,
            "source": self.source,
            "source_name": self.source_name,
            "data_table_key": self.data_table_key,
            "owner": self.owner,
            "trigger": self.trigger.as_str(),
            "status": o.status.as_str(),
            "started_at": self.started_at.to_rfc3339(),
            "finished_at": ended.then(|| now.to_rfc3339()),
            "rows_read": o.rows_read,
            "rows_sent": o.rows_sent,
            "rows_rejected": o.rows_rejected,
            "bytes_sent": o.bytes_sent,
            "requests": o.requests,
            "retries": o.retries,
            "restarts": o.restarts,
            "import_ids": o.import_ids,
            "import_status": o.import_status(),
            "snapshot_sha256": o.fingerprint,
            "possibly_partial": o.possibly_partial,
            "error": o.error,
        });
        let text = row.to_string();
        if text.len() <= max_bytes {
            return Some(text);
        }
        let error = o
            .error
            .as_deref()
            .map(|e| e.chars().take(500).collect::<String>());
        row["error"] = error.into();
        row["import_ids"] = json!([]);
        row["import_status"] = (!o.import_ids.is_empty())
            .then_some(ImportOutcome::Unknown.as_str())
            .into();
        let text = row.to_string();
        (text.len() <= max_bytes).then_some(text)
    }
}

/// How a run's imports ended (`runs.import_status`), as far as Qobra said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Qobra has not finished every import yet.
    Pending,
    /// Every import finished and took every record.
    Finished,
    /// Every import is over and some rejected rows (in `run_errors`, origin `import`).
    Failed,
    /// Some import will never be known: Qobra does not know it, or it was not over within
    /// [`IMPORTS_SETTLE_DAYS`] days.
    Unknown,
}

impl ImportOutcome {
    /// Every outcome, in the order of the schema's CHECK constraint.
    pub const ALL: [ImportOutcome; 4] = [
        ImportOutcome::Pending,
        ImportOutcome::Finished,
        ImportOutcome::Failed,
        ImportOutcome::Unknown,
    ];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportOutcome::Pending => "pending",
            ImportOutcome::Finished => "finished",
            ImportOutcome::Failed => "failed",
            ImportOutcome::Unknown => "unknown",
        }
    }
}

/// How many days imports are looked at after their push; a run still pending then is settled
/// as [`ImportOutcome::Unknown`].
pub const IMPORTS_SETTLE_DAYS: i32 = 2;

/// A run whose imports were settled, as announced to listeners and written in the log.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ImportSettled {
    pub run_id: i64,
    /// The source as `regclass` text (its OID in digits once dropped).
    pub source: String,
    pub data_table_key: String,
    pub import_status: String,
    /// The rows of `run_errors` the imports left (rows Qobra rejected, imports it lost).
    pub import_errors: i64,
}

impl ImportSettled {
    /// The JSON payload of its NOTIFY: the run's id and import status only, as for a run's end.
    pub fn notification(&self) -> String {
        json!({"run_id": self.run_id, "import_status": self.import_status}).to_string()
    }

    /// Its LOG line, in key=value form like a run's.
    pub fn log_line(&self) -> String {
        let fields = [
            ("run_id", self.run_id.to_string()),
            ("source", self.source.clone()),
            ("data_table_key", self.data_table_key.clone()),
            ("import_status", self.import_status.clone()),
            ("import_errors", self.import_errors.to_string()),
        ];
        let pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", logfmt_value(v)))
            .collect();
        format!("qobra_sync import settled: {}", pairs.join(" "))
    }
}

/// The channel of the notification sent at the end of every run.
pub const CHANNEL: &str = "qobra_sync";
/// The most characters of a run's error in its log line.
const LOG_ERROR_CHARS: usize = 300;

/// A run that ended, as announced to listeners and written in the log.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Ended {
    pub run_id: i64,
    /// The source as `regclass` text (its OID in digits once dropped).
    pub source: String,
    pub data_table_key: String,
    pub trigger: String,
    pub status: String,
    pub rows_sent: i64,
    pub rows_rejected: i64,
    pub possibly_partial: bool,
    pub error: Option<String>,
    pub requests: i64,
    pub retries: i64,
    pub duration_ms: i64,
}

impl Ended {
    /// The JSON payload of the run's NOTIFY: the run's id and status, nothing a listener could
    /// not read otherwise (any role that may connect may LISTEN; the rest of the run is read
    /// from `qobra_sync.runs`, where row security applies).
    pub fn notification(&self) -> String {
        json!({"run_id": self.run_id, "status": self.status}).to_string()
    }

    /// The run's LOG line, in key=value form, for log-based alerting (never the key: errors
    /// never hold it).
    pub fn log_line(&self) -> String {
        let error = self.error.as_deref().map(|e| {
            let mut cut: String = e.chars().take(LOG_ERROR_CHARS).collect();
            if cut.len() < e.len() {
                cut.push('…');
            }
            cut
        });
        let fields: [(&str, String); 12] = [
            ("run_id", self.run_id.to_string()),
            ("source", self.source.clone()),
            ("data_table_key", self.data_table_key.clone()),
            ("trigger", self.trigger.clone()),
            ("status", self.status.clone()),
            ("rows_sent", self.rows_sent.to_string()),
            ("rows_rejected", self.rows_rejected.to_string()),
            ("duration_ms", self.duration_ms.to_string()),
            ("requests", self.requests.to_string()),
            ("retries", self.retries.to_string()),
            ("possibly_partial", self.possibly_partial.to_string()),
            ("error", error.unwrap_or_default()),
        ];
        let pairs: Vec<String> = fields
            .iter()
            .filter(|(k, v)| *k != "error" || !v.is_empty())
            .map(|(k, v)| format!("{k}={}", logfmt_value(v)))
            .collect();
        format!("qobra_sync run ended: {}", pairs.join(" "))
    }
}

/// A value as logfmt writes it: bare when it is one plain word, else in double quotes with `"`
/// and `\` escaped, line breaks and tabs written as `\n`, `\r`, `\t`, other control characters
/// as `\u{…}`.
fn logfmt_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        return v.to_owned();
    }
    let mut escaped = String::with_capacity(v.len() + 2);
    escaped.push('"');
    for c in v.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => escaped.push(c),
        }
    }
    escaped.push('"');
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(error: Option<&str>) -> Ended {
        Ended {
            run_id: 42,
            source: "public.deals".into(),
            data_table_key: "deals".into(),
            trigger: "schedule".into(),
            status: "failed".into(),
            rows_sent: 10,
            rows_rejected: 1,
            possibly_partial: true,
            error: error.map(str::to_owned),
            requests: 3,
            retries: 2,
            duration_ms: 1234,
        }
    }

    #[test]
    fn a_notification_carries_only_the_run_id_and_status() {
        // Whatever the run holds (a source's name, row values quoted in its error), a listener
        // learns its id and status, and reads the rest where row security applies.
        let long = "ceo earns 1000000 ".repeat(1000);
        for error in [
            None,
            Some("invalid input syntax for type numeric: \"ceo\""),
            Some(long.as_str()),
        ] {
            let v: Value = serde_json::from_str(&ended(error).notification()).unwrap();
            assert_eq!(v, json!({"run_id": 42, "status": "failed"}));
        }
    }

    #[test]
    fn the_log_line_is_key_value() {
        assert_eq!(
            ended(Some("Qobra answered 500: \"oops\"\nretry")).log_line(),
            "qobra_sync run ended: run_id=42 source=public.deals data_table_key=deals trigger=schedule \
             status=failed rows_sent=10 rows_rejected=1 duration_ms=1234 requests=3 retries=2 \
             possibly_partial=true error=\"Qobra answered 500: \\\"oops\\\"\\nretry\""
        );
        let ok = ended(None).log_line();
        assert!(!ok.contains("error="), "{ok}");
        assert!(ended(Some(&"e".repeat(1000))).log_line().len() < 600);
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(
            logfmt_value("tab\there\u{1b}[31m"),
            "\"tab\\there\\u{1b}[31m\""
        );
        assert_eq!(logfmt_value(""), "\"\"");
    }

    #[test]
    fn a_settled_import_is_told_like_a_run() {
        let settled = ImportSettled {
            run_id: 42,
            source: "public.deals".into(),
            data_table_key: "deals".into(),
            import_status: ImportOutcome::Failed.as_str().into(),
            import_errors: 3,
        };
        let v: Value = serde_json::from_str(&settled.notification()).unwrap();
        assert_eq!(v, json!({"run_id": 42, "import_status": "failed"}));
        assert_eq!(
            settled.log_line(),
            "qobra_sync import settled: run_id=42 source=public.deals data_table_key=deals \
             import_status=failed import_errors=3"
        );
        let spelled: std::collections::BTreeSet<_> =
            ImportOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(spelled.len(), ImportOutcome::ALL.len());
    }

    fn head() -> RunHead {
        RunHead {
            run_id: 7,
            source: 16384,
            source_name: "public.deals".into(),
            data_table_key: "deals".into(),
            owner: 10,
            trigger: Trigger::Manual,
            started_at: chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_running_row_has_no_end_and_an_ended_one_has() {
        let now = chrono::DateTime::from_timestamp(1_790_000_060, 0).unwrap();
        let running: Value =
            serde_json::from_str(&head().row(&Outcome::default(), now, 4096).unwrap()).unwrap();
        assert_eq!(running["status"], "running");
        assert_eq!(running["finished_at"], Value::Null);
        let done = Outcome {
            status: RunStatus::Succeeded,
            import_ids: vec!["imp-1".into()],
            ..Outcome::default()
        };
        let ended: Value = serde_json::from_str(&head().row(&done, now, 4096).unwrap()).unwrap();
        assert_eq!(ended["status"], "succeeded");
        assert_eq!(ended["import_status"], "pending");
        assert_eq!(ended["trigger"], "manual");
        assert!(ended["finished_at"].as_str().unwrap().starts_with("2026-"));
    }

    #[test]
    fn a_long_row_is_cut_to_fit() {
        let now = chrono::Utc::now();
        let long = Outcome {
            status: RunStatus::Failed,
            error: Some("x".repeat(10_000)),
            import_ids: (0..200).map(|i| format!("import-{i}")).collect(),
            ..Outcome::default()
        };
        let row: Value = serde_json::from_str(&head().row(&long, now, 4096).unwrap()).unwrap();
        assert_eq!(row["error"].as_str().unwrap().len(), 500);
        assert_eq!(row["import_ids"], json!([]));
        assert_eq!(row["import_status"], "unknown");
        assert!(head().row(&long, now, 100).is_none());
    }

    #[test]
    fn rejections_keep_the_first_thousand() {
        let mut r = Rejections::default();
        for i in 0..1500 {
            r.add(Some(i), || json!({"id": i}), "bad".into());
        }
        assert_eq!((r.count, r.kept.len()), (1500, KEPT_REJECTIONS));
        assert_eq!(r.kept[999].0, Some(999));
    }

    #[test]
    fn text_forms_are_distinct() {
        let statuses: std::collections::BTreeSet<_> =
            RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(statuses.len(), RunStatus::ALL.len());
        assert!(!RunStatus::Running.ended() && RunStatus::Skipped.ended());
        assert_eq!(
            Trigger::ALL.map(Trigger::as_str),
            ["manual", "schedule", "request"]
        );
    }
}

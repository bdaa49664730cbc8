//! The push: sends a whole snapshot to Qobra as one total synchronization (`docs/qobra-api.md`
//! §6.1, §6.2).
//!
//! A snapshot goes out in chunks of up to `batch_rows` records. The first chunk is sent with
//! `all=true` (Qobra empties the data table before importing it), the others without; all carry
//! the same `debounce` so that Qobra imports them together.
//!
//! Once an `all=true` chunk was accepted, Qobra may hold only part of the table until the last
//! chunk lands. So when a later chunk fails for good (its retries ran out), the push restarts from
//! the top — the source is rewound and a new `all=true` chunk starts the table over — as long as
//! the restart budget lasts. A failure that leaves Qobra possibly partial says so.
//!
//! An empty snapshot still sends one `all=true` request whose body is `[]`, so that Qobra's table
//! is emptied as the total synchronization demands (the source is empty, so must the table be).
//!
//! Pure and generic: the rows come from a [`ChunkSource`] (the extension reads them with a
//! cursor), and the chunks go to a [`RecordSink`] (the HTTP client, or a fake in tests).

use crate::client::{ClientStats, Posted, PushError, QobraClient};
use crate::error::Error;
use bytes::Bytes;

/// What the source says about a chunk it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Records in the chunk.
    pub rows: u64,
}

/// Where the records of a snapshot come from, chunk by chunk.
pub trait ChunkSource {
    /// Rewinds to the first record of the same snapshot (for a restart from the top).
    fn restart(&mut self) -> Result<(), Error>;

    /// Writes the next chunk into `out` (empty on entry) as a JSON array of up to `batch_rows`
    /// records, or returns `None` when the snapshot has no more records.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error>;
}

/// Where chunks go: Qobra's bulk endpoint. A chunk is started, then finished: the push reads
/// the next chunk in between, while this one is on its way.
pub trait RecordSink {
    /// A chunk on its way.
    type InFlight;

    /// Starts sending one chunk (see [`QobraClient::start_post`]).
    fn start(
        &self,
        data_table_key: &str,
        all: bool,
        debounce_seconds: u32,
        body: Bytes,
    ) -> Self::InFlight;

    /// Waits for the answer to a started chunk, polling `interrupted`.
    fn finish(
        &self,
        chunk: Self::InFlight,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Posted, PushError>;

    /// Requests and retries made so far, failed ones included.
    fn stats(&self) -> ClientStats;
}

impl RecordSink for QobraClient {
    type InFlight = crate::client::InFlight;

    /// The HTTP client sends the chunk from its own thread.
    fn start(&self, key: &str, all: bool, debounce_seconds: u32, body: Bytes) -> Self::InFlight {
        self.start_post(key, all, debounce_seconds, body)
    }

    /// The HTTP client waits for Qobra's answer.
    fn finish(
        &self,
        chunk: Self::InFlight,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Posted, PushError> {
        self.finish_post(chunk, interrupted)
    }

    /// The client's own counters.
    fn stats(&self) -> ClientStats {
        QobraClient::stats(self)
    }
}

/// Where a push stands, given to the progress callback after each accepted chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Restarts so far (0 on the first pass).
    pub restarts: u32,
    /// Chunks accepted in this pass (1 for the first).
    pub chunk: u32,
    /// Records accepted in this pass.
    pub rows_sent: u64,
    /// Bytes accepted over the whole push, restarted passes included.
    pub bytes_sent: u64,
    /// The import the last chunk joined.
    pub import_id: String,
}

/// What a push did. On success `rows_sent` is the snapshot's record count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Qobra's import ids, each once, in the order first seen.
    pub import_ids: Vec<String>,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Retries of single requests.
    pub retries: u32,
    /// Restarts from the top.
    pub restarts: u32,
    /// Chunks accepted over the whole push, restarted passes included.
    pub chunks: u32,
    /// Records accepted in the last pass.
    pub rows_sent: u64,
    /// Bytes of accepted chunks over the whole push, restarted passes included.
    pub bytes_sent: u64,
}

/// A push that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct PushFailure {
    /// What went wrong, for the user.
    pub error: Error,
    /// Qobra may hold a partial table: an `all=true` chunk was accepted and the push did not
    /// complete after it.
    pub possibly_partial: bool,
    /// The push stopped because `interrupted` said so; the caller should now let Postgres
    /// process the interrupt (cancel or shutdown), which raises its own error.
    pub interrupted: bool,
    /// What was done before the failure.
    pub report: PushReport,
}

/// Pushes a whole snapshot (see the module comment): chunks from `source` to `sink` for the data
/// table `data_table_key`, restarting from the top at most `restart_budget` times after a late
/// failure. `interrupted` is polled while waiting on Qobra; `on_progress` is called after every
/// accepted chunk.
// A failure is returned once per push, so its size does not matter; unboxed it reads simpler.
#[allow(clippy::result_large_err)]
pub fn push<S, K>(
    source: &mut S,
    sink: &K,
    data_table_key: &str,
    debounce_seconds: u32,
    restart_budget: u32,
    interrupted: &dyn Fn() -> bool,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<PushReport, PushFailure>
where
    S: ChunkSource + ?Sized,
    K: RecordSink + ?Sized,
{
    let start = sink.stats();
    let mut report = PushReport::default();
    // Whether an all=true chunk was accepted in this push: Qobra's table may be partial since.
    let mut emptied = false;
    // Size of the last chunk, to size the next buffer.
    let mut last_len = 0usize;

    // Counts the requests and retries of this push into the report.
    let tally = |report: &mut PushReport| {
        let now = sink.stats();
        report.requests = now.requests.wrapping_sub(start.requests);
        report.retries = now.retries.wrapping_sub(start.retries);
    };
    // Builds the failure for an error, with the report so far.
    let fail = |error: Error, interrupted: bool, emptied: bool, mut report: PushReport| {
        tally(&mut report);
        PushFailure {
            error,
            possibly_partial: emptied,
            interrupted,
            report,
        }
    };

    'pass: loop {
        // Chunks started in this pass, and accepted.
        let mut started: u32 = 0;
        let mut chunk: u32 = 0;
        report.rows_sent = 0;
        // The chunk on its way, with its records and bytes. It is the first of the pass (all=true)
        // when none was accepted yet: one chunk travels at a time.
        let mut in_flight: Option<(K::InFlight, u64, usize)> = None;
        // Whether the source said it has no more records.
        let mut read_all = false;
        loop {
            // Read the next chunk while the previous one is on its way.
            let mut out = Vec::with_capacity(last_len);
            let read = if read_all {
                Ok(None)
            } else {
                source.next_chunk(&mut out)
            };
            if let Some((ticket, rows, len)) = in_flight.take() {
                match sink.finish(ticket, interrupted) {
                    Ok(posted) => {
                        emptied |= chunk == 0;
                        chunk += 1;
                        report.chunks += 1;
                        report.rows_sent += rows;
                        report.bytes_sent += len as u64;
                        if !report.import_ids.contains(&posted.import_id) {
                            report.import_ids.push(posted.import_id.clone());
                        }
                        on_progress(&Progress {
                            restarts: report.restarts,
                            chunk,
                            rows_sent: report.rows_sent,
                            bytes_sent: report.bytes_sent,
                            import_id: posted.import_id,
                        });
                    }
                    Err(e) => {
                        if emptied && e.is_transient() && report.restarts < restart_budget {
                            report.restarts += 1;
                            if let Err(e) = source.restart() {
                                return Err(fail(e, false, emptied, report));
                            }
                            continue 'pass;
                        }
                        let was_interrupted = e == PushError::Interrupted;
                        return Err(fail(e.into(), was_interrupted, emptied, report));
                    }
                }
            }
            // Then send what was read.
            let rows = match read {
                Ok(Some(info)) => info.rows,
                Ok(None) if read_all || started > 0 => break 'pass,
                // An empty snapshot still sends `[]` with all=true to empty the table.
                Ok(None) => {
                    read_all = true;
                    out.clear();
                    out.extend_from_slice(b"[]");
                    0
                }
                Err(e) => return Err(fail(e, false, emptied, report)),
            };
            let first = started == 0;
            started += 1;
            let len = out.len();
            last_len = len;
            let ticket = sink.start(data_table_key, first, debounce_seconds, Bytes::from(out));
            in_flight = Some((ticket, rows, len));
        }
    }
    tally(&mut report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SqlState;
    use std::cell::RefCell;

    /// A source of `rows` records `{"id":"n"}` in chunks of `batch`.
    struct Rows {
        rows: u64,
        batch: u64,
        next: u64,
        restarts: u32,
        fail_at_chunk: Option<u32>,
        chunks_read: u32,
    }

    impl Rows {
        /// A source of `rows` records in chunks of `batch`.
        fn new(rows: u64, batch: u64) -> Rows {
            Rows {
                rows,
                batch,
                next: 0,
                restarts: 0,
                fail_at_chunk: None,
                chunks_read: 0,
            }
        }
    }

    impl ChunkSource for Rows {
        /// Back to the first record.
        fn restart(&mut self) -> Result<(), Error> {
            self.next = 0;
            self.restarts += 1;
            Ok(())
        }

        /// The next `batch` records as a JSON array.
        fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
            self.chunks_read += 1;
            if Some(self.chunks_read) == self.fail_at_chunk {
                return Err(Error::new(SqlState::UndefinedTable, "source dropped"));
            }
            if self.next >= self.rows {
                return Ok(None);
            }
            let end = (self.next + self.batch).min(self.rows);
            let records: Vec<String> = (self.next..end)
                .map(|i| format!("{{\"id\":\"{i}\"}}"))
                .collect();
            out.extend_from_slice(format!("[{}]", records.join(",")).as_bytes());
            let rows = end - self.next;
            self.next = end;
            Ok(Some(ChunkInfo { rows }))
        }
    }

    /// A sink that records each call and answers from a script (default: accept).
    #[derive(Default)]
    struct Script {
        calls: RefCell<Vec<(bool, u32, String)>>,
        /// Call numbers (1-based) that fail, and how.
        failures: Vec<(usize, PushError)>,
        stats: RefCell<ClientStats>,
    }

    impl RecordSink for Script {
        type InFlight = Result<Posted, PushError>;

        /// Answered at once (see `answer`).
        fn start(&self, _key: &str, all: bool, debounce: u32, body: Bytes) -> Self::InFlight {
            self.answer(all, debounce, body)
        }

        /// The answer given at the start.
        fn finish(&self, chunk: Self::InFlight, _: &dyn Fn() -> bool) -> Self::InFlight {
            chunk
        }

        /// The scripted counters.
        fn stats(&self) -> ClientStats {
            *self.stats.borrow()
        }
    }

    impl Script {
        /// Records the call; fails when scripted to.
        fn answer(&self, all: bool, debounce: u32, body: Bytes) -> Result<Posted, PushError> {
            let mut calls = self.calls.borrow_mut();
            calls.push((all, debounce, String::from_utf8_lossy(&body).into_owned()));
            let n = calls.len();
            self.stats.borrow_mut().requests += 1;
            if let Some((_, e)) = self.failures.iter().find(|(k, _)| *k == n) {
                return Err(e.clone());
            }
            Ok(Posted {
                import_id: format!("imp-{}", if all { n } else { 0 }),
                retries: 0,
                requests: 1,
            })
        }
    }

    /// A failure after retries ran out.
    fn gave_up() -> PushError {
        PushError::GaveUp {
            attempts: 3,
            last: Box::new(PushError::Server {
                request: "POST /x".into(),
                status: 503,
                excerpt: "busy".into(),
            }),
        }
    }

    /// Runs a push with no interrupt and collects progress.
    fn run(
        source: &mut Rows,
        sink: &Script,
        budget: u32,
    ) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
        let mut seen = Vec::new();
        let result = push(source, sink, "deals", 7, budget, &|| false, &mut |p| {
            seen.push(p.clone())
        });
        (result, seen)
    }

    #[test]
    fn first_chunk_all_then_the_rest() {
        let mut source = Rows::new(5, 2);
        let sink = Script::default();
        let (report, progress) = run(&mut source, &sink, 0);
        let report = report.unwrap();
        let calls = sink.calls.borrow();
        let flags: Vec<(bool, u32)> = calls.iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(flags, [(true, 7), (false, 7), (false, 7)]);
        assert_eq!(calls[2].2, r#"[{"id":"4"}]"#);
        assert_eq!(report.chunks, 3);
        assert_eq!(report.rows_sent, 5);
        assert_eq!(report.requests, 3);
        assert_eq!(report.import_ids, ["imp-1", "imp-0"]);
        assert_eq!(
            report.bytes_sent,
            calls.iter().map(|c| c.2.len() as u64).sum::<u64>()
        );
        assert_eq!(progress.len(), 3);
        assert_eq!(progress[1].rows_sent, 4);
        assert_eq!(progress[2].chunk, 3);
    }

    #[test]
    fn an_empty_snapshot_empties_the_table() {
        let mut source = Rows::new(0, 2);
        let sink = Script::default();
        let report = run(&mut source, &sink, 0).0.unwrap();
        assert_eq!(*sink.calls.borrow(), [(true, 7, "[]".to_owned())]);
        assert_eq!(report.chunks, 1);
        assert_eq!(report.rows_sent, 0);
    }

    #[test]
    fn a_late_failure_restarts_from_the_top() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(3, gave_up())],
            ..Script::default()
        };
        let report = run(&mut source, &sink, 1).0.unwrap();
        let flags: Vec<bool> = sink.calls.borrow().iter().map(|c| c.0).collect();
        assert_eq!(flags, [true, false, false, true, false, false]);
        assert_eq!(source.restarts, 1);
        assert_eq!(report.restarts, 1);
        assert_eq!(report.rows_sent, 5);
        assert_eq!(report.chunks, 5);
        assert_eq!(report.requests, 6);
    }

    #[test]
    fn budget_exhausted_leaves_qobra_possibly_partial() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(2, gave_up()), (4, gave_up())],
            ..Script::default()
        };
        let failure = run(&mut source, &sink, 1).0.unwrap_err();
        assert!(failure.possibly_partial);
        assert!(!failure.interrupted);
        assert_eq!(failure.report.restarts, 1);
        assert_eq!(failure.report.requests, 4);
        assert_eq!(failure.error.state, SqlState::ExternalFailure);
    }

    #[test]
    fn a_failed_first_chunk_leaves_qobra_untouched() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(1, gave_up())],
            ..Script::default()
        };
        let failure = run(&mut source, &sink, 3).0.unwrap_err();
        assert!(!failure.possibly_partial);
        assert_eq!(failure.report.restarts, 0, "nothing to restart");
        assert_eq!(sink.calls.borrow().len(), 1);
    }

    #[test]
    fn permanent_failures_and_interrupts_do_not_restart() {
        for (error, interrupted) in [
            (
                PushError::Refused {
                    request: "x".into(),
                    status: 400,
                    excerpt: "bad".into(),
                },
                false,
            ),
            (PushError::Interrupted, true),
        ] {
            let mut source = Rows::new(5, 2);
            let sink = Script {
                failures: vec![(2, error)],
                ..Script::default()
            };
            let failure = run(&mut source, &sink, 5).0.unwrap_err();
            assert!(failure.possibly_partial);
            assert_eq!(failure.interrupted, interrupted);
            assert_eq!(failure.report.restarts, 0);
            assert_eq!(sink.calls.borrow().len(), 2);
        }
    }

    /// Rows that log each read to the log the progress callback also writes to.
    struct Logged<'a>(&'a RefCell<Vec<String>>, Rows);

    impl ChunkSource for Logged<'_> {
        /// Rewinds the rows.
        fn restart(&mut self) -> Result<(), Error> {
            self.1.restart()
        }

        /// Logs `read`, then reads.
        fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
            let info = self.1.next_chunk(out)?;
            self.0.borrow_mut().push(format!("read {}", info.is_some()));
            Ok(info)
        }
    }

    #[test]
    fn the_next_chunk_is_read_while_one_is_on_its_way() {
        let log = RefCell::new(vec![]);
        let sink = Script::default();
        let mut source = Logged(&log, Rows::new(5, 2));
        let mut progress = |_: &Progress| log.borrow_mut().push("accepted".into());
        push(&mut source, &sink, "t", 0, 0, &|| false, &mut progress).unwrap();
        assert_eq!(
            *log.borrow(),
            [
                "read true",
                "read true",
                "accepted",
                "read true",
                "accepted",
                "read false",
                "accepted"
            ]
        );
    }

    #[test]
    fn source_errors_stop_the_push() {
        let mut source = Rows::new(5, 2);
        source.fail_at_chunk = Some(2);
        let sink = Script::default();
        let failure = run(&mut source, &sink, 5).0.unwrap_err();
        assert_eq!(failure.error.state, SqlState::UndefinedTable);
        assert!(failure.possibly_partial);
        assert_eq!(failure.report.chunks, 1);

        let mut source = Rows::new(5, 2);
        source.fail_at_chunk = Some(1);
        let failure = run(&mut source, &Script::default(), 5).0.unwrap_err();
        assert!(!failure.possibly_partial);
    }
}

//! The push: sends a whole snapshot to Qobra as one total synchronization (`docs/qobra-api.md`
//! §6.1, §6.2).
//!
//! A snapshot goes out in chunks (the source closes each at its row or byte limit). The first
//! chunk of a pass is sent with `all=true` (Qobra empties the data table before importing it) and
//! alone: nothing else is sent until Qobra accepted it. After it, up to `max_in_flight` chunks
//! travel at once while the next one is read; all carry the same `debounce` so that Qobra imports
//! them together. Answers are taken in the order the chunks were sent.
//!
//! A chunk Qobra refuses as too large (HTTP 413) is split in two halves sent in its place (down
//! to a single record, which is then set aside as rejected); the source closes later chunks at
//! half that size. Each split counts as a retry.
//!
//! Once an `all=true` chunk was accepted, Qobra may hold only part of the table until the last
//! chunk lands. So when a later chunk fails for good (its retries ran out), the push restarts from
//! the top — the source is rewound and a new `all=true` chunk starts the table over — as long as
//! the restart budget lasts. Chunks still on their way are awaited first: none of them may land
//! after the new `all=true` chunk, and each one's import id is recorded. A rejected key or an
//! interrupt stops everything at once, dropping the chunks on their way (they would fail the
//! same way, or must not hold the backend); any other failure that ends the push awaits them
//! first, for their import ids. A failure that leaves Qobra possibly partial says so.
//!
//! A pass that sent no chunk (an empty snapshot, or every record set aside) still sends one
//! `all=true` request whose body is `[]`, so that Qobra's table is emptied as the total
//! synchronization demands (the source is empty, so must the table be).
//!
//! Pure and generic: the rows come from a [`ChunkSource`] (the extension reads them with a
//! cursor), and the chunks go to a [`RecordSink`] ([`QobraTable`] over the HTTP client, or a fake
//! in tests).

use crate::client::{ClientStats, PushError, QobraClient};
use crate::error::Error;
use bytes::Bytes;
use serde_json::value::RawValue;
use std::collections::VecDeque;

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

    /// Writes the next chunk into `out` (empty on entry) as a JSON array of records, or returns
    /// `None` when the snapshot has no more records.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error>;

    /// Sets aside one record (its JSON) that Qobra refused even alone, with the reason.
    fn reject(&mut self, record: &[u8], reason: String);

    /// Closes later chunks at `max_bytes` (learned from a 413); a larger record goes alone.
    fn shrink(&mut self, max_bytes: usize);
}

/// Where chunks go: a destination that takes a total snapshot as a series of requests, the
/// first of which replaces everything it held. A chunk is started, then finished: the push
/// reads the next chunk, and starts others, while it is on its way. What else a request carries
/// (Qobra's data table and `debounce`) belongs to the sink, not to the push.
pub trait RecordSink {
    /// A chunk on its way; dropping it abandons the request.
    type InFlight;

    /// Starts sending one chunk; `first` says it starts the table over (Qobra's `all=true`).
    fn start(&self, first: bool, body: Bytes) -> Self::InFlight;

    /// Waits for the answer to a started chunk, polling `interrupted`; returns the receipt the
    /// destination gave for it, if it gives any (Qobra: the import the chunk joined).
    fn finish(
        &self,
        chunk: Self::InFlight,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<String>, PushError>;

    /// Requests and retries made so far, failed ones included.
    fn stats(&self) -> ClientStats;

    /// The bytes a request's body adds around its JSON array of records (an envelope).
    fn framing(&self) -> usize {
        0
    }
}

/// Qobra's bulk endpoint for one data table: every chunk carries the same `debounce`, so that
/// Qobra imports them together.
#[derive(Debug, Clone, Copy)]
pub struct QobraTable<'a> {
    pub client: &'a QobraClient,
    /// The Qobra data table the records go to.
    pub data_table_key: &'a str,
    /// The `debounce` every request carries.
    pub debounce_seconds: u32,
}

impl RecordSink for QobraTable<'_> {
    type InFlight = crate::client::InFlight;

    /// The HTTP client sends the chunk from its own thread; the first with `all=true`.
    fn start(&self, first: bool, body: Bytes) -> Self::InFlight {
        self.client
            .start_post(self.data_table_key, first, self.debounce_seconds, body)
    }

    /// The HTTP client waits for Qobra's answer; its receipt is the import id.
    fn finish(
        &self,
        chunk: Self::InFlight,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Option<String>, PushError> {
        let posted = self.client.finish_post(chunk, interrupted)?;
        Ok(Some(posted.import_id))
    }

    /// The client's own counters.
    fn stats(&self) -> ClientStats {
        self.client.stats()
    }

    /// The destination's body format frames the records.
    fn framing(&self) -> usize {
        self.client.body_format().overhead()
    }
}

/// How a push sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushSettings {
    /// Restarts from the top allowed after a late failure.
    pub restart_budget: u32,
    /// Chunks on their way at once after the first was accepted (1 = one at a time).
    pub max_in_flight: usize,
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
    /// The receipt of the last chunk (Qobra: the import it joined).
    pub import_id: Option<String>,
}

/// What a push did. On success `rows_sent` is the snapshot's record count, less the records
/// Qobra refused as too large.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Qobra's import ids, each once, in the order first seen.
    pub import_ids: Vec<String>,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Retries of single requests, and splits of chunks refused as too large.
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

/// Pushes a whole snapshot (see the module comment): chunks from `source` to `sink` as
/// `settings` say. `interrupted` is polled while waiting on Qobra; `on_progress` is called after
/// every accepted chunk.
// A failure is returned once per push, so its size does not matter; unboxed it reads simpler.
#[allow(clippy::result_large_err)]
pub fn push<S, K>(
    source: &mut S,
    sink: &K,
    settings: PushSettings,
    interrupted: &dyn Fn() -> bool,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<PushReport, PushFailure>
where
    S: ChunkSource + ?Sized,
    K: RecordSink + ?Sized,
{
    let mut pusher = Pusher {
        start: sink.stats(),
        source,
        sink,
        settings,
        interrupted,
        on_progress,
        report: PushReport::default(),
        splits: 0,
        emptied: false,
        all_unanswered: false,
        last_len: 0,
        spare: None,
        pass: Pass::new(),
    };
    match pusher.run() {
        Ok(()) => Ok(pusher.tally()),
        Err(stop) => Err(pusher.failure(stop)),
    }
}

/// A chunk's body and record count, kept while it travels so that a 413 can split it.
struct Chunk {
    body: Bytes,
    rows: u64,
}

/// A chunk on its way.
struct Sent<T> {
    ticket: T,
    chunk: Chunk,
    /// Sent with `all=true`.
    all: bool,
}

/// One pass over the snapshot, from its `all=true` chunk to its last.
struct Pass<T> {
    /// Chunks accepted in this pass: until the first is, the next chunk goes with `all=true`.
    accepted: u32,
    /// Chunks on their way, in the order they were sent.
    in_flight: VecDeque<Sent<T>>,
    /// Chunks read (or split) and not sent yet; the halves of a split come first.
    ready: VecDeque<Chunk>,
    /// The source said it has no more records.
    read_all: bool,
    /// The `[]` of a pass that sent nothing was sent.
    sent_empty: bool,
}

impl<T> Pass<T> {
    /// A pass not started.
    fn new() -> Pass<T> {
        Pass {
            accepted: 0,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            read_all: false,
            sent_empty: false,
        }
    }
}

/// Why a push stopped.
enum Stop {
    /// Qobra or the network failed it.
    Sink(PushError),
    /// The source failed it.
    Source(Error),
}

/// A push under way.
struct Pusher<'a, S: ?Sized, K: RecordSink + ?Sized> {
    source: &'a mut S,
    sink: &'a K,
    settings: PushSettings,
    interrupted: &'a dyn Fn() -> bool,
    on_progress: &'a mut dyn FnMut(&Progress),
    /// The sink's counters when the push began.
    start: ClientStats,
    report: PushReport,
    /// Chunks split after a 413.
    splits: u32,
    /// An `all=true` chunk was accepted in this push: Qobra's table may be partial since.
    emptied: bool,
    /// An `all=true` chunk was sent and no answer proved Qobra did not take it (the push was
    /// interrupted while it travelled, the answer never came or could not be read): Qobra may
    /// have emptied its table all the same.
    all_unanswered: bool,
    /// Size of the last chunk read, to size the next buffer.
    last_len: usize,
    /// The buffer of a chunk Qobra took, to write the next chunk in: its pages are mapped
    /// already (a fresh buffer per chunk costs a page fault every 4 KiB). Held only while a
    /// place in flight is free, so the chunks held stay bounded as before.
    spare: Option<Vec<u8>>,
    pass: Pass<K::InFlight>,
}

impl<S: ChunkSource + ?Sized, K: RecordSink + ?Sized> Pusher<'_, S, K> {
    /// Sends chunks and takes their answers until the snapshot is in Qobra or the push stops;
    /// a source that fails lets the chunks on their way land first, for their import ids.
    fn run(&mut self) -> Result<(), Stop> {
        match self.steps() {
            Err(Stop::Source(e)) => {
                self.drain()?;
                Err(Stop::Source(e))
            }
            other => other,
        }
    }

    /// The push's loop: fill the room, read ahead, take the oldest answer.
    fn steps(&mut self) -> Result<(), Stop> {
        loop {
            self.fill()?;
            self.read_ahead()?;
            let Some(sent) = self.pass.in_flight.pop_front() else {
                if self.pass.accepted == 0 && !self.pass.sent_empty {
                    self.send_empty();
                    continue;
                }
                return Ok(());
            };
            match self.sink.finish(sent.ticket, self.interrupted) {
                Ok(receipt) => self.accepted(sent.chunk, sent.all, receipt),
                Err(e) => {
                    self.answered(sent.all, &e);
                    self.failed(sent.chunk, e)?
                }
            }
        }
    }

    /// Notes how an `all=true` chunk failed (`e`): unless the failure proves Qobra did not
    /// take it, Qobra may have emptied its table.
    fn answered(&mut self, all: bool, e: &PushError) {
        if all && !e.may_have_been_applied() {
            self.all_unanswered = false;
        }
    }

    /// Starts chunks while there is room: one until the pass's first is accepted, then up to
    /// `max_in_flight`.
    fn fill(&mut self) -> Result<(), Stop> {
        let room = match self.pass.accepted {
            0 => 1,
            _ => self.settings.max_in_flight.max(1),
        };
        while self.pass.in_flight.len() < room {
            let next = match self.pass.ready.pop_front() {
                Some(chunk) => Some(chunk),
                None => self.read()?,
            };
            let Some(chunk) = next else { break };
            self.send(chunk);
        }
        Ok(())
    }

    /// Reads one chunk ahead while the others travel, if none is ready.
    fn read_ahead(&mut self) -> Result<(), Stop> {
        if self.pass.ready.is_empty() {
            if let Some(chunk) = self.read()? {
                self.pass.ready.push_back(chunk);
            }
        }
        Ok(())
    }

    /// The source's next chunk, or `None` at its end.
    fn read(&mut self) -> Result<Option<Chunk>, Stop> {
        if self.pass.read_all {
            return Ok(None);
        }
        let mut out = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(self.last_len));
        match self.source.next_chunk(&mut out).map_err(Stop::Source)? {
            Some(info) => {
                // Held while the chunk travels: no more than its bytes (a record too large,
                // written then taken back, may have grown the buffer).
                if out.capacity() > out.len() + out.len() / 8 {
                    out.shrink_to_fit();
                }
                self.last_len = out.len();
                Ok(Some(Chunk {
                    body: Bytes::from(out),
                    rows: info.rows,
                }))
            }
            None => {
                self.pass.read_all = true;
                Ok(None)
            }
        }
    }

    /// Starts sending a chunk; `all=true` while the pass has no accepted chunk.
    fn send(&mut self, chunk: Chunk) {
        let all = self.pass.accepted == 0;
        let ticket = self.sink.start(all, chunk.body.clone());
        self.all_unanswered |= all;
        self.pass.in_flight.push_back(Sent { ticket, chunk, all });
    }

    /// Sends `[]` with `all=true`: a pass with nothing to send still empties Qobra's table.
    fn send_empty(&mut self) {
        self.pass.sent_empty = true;
        self.send(Chunk {
            body: Bytes::from_static(b"[]"),
            rows: 0,
        });
    }

    /// Counts a chunk Qobra accepted and tells the progress callback.
    fn accepted(&mut self, chunk: Chunk, all: bool, receipt: Option<String>) {
        self.emptied |= all;
        if all {
            self.all_unanswered = false;
        }
        self.pass.accepted += 1;
        let report = &mut self.report;
        report.chunks += 1;
        report.rows_sent += chunk.rows;
        report.bytes_sent += (chunk.body.len() + self.sink.framing()) as u64;
        if let Some(id) = receipt
            .as_ref()
            .filter(|id| !report.import_ids.contains(id))
        {
            report.import_ids.push(id.clone());
        }
        (self.on_progress)(&Progress {
            restarts: report.restarts,
            chunk: self.pass.accepted,
            rows_sent: report.rows_sent,
            bytes_sent: report.bytes_sent,
            import_id: receipt,
        });
        self.recycle(chunk.body);
    }

    /// Keeps the buffer of a chunk Qobra took for the next chunk, when nothing else holds it
    /// (the HTTP client has let go of its copies once answered).
    fn recycle(&mut self, body: Bytes) {
        if self.spare.is_some() {
            return;
        }
        if let Ok(buffer) = body.try_into_mut() {
            let mut buffer = Vec::from(buffer);
            buffer.clear();
            self.spare = Some(buffer);
        }
    }

    /// Handles a chunk that failed: split when too large, restart from the top when the
    /// failure may be transient and the budget allows, otherwise stop.
    fn failed(&mut self, chunk: Chunk, e: PushError) -> Result<(), Stop> {
        // A refused `[]` cannot be split: it fails like any refused request.
        if e.is_too_large() && chunk.rows > 0 {
            return self.split(chunk);
        }
        let restart = self.emptied && e.is_transient();
        if restart && self.report.restarts < self.settings.restart_budget {
            self.drain()?;
            return self.restart();
        }
        if !e.stops_at_once() {
            self.drain()?;
        }
        Err(Stop::Sink(e))
    }

    /// Puts the two halves of a chunk refused as too large in its place, and has the source
    /// close later chunks at the larger half's size (the chunks already read and waiting are
    /// cut to that size too); a single record is set aside instead.
    fn split(&mut self, chunk: Chunk) -> Result<(), Stop> {
        let records = records_of(&chunk)?;
        if records.len() <= 1 {
            if let Some(record) = records.first() {
                let reason = format!(
                    "Qobra refused the record as too large even alone (HTTP 413, {} bytes)",
                    record.get().len()
                );
                self.source.reject(record.get().as_bytes(), reason);
            }
            return Ok(());
        }
        self.splits += 1;
        let (first, second) = records.split_at(records.len() / 2);
        let (first, second) = (array(first), array(second));
        let limit = first.body.len().max(second.body.len());
        self.source.shrink(limit);
        let waiting = std::mem::take(&mut self.pass.ready);
        self.pass.ready = [first, second].into();
        for chunk in waiting {
            self.pass.ready.extend(cut(chunk, limit)?);
        }
        Ok(())
    }

    /// Waits for the chunks still on their way, counting those Qobra accepts. A rejected key or
    /// an interrupt stops the wait (and the push) at once; other failures are left to the
    /// failure being handled.
    fn drain(&mut self) -> Result<(), Stop> {
        while let Some(sent) = self.pass.in_flight.pop_front() {
            match self.sink.finish(sent.ticket, self.interrupted) {
                Ok(receipt) => self.accepted(sent.chunk, sent.all, receipt),
                Err(e) => {
                    self.answered(sent.all, &e);
                    if e.stops_at_once() {
                        return Err(Stop::Sink(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts the snapshot over in a new pass (nothing is on its way any more).
    fn restart(&mut self) -> Result<(), Stop> {
        self.report.restarts += 1;
        self.report.rows_sent = 0;
        self.pass = Pass::new();
        self.source.restart().map_err(Stop::Source)
    }

    /// The report with this push's requests and retries (splits counted as retries).
    fn tally(&mut self) -> PushReport {
        let now = self.sink.stats();
        let mut report = std::mem::take(&mut self.report);
        report.requests = now.requests.wrapping_sub(self.start.requests);
        report.retries = now.retries.wrapping_sub(self.start.retries) + self.splits;
        report
    }

    /// The failure of a push that stopped: chunks still on their way are dropped.
    fn failure(&mut self, stop: Stop) -> PushFailure {
        let (error, interrupted) = match stop {
            Stop::Sink(e) => {
                let interrupted = e == PushError::Interrupted;
                (e.into(), interrupted)
            }
            Stop::Source(e) => (e, false),
        };
        self.pass.in_flight.clear();
        PushFailure {
            error,
            possibly_partial: self.emptied || self.all_unanswered,
            interrupted,
            report: self.tally(),
        }
    }
}

/// The records of a chunk, as they were written.
fn records_of(chunk: &Chunk) -> Result<Vec<&RawValue>, Stop> {
    serde_json::from_slice(&chunk.body)
        .map_err(|e| Stop::Source(Error::internal(format!("a chunk is not a JSON array: {e}"))))
}

/// A chunk cut, in order, into chunks of at most `max_bytes` (a larger record goes alone):
/// what a chunk read before a 413 taught the limit becomes without a request.
fn cut(chunk: Chunk, max_bytes: usize) -> Result<Vec<Chunk>, Stop> {
    if chunk.body.len() <= max_bytes {
        return Ok(vec![chunk]);
    }
    let records = records_of(&chunk)?;
    let mut out = Vec::new();
    let (mut start, mut len) = (0, 2);
    for (i, record) in records.iter().enumerate() {
        let grown = len + record.get().len() + usize::from(i > start);
        if i > start && grown > max_bytes {
            out.push(array(&records[start..i]));
            (start, len) = (i, 2 + record.get().len());
        } else {
            len = grown;
        }
    }
    out.push(array(&records[start..]));
    Ok(out)
}

/// A JSON array of `records`, as a chunk's body.
fn array(records: &[&RawValue]) -> Chunk {
    let len = records.iter().map(|r| r.get().len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(record.get().as_bytes());
    }
    body.push(b']');
    Chunk {
        body: Bytes::from(body),
        rows: records.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SqlState;
    use std::cell::{Cell, RefCell};

    /// A source of `rows` records `{"id":"n"}` (or padded to `width` bytes) in chunks of
    /// `batch`, closing a chunk early at the byte limit a 413 taught it.
    struct Rows {
        rows: u64,
        batch: u64,
        width: usize,
        next: u64,
        restarts: u32,
        fail_at_chunk: Option<u32>,
        chunks_read: u32,
        max_bytes: Option<usize>,
        shrunk: Vec<usize>,
        rejected: Vec<(String, String)>,
    }

    impl Rows {
        /// A source of `rows` records in chunks of `batch`.
        fn new(rows: u64, batch: u64) -> Rows {
            Rows {
                rows,
                batch,
                width: 0,
                next: 0,
                restarts: 0,
                fail_at_chunk: None,
                chunks_read: 0,
                max_bytes: None,
                shrunk: vec![],
                rejected: vec![],
            }
        }

        /// Record `i`, padded to at least `width` bytes.
        fn record(&self, i: u64) -> String {
            let plain = format!("{{\"id\":\"{i}\"}}");
            let pad = self.width.saturating_sub(plain.len() + 7);
            if pad == 0 {
                return plain;
            }
            format!("{{\"id\":\"{i}\",\"p\":\"{}\"}}", "x".repeat(pad))
        }
    }

    impl ChunkSource for Rows {
        /// Back to the first record.
        fn restart(&mut self) -> Result<(), Error> {
            self.next = 0;
            self.restarts += 1;
            Ok(())
        }

        /// The next records as a JSON array: up to `batch`, within the learned byte limit.
        fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
            self.chunks_read += 1;
            if Some(self.chunks_read) == self.fail_at_chunk {
                return Err(Error::new(SqlState::UndefinedTable, "source dropped"));
            }
            if self.next >= self.rows {
                return Ok(None);
            }
            let mut records: Vec<String> = vec![];
            let mut len = 2;
            while self.next < self.rows && (records.len() as u64) < self.batch {
                let record = self.record(self.next);
                let over = self.max_bytes.is_some_and(|m| len + record.len() + 1 > m);
                if over && !records.is_empty() {
                    break;
                }
                len += record.len() + 1;
                records.push(record);
                self.next += 1;
            }
            out.extend_from_slice(format!("[{}]", records.join(",")).as_bytes());
            Ok(Some(ChunkInfo {
                rows: records.len() as u64,
            }))
        }

        /// Keeps the rejected record and why.
        fn reject(&mut self, record: &[u8], reason: String) {
            self.rejected
                .push((String::from_utf8_lossy(record).into_owned(), reason));
        }

        /// Keeps the limit, and uses it from now on.
        fn shrink(&mut self, max_bytes: usize) {
            self.shrunk.push(max_bytes);
            self.max_bytes = Some(max_bytes);
        }
    }

    /// A sink that records each call and answers from a script (default: accept), counting
    /// how many chunks are started and not finished.
    #[derive(Default)]
    struct Script {
        calls: RefCell<Vec<(bool, String)>>,
        /// Call numbers (1-based) that fail, and how.
        failures: Vec<(usize, PushError)>,
        /// Bodies longer than this are refused as too large.
        max_body: Option<usize>,
        stats: RefCell<ClientStats>,
        /// Started and not yet finished (or dropped), and the most at once.
        open: Rc<Cell<usize>>,
        peak: Cell<usize>,
        /// "start n" and "finish n" in the order they happened.
        events: RefCell<Vec<String>>,
        /// The destination gives no receipt (no import ids).
        no_receipts: bool,
    }

    use std::rc::Rc;

    /// A scripted answer on its way; dropping it closes it.
    struct Ticket {
        call: usize,
        answer: Result<Option<String>, PushError>,
        open: Rc<Cell<usize>>,
    }

    impl Drop for Ticket {
        /// One fewer on its way.
        fn drop(&mut self) {
            self.open.set(self.open.get() - 1);
        }
    }

    impl RecordSink for Script {
        type InFlight = Ticket;

        /// Answered at once (see `answer`), and counted as on its way until finished.
        fn start(&self, first: bool, body: Bytes) -> Ticket {
            let answer = self.answer(first, body);
            self.open.set(self.open.get() + 1);
            self.peak.set(self.peak.get().max(self.open.get()));
            let call = self.calls.borrow().len();
            self.events.borrow_mut().push(format!("start {call}"));
            Ticket {
                call,
                answer,
                open: Rc::clone(&self.open),
            }
        }

        /// The answer given at the start.
        fn finish(&self, chunk: Ticket, _: &dyn Fn() -> bool) -> Result<Option<String>, PushError> {
            self.events
                .borrow_mut()
                .push(format!("finish {}", chunk.call));
            chunk.answer.clone()
        }

        /// The scripted counters.
        fn stats(&self) -> ClientStats {
            *self.stats.borrow()
        }
    }

    impl Script {
        /// Records the call; fails when scripted to, or when the body is too large.
        fn answer(&self, first: bool, body: Bytes) -> Result<Option<String>, PushError> {
            let mut calls = self.calls.borrow_mut();
            calls.push((first, String::from_utf8_lossy(&body).into_owned()));
            let n = calls.len();
            self.stats.borrow_mut().requests += 1;
            if let Some((_, e)) = self.failures.iter().find(|(k, _)| *k == n) {
                return Err(e.clone());
            }
            if self.max_body.is_some_and(|m| body.len() > m) {
                return Err(too_large());
            }
            Ok((!self.no_receipts).then(|| format!("imp-{n}")))
        }

        /// The bodies sent, in order.
        fn bodies(&self) -> Vec<String> {
            self.calls.borrow().iter().map(|c| c.1.clone()).collect()
        }

        /// The `all` flags sent, in order.
        fn flags(&self) -> Vec<bool> {
            self.calls.borrow().iter().map(|c| c.0).collect()
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

    /// A 413.
    fn too_large() -> PushError {
        PushError::TooLarge {
            request: "POST /x".into(),
            excerpt: "too large".into(),
        }
    }

    /// A 401.
    fn key_rejected() -> PushError {
        PushError::KeyRejected {
            request: "POST /x".into(),
            status: 401,
            excerpt: "no".into(),
        }
    }

    /// Settings with a restart budget and a number of chunks in flight.
    fn settings(restart_budget: u32, max_in_flight: usize) -> PushSettings {
        PushSettings {
            restart_budget,
            max_in_flight,
        }
    }

    /// Runs a push with no interrupt and collects progress.
    fn run_with(
        source: &mut Rows,
        sink: &Script,
        settings: PushSettings,
    ) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
        let mut seen = Vec::new();
        let result = push(source, sink, settings, &|| false, &mut |p| {
            seen.push(p.clone())
        });
        (result, seen)
    }

    /// Runs a push one chunk at a time.
    fn run(
        source: &mut Rows,
        sink: &Script,
        budget: u32,
    ) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
        run_with(source, sink, settings(budget, 1))
    }

    /// The ids in the bodies Qobra accepted (calls not failed), in order.
    fn accepted_ids(sink: &Script, failed: &[usize]) -> Vec<String> {
        let mut ids = vec![];
        for (i, body) in sink.bodies().iter().enumerate() {
            if failed.contains(&(i + 1)) {
                continue;
            }
            let records: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
            ids.extend(records.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        }
        ids
    }

    #[test]
    fn first_chunk_all_then_the_rest() {
        let mut source = Rows::new(5, 2);
        let sink = Script::default();
        let (report, progress) = run(&mut source, &sink, 0);
        let report = report.unwrap();
        let calls = sink.calls.borrow();
        let flags: Vec<bool> = calls.iter().map(|c| c.0).collect();
        assert_eq!(flags, [true, false, false]);
        assert_eq!(calls[2].1, r#"[{"id":"4"}]"#);
        assert_eq!(report.chunks, 3);
        assert_eq!(report.rows_sent, 5);
        assert_eq!(report.requests, 3);
        assert_eq!(report.import_ids, ["imp-1", "imp-2", "imp-3"]);
        assert_eq!(
            report.bytes_sent,
            calls.iter().map(|c| c.1.len() as u64).sum::<u64>()
        );
        assert_eq!(progress.len(), 3);
        assert_eq!(progress[1].rows_sent, 4);
        assert_eq!(progress[2].chunk, 3);
        assert_eq!(sink.peak.get(), 1, "one at a time");
    }

    #[test]
    fn a_destination_without_receipts_takes_a_push_like_any_other() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            no_receipts: true,
            ..Script::default()
        };
        let (report, progress) = run(&mut source, &sink, 0);
        let report = report.unwrap();
        assert_eq!((report.chunks, report.rows_sent), (3, 5));
        assert!(report.import_ids.is_empty());
        assert!(progress.iter().all(|p| p.import_id.is_none()));
        assert_eq!(sink.flags(), [true, false, false]);
    }

    #[test]
    fn the_first_chunk_goes_alone_then_up_to_max_in_flight() {
        let mut source = Rows::new(20, 2);
        let sink = Script::default();
        let report = run_with(&mut source, &sink, settings(0, 4)).0.unwrap();
        assert_eq!(report.rows_sent, 20);
        assert_eq!(report.chunks, 10);
        assert_eq!(sink.peak.get(), 4);
        assert_eq!(sink.open.get(), 0, "every chunk was finished");
        let events = sink.events.borrow();
        assert_eq!(
            events[..6],
            ["start 1", "finish 1", "start 2", "start 3", "start 4", "start 5"],
            "nothing travels with the all=true chunk"
        );
        assert_eq!(sink.flags().iter().filter(|a| **a).count(), 1);
        let mut ids = accepted_ids(&sink, &[]);
        ids.sort_by_key(|i| i.parse::<u32>().unwrap());
        assert_eq!(ids, (0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!(report.import_ids.len(), 10, "each call's id once");
    }

    #[test]
    fn an_empty_snapshot_empties_the_table() {
        let mut source = Rows::new(0, 2);
        let sink = Script::default();
        let report = run(&mut source, &sink, 0).0.unwrap();
        assert_eq!(*sink.calls.borrow(), [(true, "[]".to_owned())]);
        assert_eq!(report.chunks, 1);
        assert_eq!(report.rows_sent, 0);
    }

    #[test]
    fn an_empty_snapshot_refused_as_too_large_fails() {
        let mut source = Rows::new(0, 2);
        let sink = Script {
            max_body: Some(1),
            ..Script::default()
        };
        let failure = run(&mut source, &sink, 0).0.unwrap_err();
        assert!(
            failure.error.message.contains("413"),
            "{}",
            failure.error.message
        );
        assert_eq!(sink.calls.borrow().len(), 1, "sent once, not split");
    }

    #[test]
    fn a_late_failure_restarts_from_the_top() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(3, gave_up())],
            ..Script::default()
        };
        let report = run(&mut source, &sink, 1).0.unwrap();
        assert_eq!(sink.flags(), [true, false, false, true, false, false]);
        assert_eq!(source.restarts, 1);
        assert_eq!(report.restarts, 1);
        assert_eq!(report.rows_sent, 5);
        assert_eq!(report.chunks, 5);
        assert_eq!(report.requests, 6);
    }

    #[test]
    fn a_restart_awaits_the_chunks_on_their_way_and_keeps_their_ids() {
        let mut source = Rows::new(12, 2);
        let sink = Script {
            failures: vec![(2, gave_up())],
            ..Script::default()
        };
        let report = run_with(&mut source, &sink, settings(1, 3)).0.unwrap();
        let events = sink.events.borrow();
        // Calls 2, 3 and 4 travel together; 2 fails; 3 and 4 are awaited before the restart's
        // all=true chunk (call 5) starts.
        let at = |e: &str| events.iter().position(|x| x == e).unwrap();
        assert!(at("finish 3") < at("start 5") && at("finish 4") < at("start 5"));
        assert!(sink.flags()[4]);
        assert_eq!(report.restarts, 1);
        assert_eq!(report.rows_sent, 12);
        assert_eq!(report.chunks, 3 + 6, "1, 3 and 4, then the whole pass");
        for n in [1, 3, 4, 5] {
            assert!(report.import_ids.contains(&format!("imp-{n}")), "imp-{n}");
        }
        assert!(!report.import_ids.contains(&"imp-2".to_owned()));
        assert_eq!(report.requests as usize, sink.calls.borrow().len());
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
    fn an_interrupt_while_the_first_chunk_travels_may_leave_qobra_partial() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(1, PushError::Interrupted)],
            ..Script::default()
        };
        let failure = run_with(&mut source, &sink, settings(3, 4)).0.unwrap_err();
        assert!(failure.interrupted);
        assert!(
            failure.possibly_partial,
            "the all=true request may have reached Qobra"
        );
    }

    #[test]
    fn a_first_chunk_whose_answer_never_came_may_leave_qobra_partial() {
        let cut = PushError::GaveUp {
            attempts: 3,
            last: Box::new(PushError::Transport {
                request: "POST /x".into(),
                kind: crate::retry::TransportKind::Timeout,
                message: "timed out".into(),
            }),
        };
        let unreadable = PushError::Protocol {
            request: "POST /x".into(),
            message: "not JSON".into(),
        };
        for error in [cut, unreadable] {
            let mut source = Rows::new(5, 2);
            let sink = Script {
                failures: vec![(1, error.clone())],
                ..Script::default()
            };
            let failure = run_with(&mut source, &sink, settings(3, 4)).0.unwrap_err();
            assert!(failure.possibly_partial, "{error}");
        }
    }

    #[test]
    fn a_failed_first_chunk_leaves_qobra_untouched() {
        let mut source = Rows::new(5, 2);
        let sink = Script {
            failures: vec![(1, gave_up())],
            ..Script::default()
        };
        let failure = run_with(&mut source, &sink, settings(3, 4)).0.unwrap_err();
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

    #[test]
    fn a_refused_chunk_among_several_awaits_the_others_for_their_ids() {
        let mut source = Rows::new(12, 2);
        let refused = PushError::Refused {
            request: "x".into(),
            status: 400,
            excerpt: "bad".into(),
        };
        let sink = Script {
            failures: vec![(3, refused)],
            ..Script::default()
        };
        let failure = run_with(&mut source, &sink, settings(5, 4)).0.unwrap_err();
        assert_eq!(failure.report.restarts, 0);
        // 1 alone, then 2..5 together, 6 once 2 is in: 3 is refused, 4, 5 and 6 are awaited
        // and counted, nothing more is sent.
        assert_eq!(
            failure.report.import_ids,
            ["imp-1", "imp-2", "imp-4", "imp-5", "imp-6"]
        );
        assert_eq!(failure.report.chunks, 5);
        assert_eq!(failure.report.requests, 6);
        assert_eq!(sink.open.get(), 0);
    }

    #[test]
    fn a_rejected_key_or_an_interrupt_drops_the_chunks_on_their_way() {
        for error in [key_rejected(), PushError::Interrupted] {
            let mut source = Rows::new(12, 2);
            let sink = Script {
                failures: vec![(2, error.clone())],
                ..Script::default()
            };
            let failure = run_with(&mut source, &sink, settings(5, 4)).0.unwrap_err();
            assert_eq!(failure.interrupted, error == PushError::Interrupted);
            assert_eq!(failure.report.import_ids, ["imp-1"]);
            assert_eq!(failure.report.chunks, 1);
            let events = sink.events.borrow();
            assert!(!events.contains(&"finish 3".to_owned()), "{events:?}");
            assert_eq!(sink.open.get(), 0, "the others were dropped");
        }
    }

    #[test]
    fn a_chunk_too_large_is_split_until_qobra_takes_it() {
        let mut source = Rows::new(24, 8);
        source.width = 20;
        // Room for 3 records of 20 bytes (62 bytes), not 4 (83).
        let sink = Script {
            max_body: Some(64),
            ..Script::default()
        };
        let report = run_with(&mut source, &sink, settings(0, 4)).0.unwrap();
        assert_eq!(report.rows_sent, 24);
        let bodies = sink.bodies();
        let refused: Vec<usize> = (1..=bodies.len())
            .filter(|n| bodies[n - 1].len() > 64)
            .collect();
        let mut kept = accepted_ids(&sink, &refused);
        kept.sort_by_key(|i| i.parse::<u32>().unwrap());
        assert_eq!(
            kept,
            (0..24).map(|i| i.to_string()).collect::<Vec<_>>(),
            "each record once"
        );
        // 8 records (169 bytes) refused, then its first half (4, 85 bytes), then that half's
        // first half (2 records) is the all=true chunk Qobra takes.
        assert_eq!(&sink.flags()[..4], [true, true, true, false]);
        assert_eq!(bodies[0].len(), 169);
        assert_eq!(bodies[1].len(), 85);
        assert_eq!(bodies[2].len(), 43);
        assert_eq!(&source.shrunk[..2], [85, 43]);
        // The chunk read ahead before the first 413 was cut to the learned size before it was
        // sent, and later ones were built at it: only the first chunk's line was refused.
        assert_eq!(bodies.iter().filter(|b| b.len() > 85).count(), 1);
        assert_eq!(refused, [1, 2]);
        assert!(bodies
            .iter()
            .any(|b| b.contains(r#""id":"16""#) && b.len() <= 43));
        assert_eq!(
            report.retries,
            refused.len() as u32,
            "each split is a retry"
        );
        assert_eq!(report.chunks as usize, bodies.len() - refused.len());
        assert!(source.rejected.is_empty());
    }

    #[test]
    fn cut_keeps_the_records_in_order_within_the_limit() {
        let records = r#"[{"id":"1"},{"id":"22"},{"id":"333333333333"},{"id":"4"},{"id":"5"}]"#;
        let chunk = Chunk {
            body: Bytes::from(records.as_bytes().to_vec()),
            rows: 5,
        };
        let pieces = cut(chunk, 25).ok().unwrap();
        let bodies: Vec<&[u8]> = pieces.iter().map(|c| c.body.as_ref()).collect();
        assert_eq!(
            bodies,
            [
                &br#"[{"id":"1"},{"id":"22"}]"#[..],
                br#"[{"id":"333333333333"}]"#,
                br#"[{"id":"4"},{"id":"5"}]"#,
            ]
        );
        assert_eq!(pieces.iter().map(|c| c.rows).collect::<Vec<_>>(), [2, 1, 2]);
        let small = Chunk {
            body: Bytes::from_static(b"[{}]"),
            rows: 1,
        };
        assert_eq!(
            cut(small, 25).ok().unwrap().len(),
            1,
            "small enough: as it is"
        );
    }

    #[test]
    fn a_single_record_too_large_is_set_aside_and_the_rest_goes() {
        let mut source = Rows::new(3, 1);
        source.width = 10;
        // Record 1 is padded past the limit: only it is refused.
        let sink = Script {
            failures: vec![(2, too_large())],
            ..Script::default()
        };
        let report = run_with(&mut source, &sink, settings(0, 2)).0.unwrap();
        assert_eq!(report.rows_sent, 2);
        assert_eq!(source.rejected.len(), 1);
        assert_eq!(source.rejected[0].0, r#"{"id":"1"}"#);
        assert!(
            source.rejected[0].1.contains("too large even alone"),
            "{:?}",
            source.rejected
        );
        assert_eq!(report.retries, 0, "nothing was split");
        assert!(source.shrunk.is_empty());

        // A snapshot of one record, refused: Qobra's table is still emptied.
        let mut source = Rows::new(1, 1);
        let sink = Script {
            max_body: Some(5),
            ..Script::default()
        };
        let report = run(&mut source, &sink, 0).0.unwrap();
        assert_eq!(sink.bodies(), [r#"[{"id":"0"}]"#, "[]"]);
        assert_eq!(sink.flags(), [true, true]);
        assert_eq!(report.rows_sent, 0);
        assert_eq!(source.rejected.len(), 1);
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

        /// Passed on.
        fn reject(&mut self, record: &[u8], reason: String) {
            self.1.reject(record, reason)
        }

        /// Passed on.
        fn shrink(&mut self, max_bytes: usize) {
            self.1.shrink(max_bytes)
        }
    }

    #[test]
    fn the_next_chunk_is_read_while_one_is_on_its_way() {
        let log = RefCell::new(vec![]);
        let sink = Script::default();
        let mut source = Logged(&log, Rows::new(5, 2));
        let mut progress = |_: &Progress| log.borrow_mut().push("accepted".into());
        push(&mut source, &sink, settings(0, 1), &|| false, &mut progress).unwrap();
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

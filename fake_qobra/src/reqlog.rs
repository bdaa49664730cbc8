//! The log of every request received, for tests to inspect (`GET /_fake/requests`).
//! It records whether an API key was sent and whether it matched, never the key.

use serde::Serialize;
use std::sync::Mutex;

/// One logged request.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Position in the log since the server started (not reset by clearing).
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub api_key_present: bool,
    pub api_key_valid: bool,
    pub body_bytes: usize,
    /// Number of records in the body, when it was a JSON array of objects.
    pub records: Option<usize>,
    /// Status answered, or null when the connection was hung, reset or closed.
    pub status: Option<u16>,
    /// The injected fault's kind (`status`, `delay`, `hang`, `reset`, `close`), if any.
    pub fault: Option<String>,
    pub received_at: String,
    /// When the answer was written (or the connection dropped).
    pub finished_at: Option<String>,
}

/// The request log.
#[derive(Default)]
pub struct RequestLog {
    inner: Mutex<(u64, Vec<Entry>)>,
}

impl RequestLog {
    /// Appends an entry, giving it the next sequence number.
    pub fn push(&self, mut entry: Entry) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        entry.seq = g.0;
        g.1.push(entry);
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Forgets all entries.
    pub fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clear();
    }
}

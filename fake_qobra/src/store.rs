//! Data tables, imports, and the background thread that launches due imports.
//!
//! A bulk request only checks that its body is a JSON array of objects and is
//! queued with its raw bytes; records are parsed when the import launches.
//! Stored records are kept as compact JSON text keyed by their id (as text), so
//! that tables of millions of rows stay small and read-back is cheap.

use crate::clock::now_rfc3339;
use crate::fields::{RawRecord, TableDef};
use crate::settings::BodyFormat;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this many parsing errors are listed per import (the count is always exact).
pub const MAX_ERROR_DETAILS: usize = 1000;

/// A data table: its definition and its records (compact JSON by id).
pub struct Table {
    pub def: TableDef,
    pub records: Mutex<BTreeMap<String, Box<str>>>,
}

/// Import status, as Qobra reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Scheduled,
    Started,
    Finished,
}

impl Status {
    /// The status as written in API responses.
    fn name(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Started => "started",
            Status::Finished => "finished",
        }
    }
}

/// One bulk request that joined an import.
struct Batch {
    all: bool,
    body: Vec<u8>,
}

/// An import: the bulk requests it gathered and, once finished, its outcome.
struct Import {
    id: String,
    seq: u64,
    table_key: String,
    created_at: String,
    launched_at: Option<String>,
    finished_at: Option<String>,
    status: Status,
    /// When the launcher may start it.
    launch_at: Instant,
    /// Set by a flush: later requests may still join but no longer postpone it.
    forced: bool,
    batches: Vec<Batch>,
    number_of_records: Option<usize>,
    error: Option<Value>,
}

impl Import {
    /// The `GET /v1/imports/{id}` representation.
    fn to_json(&self) -> Value {
        let progress = if self.status == Status::Finished {
            100
        } else {
            0
        };
        json!({
            "data_import": {
                "id": self.id,
                "created_at": self.created_at,
                "launched_at": self.launched_at,
                "finished_at": self.finished_at,
                "status": self.status.name(),
                "progress": progress,
                "data_tables_details": [{
                    "type": "api",
                    "status": self.status.name(),
                    "data_table_key": self.table_key,
                    "progress": progress,
                    "number_of_records": self.number_of_records,
                    "error": self.error,
                }],
            }
        })
    }
}

/// Everything behind the store's lock.
#[derive(Default)]
struct State {
    tables: HashMap<String, Arc<Table>>,
    imports: HashMap<String, Import>,
    /// The import of each table that is still `scheduled`, which new requests join.
    scheduled: HashMap<String, String>,
    next_seq: u64,
    stopping: bool,
}

/// Tables and imports, shared by all connections and the launcher thread.
#[derive(Default)]
pub struct Store {
    state: Mutex<State>,
    /// Signalled whenever an import is queued, launched, finished, or the store stops.
    changed: Condvar,
}

impl Store {
    /// Locks the state, recovering from a panicked holder.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the launcher thread for this store.
    pub fn spawn_launcher(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let store = Arc::clone(self);
        std::thread::Builder::new()
            .name("import-launcher".into())
            .spawn(move || store.launcher_loop())
    }

    /// Stops the launcher thread and wakes any flush waiting on it.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Defines (or redefines, emptying) a table.
    pub fn define_table(&self, key: &str, def: TableDef) -> Arc<Table> {
        let table = Arc::new(Table {
            def,
            records: Mutex::new(BTreeMap::new()),
        });
        self.lock()
            .tables
            .insert(key.to_string(), Arc::clone(&table));
        table
    }

    /// Drops a table; returns whether it existed.
    pub fn drop_table(&self, key: &str) -> bool {
        self.lock().tables.remove(key).is_some()
    }

    /// The table with this key, if defined.
    pub fn table(&self, key: &str) -> Option<Arc<Table>> {
        self.lock().tables.get(key).cloned()
    }

    /// All table keys, sorted.
    pub fn table_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().tables.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Forgets every table and import.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.tables.clear();
        st.imports.clear();
        st.scheduled.clear();
        drop(st);
        self.changed.notify_all();
    }

    /// Queues a bulk request for a table: joins its scheduled import or creates
    /// one; returns the import id. The body must already be checked by `count_objects`.
    pub fn enqueue(&self, table_key: &str, all: bool, debounce: u64, body: Vec<u8>) -> String {
        let now = Instant::now();
        let launch_at = now + Duration::from_secs(debounce);
        let mut st = self.lock();
        let joined = st.scheduled.get(table_key).cloned();
        let id = match joined.and_then(|id| st.imports.get_mut(&id)) {
            Some(imp) => {
                if !imp.forced {
                    imp.launch_at = launch_at;
                }
                imp.batches.push(Batch { all, body });
                imp.id.clone()
            }
            None => {
                st.next_seq += 1;
                let seq = st.next_seq;
                let id = new_import_id(seq);
                let imp = Import {
                    id: id.clone(),
                    seq,
                    table_key: table_key.to_string(),
                    created_at: now_rfc3339(),
                    launched_at: None,
                    finished_at: None,
                    status: Status::Scheduled,
                    launch_at,
                    forced: false,
                    batches: vec![Batch { all, body }],
                    number_of_records: None,
                    error: None,
                };
                st.imports.insert(id.clone(), imp);
                st.scheduled.insert(table_key.to_string(), id.clone());
                id
            }
        };
        drop(st);
        self.changed.notify_all();
        id
    }

    /// The status document of an import, if it exists.
    pub fn import_json(&self, id: &str) -> Option<Value> {
        self.lock().imports.get(id).map(Import::to_json)
    }

    /// All imports, oldest first, as status documents.
    pub fn imports_json(&self) -> Value {
        let st = self.lock();
        let mut imports: Vec<&Import> = st.imports.values().collect();
        imports.sort_by_key(|i| i.seq);
        Value::Array(
            imports
                .iter()
                .map(|i| i.to_json()["data_import"].clone())
                .collect(),
        )
    }

    /// Launches every scheduled import now and waits until all imports are finished.
    pub fn flush(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        for imp in st.imports.values_mut() {
            if imp.status == Status::Scheduled {
                imp.launch_at = now;
                imp.forced = true;
            }
        }
        self.changed.notify_all();
        while !st.stopping && st.imports.values().any(|i| i.status != Status::Finished) {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The launcher: waits for the next due import, runs it, repeats until stopped.
    fn launcher_loop(&self) {
        let mut st = self.lock();
        loop {
            if st.stopping {
                return;
            }
            let now = Instant::now();
            let due = st
                .imports
                .values()
                .filter(|i| i.status == Status::Scheduled)
                .min_by_key(|i| (i.launch_at, i.seq))
                .map(|i| (i.id.clone(), i.launch_at));
            match due {
                Some((id, at)) if at <= now => {
                    let Some(imp) = st.imports.get_mut(&id) else {
                        continue;
                    };
                    imp.status = Status::Started;
                    imp.launched_at = Some(now_rfc3339());
                    let batches = std::mem::take(&mut imp.batches);
                    let key = imp.table_key.clone();
                    st.scheduled.remove(&key);
                    let table = st.tables.get(&key).cloned();
                    drop(st);
                    self.changed.notify_all();
                    let outcome = run_import(table.as_deref(), batches);
                    st = self.lock();
                    if let Some(imp) = st.imports.get_mut(&id) {
                        imp.status = Status::Finished;
                        imp.finished_at = Some(now_rfc3339());
                        imp.number_of_records = outcome.0;
                        imp.error = outcome.1;
                    }
                    self.changed.notify_all();
                }
                Some((_, at)) => {
                    let wait = at.saturating_duration_since(now);
                    st = self
                        .changed
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Applies an import's batches to a table: clears it if any batch had `all=true`,
/// then upserts every parsable record in arrival order. Returns the number of
/// records stored and the error document, if any.
fn run_import(table: Option<&Table>, batches: Vec<Batch>) -> (Option<usize>, Option<Value>) {
    let Some(table) = table else {
        let error = json!({
            "title": "DataTableNotFound",
            "description": "The data table was deleted before the import ran",
            "parsing_error_details": [],
        });
        return (None, Some(error));
    };
    let clear = batches.iter().any(|b| b.all);
    let mut good: Vec<(String, String)> = Vec::new();
    let mut details: Vec<Value> = Vec::new();
    let mut failed = 0usize;
    let mut first_failure = String::new();
    let mut line = 0usize;
    for batch in batches {
        let records: Vec<RawRecord> = serde_json::from_slice(&batch.body).unwrap_or_default();
        for record in records {
            line += 1;
            match table.def.parse_record(&record) {
                Ok(parsed) => good.push(parsed),
                Err(msg) => {
                    failed += 1;
                    if first_failure.is_empty() {
                        first_failure = msg.clone();
                    }
                    if details.len() < MAX_ERROR_DETAILS {
                        details.push(json!({
                            "line_number": line,
                            "row": record.to_value(),
                            "details": msg,
                        }));
                    }
                }
            }
        }
    }
    let stored = good.len();
    let mut records = table.records.lock().unwrap_or_else(|e| e.into_inner());
    if clear {
        records.clear();
    }
    for (id, text) in good {
        upsert(&mut records, id, text);
    }
    drop(records);
    let error = (failed > 0).then(|| {
        let description = if failed == 1 {
            first_failure
        } else {
            format!("{failed} rows could not be parsed; first: {first_failure}")
        };
        json!({
            "title": "ParsingError",
            "description": description,
            "parsing_error_details": details,
        })
    });
    (Some(stored), error)
}

/// Inserts a record, or merges its fields into the record already stored under its id.
pub fn upsert(records: &mut BTreeMap<String, Box<str>>, id: String, text: String) {
    match records.get_mut(&id) {
        None => {
            records.insert(id, text.into_boxed_str());
        }
        Some(existing) => {
            let mut merged: Map<String, Value> = serde_json::from_str(existing).unwrap_or_default();
            let new: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
            merged.extend(new);
            *existing = serde_json::to_string(&merged)
                .unwrap_or_default()
                .into_boxed_str();
        }
    }
}

/// The records of a bulk body of shape `format`: the JSON array of objects it holds (the
/// body itself, or its `data`) and how many objects that is; or why the body does not have
/// that shape.
pub fn records_of(body: &[u8], format: BodyFormat) -> Result<(&[u8], usize), String> {
    let array = match format {
        BodyFormat::Array => body,
        BodyFormat::Data => {
            let envelope: Envelope = serde_json::from_slice(body)
                .map_err(|e| format!("Body must be a JSON object {{\"data\": [records]}}: {e}"))?;
            envelope.data.get().as_bytes()
        }
    };
    let count = count_objects(array).map_err(|e| match format {
        BodyFormat::Array => format!("Body must be a JSON array of objects: {e}"),
        BodyFormat::Data => format!("\"data\" must be a JSON array of objects: {e}"),
    })?;
    Ok((array, count))
}

/// `{"data": …}`, nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// Checks that a body is a JSON array of objects without building it; returns
/// the number of objects or the parser's message.
pub fn count_objects(body: &[u8]) -> Result<usize, String> {
    serde_json::from_slice::<Vec<AnyObject>>(body)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// A JSON object whose content is skipped (used to validate bodies cheaply).
struct AnyObject;

impl<'de> Deserialize<'de> for AnyObject {
    /// Accepts only a JSON object, ignoring its entries.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AnyObjectVisitor)
    }
}

/// Visitor behind `AnyObject`.
struct AnyObjectVisitor;

impl<'de> Visitor<'de> for AnyObjectVisitor {
    type Value = AnyObject;

    /// What the visitor expects, for error messages.
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object (one record)")
    }

    /// Skips every entry of the object.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyObject, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(AnyObject)
    }
}

/// A fresh, UUID-shaped import id (random, with the sequence number mixed in).
fn new_import_id(seq: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seq);
    let a = h.finish();
    h.write_u64(a);
    let b = h.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only arrays of objects pass the body check.
    #[test]
    fn counts_objects_only() {
        assert_eq!(count_objects(br#"[{"a":1},{"b":[1,{"c":2}]}]"#), Ok(2));
        assert_eq!(count_objects(b"[]"), Ok(0));
        assert!(count_objects(br#"{"a":1}"#).is_err());
        assert!(count_objects(br#"[{"a":1}, 3]"#).is_err());
        assert!(count_objects(br#"[{"a":1}"#).is_err());
    }

    /// An upsert merges new fields into the stored record.
    #[test]
    fn upsert_merges_fields() {
        let mut records = BTreeMap::new();
        upsert(&mut records, "1".into(), r#"{"id":"1","a":1,"b":2}"#.into());
        upsert(&mut records, "1".into(), r#"{"id":"1","b":3}"#.into());
        assert_eq!(&*records["1"], r#"{"id":"1","a":1,"b":3}"#);
    }

    /// Import ids are UUID-shaped and unique.
    #[test]
    fn import_ids_are_unique() {
        let a = new_import_id(1);
        assert_eq!(a.len(), 36);
        assert_ne!(a, new_import_id(1));
    }
}

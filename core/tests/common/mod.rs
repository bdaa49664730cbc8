//! Helpers shared by the integration tests: a fake Qobra on a free loopback port with its control
//! API (over HTTP or HTTPS), a client configured for fast tests, an in-memory chunk source,
//! throwaway certificates (`certs`) and a test proxy (`proxy`).

#![allow(dead_code)]

pub mod certs;
pub mod proxy;

use qobra_sync_core::client::{ApiKey, ClientConfig, QobraClient};
use qobra_sync_core::push::{ChunkInfo, ChunkSource};
use qobra_sync_core::retry::RetryPolicy;
use qobra_sync_core::wire::BodyFormat;
use qobra_sync_core::Error;
use serde_json::{json, Value};
use std::time::Duration;

/// The key the fake accepts. Long and distinctive so that a leak is found by a plain search.
pub const KEY: &str = "qs-test-key-7Hq2xZ9kLm";

/// The data table most tests push to.
pub const TABLE: &str = "deals";

/// A running fake Qobra and a plain HTTP client for its control API.
pub struct Fake {
    pub server: fake_qobra::Server,
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Fake {
    /// Starts a fake on a free loopback port, with the `deals` table defined
    /// (`id`, `name`, `amount` as a number).
    pub fn start() -> Fake {
        Fake::start_with(fake_qobra::Options::default())
    }

    /// Starts a fake serving HTTPS with this certificate (its control API is called without
    /// checking the certificate, which the tests may make untrustworthy on purpose).
    pub fn start_tls(tls: fake_qobra::Tls) -> Fake {
        Fake::start_with(fake_qobra::Options {
            tls: Some(tls),
            ..Default::default()
        })
    }

    /// Starts a fake with these options, with the `deals` table defined.
    pub fn start_with(options: fake_qobra::Options) -> Fake {
        let server =
            fake_qobra::Server::start_with("127.0.0.1:0", KEY, options).expect("start fake Qobra");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .build()
            .expect("control client");
        let fake = Fake {
            server,
            runtime,
            http,
        };
        fake.define(TABLE);
        fake
    }

    /// The fake's base URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The fake's base URL with `localhost` for its host (the name its test certificates carry).
    pub fn localhost_url(&self) -> String {
        self.url().replace("127.0.0.1", "localhost")
    }

    /// The fake's counters (`GET /_fake/stats`).
    pub fn stats(&self) -> Value {
        self.ok("GET", "/_fake/stats", None)
    }

    /// Changes the fake's settings (`PUT /_fake/settings`).
    pub fn settings(&self, settings: Value) -> Value {
        self.ok("PUT", "/_fake/settings", Some(settings))
    }

    /// A control-API call: method, path, optional raw body; returns status and JSON.
    pub fn call(&self, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{}", self.url(), path));
        if let Some(body) = body {
            request = request.body(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("control request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("control body");
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    /// A control-API call that must succeed; returns its JSON.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, doc) = self.call(method, path, body.map(|b| b.to_string()));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {doc}"
        );
        doc
    }

    /// Defines (or redefines, emptying) a table `id`, `name`, `amount: number`.
    pub fn define(&self, table: &str) {
        self.ok(
            "PUT",
            &format!("/_fake/tables/{table}"),
            Some(json!({"id_field": "id", "name_field": "name", "fields": {"amount": "number"}})),
        );
    }

    /// Defines `table` with rows already in it, as an admin's CSV import does.
    pub fn define_with_rows(&self, table: &str, csv: &str) {
        let (status, doc) = self.call(
            "PUT",
            &format!("/_fake/tables/{table}/csv?types=amount:number"),
            Some(csv.to_owned()),
        );
        assert_eq!(status, 200, "{doc}");
    }

    /// Adds fault rules.
    pub fn faults(&self, rules: Value) {
        self.ok("POST", "/_fake/faults", Some(rules));
    }

    /// Removes every fault rule and clears the request log.
    pub fn clear(&self) {
        self.ok("DELETE", "/_fake/faults", None);
        self.ok("DELETE", "/_fake/requests", None);
    }

    /// The log of requests to the public API (control calls left out). The fake logs a request
    /// just after answering it, so the log is read until two reads 25 ms apart agree.
    pub fn requests(&self) -> Vec<Value> {
        let read = || -> Vec<Value> {
            let log = self.ok("GET", "/_fake/requests", None);
            log.as_array()
                .expect("a list")
                .iter()
                .filter(|e| !e["path"].as_str().unwrap_or("").starts_with("/_fake"))
                .cloned()
                .collect()
        };
        let mut last = read();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(25));
            let now = read();
            if now.len() == last.len() {
                return now;
            }
            last = now;
        }
        last
    }

    /// The query strings of the logged public requests, in order.
    pub fn queries(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|e| e["query"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Runs every scheduled import now and waits for them.
    pub fn flush(&self) {
        self.ok("POST", "/_fake/imports/flush", None);
    }

    /// The ids stored in `table`, in the fake's order (text order).
    pub fn ids(&self, table: &str) -> Vec<String> {
        let records = self.ok("GET", &format!("/_fake/tables/{table}/records"), None);
        records
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| r["id"].as_str().expect("string id").to_owned())
            .collect()
    }
}

/// A client configuration for tests: short timeouts, fast retries, a fixed jitter seed.
pub fn config(url: &str) -> ClientConfig {
    ClientConfig {
        base_url: url.to_owned(),
        api_key: ApiKey::new(KEY),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            base: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            retry_after_cap: Duration::from_millis(400),
        },
        jitter_seed: Some(1),
        ca_file: None,
        https_proxy: None,
        proxy_credentials: None,
        body_format: BodyFormat::default(),
    }
}

/// A client for `url` with the test configuration.
pub fn client(url: &str) -> QobraClient {
    QobraClient::new(&config(url)).expect("client")
}

/// Records `{"id": "i", "name": "Deal i", "amount": i}` for `i` in `0..n`.
pub fn records(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"id": i.to_string(), "name": format!("Deal {i}"), "amount": i}))
        .collect()
}

/// A snapshot in memory, served in chunks of `batch` records.
pub struct VecSource {
    pub records: Vec<Value>,
    pub batch: usize,
    pub next: usize,
    pub restarts: u32,
    /// Records set aside as too large, with the reason.
    pub rejected: Vec<(Value, String)>,
    /// The byte limit a 413 taught, if any.
    pub max_bytes: Option<usize>,
}

impl VecSource {
    /// A source over `records`, `batch` per chunk.
    pub fn new(records: Vec<Value>, batch: usize) -> VecSource {
        VecSource {
            records,
            batch,
            next: 0,
            restarts: 0,
            rejected: Vec::new(),
            max_bytes: None,
        }
    }
}

impl ChunkSource for VecSource {
    /// Back to the first record.
    fn restart(&mut self) -> Result<(), Error> {
        self.next = 0;
        self.restarts += 1;
        Ok(())
    }

    /// The next `batch` records as a JSON array, fewer when the learned byte limit says so.
    fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<Option<ChunkInfo>, Error> {
        if self.next >= self.records.len() {
            return Ok(None);
        }
        let mut end = (self.next + self.batch).min(self.records.len());
        while let Some(max) = self.max_bytes {
            let len = serde_json::to_vec(&self.records[self.next..end])
                .expect("serialise")
                .len();
            if len <= max || end == self.next + 1 {
                break;
            }
            end -= 1;
        }
        serde_json::to_writer(&mut *out, &self.records[self.next..end]).expect("serialise");
        let rows = (end - self.next) as u64;
        self.next = end;
        Ok(Some(ChunkInfo { rows }))
    }

    /// Keeps the record and the reason.
    fn reject(&mut self, record: &[u8], reason: String) {
        let record = serde_json::from_slice(record).expect("a record");
        self.rejected.push((record, reason));
    }

    /// Uses the limit from now on.
    fn shrink(&mut self, max_bytes: usize) {
        self.max_bytes = Some(max_bytes);
    }
}

/// An `interrupted` callback that never fires.
pub fn never() -> bool {
    false
}

//! The fake's network settings end to end: HTTPS (from Rust and from the binary's flags),
//! latency and the count of requests in flight, the body limit, and answers that misbehave
//! (`drip`, `huge`).

use fake_qobra::{BodyFormat, Options, Server, Tls};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KEY: &str = "test-key-5f2c9a";

/// A CA's certificate (PEM) and a server certificate it signed for localhost and 127.0.0.1.
fn ca_and_server() -> (String, Tls, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fake test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("leaf");
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("sign");
    let (cert, key) = (cert.pem(), key.serialize_pem());
    let tls = Tls::from_pem(cert.as_bytes(), key.as_bytes()).expect("tls");
    (ca.pem(), tls, cert, key)
}

/// A client that trusts `ca` (PEM), or nothing but the built-in roots.
fn https_client(ca: Option<&str>) -> Client {
    let mut builder = Client::builder()
        .timeout(Duration::from_secs(20))
        .no_proxy();
    if let Some(ca) = ca {
        builder = builder
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"));
    }
    builder.build().expect("client")
}

/// Server options taking bare arrays, as these tests write bodies.
fn array_bodies() -> Options {
    Options {
        body_format: BodyFormat::Array,
        ..Default::default()
    }
}

/// A plain HTTP client.
fn http_client() -> Client {
    https_client(None)
}

/// A fake on a free loopback port (stopped when dropped), its base URL, and a client for it.
fn plain_server() -> (Server, String, Client) {
    let server = Server::start_with("127.0.0.1:0", KEY, array_bodies()).expect("start");
    let base = server.url();
    (server, base, http_client())
}

/// A control call with an optional JSON body; returns status and JSON.
fn control(
    http: &Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().expect("control");
    let status = resp.status().as_u16();
    let text = resp.text().expect("text");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `PUT /_fake/settings` with `settings`; returns status and JSON.
fn put_settings(http: &Client, base: &str, settings: Value) -> (u16, Value) {
    control(http, base, "PUT", "/_fake/settings", Some(settings))
}

/// Defines the `deals` table (id, name).
fn define(http: &Client, base: &str) {
    let (status, doc) = control(
        http,
        base,
        "PUT",
        "/_fake/tables/deals",
        Some(json!({"id_field": "id", "name_field": "name"})),
    );
    assert_eq!(status, 200, "{doc}");
}

/// `n` records `{"id": "i", "name": "n i"}`.
fn records(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"id": i.to_string(), "name": format!("n {i}")}))
        .collect()
}

/// Pushes records; returns status and JSON.
fn push(http: &Client, base: &str, records: &Value) -> (u16, Value) {
    let resp = http
        .post(format!(
            "{base}/v1/tables/deals/records/bulk?all=true&debounce=0"
        ))
        .header("X-API-Key", KEY)
        .json(records)
        .send()
        .expect("push");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// The logged public requests.
fn log(http: &Client, base: &str) -> Vec<Value> {
    let (_, doc) = control(http, base, "GET", "/_fake/requests", None);
    doc.as_array()
        .expect("list")
        .iter()
        .filter(|e| !e["path"].as_str().unwrap_or("").starts_with("/_fake"))
        .cloned()
        .collect()
}

/// HTTPS is served with the certificate given; a client that does not trust it fails its
/// handshake, which the fake counts, and no request reaches it.
#[test]
fn https_serves_with_the_certificate_given() {
    let (ca, tls, _, _) = ca_and_server();
    let server = Server::start_with(
        "127.0.0.1:0",
        KEY,
        Options {
            tls: Some(tls),
            ..array_bodies()
        },
    )
    .expect("start");
    let base = server.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let trusting = https_client(Some(&ca));
    define(&trusting, &base);
    let (status, doc) = push(&trusting, &base, &records(3));
    assert_eq!(status, 200, "{doc}");
    let by_name = base.replace("127.0.0.1", "localhost");
    let (status, _) = push(&trusting, &by_name, &records(1));
    assert_eq!(status, 200);

    let untrusting = https_client(None);
    let err = untrusting
        .get(format!("{base}/_fake/health"))
        .send()
        .expect_err("untrusted");
    assert!(err.is_connect(), "{err:?}");
    let (_, stats) = control(&trusting, &base, "GET", "/_fake/stats", None);
    assert_eq!(stats["tls_handshake_failures"], 1, "{stats}");
    assert_eq!(log(&trusting, &base).len(), 2, "only the trusted pushes");
    // Plain HTTP to the HTTPS port is no request either.
    let mut raw = TcpStream::connect(server.addr()).expect("connect");
    raw.write_all(b"GET /_fake/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(!String::from_utf8_lossy(&sink).contains("\"ok\""));
    let (_, stats) = control(&trusting, &base, "GET", "/_fake/stats", None);
    assert_eq!(stats["tls_handshake_failures"], 2, "{stats}");
    // Faults that end the connection work over TLS too.
    let (status, _) = control(
        &trusting,
        &base,
        "POST",
        "/_fake/faults",
        Some(json!({"path_prefix": "/v1/", "action": {"reset": true}})),
    );
    assert_eq!(status, 200);
    let reqwest_err = trusting
        .post(format!("{base}/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .json(&records(1))
        .send()
        .expect_err("reset");
    assert!(!reqwest_err.is_timeout(), "{reqwest_err:?}");
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    /// Kills and reaps the child.
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary's flags: HTTPS from PEM files, latency, the body limit and the body's shape.
#[test]
fn binary_flags_for_tls_latency_and_body_limit() {
    use std::io::BufRead;
    let (ca, _, cert, key) = ca_and_server();
    let dir = std::env::temp_dir().join(format!("fake-qobra-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-qobra"))
        .args(["--listen", "127.0.0.1:0", "--api-key", KEY, "--tls-cert"])
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path)
        .args([
            "--latency-ms",
            "300",
            "--max-body-bytes=1000",
            "--body-format",
            "array",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("announce")
        .to_string();
    let base = format!("https://{addr}");
    let http = https_client(Some(&ca));
    let (status, settings) = control(&http, &base, "GET", "/_fake/settings", None);
    assert_eq!(status, 200);
    assert_eq!(
        settings,
        json!({"latency_ms": 300, "max_body_bytes": 1000, "body_format": "array"})
    );
    define(&http, &base);
    let started = Instant::now();
    let (status, _) = push(&http, &base, &records(2));
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let (status, doc) = push(&http, &base, &records(100));
    assert_eq!(status, 413, "{doc}");
    drop(child);
    // Bad flag values are refused.
    for args in [
        vec!["--tls-cert", "/nonexistent/cert.pem"],
        vec![
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        vec!["--latency-ms", "soon"],
        vec!["--max-body-bytes", "-1"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fake-qobra"))
            .args(["--listen", "127.0.0.1:0", "--api-key", KEY])
            .args(&args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A request is answered `latency_ms` after it arrived, its body read meanwhile: a body that
/// takes 300 ms to arrive, with 500 ms of latency, is answered after about 500 ms, not 800.
#[test]
fn latency_counts_from_arrival_and_the_body_is_read_meanwhile() {
    let (server, base, http) = plain_server();
    define(&http, &base);
    let (status, doc) = put_settings(&http, &base, json!({"latency_ms": 500}));
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["latency_ms"], 500);
    let body = serde_json::to_vec(&records(10)).expect("json");
    let mut raw = TcpStream::connect(server.addr()).expect("connect");
    raw.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    write!(
        raw,
        "POST /v1/tables/deals/records/bulk?debounce=0 HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("head");
    for part in body.chunks(body.len().div_ceil(3)) {
        std::thread::sleep(Duration::from_millis(100));
        raw.write_all(part).expect("part");
    }
    let mut answer = [0u8; 12];
    raw.read_exact(&mut answer).expect("answer");
    let elapsed = started.elapsed();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert!(
        (Duration::from_millis(480)..Duration::from_millis(750)).contains(&elapsed),
        "{elapsed:?}"
    );
    // The control API is never delayed.
    let started = Instant::now();
    control(&http, &base, "GET", "/_fake/health", None);
    assert!(started.elapsed() < Duration::from_millis(300));
    // Latency applies to every public request, a fault's answer too.
    control(
        &http,
        &base,
        "POST",
        "/_fake/faults",
        Some(json!({"path_prefix": "/v1/", "action": {"status": 503}})),
    );
    let started = Instant::now();
    let (status, _) = push(&http, &base, &records(1));
    assert_eq!(status, 503);
    assert!(started.elapsed() >= Duration::from_millis(480));
    let (status, _) = put_settings(&http, &base, json!({"latency_ms": -5}));
    assert_eq!(status, 400);
    let (status, _) = put_settings(&http, &base, json!({"latency": 5}));
    assert_eq!(status, 400);
}

/// The stats report the most requests seen in flight at once; reset forgets them and
/// restores the settings the server started with.
#[test]
fn max_in_flight_counts_concurrent_requests() {
    let server = Server::start_with(
        "127.0.0.1:0",
        KEY,
        Options {
            latency: Duration::from_millis(300),
            ..array_bodies()
        },
    )
    .expect("start");
    let base = server.url();
    let http = http_client();
    define(&http, &base);
    let (_, stats) = control(&http, &base, "GET", "/_fake/stats", None);
    assert_eq!(
        (stats["in_flight"].clone(), stats["max_in_flight"].clone()),
        (json!(0), json!(0))
    );
    let started = Instant::now();
    let pushes: Vec<_> = (0..4)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            std::thread::spawn(move || push(&http, &base, &records(5)).0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    let (_, during) = control(&http, &base, "GET", "/_fake/stats", None);
    assert_eq!(during["in_flight"], 4, "{during}");
    for p in pushes {
        assert_eq!(p.join().expect("push"), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "answered together"
    );
    let mut after = Value::Null;
    for _ in 0..40 {
        after = control(&http, &base, "GET", "/_fake/stats", None).1;
        if after["in_flight"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(after["in_flight"], 0, "{after}");
    assert_eq!(after["max_in_flight"], 4, "{after}");
    // One at a time: the maximum after a reset is 1.
    put_settings(&http, &base, json!({"latency_ms": 0}));
    let (status, _) = control(&http, &base, "POST", "/_fake/reset", None);
    assert_eq!(status, 200);
    let (_, settings) = control(&http, &base, "GET", "/_fake/settings", None);
    assert_eq!(
        settings["latency_ms"], 300,
        "reset restores the start settings"
    );
    let (_, stats) = control(&http, &base, "GET", "/_fake/stats", None);
    assert_eq!(stats["max_in_flight"], 0, "{stats}");
    define(&http, &base);
    push(&http, &base, &records(1));
    push(&http, &base, &records(1));
    let (_, stats) = control(&http, &base, "GET", "/_fake/stats", None);
    assert_eq!(stats["max_in_flight"], 1, "{stats}");
}

/// A bulk body over `max_body_bytes` gets 413 with a JSON detail, is logged with its status
/// and size, and nothing of it is stored.
#[test]
fn bodies_over_the_limit_get_413_and_store_nothing() {
    let (_server, base, http) = plain_server();
    define(&http, &base);
    let small = records(2);
    let big = records(200);
    let big_len = serde_json::to_vec(&big).expect("json").len();
    let (status, _) = put_settings(&http, &base, json!({"max_body_bytes": big_len - 1}));
    assert_eq!(status, 200);
    let (status, doc) = push(&http, &base, &big);
    assert_eq!(status, 413, "{doc}");
    assert!(
        doc["detail"]
            .as_str()
            .expect("detail")
            .contains(&format!("{big_len} bytes")),
        "{doc}"
    );
    let (status, _) = push(&http, &base, &small);
    assert_eq!(status, 200);
    control(&http, &base, "POST", "/_fake/imports/flush", None);
    let (_, stored) = control(&http, &base, "GET", "/_fake/tables/deals/records", None);
    assert_eq!(
        stored.as_array().expect("list").len(),
        2,
        "only the small push"
    );
    let entries = log(&http, &base);
    assert_eq!(entries[0]["status"], 413);
    assert_eq!(entries[0]["body_bytes"], big_len);
    assert!(entries[0]["records"].is_null());
    assert_eq!(entries[1]["status"], 200);
    // A body of exactly the limit passes; a chunked one over it is refused the same way.
    let (status, _) = put_settings(&http, &base, json!({"max_body_bytes": big_len}));
    assert_eq!(status, 200);
    assert_eq!(push(&http, &base, &big).0, 200);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(serde_json::to_vec(&big).expect("json")),
        Ok(b" ".to_vec()),
    ];
    let chunked = http
        .post(format!("{base}/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .body(reqwest::blocking::Body::new(ChunkedReader(
            chunks.into_iter(),
        )))
        .send()
        .expect("chunked");
    assert_eq!(chunked.status().as_u16(), 413);
    // Other requests are not limited, and null removes the limit.
    let (status, _) = put_settings(&http, &base, json!({"max_body_bytes": null}));
    assert_eq!(status, 200);
    let (_, settings) = control(&http, &base, "GET", "/_fake/settings", None);
    assert!(settings["max_body_bytes"].is_null());
}

/// A reader yielding its chunks one by one (so that reqwest sends the body chunked).
struct ChunkedReader<I>(I);

impl<I: Iterator<Item = Result<Vec<u8>, std::io::Error>>> Read for ChunkedReader<I> {
    /// Copies the next chunk (chunks are smaller than the buffers reqwest reads with).
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.next() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(chunk)) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }
}

/// A drip sends its head at once and its body at the rate given, as a JSON object of the
/// length given.
#[test]
fn a_drip_answers_slowly() {
    let (_server, base, http) = plain_server();
    control(
        &http,
        &base,
        "POST",
        "/_fake/faults",
        Some(json!({"path_prefix": "/v1/", "action":
                    {"drip": {"status": 201, "body_bytes": 100, "bytes_per_second": 200}}})),
    );
    let started = Instant::now();
    let resp = http
        .get(format!("{base}/v1/imports/x"))
        .header("X-API-Key", KEY)
        .send()
        .expect("head");
    let head_after = started.elapsed();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.content_length(), Some(100));
    let body: Value = resp.json().expect("a JSON object");
    let body_after = started.elapsed();
    assert!(head_after < Duration::from_millis(200), "{head_after:?}");
    assert!(body_after >= Duration::from_millis(450), "{body_after:?}");
    assert!(body_after < Duration::from_millis(1500), "{body_after:?}");
    assert_eq!(body["import_id"], "generated");
    let entries = log(&http, &base);
    assert_eq!(entries[0]["fault"], "drip");
    assert_eq!(entries[0]["status"], 201);
}

/// A huge answer is generated as it is sent: gigabytes announced, any prefix read, the rest
/// never made once the client goes.
#[test]
fn a_huge_answer_is_generated_as_it_is_sent() {
    let (_server, base, http) = plain_server();
    let gigabytes: u64 = 16 << 30;
    for content_length in [true, false] {
        control(&http, &base, "DELETE", "/_fake/requests", None);
        control(
            &http,
            &base,
            "POST",
            "/_fake/faults",
            Some(json!({"path_prefix": "/v1/", "action":
                        {"huge": {"bytes": gigabytes, "content_length": content_length}}})),
        );
        let started = Instant::now();
        let mut resp = http
            .get(format!("{base}/v1/imports/x"))
            .header("X-API-Key", KEY)
            .send()
            .expect("head");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.content_length(),
            content_length.then_some(gigabytes),
            "{content_length}"
        );
        let mut prefix = vec![0u8; 64 << 20];
        resp.read_exact(&mut prefix).expect("64 MiB");
        assert!(prefix.starts_with(br#"{"import_id":"generated","padding":"xxx"#));
        assert!(prefix[1000..].iter().all(|&b| b == b'x'));
        drop(resp);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // The answer ends (logged) once the client went away.
        let mut entries = Vec::new();
        for _ in 0..100 {
            entries = log(&http, &base);
            if !entries.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(entries.len(), 1, "{content_length}");
        assert_eq!(entries[0]["fault"], "huge");
        assert_eq!(entries[0]["status"], 200);
    }
    // A small huge answer is read whole, ending the object.
    control(
        &http,
        &base,
        "POST",
        "/_fake/faults",
        Some(json!({"path_prefix": "/v1/", "action": {"huge": {"bytes": 200000}}})),
    );
    let body = http
        .get(format!("{base}/v1/imports/x"))
        .header("X-API-Key", KEY)
        .send()
        .expect("huge")
        .bytes()
        .expect("body");
    assert_eq!(body.len(), 200000);
    let doc: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(doc["padding"].as_str().expect("padding").len(), 200000 - 38);
}

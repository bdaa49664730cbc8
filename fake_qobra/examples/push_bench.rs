//! Throughput check (run by hand, not a test): pushes ROWS records of 12 fields in
//! requests of BATCH records to an in-process fake Qobra, the way a total-snapshot
//! push does (`all=true&debounce=D` first, then `debounce=D`), then flushes the import.
//!
//! `cargo run --release --example push_bench [ROWS] [BATCH] [DEBOUNCE]` (defaults 1000000 5000 30).

use fake_qobra::Server;
use std::time::{Duration, Instant};

/// One record of 12 fields, about 200 bytes of JSON.
fn record(i: usize) -> String {
    format!(
        concat!(
            r#"{{"id":{i},"name":"Deal number {i}","owner":"rep{r}@acme.com","amount":{a}.{c:02},"#,
            r#""quantity":{q},"discount":0.{c:02},"close_date":"2026-{m:02}-{d:02}","won":{w},"#,
            r#""stage":"stage-{s}","region":"EMEA","updated_at":"2026-03-31T12:00:00Z","code":"{h:08x}"}}"#
        ),
        i = i,
        r = i % 50,
        a = i % 100_000,
        c = i % 100,
        q = i % 17,
        m = i % 12 + 1,
        d = i % 28 + 1,
        w = i.is_multiple_of(3),
        s = i % 6,
        h = i.wrapping_mul(2_654_435_761) & 0xffff_ffff,
    )
}

/// Defines the benchmark's `deals` table in the fake.
fn define_table(http: &reqwest::blocking::Client, base: &str) {
    let def = r#"{"id_field":"id","name_field":"name","fields":{"id":"number","name":"string",
        "owner":"user","amount":"amount","quantity":"number","discount":"percentage",
        "close_date":"date","won":"bool","stage":"picklist","region":"string",
        "updated_at":"date","code":"string"}}"#;
    let resp = http
        .put(format!("{base}/_fake/tables/deals"))
        .body(def)
        .send()
        .expect("define");
    assert!(resp.status().is_success());
}

/// The request bodies of `rows` records, `batch` per request.
fn bodies(rows: usize, batch: usize) -> Vec<Vec<u8>> {
    (0..rows.div_ceil(batch))
        .map(|b| {
            let recs: Vec<String> = (b * batch..rows.min((b + 1) * batch)).map(record).collect();
            format!("{{\"data\":[{}]}}", recs.join(",")).into_bytes()
        })
        .collect()
}

/// Sends the bodies one after the other, the first with `all=true`; returns the last answer.
fn push_all(
    http: &reqwest::blocking::Client,
    base: &str,
    bodies: Vec<Vec<u8>>,
    debounce: u64,
) -> String {
    let mut import_id = String::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let query = match i {
            0 => format!("all=true&debounce={debounce}"),
            _ => format!("debounce={debounce}"),
        };
        let resp = http
            .post(format!("{base}/v1/tables/deals/records/bulk?{query}"))
            .header("X-API-Key", "bench-key")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .expect("push");
        assert!(resp.status().is_success(), "{}", resp.status());
        import_id = resp.text().expect("text");
    }
    import_id
}

/// Builds the request bodies, pushes them, flushes, and prints the rates.
fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let debounce: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let server = Server::start("127.0.0.1:0", "bench-key").expect("start");
    let base = server.url();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    define_table(&http, &base);
    let bodies = bodies(rows, batch);
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "{rows} records, {} requests, {:.1} MB ({} bytes/record)",
        bodies.len(),
        bytes as f64 / 1e6,
        bytes / rows.max(1)
    );

    let started = Instant::now();
    let import_id = push_all(&http, &base, bodies, debounce);
    let pushed = started.elapsed();
    let resp = http
        .post(format!("{base}/_fake/imports/flush"))
        .send()
        .expect("flush");
    assert!(resp.status().is_success());
    let imported = started.elapsed();
    let summary: serde_json::Value = http
        .get(format!("{base}/_fake/tables/deals"))
        .send()
        .and_then(|r| r.json())
        .expect("summary");
    println!(
        "import {import_id}: {} records stored",
        summary["record_count"]
    );
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "all requests answered in {:.2}s: {:.0} records/s, {:.0} MB/s",
        pushed.as_secs_f64(),
        rate(pushed),
        bytes as f64 / 1e6 / pushed.as_secs_f64()
    );
    println!(
        "import finished after {:.2}s: {:.0} records/s end to end",
        imported.as_secs_f64(),
        rate(imported)
    );
}

//! Whole pushes against the fake Qobra: chunk parameters, retries inside a push, restarts from
//! the top, and whether a failed push may have left Qobra's table partial.

mod common;

use common::{client, never, records, Fake, VecSource, TABLE};
use qobra_sync_core::client::QobraClient;
use qobra_sync_core::push::{push, Progress, PushFailure, PushReport, PushSettings, QobraTable};
use qobra_sync_core::SqlState;
use serde_json::json;

/// The fake's `deals` table, every request carrying `debounce`.
fn table(client: &QobraClient, debounce: u32) -> QobraTable<'_> {
    QobraTable {
        client,
        data_table_key: TABLE,
        debounce_seconds: debounce,
    }
}

/// A restart budget, and how many chunks travel at once.
fn settings(restart_budget: u32, max_in_flight: usize) -> PushSettings {
    PushSettings {
        restart_budget,
        max_in_flight,
    }
}

/// Pushes `source` to the fake's `deals` table with `settings`.
fn run_with(
    fake: &Fake,
    source: &mut VecSource,
    debounce: u32,
    settings: PushSettings,
) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
    let client = client(&fake.url());
    let mut progress = Vec::new();
    let result = push(
        source,
        &table(&client, debounce),
        settings,
        &never,
        &mut |p| progress.push(p.clone()),
    );
    (result, progress)
}

/// Pushes `source` one chunk at a time with `debounce` and a restart budget.
fn run(
    fake: &Fake,
    source: &mut VecSource,
    debounce: u32,
    restart_budget: u32,
) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
    run_with(fake, source, debounce, settings(restart_budget, 1))
}

#[test]
fn chunks_carry_all_then_debounce() {
    let fake = Fake::start();
    let mut source = VecSource::new(records(5), 2);
    let (result, progress) = run(&fake, &mut source, 7, 0);
    let report = result.unwrap();
    assert_eq!(
        fake.queries(),
        ["all=true&debounce=7", "debounce=7", "debounce=7"]
    );
    let log = fake.requests();
    let counts: Vec<_> = log.iter().map(|e| e["records"].clone()).collect();
    assert_eq!(counts, [json!(2), json!(2), json!(1)]);
    assert!(log
        .iter()
        .all(|e| e["method"] == "POST" && e["path"] == "/v1/tables/deals/records/bulk"));
    assert_eq!(report.chunks, 3);
    assert_eq!(report.rows_sent, 5);
    assert_eq!(
        (report.requests, report.retries, report.restarts),
        (3, 0, 0)
    );
    assert_eq!(
        report.bytes_sent,
        log.iter()
            .map(|e| e["body_bytes"].as_u64().unwrap())
            .sum::<u64>()
    );
    // The debounce stacks all three requests into one import.
    assert_eq!(report.import_ids.len(), 1);
    assert_eq!(progress.len(), 3);
    assert_eq!(
        progress.iter().map(|p| p.rows_sent).collect::<Vec<_>>(),
        [2, 4, 5]
    );
    fake.flush();
    assert_eq!(fake.ids(TABLE), ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_500_on_a_middle_chunk_is_retried_within_the_push() {
    let fake = Fake::start();
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "nth": 2,
                       "action": {"status": 500}}),
    );
    let mut source = VecSource::new(records(5), 2);
    let report = run(&fake, &mut source, 0, 0).0.unwrap();
    assert_eq!(
        (report.requests, report.retries, report.restarts),
        (4, 1, 0)
    );
    let log = fake.requests();
    let seen: Vec<_> = log
        .iter()
        .map(|e| (e["query"].as_str().unwrap().to_owned(), e["status"].clone()))
        .collect();
    assert_eq!(
        seen,
        [
            ("all=true&debounce=0".to_owned(), json!(200)),
            ("debounce=0".to_owned(), json!(500)),
            ("debounce=0".to_owned(), json!(200)),
            ("debounce=0".to_owned(), json!(200)),
        ]
    );
    fake.flush();
    assert_eq!(fake.ids(TABLE).len(), 5);
}

#[test]
fn an_empty_snapshot_empties_the_table() {
    let fake = Fake::start();
    fake.define_with_rows(TABLE, "id,name,amount\nold1,Old one,1\nold2,Old two,2\n");
    assert_eq!(fake.ids(TABLE).len(), 2);
    let mut source = VecSource::new(Vec::new(), 2);
    let report = run(&fake, &mut source, 0, 0).0.unwrap();
    assert_eq!(report.chunks, 1);
    assert_eq!(report.rows_sent, 0);
    let log = fake.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["query"], "all=true&debounce=0");
    assert_eq!(log[0]["records"], 0);
    fake.flush();
    assert!(fake.ids(TABLE).is_empty());
}

#[test]
fn a_late_failure_restarts_from_the_top_and_qobra_ends_whole() {
    let fake = Fake::start();
    fake.define_with_rows(TABLE, "id,name,amount\nstale,Stale,1\n");
    // Chunk 3 fails on its first attempt and its two retries: retries exhausted.
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "nth": 3, "times": 3,
                       "action": {"status": 502}}),
    );
    let mut source = VecSource::new(records(5), 2);
    // debounce 0: each request is imported on its own, so after the failure Qobra really
    // holds a partial table until the restart lands.
    let (result, progress) = run(&fake, &mut source, 0, 1);
    let report = result.unwrap();
    assert_eq!(source.restarts, 1);
    assert_eq!(report.restarts, 1);
    assert_eq!(report.rows_sent, 5);
    assert_eq!(
        report.chunks, 5,
        "2 before the failure, 3 after the restart"
    );
    assert_eq!((report.requests, report.retries), (8, 2));
    assert_eq!(
        fake.queries(),
        [
            "all=true&debounce=0",
            "debounce=0",
            "debounce=0",
            "debounce=0",
            "debounce=0",
            "all=true&debounce=0",
            "debounce=0",
            "debounce=0",
        ]
    );
    assert_eq!(progress.last().unwrap().restarts, 1);
    fake.flush();
    assert_eq!(fake.ids(TABLE), ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_failure_with_the_restart_budget_spent_may_leave_qobra_partial() {
    let fake = Fake::start();
    // Every request after the first fails: the restart's own all=true chunk fails too.
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "nth": 2, "times": 0,
                       "action": {"status": 500}}),
    );
    let mut source = VecSource::new(records(5), 2);
    let failure = run(&fake, &mut source, 0, 1).0.unwrap_err();
    assert!(failure.possibly_partial);
    assert!(!failure.interrupted);
    assert_eq!(failure.error.state, SqlState::ExternalFailure);
    assert_eq!(failure.report.restarts, 1);
    assert_eq!(failure.report.chunks, 1);
    // 1 accepted + 3 failed attempts, then after the restart 3 failed attempts of all=true.
    assert_eq!(failure.report.requests, 7);
    assert_eq!(fake.requests().len(), 7);
    fake.flush();
    assert_eq!(
        fake.ids(TABLE),
        ["0", "1"],
        "Qobra indeed holds a partial table"
    );
}

#[test]
fn a_failure_of_the_very_first_chunk_leaves_qobra_untouched() {
    let fake = Fake::start();
    fake.define_with_rows(TABLE, "id,name,amount\nkept,Kept,1\n");
    fake.faults(json!({"path_prefix": "/v1/tables/", "times": 0, "action": {"status": 503}}));
    let mut source = VecSource::new(records(5), 2);
    let failure = run(&fake, &mut source, 0, 3).0.unwrap_err();
    assert!(!failure.possibly_partial);
    assert_eq!(failure.report.restarts, 0);
    assert_eq!(failure.report.chunks, 0);
    assert_eq!(
        failure.report.requests, 3,
        "first attempt and max_retries = 2"
    );
    fake.flush();
    assert_eq!(fake.ids(TABLE), ["kept"]);
}

#[test]
fn a_rejected_key_stops_the_push_after_one_request() {
    let fake = Fake::start();
    let mut config = common::config(&fake.url());
    config.api_key = qobra_sync_core::client::ApiKey::new("not-the-key-42");
    let client = qobra_sync_core::client::QobraClient::new(&config).unwrap();
    let mut source = VecSource::new(records(5), 2);
    let failure = push(
        &mut source,
        &table(&client, 0),
        settings(5, 4),
        &never,
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(failure.error.state, SqlState::InsufficientPrivilege);
    assert!(!failure.possibly_partial);
    assert_eq!(failure.report.requests, 1);
    assert_eq!(fake.requests().len(), 1);
}

/// The ids of the imports the fake holds, in the order it created them.
fn fake_import_ids(fake: &Fake) -> Vec<String> {
    let imports = fake.ok("GET", "/_fake/imports", None);
    imports
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// The ids `0..n` as the fake lists them (text order).
fn all_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn several_in_flight_through_a_500_a_reset_and_a_429_qobra_ends_whole() {
    let fake = Fake::start();
    fake.define_with_rows(TABLE, "id,name,amount\nstale,Stale,1\n");
    fake.faults(json!([
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 3, "action": {"status": 500}},
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 5, "action": {"reset": true}},
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 7,
         "action": {"status": 429, "headers": {"Retry-After": "1"}}},
        {"path_prefix": "/v1/tables/", "method": "POST", "action": {"delay_ms": 30}, "times": 0},
    ]));
    let mut source = VecSource::new(records(40), 2);
    // debounce 0: every request is its own import, so each import id is distinct.
    let (result, progress) = run_with(&fake, &mut source, 0, settings(0, 4));
    let report = result.unwrap();
    assert_eq!((report.rows_sent, report.chunks), (40, 20));
    assert_eq!((report.retries, report.restarts), (3, 0));
    let log = fake.requests();
    assert_eq!(
        report.requests as usize,
        log.len(),
        "every request counted once"
    );
    assert_eq!(
        log.iter()
            .filter(|e| e["query"] == "all=true&debounce=0")
            .count(),
        1
    );
    let mut ids = report.import_ids.clone();
    ids.sort();
    let mut held = fake_import_ids(&fake);
    held.sort();
    assert_eq!(ids, held, "every import id recorded, none twice");
    assert_eq!(progress.last().unwrap().rows_sent, 40);
    fake.flush();
    assert_eq!(fake.ids(TABLE), all_ids(40));
}

#[test]
fn a_failure_for_good_among_several_in_flight_restarts_once_the_others_landed() {
    let fake = Fake::start();
    fake.faults(json!([
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 4, "action": {"status": 502}},
        {"path_prefix": "/v1/tables/", "method": "POST", "action": {"delay_ms": 20}, "times": 0},
    ]));
    // No retries: the 502 fails its chunk for good.
    let mut config = common::config(&fake.url());
    config.retry.max_retries = 0;
    let client = qobra_sync_core::client::QobraClient::new(&config).unwrap();
    let mut source = VecSource::new(records(30), 3);
    let report = push(
        &mut source,
        &table(&client, 0),
        settings(1, 4),
        &never,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.restarts, 1);
    assert_eq!(report.rows_sent, 30);
    let log = fake.requests();
    assert_eq!(report.requests as usize, log.len());
    // Nothing of the first pass is answered after the second pass's all=true request arrives.
    let second = log
        .iter()
        .rposition(|e| e["query"] == "all=true&debounce=0")
        .unwrap();
    assert!(second > 0);
    let restart_at = log[second]["received_at"].as_str().unwrap().to_owned();
    for e in &log[..second] {
        assert!(
            e["finished_at"].as_str().unwrap() <= restart_at.as_str(),
            "{e}"
        );
    }
    let mut ids = report.import_ids.clone();
    ids.sort();
    let mut held = fake_import_ids(&fake);
    held.sort();
    assert_eq!(ids, held);
    fake.flush();
    assert_eq!(fake.ids(TABLE), all_ids(30));
}

#[test]
fn a_rejected_key_mid_flight_stops_everything() {
    let fake = Fake::start();
    fake.faults(json!([
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 3, "action": {"status": 401}},
        {"path_prefix": "/v1/tables/", "method": "POST", "action": {"delay_ms": 50}, "times": 0},
    ]));
    let mut source = VecSource::new(records(40), 2);
    let failure = run_with(&fake, &mut source, 0, settings(5, 4))
        .0
        .unwrap_err();
    assert_eq!(failure.error.state, SqlState::InsufficientPrivilege);
    assert!(failure.possibly_partial);
    assert_eq!(failure.report.restarts, 0);
    // Nothing is sent after the 401: the first request, then at most the four in flight with
    // the 401 and the one started when the second was answered.
    assert!(fake.requests().len() <= 6, "{:?}", fake.queries());
    let held = fake_import_ids(&fake);
    assert!(failure.report.import_ids.iter().all(|id| held.contains(id)));
}

#[test]
fn a_hanging_request_among_several_is_retried_and_the_others_wait_their_turn() {
    let fake = Fake::start();
    fake.faults(json!([
        {"path_prefix": "/v1/tables/", "method": "POST", "nth": 3, "action": {"hang": true}},
    ]));
    let mut config = common::config(&fake.url());
    config.request_timeout = std::time::Duration::from_millis(700);
    let client = qobra_sync_core::client::QobraClient::new(&config).unwrap();
    let mut source = VecSource::new(records(20), 2);
    let report = push(
        &mut source,
        &table(&client, 0),
        settings(0, 4),
        &never,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.rows_sent, 20);
    assert_eq!(report.retries, 1);
    fake.flush();
    assert_eq!(fake.ids(TABLE), all_ids(20));
}

#[test]
fn an_interrupt_mid_flight_stops_within_a_second() {
    let fake = Fake::start();
    fake.faults(json!([
        {"path_prefix": "/v1/tables/", "method": "POST", "action": {"delay_ms": 3000}, "nth": 4},
        {"path_prefix": "/v1/tables/", "method": "POST", "action": {"delay_ms": 20}, "times": 0},
    ]));
    let client = client(&fake.url());
    let mut source = VecSource::new(records(40), 2);
    let stop_at = std::cell::Cell::new(None::<std::time::Instant>);
    let interrupted = || stop_at.get().is_some_and(|at| at.elapsed().as_millis() > 0);
    let mut on_progress = |p: &Progress| {
        if p.chunk == 2 && stop_at.get().is_none() {
            stop_at.set(Some(std::time::Instant::now()));
        }
    };
    let failure = push(
        &mut source,
        &table(&client, 0),
        settings(5, 4),
        &interrupted,
        &mut on_progress,
    )
    .unwrap_err();
    let took = stop_at.get().unwrap().elapsed();
    assert!(failure.interrupted);
    assert!(took.as_millis() < 1000, "stopped after {took:?}");
    assert_eq!(failure.report.restarts, 0);
}

#[test]
fn a_413_splits_the_chunk_and_the_rest_is_sent_smaller() {
    let fake = Fake::start();
    // The fake's body limit, as a proxy's: more than 2 records of this size is refused.
    let big: Vec<_> = records(12)
        .into_iter()
        .map(|mut r| {
            r["name"] = json!("n".repeat(400));
            r
        })
        .collect();
    let size_of_two = serde_json::to_vec(&big[..2]).unwrap().len();
    fake.ok(
        "PUT",
        "/_fake/settings",
        Some(json!({"max_body_bytes": size_of_two})),
    );
    let mut source = VecSource::new(big, 8);
    let report = run_with(&fake, &mut source, 0, settings(0, 4)).0.unwrap();
    assert_eq!(report.rows_sent, 12);
    let log = fake.requests();
    let refused = log.iter().filter(|e| e["status"] == 413).count();
    assert!(refused >= 2, "{log:?}");
    assert_eq!(report.retries as usize, refused);
    assert!(source.rejected.is_empty());
    fake.flush();
    assert_eq!(fake.ids(TABLE), all_ids(12));
}

#[test]
fn one_in_flight_at_a_time_is_what_the_fake_counts() {
    let fake = Fake::start_with(fake_qobra::Options {
        latency: std::time::Duration::from_millis(100),
        ..Default::default()
    });
    let mut source = VecSource::new(records(10), 2);
    let (result, _) = run_with(&fake, &mut source, 0, settings(0, 1));
    result.unwrap();
    let stats = fake.stats();
    assert_eq!(
        (stats["in_flight"].clone(), stats["max_in_flight"].clone()),
        (json!(0), json!(1)),
        "{stats}"
    );
}

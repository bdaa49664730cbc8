//! Whole pushes against the fake Qobra: chunk parameters, retries inside a push, restarts from
//! the top, and whether a failed push may have left Qobra's table partial.

mod common;

use common::{client, never, records, Fake, VecSource, TABLE};
use qobra_sync_core::push::{push, Progress, PushFailure, PushReport};
use qobra_sync_core::SqlState;
use serde_json::json;

/// Pushes `source` to the fake's `deals` table with `debounce` and a restart budget.
fn run(
    fake: &Fake,
    source: &mut VecSource,
    debounce: u32,
    restart_budget: u32,
) -> (Result<PushReport, PushFailure>, Vec<Progress>) {
    let client = client(&fake.url());
    let mut progress = Vec::new();
    let result = push(
        source,
        &client,
        TABLE,
        debounce,
        restart_budget,
        &never,
        &mut |p| progress.push(p.clone()),
    );
    (result, progress)
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
    let failure = push(&mut source, &client, TABLE, 0, 5, &never, &mut |_| {}).unwrap_err();
    assert_eq!(failure.error.state, SqlState::InsufficientPrivilege);
    assert!(!failure.possibly_partial);
    assert_eq!(failure.report.requests, 1);
    assert_eq!(fake.requests().len(), 1);
}

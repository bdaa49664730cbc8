//! The HTTP client against the fake Qobra: retries, Retry-After, resets, timeouts, interrupts,
//! rejected keys, redirects, import status, and that no error ever carries the API key.

mod common;

use bytes::Bytes;
use common::{client, config, never, records, Fake, KEY, TABLE};
use qobra_sync_core::client::{ApiKey, PushError, QobraClient};
use qobra_sync_core::imports::ImportState;
use qobra_sync_core::retry::TransportKind;
use qobra_sync_core::{Error, SqlState};
use serde_json::json;
use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime};

/// A small body of two records.
fn body() -> Bytes {
    Bytes::from(serde_json::to_vec(&records(2)).unwrap())
}

#[test]
fn a_500_is_retried_and_the_same_chunk_lands() {
    let fake = Fake::start();
    let client = client(&fake.url());
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "nth": 1, "times": 2,
                       "action": {"status": 500}}),
    );
    let posted = client.post_records(TABLE, true, 0, body(), &never).unwrap();
    assert_eq!((posted.requests, posted.retries), (3, 2));
    assert!(!posted.import_id.is_empty());
    let log = fake.requests();
    let statuses: Vec<_> = log.iter().map(|e| e["status"].clone()).collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)]);
    assert!(log.iter().all(|e| e["query"] == "all=true&debounce=0"));
    assert!(log
        .iter()
        .all(|e| e["records"] == 2 && e["api_key_valid"] == true));
    fake.flush();
    assert_eq!(fake.ids(TABLE), ["0", "1"]);
    assert_eq!(client.stats().requests, 3);
    assert_eq!(client.stats().retries, 2);
}

#[test]
fn retries_run_out() {
    let fake = Fake::start();
    let client = client(&fake.url());
    fake.faults(json!({"path_prefix": "/v1/", "times": 0,
                       "action": {"status": 503, "body": "{\"detail\": \"overloaded\"}"}}));
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    match &err {
        PushError::GaveUp { attempts, last } => {
            assert_eq!(*attempts, 3, "max_retries = 2");
            assert!(matches!(**last, PushError::Server { status: 503, .. }));
        }
        other => panic!("{other:?}"),
    }
    let e = Error::from(err);
    assert_eq!(e.state, SqlState::ExternalFailure);
    assert!(e.detail.unwrap().contains("overloaded"));
    assert_eq!(fake.requests().len(), 3);
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let fake = Fake::start();
    // Cap 400 ms (common::config); backoff without Retry-After is 5..10 ms.
    let client = client(&fake.url());
    let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let cases: [(&str, u128, u128); 5] = [
        ("0", 0, 350),
        ("2", 380, 1500),
        (&soon, 380, 1500),
        ("garbage, not a date", 0, 350),
        ("1000000000", 380, 1500),
    ];
    for (value, min_ms, max_ms) in cases {
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "action":
                           {"status": 429, "headers": {"Retry-After": value}}}));
        let started = Instant::now();
        let posted = client
            .post_records(TABLE, false, 0, body(), &never)
            .unwrap();
        let ms = started.elapsed().as_millis();
        assert!(
            (min_ms..max_ms).contains(&ms),
            "Retry-After {value:?}: waited {ms} ms"
        );
        assert_eq!(posted.retries, 1, "{value:?}");
        let statuses: Vec<_> = fake
            .requests()
            .iter()
            .map(|e| e["status"].clone())
            .collect();
        assert_eq!(statuses, [json!(429), json!(200)], "{value:?}");
    }
    // Below the cap, the server's value is waited in full.
    let mut config = config(&fake.url());
    config.retry.retry_after_cap = Duration::from_secs(5);
    let patient = QobraClient::new(&config).unwrap();
    fake.faults(json!({"path_prefix": "/v1/", "action":
                       {"status": 429, "headers": {"Retry-After": "1"}}}));
    let started = Instant::now();
    patient
        .post_records(TABLE, false, 0, body(), &never)
        .unwrap();
    let ms = started.elapsed().as_millis();
    assert!((950..2500).contains(&ms), "Retry-After 1: waited {ms} ms");
}

#[test]
fn resets_and_closed_connections_are_retried() {
    let fake = Fake::start();
    let client = client(&fake.url());
    for action in [
        json!({"reset": true}),
        json!({"reset": true, "read_body": false}),
        json!({"close": true}),
    ] {
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "action": action}));
        let posted = client
            .post_records(TABLE, true, 0, body(), &never)
            .unwrap_or_else(|e| panic!("{action}: {e:?}"));
        assert_eq!(posted.retries, 1, "{action}");
        let log = fake.requests();
        assert_eq!(log.len(), 2, "{action}");
        assert!(log[0]["status"].is_null() && !log[0]["fault"].is_null());
        assert_eq!(log[1]["status"], 200);
    }
    // When every attempt is reset, the error says so.
    fake.clear();
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": {"reset": true}}));
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    let PushError::GaveUp { last, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            *last,
            PushError::Transport {
                kind: TransportKind::Reset,
                ..
            }
        ),
        "{last:?}"
    );
}

#[test]
fn a_hanging_request_times_out() {
    let fake = Fake::start();
    let mut config = config(&fake.url());
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_retries = 1;
    let client = QobraClient::new(&config).unwrap();
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": {"hang": true}}));
    let started = Instant::now();
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(600),
        "two attempts: {elapsed:?}"
    );
    let PushError::GaveUp { attempts: 2, last } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(
        **last,
        PushError::Transport {
            kind: TransportKind::Timeout,
            ..
        }
    ));
    assert!(Error::from(err).detail.unwrap().contains("timed out"));
}

#[test]
fn an_interrupt_stops_a_hanging_request_and_a_backoff_within_a_second() {
    let fake = Fake::start();
    let mut config = config(&fake.url());
    config.request_timeout = Duration::from_secs(60);
    config.retry.retry_after_cap = Duration::from_secs(60);
    let client = QobraClient::new(&config).unwrap();
    for action in [
        json!({"hang": true}),
        json!({"status": 503, "headers": {"Retry-After": "30"}}),
    ] {
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": action}));
        let started = Instant::now();
        let calls = RefCell::new(Vec::new());
        let interrupted = || {
            calls.borrow_mut().push(started.elapsed());
            started.elapsed() > Duration::from_millis(300)
        };
        let err = client
            .post_records(TABLE, true, 0, body(), &interrupted)
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(err, PushError::Interrupted, "{action}");
        assert!(
            elapsed < Duration::from_millis(1000),
            "{action}: {elapsed:?}"
        );
        // Polled every 100 ms (with slack for a busy machine).
        let calls = calls.borrow();
        assert!(calls.len() >= 3, "{action}: {calls:?}");
        for pair in calls.windows(2) {
            assert!(
                pair[1] - pair[0] < Duration::from_millis(250),
                "{action}: {calls:?}"
            );
        }
    }
    // An interrupt raised before anything is sent sends nothing.
    fake.clear();
    let err = client
        .post_records(TABLE, true, 0, body(), &|| true)
        .unwrap_err();
    assert_eq!(err, PushError::Interrupted);
    assert!(fake.requests().is_empty());
}

#[test]
fn a_rejected_key_stops_at_once() {
    let fake = Fake::start();
    let mut config = config(&fake.url());
    config.api_key = ApiKey::new("wrong-key-1234");
    let client = QobraClient::new(&config).unwrap();
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    assert!(
        matches!(err, PushError::KeyRejected { status: 401, .. }),
        "{err:?}"
    );
    let log = fake.requests();
    assert_eq!(log.len(), 1, "one request only");
    assert_eq!(log[0]["api_key_present"], true);
    assert_eq!(log[0]["api_key_valid"], false);
    let e = Error::from(err);
    assert_eq!(e.state, SqlState::InsufficientPrivilege);
    assert!(e.message.contains("API key"), "{}", e.message);
    assert!(e.hint.unwrap().contains("set_destination"));

    // 403 the same way, with the right key.
    fake.clear();
    let client = client_for(&fake);
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": {"status": 403}}));
    let err = client.import_status("x", &never).unwrap_err();
    assert!(matches!(err, PushError::KeyRejected { status: 403, .. }));
    assert_eq!(fake.requests().len(), 1);
}

/// A client with the right key.
fn client_for(fake: &Fake) -> QobraClient {
    client(&fake.url())
}

#[test]
fn redirects_are_not_followed_and_the_key_does_not_travel() {
    let fake = Fake::start();
    let elsewhere = Fake::start();
    let client = client(&fake.url());
    let target = format!(
        "{}/v1/tables/{TABLE}/records/bulk?all=true&token=topsecret#frag",
        elsewhere.url()
    );
    for status in [301, 302, 307, 308] {
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "action":
                           {"status": status, "headers": {"Location": target}}}));
        let err = client
            .post_records(TABLE, true, 0, body(), &never)
            .unwrap_err();
        assert!(
            matches!(&err, PushError::Redirected { status: s, .. } if *s == status),
            "{err:?}"
        );
        assert_eq!(fake.requests().len(), 1, "not retried either");
        let e = Error::from(err);
        assert!(e.message.contains(&status.to_string()), "{}", e.message);
        assert!(e.message.contains("not followed"), "{}", e.message);
        let detail = e.detail.unwrap();
        assert!(detail.contains(&elsewhere.url()), "{detail}");
        assert!(
            !detail.contains("topsecret") && !detail.contains("frag"),
            "{detail}"
        );
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target never saw a request"
    );
}

#[test]
fn other_4xx_are_fatal_with_a_short_excerpt() {
    let fake = Fake::start();
    let client = client(&fake.url());
    let err = client
        .post_records("no_such_table", true, 0, body(), &never)
        .unwrap_err();
    assert!(
        matches!(err, PushError::Refused { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1);
    let e = Error::from(err);
    assert!(e.message.contains("404"), "{}", e.message);
    assert!(e.hint.unwrap().contains("data table"));

    fake.clear();
    let long = format!("{{\"detail\": \"{}\"}}", "bad\\nbody ".repeat(200));
    fake.faults(json!({"path_prefix": "/v1/", "action": {"status": 422, "body": long}}));
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    let PushError::Refused {
        status: 422,
        excerpt,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(excerpt.chars().count() <= 301, "{excerpt}");
    assert!(excerpt.starts_with("bad body bad body"), "{excerpt}");
    assert!(!excerpt.contains('\n'));
}

#[test]
fn import_status_reports_parsing_errors() {
    let fake = Fake::start();
    let client = client(&fake.url());
    let mut rows = records(3);
    rows[1]["amount"] = json!("AAAAA");
    let posted = client
        .post_records(
            TABLE,
            true,
            30,
            Bytes::from(serde_json::to_vec(&rows).unwrap()),
            &never,
        )
        .unwrap();
    let scheduled = client.import_status(&posted.import_id, &never).unwrap();
    assert_eq!(scheduled.id, posted.import_id);
    assert_eq!(scheduled.status, ImportState::Scheduled);
    fake.flush();
    let status = client.import_status(&posted.import_id, &never).unwrap();
    assert!(status.is_finished());
    let table = &status.data_tables_details[0];
    assert_eq!(table.data_table_key.as_deref(), Some(TABLE));
    assert_eq!(table.number_of_records, Some(2));
    let error = table.error.as_ref().expect("an error");
    assert_eq!(error.title.as_deref(), Some("ParsingError"));
    let errors: Vec<_> = status.parsing_errors().collect();
    assert_eq!(errors.len(), 1);
    let (key, parsing) = errors[0];
    assert_eq!(key, Some(TABLE));
    assert_eq!(parsing.line_number, Some(2));
    assert_eq!(parsing.row.as_ref().unwrap()["id"], "1");
    assert!(
        parsing.details.as_deref().unwrap().contains("AAAAA"),
        "{parsing:?}"
    );

    let err = client.import_status("no-such-import", &never).unwrap_err();
    assert!(matches!(err, PushError::Refused { status: 404, .. }));
}

#[test]
fn no_error_carries_the_api_key() {
    let fake = Fake::start();
    let other = Fake::start();
    let client = client(&fake.url());
    let echo = format!("{{\"detail\": \"key {KEY} is not welcome\"}}");
    let mut errors: Vec<PushError> = Vec::new();
    let post = |c: &QobraClient, table: &str| {
        c.post_records(table, true, 0, body(), &never)
            .expect_err("must fail")
    };

    // 401 from a wrong key that contains the right key as a prefix, answered with an echo.
    let mut cfg = config(&fake.url());
    cfg.api_key = ApiKey::new(format!("{KEY}-extra"));
    errors.push(post(&QobraClient::new(&cfg).unwrap(), TABLE));
    // Statuses whose bodies echo the key, one per error path.
    for action in [
        json!({"status": 401, "body": echo}),
        json!({"status": 403, "body": echo}),
        json!({"status": 400, "body": echo}),
        json!({"status": 500, "body": echo}),
        json!({"status": 429, "body": echo, "headers": {"Retry-After": KEY}}),
        json!({"status": 200, "body": echo}),
        json!({"status": 307, "headers":
               {"Location": format!("{}/{KEY}/x?key={KEY}", other.url())}}),
        json!({"status": 302, "headers": {"Location": format!("http://[{KEY}")}}),
        json!({"reset": true}),
        json!({"close": true}),
    ] {
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": action}));
        errors.push(post(&client, TABLE));
        errors.push(client.import_status(KEY, &never).expect_err("must fail"));
    }
    // A table and an import named like the key (they appear in the request path).
    fake.clear();
    errors.push(post(&client, KEY));
    errors.push(client.import_status(KEY, &never).expect_err("404"));
    // A hang past the total timeout.
    let mut cfg = config(&fake.url());
    cfg.request_timeout = Duration::from_millis(200);
    cfg.retry.max_retries = 0;
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action": {"hang": true}}));
    errors.push(post(&QobraClient::new(&cfg).unwrap(), TABLE));
    // Nothing listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    errors.push(post(&client_on(&format!("http://127.0.0.1:{port}")), TABLE));
    // An interrupt.
    errors.push(
        client
            .post_records(TABLE, true, 0, body(), &|| true)
            .unwrap_err(),
    );

    assert!(errors.len() >= 25);
    for err in errors {
        let texts = [format!("{err}"), format!("{err:?}")];
        let converted = Error::from(err);
        let all = [
            &texts[0],
            &texts[1],
            &converted.message,
            converted.detail.as_ref().unwrap_or(&String::new()),
            converted.hint.as_ref().unwrap_or(&String::new()),
            &format!("{converted:?}"),
        ]
        .map(|s| s.to_string());
        for text in all {
            assert!(!text.contains(KEY), "the key leaked: {text}");
        }
    }
    assert!(!format!("{client:?}").contains(KEY));
    assert!(!format!("{:?}", config(&fake.url())).contains(KEY));
    assert!(other.requests().is_empty());
    // Setup errors do not echo a key either.
    let mut cfg = config("http://example.com");
    assert!(!format!("{:?}", QobraClient::new(&cfg).unwrap_err()).contains(KEY));
    cfg.base_url = fake.url();
    cfg.api_key = ApiKey::new(format!("{KEY}\n"));
    assert!(!format!("{:?}", QobraClient::new(&cfg).unwrap_err()).contains(KEY));
}

/// A test client for another base URL.
fn client_on(url: &str) -> QobraClient {
    client(url)
}

#[test]
fn a_started_chunk_travels_while_the_caller_works_and_a_dropped_one_is_abandoned() {
    let fake = Fake::start();
    let client = client(&fake.url());
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "times": 0,
                       "action": {"delay_ms": 400}}),
    );
    let started = Instant::now();
    let in_flight = client.start_post(TABLE, true, 0, body());
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "start_post waited for the answer"
    );
    // The caller's own work (reading the next chunk) overlaps the request.
    std::thread::sleep(Duration::from_millis(300));
    let posted = client.finish_post(in_flight, &never).unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(650),
        "the work did not overlap: {elapsed:?}"
    );
    assert_eq!(posted.requests, 1);

    // A chunk dropped on a hanging server is abandoned at once; one whose wait is interrupted
    // too; and the client goes on working.
    fake.faults(
        json!({"path_prefix": "/v1/tables/", "method": "POST", "times": 0,
                       "action": {"hang": true}}),
    );
    let in_flight = client.start_post(TABLE, false, 0, body());
    std::thread::sleep(Duration::from_millis(200));
    let dropped_at = Instant::now();
    drop(in_flight);
    assert!(dropped_at.elapsed() < Duration::from_millis(100));
    let cut = client.finish_post(client.start_post(TABLE, false, 0, body()), &|| true);
    assert_eq!(cut.unwrap_err(), PushError::Interrupted);
    fake.clear();
    let again = client
        .post_records(TABLE, false, 0, body(), &never)
        .unwrap();
    assert_eq!(again.requests, 1);
}

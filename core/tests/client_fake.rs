//! The HTTP client against the fake Qobra: retries, Retry-After, resets, timeouts, interrupts,
//! rejected keys, redirects, import status, and that no error ever carries the API key; HTTPS
//! with verified certificates (a CA file, certificate problems that fail at once), a proxy
//! (tunnels, credentials, refusals), bounded answers (huge, dripping) and 413.

mod common;

use bytes::Bytes;
use common::certs::{self, Ca, Leaf};
use common::proxy::{Mode, Proxy};
use common::{client, config, never, records, Fake, KEY, TABLE};
use qobra_sync_core::client::{ApiKey, PushError, QobraClient, BODY_LIMIT};
use qobra_sync_core::imports::ImportState;
use qobra_sync_core::retry::TransportKind;
use qobra_sync_core::wire::BodyFormat;
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

/// A CA, a fake serving HTTPS with a certificate it signed for `localhost` and 127.0.0.1, and a
/// test configuration for that fake at `https://localhost:PORT` trusting the CA.
fn trusted_tls() -> (Ca, Fake, qobra_sync_core::client::ClientConfig) {
    let ca = Ca::new("qobra_sync test CA");
    let fake = Fake::start_tls(ca.server(Leaf {
        names: &["localhost", "127.0.0.1"],
        expired: false,
    }));
    let mut cfg = config(&fake.localhost_url());
    cfg.ca_file = Some(ca.file());
    (ca, fake, cfg)
}

/// Every text an error can be shown as: its Display and Debug, and the converted error's parts.
fn texts(err: &PushError) -> String {
    let e = Error::from(err.clone());
    format!(
        "{err} | {err:?} | {} | {:?} | {:?} | {e:?}",
        e.message, e.detail, e.hint
    )
}

#[test]
fn https_with_a_ca_file_is_trusted() {
    let (_ca, fake, cfg) = trusted_tls();
    assert!(fake.url().starts_with("https://"));
    let client = QobraClient::new(&cfg).unwrap();
    let posted = client.post_records(TABLE, true, 0, body(), &never).unwrap();
    assert_eq!(posted.requests, 1);
    let status = client.import_status(&posted.import_id, &never).unwrap();
    assert_eq!(status.id, posted.import_id);
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e["api_key_valid"] == true));
    fake.flush();
    assert_eq!(fake.ids(TABLE), ["0", "1"]);
    // Through the IP address the certificate names too.
    let mut by_ip = cfg.clone();
    by_ip.base_url = fake.url();
    let client = QobraClient::new(&by_ip).unwrap();
    client
        .post_records(TABLE, false, 0, body(), &never)
        .unwrap();
}

#[test]
fn certificate_problems_fail_at_once_and_the_key_is_never_sent() {
    let ca = Ca::new("qobra_sync test CA");
    let other_ca = Ca::new("someone else's CA");
    let local = ["localhost", "127.0.0.1"];
    let cases: [(&str, fake_qobra::Tls, Option<&Ca>, &str); 5] = [
        (
            "self-signed",
            certs::self_signed(&local),
            None,
            "not signed by a trusted certificate authority",
        ),
        (
            "unknown CA, built-in roots only",
            ca.server(Leaf {
                names: &local,
                expired: false,
            }),
            None,
            "not signed by a trusted certificate authority",
        ),
        (
            "another CA than the one trusted",
            other_ca.server(Leaf {
                names: &local,
                expired: false,
            }),
            Some(&ca),
            "not signed by a trusted certificate authority",
        ),
        (
            "wrong host name",
            ca.server(Leaf {
                names: &["qobra.example"],
                expired: false,
            }),
            Some(&ca),
            "not valid for the host name localhost (it is for qobra.example)",
        ),
        (
            "expired",
            ca.server(Leaf {
                names: &local,
                expired: true,
            }),
            Some(&ca),
            "has expired",
        ),
    ];
    for (case, tls, trusted, problem) in cases {
        let fake = Fake::start_tls(tls);
        fake.clear();
        let mut cfg = config(&fake.localhost_url());
        cfg.ca_file = trusted.map(Ca::file);
        let client = QobraClient::new(&cfg).unwrap();
        let err = client
            .post_records(TABLE, true, 0, body(), &never)
            .unwrap_err();
        let PushError::Tls { message, .. } = &err else {
            panic!("{case}: {err:?}")
        };
        assert!(message.contains(problem), "{case}: {message}");
        assert!(!err.is_retryable() && !err.is_transient(), "{case}");
        assert_eq!(client.stats().requests, 1, "{case}: one attempt");
        assert_eq!(client.stats().retries, 0, "{case}");
        // The fake counts the refused handshake once it sees the connection end: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while fake.stats()["tls_handshake_failures"] == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            fake.stats()["tls_handshake_failures"],
            1,
            "{case}: one handshake, refused"
        );
        assert!(
            fake.requests().is_empty(),
            "{case}: the fake saw no request, so no key"
        );
        let e = Error::from(err.clone());
        assert_eq!(e.state, SqlState::ExternalFailure);
        assert!(e.message.contains("certificate"), "{case}: {}", e.message);
        assert!(e.hint.unwrap().contains("qobra_sync.ca_file"), "{case}");
        assert!(!texts(&err).contains(KEY), "{case}");
    }
}

#[test]
fn ca_files_that_cannot_be_used_are_clear_errors() {
    let secret = "PRIVATE-CONTENT-0123";
    let garbage = certs::pem_file(&format!("{secret}\n"));
    let not_x509 = certs::pem_file(&format!(
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n{secret}\n"
    ));
    for path in [
        std::path::PathBuf::from("/nonexistent/ca.pem"),
        garbage,
        not_x509,
    ] {
        let mut cfg = config("https://localhost:9");
        cfg.ca_file = Some(path.clone());
        let e = QobraClient::new(&cfg).unwrap_err();
        assert_eq!(e.state, SqlState::ConfigFileError, "{path:?}");
        assert!(e.message.contains("qobra_sync.ca_file"), "{}", e.message);
        assert!(e.message.contains(&path.display().to_string()));
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
    // A file with several certificates (and other PEM sections) is fine.
    let (a, b) = (Ca::new("a"), Ca::new("b"));
    let bundle = certs::pem_file(&format!(
        "{}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{}",
        a.pem(),
        b.pem()
    ));
    let mut cfg = config("https://localhost:9");
    cfg.ca_file = Some(bundle);
    QobraClient::new(&cfg).unwrap();
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn requests_go_through_the_proxy_with_its_credentials_shown_nowhere() {
    let (_ca, fake, mut cfg) = trusted_tls();
    let proxy = Proxy::start(Mode::Pass, Some(basic("pxuser", "px:pa55word")));
    // The password's `:` percent-encoded, as URLs need.
    cfg.https_proxy = Some(proxy.url(Some("pxuser:px%3Apa55word")));
    let client = QobraClient::new(&cfg).unwrap();
    let posted = client.post_records(TABLE, true, 0, body(), &never).unwrap();
    client.import_status(&posted.import_id, &never).unwrap();
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    let port = fake.server.addr().port();
    for s in &seen {
        // A tunnel to the destination: the key only travels inside it, encrypted.
        assert_eq!(s.method, "CONNECT", "{s:?}");
        assert_eq!(s.target, format!("localhost:{port}"));
        assert_eq!(
            s.proxy_authorization.as_deref(),
            Some(basic("pxuser", "px:pa55word").as_str())
        );
        assert!(!s.head.contains(KEY), "{}", s.head);
    }
    assert_eq!(fake.requests().len(), 2);
    for text in [format!("{cfg:?}"), format!("{client:?}")] {
        assert!(
            !text.contains("pa55word") && !text.contains("pxuser"),
            "{text}"
        );
        assert!(!text.contains(KEY), "{text}");
    }
    assert!(format!("{client:?}").contains(&format!("127.0.0.1:{}", proxy.port)));

    // A plain-http loopback destination is refused with a proxy: the key would reach the
    // proxy in clear.
    let plain = Fake::start();
    let mut cfg = config(&plain.url());
    cfg.https_proxy = Some(proxy.url(Some("pxuser:px%3Apa55word")));
    let before = proxy.seen().len();
    let refused = QobraClient::new(&cfg).unwrap_err();
    assert!(
        refused.message.contains("plain http base_url"),
        "{}",
        refused.message
    );
    assert!(!format!("{refused:?}").contains("pa55word"));
    assert_eq!(proxy.seen().len(), before);
    assert!(plain.requests().is_empty());
}

#[test]
fn a_proxy_that_refuses_the_tunnel_fails_at_once_and_says_which() {
    let (_ca, fake, cfg) = trusted_tls();
    let forbidding = Proxy::start(Mode::Refuse("403 Forbidden"), None);
    let wanting = Proxy::start(Mode::Pass, Some(basic("pxuser", "right-pa55")));
    let cases = [
        (&forbidding, Some("pxuser:s3cret-pa55"), "other than 200"),
        (&wanting, Some("pxuser:wrong-pa55"), "asks for credentials"),
        (&wanting, None, "asks for credentials"),
    ];
    for (proxy, userinfo, why) in cases {
        let before = proxy.seen().len();
        let mut cfg = cfg.clone();
        cfg.https_proxy = Some(proxy.url(userinfo));
        let client = QobraClient::new(&cfg).unwrap();
        let err = client
            .post_records(TABLE, true, 0, body(), &never)
            .unwrap_err();
        let PushError::ProxyRefused {
            proxy: shown,
            message,
            ..
        } = &err
        else {
            panic!("{userinfo:?}: {err:?}")
        };
        assert!(message.contains(why), "{message}");
        assert!(
            shown.contains(&format!("http://127.0.0.1:{}", proxy.port)),
            "{shown}"
        );
        assert_eq!(shown.contains("credentials not shown"), userinfo.is_some());
        assert!(!err.is_transient());
        assert_eq!(client.stats().requests, 1, "not retried");
        assert_eq!(proxy.seen().len(), before + 1, "one CONNECT");
        let all = texts(&err);
        assert!(
            !all.contains("pa55") && !all.contains("pxuser") && !all.contains(KEY),
            "{all}"
        );
        assert!(all.contains("qobra_sync.https_proxy"), "{all}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn an_unreachable_proxy_is_a_transport_failure_and_retried() {
    let (_ca, _fake, mut cfg) = trusted_tls();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    cfg.https_proxy = Some(format!("http://pxuser:s3cret-pa55@127.0.0.1:{port}"));
    let client = QobraClient::new(&cfg).unwrap();
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    let PushError::GaveUp { attempts: 3, last } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            **last,
            PushError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{last:?}"
    );
    assert!(err.is_transient());
    assert!(!texts(&err).contains("s3cret"));
}

#[test]
fn invalid_proxy_urls_are_refused_by_new() {
    for bad in [
        "https://pxuser:s3cret@proxy.example:3128",
        "pxuser:s3cret@proxy.example:3128",
        "http://pxuser:s3cret@proxy.example:3128/path",
        "socks5://proxy.example:1080",
    ] {
        let mut cfg = config("https://localhost:9");
        cfg.https_proxy = Some(bad.into());
        let e = QobraClient::new(&cfg).unwrap_err();
        assert_eq!(e.state, SqlState::InvalidParameterValue, "{bad}");
        assert!(
            e.message.contains("qobra_sync.https_proxy"),
            "{}",
            e.message
        );
        assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
        assert!(!format!("{cfg:?}").contains("s3cret"), "{cfg:?}");
    }
    // A plain http destination through a proxy would show the key to the proxy.
    let mut cfg = config("http://127.0.0.1:9");
    cfg.https_proxy = Some("http://proxy.example:3128".into());
    let e = QobraClient::new(&cfg).unwrap_err();
    assert!(e.message.contains("plain http base_url"), "{}", e.message);
}

#[test]
fn answers_are_read_up_to_one_mebibyte() {
    let fake = Fake::start();
    let client = client(&fake.url());
    for announced in [true, false] {
        // An answer of exactly the limit is read whole (a JSON object with an import id).
        fake.clear();
        fake.faults(json!({"path_prefix": "/v1/", "action":
                           {"huge": {"bytes": BODY_LIMIT, "content_length": announced}}}));
        let posted = client.post_records(TABLE, true, 0, body(), &never).unwrap();
        assert_eq!(posted.import_id, "generated", "{announced}");
        // One byte more, and then gigabytes: a server fault, retried, and never read whole.
        for bytes in [BODY_LIMIT as u64 + 1, 8 << 30] {
            fake.clear();
            fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action":
                               {"huge": {"bytes": bytes, "content_length": announced}}}));
            let started = Instant::now();
            let err = client
                .post_records(TABLE, true, 0, body(), &never)
                .unwrap_err();
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{bytes} {announced}: {:?}",
                started.elapsed()
            );
            let PushError::GaveUp { attempts: 3, last } = &err else {
                panic!("{bytes} {announced}: {err:?}")
            };
            assert!(
                matches!(
                    **last,
                    PushError::AnswerTooLarge {
                        status: 200,
                        limit: BODY_LIMIT,
                        ..
                    }
                ),
                "{last:?}"
            );
            assert!(err.is_transient());
            let e = Error::from(err);
            assert!(e.detail.unwrap().contains("larger than 1048576 bytes"));
        }
    }
    // A huge error answer is cut to its excerpt, and retried as its status says.
    fake.clear();
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action":
                       {"huge": {"status": 503, "bytes": 8u64 << 30, "content_length": false}}}));
    let started = Instant::now();
    let err = client.import_status("x", &never).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let PushError::GaveUp { last, .. } = &err else {
        panic!("{err:?}")
    };
    let PushError::Server {
        status: 503,
        excerpt,
        ..
    } = &**last
    else {
        panic!("{last:?}")
    };
    assert!(excerpt.chars().count() <= 301);
}

#[test]
fn a_dripping_answer_is_bounded_by_the_request_timeout() {
    let fake = Fake::start();
    let mut cfg = config(&fake.url());
    cfg.request_timeout = Duration::from_millis(600);
    cfg.retry.max_retries = 0;
    let client = QobraClient::new(&cfg).unwrap();
    // The head comes at once; the 300 bytes of body take 3 s.
    fake.faults(json!({"path_prefix": "/v1/", "times": 0, "action":
                       {"drip": {"body_bytes": 300, "bytes_per_second": 100}}}));
    let started = Instant::now();
    let err = client
        .post_records(TABLE, true, 0, body(), &never)
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(550)..Duration::from_millis(1500)).contains(&elapsed),
        "{elapsed:?}"
    );
    let PushError::GaveUp { attempts: 1, last } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            **last,
            PushError::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{last:?}"
    );
    // The same answer dripping fast enough is read.
    fake.clear();
    fake.faults(json!({"path_prefix": "/v1/", "action":
                       {"drip": {"body_bytes": 100, "bytes_per_second": 500}}}));
    let started = Instant::now();
    let posted = client.post_records(TABLE, true, 0, body(), &never).unwrap();
    assert_eq!(posted.import_id, "generated");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn a_413_is_too_large_and_not_retried() {
    let fake = Fake::start();
    let client = client(&fake.url());
    let big = Bytes::from(serde_json::to_vec(&records(50)).unwrap());
    // The request's body is the records framed as `{"data": …}`.
    let body_len = big.len() + BodyFormat::Data.overhead();
    fake.settings(json!({"max_body_bytes": body_len - 1}));
    let err = client
        .post_records(TABLE, true, 0, big.clone(), &never)
        .unwrap_err();
    let PushError::TooLarge { excerpt, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(excerpt.contains("larger than the limit"), "{excerpt}");
    assert!(!err.is_retryable() && !err.is_transient());
    let log = fake.requests();
    assert_eq!(log.len(), 1, "not retried");
    assert_eq!(log[0]["status"], 413);
    assert_eq!(log[0]["body_bytes"], body_len);
    let e = Error::from(err);
    assert!(e.message.contains("413"), "{}", e.message);
    assert!(e.hint.unwrap().contains("batch_rows"));
    fake.flush();
    assert!(fake.ids(TABLE).is_empty(), "nothing stored");
    // A body within the limit goes through.
    fake.settings(json!({"max_body_bytes": body_len}));
    client.post_records(TABLE, true, 0, big, &never).unwrap();
    fake.flush();
    assert_eq!(fake.ids(TABLE).len(), 50);
}

//! End-to-end tests: a real server on a free loopback port, a real HTTP client.

use fake_qobra::{BodyFormat, Options, Server};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-5f2c9a";

/// A server plus clients for it.
struct Fake {
    server: Server,
    http: Client,
}

impl Fake {
    /// Starts a server on a free port that takes bare arrays, as most tests write them (the
    /// `{"data": …}` shape, the fake's default, has tests of its own).
    fn start() -> Fake {
        Fake::start_taking(BodyFormat::Array)
    }

    /// Starts a server on a free port that takes bulk bodies of shape `format`.
    fn start_taking(body_format: BodyFormat) -> Fake {
        let options = Options {
            body_format,
            ..Default::default()
        };
        let server = Server::start_with("127.0.0.1:0", KEY, options).expect("start server");
        let http = Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Fake { server, http }
    }

    /// Absolute URL of a path.
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.url(), path)
    }

    /// A control-API call with a JSON body; returns status and JSON.
    fn control(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        json_of(req.send().expect("control request"))
    }

    /// Defines the `deals` table used by most tests.
    fn define_deals(&self) {
        let def = json!({
            "id_field": "id", "name_field": "name", "user_key": "email",
            "fields": {"id": "string", "name": "string", "owner": "user", "amount": "amount",
                       "close_date": "date", "won": "bool", "stage": "picklist", "rate": "percentage"}
        });
        let (status, doc) = self.control("PUT", "/_fake/tables/deals", Some(def));
        assert_eq!(status, 200, "{doc}");
    }

    /// Pushes records with the API key; returns the raw response.
    fn push(&self, table: &str, query: &str, records: &Value) -> Response {
        self.http
            .post(self.url(&format!("/v1/tables/{table}/records/bulk?{query}")))
            .header("X-API-Key", KEY)
            .json(records)
            .send()
            .expect("push")
    }

    /// Pushes records and returns the import id, asserting a 200.
    fn push_ok(&self, table: &str, query: &str, records: &Value) -> String {
        let (status, doc) = json_of(self.push(table, query, records));
        assert_eq!(status, 200, "{doc}");
        doc["import_id"].as_str().expect("import_id").to_string()
    }

    /// GET with the API key; returns status and JSON.
    fn get(&self, path: &str) -> (u16, Value) {
        json_of(
            self.http
                .get(self.url(path))
                .header("X-API-Key", KEY)
                .send()
                .expect("get"),
        )
    }

    /// The import's `data_import` document.
    fn import(&self, id: &str) -> Value {
        let (status, doc) = self.get(&format!("/v1/imports/{id}"));
        assert_eq!(status, 200, "{doc}");
        doc["data_import"].clone()
    }

    /// Launches scheduled imports and waits for them.
    fn flush(&self) {
        let (status, _) = self.control("POST", "/_fake/imports/flush", None);
        assert_eq!(status, 200);
    }

    /// All records of a table, in id order.
    fn records(&self, table: &str) -> Vec<Value> {
        let (status, doc) = self.control("GET", &format!("/_fake/tables/{table}/records"), None);
        assert_eq!(status, 200, "{doc}");
        doc.as_array().expect("array").clone()
    }

    /// The ids of a table's records, in order.
    fn ids(&self, table: &str) -> Vec<String> {
        self.records(table)
            .iter()
            .map(|r| r["id"].as_str().expect("string id").to_string())
            .collect()
    }

    /// The request log.
    fn log(&self) -> Vec<Value> {
        let (_, doc) = self.control("GET", "/_fake/requests", None);
        doc.as_array().expect("array").clone()
    }

    /// Sets fault rules.
    fn faults(&self, rules: Value) {
        let (status, doc) = self.control("POST", "/_fake/faults", Some(rules));
        assert_eq!(status, 200, "{doc}");
    }
}

/// Status and JSON body of a response.
fn json_of(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `n` well-formed deal records with ids `{prefix}{i}`.
fn deals(prefix: &str, n: usize) -> Value {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}{i}"), "name": format!("Deal {i}"), "owner": "ana@acme.com",
                   "amount": 1200.5, "close_date": "2026-03-31", "won": i % 2 == 0})
        })
        .collect()
}

/// The text of an error and all its sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(" / ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A missing or wrong key is refused; the log tells which, never the key.
#[test]
fn wrong_or_missing_key_is_401_and_key_never_logged() {
    let f = Fake::start();
    f.define_deals();
    let url = f.url("/v1/tables/deals/records/bulk");
    let missing = f.http.post(&url).json(&deals("a", 1)).send().expect("send");
    let (status, doc) = json_of(missing);
    assert_eq!((status, doc), (401, json!({"detail": "Invalid API key"})));
    let wrong = f
        .http
        .post(&url)
        .header("X-API-Key", "nope")
        .json(&deals("a", 1))
        .send()
        .expect("send");
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, _) = json_of(f.http.get(f.url("/v1/imports/x")).send().expect("send"));
    assert_eq!(status, 401);
    f.push_ok("deals", "", &deals("a", 2));
    f.flush();
    assert_eq!(f.ids("deals"), ["a0", "a1"]);

    let log = f.log();
    let bulk: Vec<&Value> = log
        .iter()
        .filter(|e| e["path"] == "/v1/tables/deals/records/bulk")
        .collect();
    assert_eq!(bulk.len(), 3);
    assert_eq!(
        (
            bulk[0]["api_key_present"].clone(),
            bulk[0]["api_key_valid"].clone()
        ),
        (json!(false), json!(false))
    );
    assert_eq!(
        (
            bulk[1]["api_key_present"].clone(),
            bulk[1]["api_key_valid"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(
        (
            bulk[2]["api_key_present"].clone(),
            bulk[2]["api_key_valid"].clone()
        ),
        (json!(true), json!(true))
    );
    assert_eq!(bulk[1]["status"], 401);
    assert_eq!(bulk[2]["status"], 200);
    assert_eq!(bulk[2]["records"], 2);
    assert!(bulk[2]["body_bytes"].as_u64().expect("bytes") > 50);
    let text = serde_json::to_string(&log).expect("log");
    assert!(!text.contains(KEY), "the log must never contain the key");
    assert!(
        !text.contains("nope"),
        "the log must never contain a sent key"
    );
}

/// Pushed records are imported on flush and read back, also through reporting.
#[test]
fn bulk_flush_and_read_back() {
    let f = Fake::start();
    f.define_deals();
    let id = f.push_ok("deals", "all=true&debounce=60", &deals("d", 3));
    let before = f.import(&id);
    assert_eq!(before["status"], "scheduled");
    assert_eq!(before["finished_at"], Value::Null);
    assert_eq!(
        f.records("deals").len(),
        0,
        "nothing is stored before launch"
    );
    f.flush();
    let done = f.import(&id);
    assert_eq!(done["id"], json!(id));
    assert_eq!(done["status"], "finished");
    assert_eq!(done["progress"], 100);
    assert!(done["launched_at"]
        .as_str()
        .expect("launched_at")
        .ends_with('Z'));
    assert!(done["finished_at"]
        .as_str()
        .expect("finished_at")
        .ends_with('Z'));
    let detail = &done["data_tables_details"][0];
    assert_eq!(detail["type"], "api");
    assert_eq!(detail["data_table_key"], "deals");
    assert_eq!(detail["status"], "finished");
    assert_eq!(detail["number_of_records"], 3);
    assert_eq!(detail["error"], Value::Null);

    let records = f.records("deals");
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0],
        json!({"id": "d0", "name": "Deal 0", "owner": "ana@acme.com",
        "amount": 1200.5, "close_date": "2026-03-31", "won": true})
    );

    // Reporting: id pagination, amounts and users reshaped.
    let (status, page) = f.get("/v2/reporting/deals/records?limit=2");
    assert_eq!(status, 200);
    assert_eq!(page["records"].as_array().expect("records").len(), 2);
    assert_eq!(
        page["records"][0]["amount"],
        json!({"value": 1200.5, "currency": "EUR"})
    );
    assert_eq!(
        page["records"][0]["owner"],
        json!({"id": null, "email": "ana@acme.com"})
    );
    assert_eq!(page["next_start_id"], "d2");
    let (_, last) = f.get("/v2/reporting/deals/records?limit=2&start_id=d2");
    assert_eq!(last["records"][0]["id"], "d2");
    assert_eq!(last["next_start_id"], Value::Null);
    assert_eq!(f.get("/v2/reporting/deals/records?limit=2001").0, 400);
    assert_eq!(f.get("/v2/reporting/nope/records").0, 404);

    let (_, summary) = f.control("GET", "/_fake/tables/deals", None);
    assert_eq!(summary["record_count"], 3);
    assert_eq!(summary["fields"]["amount"], "amount");
}

/// Without debounce the import runs by itself; numbers keep every digit.
#[test]
fn debounce_zero_launches_by_itself_and_numbers_keep_their_digits() {
    let f = Fake::start();
    f.define_deals();
    let resp = f
        .http
        .post(f.url("/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .body(r#"[{"id": "p", "amount": 12345678901234567890.123456789}]"#)
        .send()
        .expect("push");
    let id = json_of(resp).1["import_id"]
        .as_str()
        .expect("import_id")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.import(&id)["status"] != "finished" {
        assert!(Instant::now() < deadline, "import did not finish by itself");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = f
        .http
        .get(f.url("/_fake/tables/deals/records"))
        .send()
        .expect("get")
        .text()
        .expect("text");
    assert_eq!(
        text,
        r#"[{"id":"p","amount":12345678901234567890.123456789}]"#
    );
}

/// `all=true` empties the table; other pushes upsert.
#[test]
fn all_true_clears_the_table_first_and_upserts_merge() {
    let f = Fake::start();
    f.define_deals();
    f.push_ok("deals", "", &deals("a", 3));
    f.flush();
    f.push_ok("deals", "all=true", &deals("b", 2));
    f.flush();
    assert_eq!(f.ids("deals"), ["b0", "b1"]);
    f.push_ok(
        "deals",
        "all=false",
        &json!([{"id": "b0", "name": "Renamed", "not_a_field": 1}, {"id": "c0"}]),
    );
    f.flush();
    let records = f.records("deals");
    assert_eq!(f.ids("deals"), ["b0", "b1", "c0"]);
    assert_eq!(records[0]["name"], "Renamed");
    assert_eq!(
        records[0]["owner"], "ana@acme.com",
        "upsert keeps fields not sent"
    );
    assert!(
        records[0].get("not_a_field").is_none(),
        "unknown keys are ignored"
    );
}

/// Requests within the debounce window share one import, and postpone it.
#[test]
fn debounce_stacks_requests_into_one_import() {
    let f = Fake::start();
    f.define_deals();
    f.push_ok("deals", "", &deals("old", 2));
    f.flush();
    let first = f.push_ok("deals", "all=true&debounce=30", &deals("x", 2));
    let second = f.push_ok("deals", "debounce=30", &deals("y", 3));
    assert_eq!(
        first, second,
        "requests within the debounce window join one import"
    );
    assert_eq!(f.import(&first)["status"], "scheduled");
    f.flush();
    let done = f.import(&first);
    assert_eq!(done["data_tables_details"][0]["number_of_records"], 5);
    assert_eq!(
        f.ids("deals"),
        ["x0", "x1", "y0", "y1", "y2"],
        "all=true of the first request cleared 'old'"
    );
    let third = f.push_ok("deals", "debounce=30", &deals("z", 1));
    assert_ne!(third, first, "a request after launch starts a new import");

    // Short debounce: a second request pushes the launch time back.
    let a = f.push_ok("deals", "debounce=2", &deals("s", 1));
    assert_eq!(a, third);
    std::thread::sleep(Duration::from_millis(1200));
    let b = f.push_ok("deals", "debounce=2", &deals("t", 1));
    assert_eq!(a, b);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        f.import(&a)["status"],
        "scheduled",
        "launch moved to the last request + debounce"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while f.import(&a)["status"] != "finished" {
        assert!(Instant::now() < deadline, "debounced import never launched");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        f.import(&a)["data_tables_details"][0]["number_of_records"],
        3
    );
}

/// Bad rows are reported by line across the import and not stored.
#[test]
fn parsing_errors_by_field_type_with_line_numbers() {
    let f = Fake::start();
    f.define_deals();
    let first = json!([
        {"id": "ok1", "amount": "1200.50"},
        {"id": "bad1", "amount": "AAAAA"},
    ]);
    let second = json!([
        {"id": "bad2", "close_date": "31/03/2026"},
        {"id": "ok2", "won": null, "close_date": "2026-03-31T12:00:00.000000Z"},
        {"id": "bad3", "won": "yes"},
        {"id": "bad4", "owner": "not-an-email"},
        {"name": "no id"},
        {"id": "bad6", "rate": true},
    ]);
    let id = f.push_ok("deals", "debounce=30", &first);
    f.push_ok("deals", "debounce=30", &second);
    f.flush();
    let detail = f.import(&id)["data_tables_details"][0].clone();
    assert_eq!(detail["number_of_records"], 2);
    let error = &detail["error"];
    assert_eq!(error["title"], "ParsingError");
    let errors = error["parsing_error_details"].as_array().expect("details");
    let got: Vec<(u64, String)> = errors
        .iter()
        .map(|e| {
            (
                e["line_number"].as_u64().expect("line"),
                e["details"].as_str().expect("details").to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                2,
                "Can't parse 'AAAAA' as float for user attribute amount".to_string()
            ),
            (
                3,
                "Can't parse '31/03/2026' as date for user attribute close_date".to_string()
            ),
            (
                5,
                "Can't parse 'yes' as bool for user attribute won".to_string()
            ),
            (
                6,
                "Can't parse 'not-an-email' as user email for user attribute owner".to_string()
            ),
            (7, "Missing value for id field id".to_string()),
            (
                8,
                "Can't parse 'true' as float for user attribute rate".to_string()
            ),
        ]
    );
    assert_eq!(errors[0]["row"], json!({"id": "bad1", "amount": "AAAAA"}));
    assert!(error["description"]
        .as_str()
        .expect("description")
        .contains("6 rows"));
    assert_eq!(
        f.ids("deals"),
        ["ok1", "ok2"],
        "failing rows are not stored"
    );
    assert_eq!(
        f.records("deals")[0]["amount"].to_string(),
        "1200.50",
        "text is stored as the number it spells"
    );
}

/// Bad tables, bodies and parameters get 4xx and store nothing.
#[test]
fn bad_requests_are_rejected() {
    let f = Fake::start();
    f.define_deals();
    let (status, doc) = json_of(f.push("nope", "", &deals("a", 1)));
    assert_eq!(status, 404, "{doc}");
    assert_eq!(json_of(f.push("deals", "", &json!({"id": "1"}))).0, 400);
    assert_eq!(
        json_of(f.push("deals", "", &json!([{"id": "1"}, 2]))).0,
        400
    );
    assert_eq!(
        json_of(f.push("deals", "debounce=-1", &deals("a", 1))).0,
        400
    );
    assert_eq!(
        json_of(f.push("deals", "debounce=1.5", &deals("a", 1))).0,
        400
    );
    assert_eq!(json_of(f.push("deals", "all=maybe", &deals("a", 1))).0, 400);
    let broken = f
        .http
        .post(f.url("/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .body("[{\"id\": ")
        .send()
        .expect("send");
    assert_eq!(broken.status().as_u16(), 400);
    assert_eq!(f.get("/v1/imports/does-not-exist").0, 404);
    assert_eq!(f.get("/v1/elsewhere").0, 404);
    assert_eq!(f.control("GET", "/_fake/tables/nope", None).0, 404);
    assert_eq!(f.control("GET", "/_fake/nothing", None).0, 404);
    let (status, doc) = f.control(
        "PUT",
        "/_fake/tables/t",
        Some(json!({"id_field": "id", "name_field": "n", "fields": {"x": "float"}})),
    );
    assert_eq!(status, 400, "{doc}");
    f.flush();
    assert!(
        f.records("deals").is_empty(),
        "rejected requests store nothing"
    );
}

/// A chunked body is read like a sized one.
#[test]
fn chunked_bodies_are_accepted() {
    let f = Fake::start();
    f.define_deals();
    let body = serde_json::to_vec(&deals("c", 50)).expect("json");
    let resp = f
        .http
        .post(f.url("/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    f.flush();
    assert_eq!(f.records("deals").len(), 50);
}

/// A 500 fault answers once, touches nothing, and is logged.
#[test]
fn fault_status_500_then_normal_and_table_untouched() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/tables/", "method": "POST", "action": {"status": 500, "body": "boom"}}]));
    let resp = f.push("deals", "all=true", &deals("a", 3));
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.text().expect("text"), "boom");
    f.flush();
    assert!(
        f.records("deals").is_empty(),
        "a faulted request touches no table"
    );
    assert_eq!(
        f.control("GET", "/_fake/faults", None).1,
        json!([]),
        "the rule is spent"
    );
    f.push_ok("deals", "", &deals("a", 3));
    f.flush();
    assert_eq!(f.records("deals").len(), 3);
    let log = f.log();
    let faulted = log
        .iter()
        .find(|e| e["fault"] == "status")
        .expect("faulted entry");
    assert_eq!(faulted["status"], 500);
    assert_eq!(faulted["records"], 3);
}

/// Rules count requests over HTTP and are listed until spent.
#[test]
fn fault_nth_times_and_listing() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/", "nth": 2, "times": 2, "action": {"status": 503}}]));
    let (_, listed) = f.control("GET", "/_fake/faults", None);
    assert_eq!(listed[0]["nth"], 2);
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            f.push("deals", "", &deals(&format!("n{i}-"), 1))
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [200, 503, 503, 200]);
    f.faults(json!([{"action": {"status": 502}, "times": 0}]));
    assert_eq!(f.get("/v1/imports/x").0, 502);
    assert_eq!(f.get("/v1/imports/x").0, 502);
    assert_eq!(f.control("GET", "/_fake/faults", None).1[0]["matched"], 2);
    assert_eq!(f.control("DELETE", "/_fake/faults", None).0, 200);
    assert_eq!(f.get("/v1/imports/x").0, 404);
}

/// A 429 carries the Retry-After given, seconds or date.
#[test]
fn fault_429_retry_after_is_visible() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([
        {"action": {"status": 429, "headers": {"Retry-After": "2"}}},
        {"nth": 2, "action": {"status": 429, "headers": {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}}},
    ]));
    let resp = f.push("deals", "", &deals("a", 1));
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let resp = f.push("deals", "", &deals("a", 1));
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()["retry-after"],
        "Wed, 21 Oct 2026 07:28:00 GMT"
    );
    assert_eq!(f.push("deals", "", &deals("a", 1)).status().as_u16(), 200);
}

/// A delay holds the answer, then the request is handled.
#[test]
fn fault_delay_then_normal_handling() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/tables/", "action": {"delay_ms": 800}}]));
    let started = Instant::now();
    let id = f.push_ok("deals", "", &deals("a", 2));
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "answered too early"
    );
    f.flush();
    assert_eq!(f.import(&id)["status"], "finished");
    assert_eq!(f.records("deals").len(), 2);
}

/// A hang never answers, so the client times out.
#[test]
fn fault_hang_makes_the_client_time_out() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/tables/", "action": {"hang": true}}]));
    let client = Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .post(f.url("/v1/tables/deals/records/bulk"))
        .header("X-API-Key", KEY)
        .json(&deals("a", 2))
        .send()
        .expect_err("must time out");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let log = f.log();
    let hung = log
        .iter()
        .find(|e| e["fault"] == "hang")
        .expect("hang entry");
    assert_eq!(hung["status"], Value::Null);
    f.flush();
    assert!(f.records("deals").is_empty());
}

/// A reset (after or before the body) is a connection error to the client.
#[test]
fn fault_reset_is_a_connection_error() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([
        {"path_prefix": "/v1/tables/", "action": {"reset": true}},
        {"path_prefix": "/v1/tables/", "nth": 2, "action": {"reset": true, "read_body": false}},
    ]));
    for _ in 0..2 {
        let err = f.push_raw_err(&deals("a", 2000));
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.status().is_none());
        let chain = error_chain(&err).to_lowercase();
        assert!(
            chain.contains("reset") || chain.contains("closed") || chain.contains("broken pipe"),
            "{chain}"
        );
    }
    f.flush();
    assert!(f.records("deals").is_empty());
    f.push_ok("deals", "", &deals("a", 1));
}

/// A close without answer is a connection error, not a timeout.
#[test]
fn fault_close_without_response() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/tables/", "action": {"close": true}}]));
    let err = f.push_raw_err(&deals("a", 2));
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    f.push_ok("deals", "", &deals("a", 1));
}

/// A redirect reaches a client that does not follow redirects.
#[test]
fn fault_redirect_is_not_followed() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"action": {"status": 307, "headers": {"Location": "http://127.0.0.1:9/elsewhere"}}}]));
    let resp = f.push("deals", "", &deals("a", 1));
    assert_eq!(resp.status().as_u16(), 307);
    assert_eq!(resp.headers()["location"], "http://127.0.0.1:9/elsewhere");
    f.flush();
    assert!(f.records("deals").is_empty());
}

impl Fake {
    /// Pushes with a fresh connection and returns the client error it must produce.
    fn push_raw_err(&self, records: &Value) -> reqwest::Error {
        let client = Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        client
            .post(self.url("/v1/tables/deals/records/bulk"))
            .header("X-API-Key", KEY)
            .json(records)
            .send()
            .expect_err("must fail")
    }
}

/// A CSV defines the table, its types and its first rows.
#[test]
fn csv_table_definition_imports_rows() {
    let f = Fake::start();
    let csv = "deal_id,title,owner,amount,close_date,won\n\
               7,\"Acme, renewal\",ana@acme.com,1200.50,2026-03-31,true\n\
               3,Globex,,99,,false\n";
    let resp =
        f.http
            .put(f.url(
                "/_fake/tables/sales/csv?types=amount:amount,owner:user,close_date:date,won:bool",
            ))
            .body(csv)
            .send()
            .expect("put csv");
    let (status, doc) = json_of(resp);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["id_field"], "deal_id");
    assert_eq!(doc["name_field"], "title");
    assert_eq!(
        doc["fields"],
        json!({"deal_id": "string", "title": "string", "owner": "user",
        "amount": "amount", "close_date": "date", "won": "bool"})
    );
    assert_eq!(doc["record_count"], 2);
    let records = f.records("sales");
    assert_eq!(
        records[0],
        json!({"deal_id": "3", "title": "Globex", "owner": null, "amount": 99,
        "close_date": null, "won": false})
    );
    assert_eq!(records[1]["title"], "Acme, renewal");
    assert_eq!(records[1]["amount"].to_string(), "1200.50");

    // The table then takes pushes like any other.
    f.push_ok(
        "sales",
        "",
        &json!([{"deal_id": "9", "title": "Initech", "amount": "AAAAA"}]),
    );
    f.flush();
    assert_eq!(f.records("sales").len(), 2);

    let bad = f
        .http
        .put(f.url("/_fake/tables/bad/csv?types=amount:amount"))
        .body("id,name,amount\n1,x,lots\n")
        .send()
        .expect("put");
    let (status, doc) = json_of(bad);
    assert_eq!(status, 400);
    assert!(
        doc["detail"].as_str().expect("detail").contains("line 2"),
        "{doc}"
    );
    let other_id = f
        .http
        .put(f.url("/_fake/tables/o/csv?id_field=code&name_field=label"))
        .body("label,code\nx,1\n")
        .send()
        .expect("put");
    assert_eq!(json_of(other_id).1["id_field"], "code");
}

/// Reset forgets tables, imports, faults and the log.
#[test]
fn reset_clears_everything() {
    let f = Fake::start();
    f.define_deals();
    f.push_ok("deals", "debounce=60", &deals("a", 1));
    f.faults(json!([{"path_prefix": "/v2/", "action": {"status": 500}}]));
    assert_eq!(f.control("POST", "/_fake/reset", None).0, 200);
    assert_eq!(f.control("GET", "/_fake/tables", None).1, json!([]));
    assert_eq!(f.control("GET", "/_fake/imports", None).1, json!([]));
    assert_eq!(f.control("GET", "/_fake/faults", None).1, json!([]));
    assert_eq!(
        f.log().len(),
        4,
        "only the reset and later requests are logged"
    );
    f.flush();
}

/// Shutdown stops listening; non-loopback addresses and empty keys are refused.
#[test]
fn shutdown_stops_the_server_and_only_loopback_is_allowed() {
    assert!(Server::start("0.0.0.0:0", KEY).is_err());
    assert!(Server::start("127.0.0.1:0", "").is_err());
    let f = Fake::start();
    let addr = f.server.addr();
    assert_eq!(f.control("POST", "/_fake/shutdown", None).0, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "server still accepting");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The binary prints and writes its port, and exits cleanly on SIGTERM.
#[test]
fn binary_announces_its_port_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("fake-qobra-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let port_file = dir.join("port");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fake-qobra"))
        .args(["--listen", "127.0.0.1:0", "--api-key", KEY, "--port-file"])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read line");
    let port: u16 = std::fs::read_to_string(&port_file)
        .expect("port file")
        .trim()
        .parse()
        .expect("port");
    assert_eq!(line.trim(), format!("listening on 127.0.0.1:{port}"));
    let health =
        reqwest::blocking::get(format!("http://127.0.0.1:{port}/_fake/health")).expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "binary did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_fake-qobra"))
        .args(["--listen", "0.0.0.0:0", "--api-key", KEY])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A raw TCP connection to the fake, for what an HTTP client library hides.
fn raw(f: &Fake) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(f.server.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Sends bytes on a raw connection.
fn send(s: &mut std::net::TcpStream, bytes: &[u8]) {
    use std::io::Write;
    s.write_all(bytes).expect("write");
}

/// Reads one response (head and `Content-Length` body): status, head text, body.
fn read_response(s: &mut std::net::TcpStream) -> (u16, String, Vec<u8>) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read head");
        assert_eq!(n, 1, "connection ended inside a head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).expect("utf-8 head");
    let status: u16 = head[9..12].parse().expect("status");
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().expect("length"))
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).expect("read body");
    (status, head, body)
}

/// How a raw connection ended: `Ok(n)` bytes read before a FIN, or the read error.
fn read_to_end(s: &mut std::net::TcpStream) -> std::io::Result<usize> {
    use std::io::Read;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map(|_| all.len())
}

/// The log entries of requests to this path.
fn logged(f: &Fake, path: &str) -> Vec<Value> {
    f.log().into_iter().filter(|e| e["path"] == path).collect()
}

/// A bulk request head for `deals` with this body length and extra header lines.
fn bulk_head(len: usize, extra: &str) -> String {
    format!(
        "POST /v1/tables/deals/records/bulk HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\
         Content-Length: {len}\r\n{extra}\r\n"
    )
}

/// Keep-alive serves several requests on one connection; HTTP/1.0 and `Connection: close`
/// get their answer and then a close; a malformed request line gets a 400.
#[test]
fn raw_keep_alive_http10_close_and_malformed() {
    let f = Fake::start();
    let mut s = raw(&f);
    for _ in 0..3 {
        send(&mut s, b"GET /_fake/health HTTP/1.1\r\nHost: x\r\n\r\n");
        let (status, head, body) = read_response(&mut s);
        assert_eq!(status, 200, "{head}");
        assert_eq!(body, br#"{"ok":true}"#);
        assert!(!head.to_ascii_lowercase().contains("connection: close"));
    }
    for request in [
        &b"GET /_fake/health HTTP/1.0\r\n\r\n"[..],
        &b"GET /_fake/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
    ] {
        let mut s = raw(&f);
        send(&mut s, request);
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(body, br#"{"ok":true}"#);
        assert_eq!(read_to_end(&mut s).expect("a clean close"), 0);
    }
    let mut s = raw(&f);
    send(&mut s, b"BAD\x01 / HTTP/1.1\r\n\r\n");
    assert_eq!(read_response(&mut s).0, 400);
    assert_eq!(read_to_end(&mut s).expect("closed after a 400"), 0);
}

/// Chunked bodies with chunk extensions and trailers, and `Expect: 100-continue`, are
/// read whole; a malformed chunk is a logged 400.
#[test]
fn raw_chunked_extensions_trailers_and_expect_continue() {
    let f = Fake::start();
    f.define_deals();
    let body = serde_json::to_vec(&deals("k", 3)).expect("json");
    let (a, b) = body.split_at(10);
    let mut s = raw(&f);
    send(
        &mut s,
        format!(
            "POST /v1/tables/deals/records/bulk HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\
             Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 100, "the fake asks for the body");
    let mut chunked = format!("{:x};name=value\r\n", a.len()).into_bytes();
    chunked.extend_from_slice(a);
    chunked.extend_from_slice(format!("\r\n{:X}\r\n", b.len()).as_bytes());
    chunked.extend_from_slice(b);
    chunked.extend_from_slice(b"\r\n0\r\nX-Trailer: t\r\n\r\n");
    send(&mut s, &chunked);
    let (status, head, doc) = read_response(&mut s);
    assert_eq!(status, 200, "{head} {}", String::from_utf8_lossy(&doc));
    f.flush();
    assert_eq!(f.ids("deals"), ["k0", "k1", "k2"]);

    let mut s = raw(&f);
    send(
        &mut s,
        format!(
            "POST /v1/tables/deals/records/bulk HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\
             Transfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(read_response(&mut s).0, 400);
    let log = logged(&f, "/v1/tables/deals/records/bulk");
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["records"], 3);
    assert_eq!(log[0]["body_bytes"], body.len());
    assert_eq!(log[1]["status"], 400);
}

/// A body announced larger than the fake takes is refused with 413 before it is sent.
#[test]
fn raw_too_large_body_is_413() {
    let f = Fake::start();
    f.define_deals();
    let mut s = raw(&f);
    send(&mut s, bulk_head(2_000_000_000, "").as_bytes());
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        logged(&f, "/v1/tables/deals/records/bulk")[0]["status"],
        413
    );
}

/// A reset is a TCP RST and a close is a FIN with nothing before it; `read_body: false`
/// acts on the head alone, `read_body: true` only once the whole body has arrived.
#[test]
fn raw_reset_is_rst_close_is_fin_before_or_after_the_body() {
    let f = Fake::start();
    f.define_deals();
    let body = serde_json::to_vec(&deals("r", 2)).expect("json");
    let path = "/v1/tables/deals/records/bulk";
    for (action, rst) in [
        (json!({"reset": true, "read_body": false}), true),
        (json!({"close": true, "read_body": false}), false),
    ] {
        f.faults(json!([{ "path_prefix": path, "action": action }]));
        let mut s = raw(&f);
        // The head alone: the fault must not wait for the body.
        send(&mut s, bulk_head(body.len(), "").as_bytes());
        let ended = read_to_end(&mut s);
        match rst {
            true => assert_eq!(
                ended.expect_err("a reset").kind(),
                std::io::ErrorKind::ConnectionReset,
                "{action}"
            ),
            false => assert_eq!(ended.expect("a FIN"), 0, "{action}"),
        }
    }
    for (action, rst) in [
        (json!({"reset": true}), true),
        (json!({"close": true}), false),
    ] {
        f.faults(json!([{ "path_prefix": path, "action": action }]));
        let mut s = raw(&f);
        send(&mut s, bulk_head(body.len(), "").as_bytes());
        send(&mut s, &body[..10]);
        // With part of the body missing, the connection stays open.
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let waiting = read_to_end(&mut s).expect_err("still waiting for the body");
        assert!(
            matches!(
                waiting.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{action}: {waiting:?}"
        );
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        send(&mut s, &body[10..]);
        let ended = read_to_end(&mut s);
        match rst {
            true => assert_eq!(
                ended.expect_err("a reset").kind(),
                std::io::ErrorKind::ConnectionReset,
                "{action}"
            ),
            false => assert_eq!(ended.expect("a FIN"), 0, "{action}"),
        }
    }
    let log = logged(&f, path);
    let seen: Vec<(Value, Value, Value, Value)> = log
        .iter()
        .map(|e| {
            (
                e["fault"].clone(),
                e["status"].clone(),
                e["body_bytes"].clone(),
                e["records"].clone(),
            )
        })
        .collect();
    let n = body.len();
    assert_eq!(
        seen,
        [
            (json!("reset"), Value::Null, json!(0), Value::Null),
            (json!("close"), Value::Null, json!(0), Value::Null),
            (json!("reset"), Value::Null, json!(n), json!(2)),
            (json!("close"), Value::Null, json!(n), json!(2)),
        ]
    );
    assert!(log.iter().all(|e| !e["finished_at"].is_null()));
    f.flush();
    assert!(f.records("deals").is_empty(), "faults touch no table");
}

/// A hang reads the request and answers nothing until the server stops, which closes it.
#[test]
fn raw_hang_holds_the_socket_until_the_server_stops() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/", "action": {"hang": true}}]));
    let body = serde_json::to_vec(&deals("h", 1)).expect("json");
    let mut s = raw(&f);
    send(&mut s, bulk_head(body.len(), "").as_bytes());
    send(&mut s, &body);
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let waiting = read_to_end(&mut s).expect_err("no answer");
    assert!(matches!(
        waiting.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    let entry = &logged(&f, "/v1/tables/deals/records/bulk")[0];
    assert_eq!(
        (entry["fault"].clone(), entry["status"].clone()),
        (json!("hang"), Value::Null)
    );
    assert_eq!(entry["body_bytes"], body.len());
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    drop(f);
    assert!(started.elapsed() < Duration::from_secs(2), "stop waited");
    assert_eq!(read_to_end(&mut s).expect("closed by the stop"), 0);
}

/// A delayed request whose client leaves is still handled and logged, as Qobra would.
#[test]
fn raw_delayed_request_is_handled_after_its_client_left() {
    let f = Fake::start();
    f.define_deals();
    f.faults(json!([{"path_prefix": "/v1/", "action": {"delay_ms": 300}}]));
    let body = serde_json::to_vec(&deals("gone", 2)).expect("json");
    let mut s = raw(&f);
    send(&mut s, bulk_head(body.len(), "").as_bytes());
    send(&mut s, &body);
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
    std::thread::sleep(Duration::from_millis(600));
    f.flush();
    assert_eq!(f.ids("deals"), ["gone0", "gone1"]);
    let entry = &logged(&f, "/v1/tables/deals/records/bulk")[0];
    assert_eq!(
        (entry["fault"].clone(), entry["status"].clone()),
        (json!("delay"), json!(200))
    );
}

/// Injected headers go out as given (name case included), with the body and its length.
#[test]
fn raw_injected_headers_keep_their_case() {
    let f = Fake::start();
    f.faults(json!([{"action": {"status": 429, "body": "slow",
                     "headers": {"Retry-After": "soon, or not", "X-Why": "tests"}}}]));
    let mut s = raw(&f);
    send(&mut s, b"GET /v1/imports/x HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, head, body) = read_response(&mut s);
    assert_eq!(status, 429);
    assert!(head.contains("\r\nRetry-After: soon, or not\r\n"), "{head}");
    assert!(head.contains("\r\nX-Why: tests\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: 4\r\n"), "{head}");
    assert_eq!(body, b"slow");
}

/// By default the fake takes `{"data": [records]}`, Qobra's shape on its other bulk endpoints,
/// and refuses a bare array as Qobra refuses a malformed body (400, JSON error); started (or
/// set) to take bare arrays, it refuses the envelope. Either way the records land the same.
#[test]
fn bulk_bodies_have_the_shape_the_fake_is_set_to() {
    let f = Fake::start_taking(BodyFormat::default());
    f.define_deals();
    let records = deals("d", 2);
    let refused = f.push("deals", "all=true&debounce=0", &records);
    assert_eq!(refused.status().as_u16(), 400);
    let (_, doc) = json_of(refused);
    assert!(
        doc["detail"]
            .as_str()
            .unwrap()
            .contains(r#"{"data": [records]}"#),
        "{doc}"
    );
    for extra in [
        json!({"data": records.clone(), "more": 1}),
        json!({"data": {"id": "1"}}),
        json!(records.clone()),
    ] {
        assert_eq!(
            f.push("deals", "debounce=0", &extra).status().as_u16(),
            400,
            "{extra}"
        );
    }
    let id = f.push_ok(
        "deals",
        "all=true&debounce=0",
        &json!({"data": records.clone()}),
    );
    f.control("POST", "/_fake/imports/flush", None);
    assert_eq!(f.import(&id)["status"], "finished");
    assert_eq!(f.records("deals").len(), 2);

    let (status, settings) = f.control(
        "PUT",
        "/_fake/settings",
        Some(json!({"body_format": "array"})),
    );
    assert_eq!(
        (status, settings["body_format"].clone()),
        (200, json!("array"))
    );
    assert_eq!(
        f.push("deals", "debounce=0", &json!({"data": records.clone()}))
            .status()
            .as_u16(),
        400
    );
    f.push_ok("deals", "all=true&debounce=0", &records);
    let (status, _) = f.control(
        "PUT",
        "/_fake/settings",
        Some(json!({"body_format": "envelope"})),
    );
    assert_eq!(status, 400);
    f.control("POST", "/_fake/reset", None);
    let (_, settings) = f.control("GET", "/_fake/settings", None);
    assert_eq!(
        settings["body_format"], "data",
        "reset restores the shape the fake started with"
    );
}

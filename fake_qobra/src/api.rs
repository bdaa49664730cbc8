//! Qobra's public API: bulk push, import status and reporting read-back.
//! Authentication is checked by the caller before these handlers run.

use crate::fields::{FieldType, UserKey};
use crate::message::{Request, Response};
use crate::settings::BodyFormat;
use crate::store::{records_of, Store};
use serde_json::{json, Map, Value};

/// Largest page the reporting endpoint serves.
pub const MAX_PAGE: usize = 2000;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// Currency reported with amounts (the fake does not model currencies).
pub const CURRENCY: &str = "EUR";

/// Routes a public API request (bulk bodies of shape `format`); also returns the number of
/// records pushed, if any.
pub fn handle(store: &Store, format: BodyFormat, mut req: Request) -> (Response, Option<usize>) {
    let segs = req.segments();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    match (method, segs.as_slice()) {
        ("POST", ["v1", "tables", key, "records", "bulk"]) => {
            let key = key.to_string();
            bulk(store, format, &key, &mut req)
        }
        ("GET", ["v1", "imports", id]) => (import_status(store, id), None),
        ("GET", ["v2", "reporting", key, "records"]) => (reporting(store, key, &req), None),
        (_, ["v1", "tables", _, "records", "bulk"])
        | (_, ["v1", "imports", _])
        | (_, ["v2", "reporting", _, "records"]) => {
            (Response::detail(405, "Method Not Allowed"), None)
        }
        _ => (Response::detail(404, "Not Found"), None),
    }
}

/// `POST /v1/tables/{key}/records/bulk?all=&debounce=`: queues the records for import. A body
/// of another shape than `format` is refused (400), as a malformed body would be.
fn bulk(
    store: &Store,
    format: BodyFormat,
    key: &str,
    req: &mut Request,
) -> (Response, Option<usize>) {
    if store.table(key).is_none() {
        return (
            Response::detail(404, format!("Data table '{key}' not found")),
            None,
        );
    }
    let all = match req.query_param("all").as_deref().map(parse_bool) {
        None => false,
        Some(Some(b)) => b,
        Some(None) => return (Response::detail(400, "all must be true or false"), None),
    };
    let debounce = match req.query_param("debounce") {
        None => 0,
        Some(d) => match d.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let msg = format!("debounce must be a non-negative integer, got '{d}'");
                return (Response::detail(400, msg), None);
            }
        },
    };
    let (records, count) = match records_of(&req.body, format) {
        Ok((array, n)) => (array.to_vec(), n),
        Err(msg) => return (Response::detail(400, msg), None),
    };
    let id = store.enqueue(key, all, debounce, records);
    (
        Response::json(200, &json!({ "import_id": id })),
        Some(count),
    )
}

/// Parses a boolean query value (`true`/`false`, `1`/`0`, any case).
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// `GET /v1/imports/{id}`: the import's status document.
fn import_status(store: &Store, id: &str) -> Response {
    match store.import_json(id) {
        Some(doc) => Response::json(200, &doc),
        None => Response::detail(404, format!("Import '{id}' not found")),
    }
}

/// `GET /v2/reporting/{key}/records?limit=&start_id=`: one page of records in id
/// order (ids compared as text), amounts as `{value, currency}`, users as `{id, email}`.
fn reporting(store: &Store, key: &str, req: &Request) -> Response {
    let Some(table) = store.table(key) else {
        return Response::detail(404, format!("Data table '{key}' not found"));
    };
    let limit = match req.query_param("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                let msg = format!("limit must be an integer between 1 and {MAX_PAGE}");
                return Response::detail(400, msg);
            }
        },
    };
    let start = req.query_param("start_id").unwrap_or_default();
    let records = table.records.lock().unwrap_or_else(|e| e.into_inner());
    let mut page = Vec::with_capacity(limit);
    let mut next = Value::Null;
    for (id, text) in records.range(start..) {
        if page.len() == limit {
            next = Value::String(id.clone());
            break;
        }
        let stored: Map<String, Value> = serde_json::from_str(text).unwrap_or_default();
        page.push(Value::Object(reporting_shape(&table.def, stored)));
    }
    drop(records);
    Response::json(200, &json!({ "records": page, "next_start_id": next }))
}

/// Reshapes a stored record the way the reporting API shows it.
fn reporting_shape(
    def: &crate::fields::TableDef,
    stored: Map<String, Value>,
) -> Map<String, Value> {
    stored
        .into_iter()
        .map(|(k, v)| {
            let shaped = match (def.field_type(&k), v) {
                (_, Value::Null) => Value::Null,
                (Some(FieldType::Amount), v) => json!({ "value": v, "currency": CURRENCY }),
                (Some(FieldType::User), v) => match def.user_key {
                    UserKey::Email => json!({ "id": Value::Null, "email": v }),
                    UserKey::Id => json!({ "id": v, "email": Value::Null }),
                },
                (_, v) => v,
            };
            (k, shaped)
        })
        .collect()
}

//! The control API under `/_fake/`: define tables, read them back, inspect the
//! request log, flush imports, inject faults, change settings, read counters, reset and
//! shut down.
//! No API key is needed; the server only listens on loopback addresses.

use crate::fields::{decimal, FieldType, RawRecord, TableDef, UserKey};
use crate::message::{query_pairs, Request, Response};
use crate::state::Shared;
use crate::store::upsert;
use serde_json::{json, Map, Value};

/// Routes a `/_fake/...` request.
pub fn handle(shared: &Shared, req: Request) -> Response {
    let segs = req.segments();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let store = &shared.store;
    match (req.method.as_str(), segs.get(1..).unwrap_or(&[])) {
        ("GET", ["health"]) => Response::json(200, &json!({ "ok": true })),
        ("GET", ["tables"]) => {
            let tables: Vec<Value> = store
                .table_keys()
                .iter()
                .filter_map(|k| table_summary(shared, k))
                .collect();
            Response::json(200, &Value::Array(tables))
        }
        ("PUT", ["tables", key]) => define_json(shared, key, &req),
        ("PUT", ["tables", key, "csv"]) => define_csv(shared, key, &req),
        ("GET", ["tables", key]) => match table_summary(shared, key) {
            Some(doc) => Response::json(200, &doc),
            None => not_found_table(key),
        },
        ("DELETE", ["tables", key]) => match store.drop_table(key) {
            true => Response::json(200, &json!({ "dropped": key })),
            false => not_found_table(key),
        },
        ("GET", ["tables", key, "records"]) => records(shared, key),
        ("GET", ["requests"]) => match serde_json::to_value(shared.log.entries()) {
            Ok(v) => Response::json(200, &v),
            Err(e) => Response::detail(500, e.to_string()),
        },
        ("DELETE", ["requests"]) => {
            shared.log.clear();
            Response::json(200, &json!({ "cleared": true }))
        }
        ("GET", ["imports"]) => Response::json(200, &store.imports_json()),
        ("POST", ["imports", "flush"]) => {
            store.flush();
            Response::json(200, &store.imports_json())
        }
        ("GET", ["faults"]) => Response::json(200, &shared.faults.list()),
        ("POST", ["faults"]) => match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => match shared.faults.add(&v) {
                Ok(n) => {
                    Response::json(200, &json!({ "added": n, "faults": shared.faults.list() }))
                }
                Err(e) => Response::detail(400, e),
            },
            Err(e) => Response::detail(400, format!("Body must be JSON: {e}")),
        },
        ("DELETE", ["faults"]) => {
            shared.faults.clear();
            Response::json(200, &json!({ "cleared": true }))
        }
        ("GET", ["settings"]) => Response::json(200, &shared.settings.to_json()),
        ("PUT", ["settings"]) => match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => match shared.settings.update(&v) {
                Ok(()) => Response::json(200, &shared.settings.to_json()),
                Err(e) => Response::detail(400, e),
            },
            Err(e) => Response::detail(400, format!("Body must be JSON: {e}")),
        },
        ("GET", ["stats"]) => Response::json(200, &shared.stats.to_json()),
        ("POST", ["reset"]) => {
            store.reset();
            shared.faults.clear();
            shared.log.clear();
            shared.settings.reset();
            shared.stats.reset();
            Response::json(200, &json!({ "reset": true }))
        }
        ("POST", ["shutdown"]) => {
            shared.request_stop();
            Response::json(200, &json!({ "stopping": true }))
        }
        _ => Response::detail(404, "Not Found"),
    }
}

/// 404 for an unknown table.
fn not_found_table(key: &str) -> Response {
    Response::detail(404, format!("Data table '{key}' not found"))
}

/// A table's definition plus its key and record count.
fn table_summary(shared: &Shared, key: &str) -> Option<Value> {
    let table = shared.store.table(key)?;
    let count = table
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    let mut doc = table.def.to_json();
    doc["data_table_key"] = json!(key);
    doc["record_count"] = json!(count);
    Some(doc)
}

/// All records of a table as a JSON array, in id order (ids compared as text).
fn records(shared: &Shared, key: &str) -> Response {
    let Some(table) = shared.store.table(key) else {
        return not_found_table(key);
    };
    let records = table.records.lock().unwrap_or_else(|e| e.into_inner());
    let size: usize = records.values().map(|r| r.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (i, text) in records.values().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(text.as_bytes());
    }
    body.push(b']');
    drop(records);
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    }
}

/// `PUT /_fake/tables/{key}` with `{"id_field", "name_field", "user_key", "fields": {key: type}}`.
fn define_json(shared: &Shared, key: &str, req: &Request) -> Response {
    let doc: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Response::detail(400, format!("Body must be JSON: {e}")),
    };
    let text = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let user_key = match doc.get("user_key") {
        None | Some(Value::Null) => UserKey::Email,
        Some(v) => match v.as_str().and_then(UserKey::parse) {
            Some(k) => k,
            None => return Response::detail(400, "user_key must be \"email\" or \"id\""),
        },
    };
    let empty = Map::new();
    let fields_obj = match doc.get("fields") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Response::detail(400, "fields must be an object of field: type"),
    };
    let mut fields = Vec::new();
    for (name, ty) in fields_obj {
        match ty.as_str().and_then(FieldType::parse) {
            Some(t) => fields.push((name.clone(), t)),
            None => return Response::detail(400, format!("unknown type {ty} for field '{name}'")),
        }
    }
    match TableDef::new(&text("id_field"), &text("name_field"), user_key, fields) {
        Ok(def) => {
            shared.store.define_table(key, def);
            table_summary(shared, key)
                .map_or_else(|| not_found_table(key), |d| Response::json(200, &d))
        }
        Err(e) => Response::detail(400, e),
    }
}

/// `PUT /_fake/tables/{key}/csv?types=f:t,...&id_field=&name_field=&user_key=` with a CSV
/// body: the header row names the fields, the other rows become the table's content.
fn define_csv(shared: &Shared, key: &str, req: &Request) -> Response {
    let params: Map<String, Value> = query_pairs(&req.query)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let param = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_string);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(req.body.as_slice());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        Err(e) => return Response::detail(400, format!("Invalid CSV header: {e}")),
    };
    let id_field = param("id_field")
        .or_else(|| headers.first().cloned())
        .unwrap_or_default();
    let name_field = param("name_field")
        .or_else(|| headers.get(1).cloned())
        .unwrap_or_default();
    let user_key = match param("user_key").as_deref().map(UserKey::parse) {
        None => UserKey::Email,
        Some(Some(k)) => k,
        Some(None) => return Response::detail(400, "user_key must be email or id"),
    };
    let fields = match csv_fields(&param("types").unwrap_or_default(), &headers) {
        Ok(f) => f,
        Err(e) => return Response::detail(400, e),
    };
    for required in [&id_field, &name_field] {
        if !headers.contains(required) {
            return Response::detail(400, format!("CSV has no column '{required}'"));
        }
    }
    let def = match TableDef::new(&id_field, &name_field, user_key, fields) {
        Ok(d) => d,
        Err(e) => return Response::detail(400, e),
    };
    let rows = match csv_rows(&mut reader, &headers, &def) {
        Ok(r) => r,
        Err(e) => return Response::detail(400, e),
    };
    let table = shared.store.define_table(key, def);
    let mut records = table.records.lock().unwrap_or_else(|e| e.into_inner());
    for (id, text) in rows {
        upsert(&mut records, id, text);
    }
    drop(records);
    table_summary(shared, key).map_or_else(|| not_found_table(key), |d| Response::json(200, &d))
}

/// Each CSV column with its type: as `types` (`field:type,…`) says, else string.
fn csv_fields(types: &str, headers: &[String]) -> Result<Vec<(String, FieldType)>, String> {
    let mut given = std::collections::HashMap::new();
    for item in types.split(',').filter(|s| !s.trim().is_empty()) {
        let Some((field, ty)) = item.split_once(':') else {
            return Err(format!("types entry '{item}' is not field:type"));
        };
        let field = field.trim();
        if !headers.iter().any(|h| h == field) {
            return Err(format!("types names '{field}', which is not a CSV column"));
        }
        let Some(t) = FieldType::parse(ty) else {
            return Err(format!("unknown type '{ty}' for field '{field}'"));
        };
        given.insert(field.to_string(), t);
    }
    Ok(headers
        .iter()
        .map(|h| {
            (
                h.clone(),
                given.get(h).copied().unwrap_or(FieldType::String),
            )
        })
        .collect())
}

/// The CSV's rows as the table's records (id and JSON text), parsed as a bulk request's would
/// be; the first row that fails says its line.
fn csv_rows(
    reader: &mut csv::Reader<&[u8]>,
    headers: &[String],
    def: &TableDef,
) -> Result<Vec<(String, String)>, String> {
    let mut rows = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("CSV line {line}: {e}"))?;
        let record: Map<String, Value> = headers
            .iter()
            .zip(row.iter())
            .map(|(h, cell)| (h.clone(), csv_cell(def.field_type(h), cell)))
            .collect();
        let text = Value::Object(record).to_string();
        let parsed = serde_json::from_str::<RawRecord>(&text)
            .map_err(|e| e.to_string())
            .and_then(|r| def.parse_record(&r))
            .map_err(|e| format!("CSV line {line}: {e}"))?;
        rows.push(parsed);
    }
    Ok(rows)
}

/// Turns a CSV cell into the JSON value an admin's CSV import would give:
/// empty is null, numbers and booleans are converted when the field's type asks.
fn csv_cell(ty: Option<FieldType>, cell: &str) -> Value {
    if cell.is_empty() {
        return Value::Null;
    }
    match ty {
        Some(t) if t.is_numeric() => decimal(cell).map_or_else(|| json!(cell), Value::Number),
        Some(FieldType::Bool) => match cell.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => json!(cell),
        },
        _ => json!(cell),
    }
}

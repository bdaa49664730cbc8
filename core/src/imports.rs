//! Qobra's answers about imports (`docs/qobra-api.md` §5, §8): the `import_id` a bulk push
//! returns, and the `data_import` document of `GET /v1/imports/{id}` with its per-row parsing
//! errors.
//!
//! Parsing is lenient on purpose: unknown fields are ignored, optional ones may be missing or
//! null, ids and counts may come as numbers or strings, and an unknown status is kept as
//! [`ImportState::Other`] rather than failing the run that only wanted to read it.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Where an import stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportState {
    /// Waiting for its debounce delay; more requests may still join it.
    Scheduled,
    /// Being applied.
    Started,
    /// Done (with or without errors).
    Finished,
    /// A status this version does not know.
    #[serde(other)]
    Other,
}

/// One import, as `data_import` describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImportStatus {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub launched_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default = "other_state", deserialize_with = "lenient_state")]
    pub status: ImportState,
    /// Percent done.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: Option<f64>,
    /// One entry per data table the import touches (imports stack).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data_tables_details: Vec<TableImport>,
}

/// What an import did to one data table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TableImport {
    /// `api`, `csv` or `integration`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default = "other_state", deserialize_with = "lenient_state")]
    pub status: ImportState,
    #[serde(default)]
    pub data_table_key: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub progress: Option<f64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub number_of_records: Option<u64>,
    #[serde(default)]
    pub error: Option<ImportError>,
}

/// Why (part of) an import failed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImportError {
    /// E.g. `ParsingError`.
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub parsing_error_details: Vec<ParsingError>,
}

/// A row Qobra could not parse: where, what, and why.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParsingError {
    /// 1-based line within the import.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub line_number: Option<u64>,
    /// The record as Qobra saw it.
    #[serde(default)]
    pub row: Option<Value>,
    /// E.g. `Can't parse 'AAAAA' as float for user attribute amount`.
    #[serde(default)]
    pub details: Option<String>,
}

impl ImportStatus {
    /// Whether the import is over (its outcome is final).
    pub fn is_finished(&self) -> bool {
        self.status == ImportState::Finished
    }

    /// Every parsing error of every table, with the table's key.
    pub fn parsing_errors(&self) -> impl Iterator<Item = (Option<&str>, &ParsingError)> {
        self.data_tables_details.iter().flat_map(|table| {
            table
                .error
                .iter()
                .flat_map(|e| e.parsing_error_details.iter())
                .map(move |p| (table.data_table_key.as_deref(), p))
        })
    }

    /// The rows a finished import rejected, as `run_errors` keeps them: (line number, row,
    /// details) for each parsing error, and one row without line for a table whose import
    /// failed without listing any.
    pub fn error_rows(&self) -> Vec<(Option<u64>, Option<serde_json::Value>, String)> {
        let mut rows: Vec<_> = self
            .parsing_errors()
            .map(|(_, p)| {
                (
                    p.line_number,
                    p.row.clone(),
                    p.details.clone().unwrap_or_else(|| "parsing error".into()),
                )
            })
            .collect();
        for t in &self.data_tables_details {
            if let Some(err) = t
                .error
                .as_ref()
                .filter(|e| e.parsing_error_details.is_empty())
            {
                rows.push((
                    None,
                    None,
                    format!(
                        "{}: {}",
                        err.title.clone().unwrap_or_default(),
                        err.description.clone().unwrap_or_default()
                    ),
                ));
            }
        }
        rows
    }
}

/// The body of `GET /v1/imports/{id}`: `{"data_import": {...}}`.
#[derive(Deserialize)]
struct Envelope {
    data_import: ImportStatus,
}

/// The body of a bulk push: `{"import_id": ...}`.
#[derive(Deserialize)]
struct BulkAnswer {
    #[serde(deserialize_with = "string_or_number")]
    import_id: String,
}

/// Parses the answer of `GET /v1/imports/{id}`.
pub fn parse_import_status(body: &[u8]) -> Result<ImportStatus, serde_json::Error> {
    serde_json::from_slice::<Envelope>(body).map(|e| e.data_import)
}

/// Parses the answer of `POST …/records/bulk` into its import id.
pub fn parse_import_id(body: &[u8]) -> Result<String, serde_json::Error> {
    serde_json::from_slice::<BulkAnswer>(body).map(|a| a.import_id)
}

/// The status given to a missing or null `status`.
fn other_state() -> ImportState {
    ImportState::Other
}

/// A status string, with null read as unknown.
fn lenient_state<'de, D: Deserializer<'de>>(d: D) -> Result<ImportState, D::Error> {
    Ok(Option::<ImportState>::deserialize(d)?.unwrap_or(ImportState::Other))
}

/// An identifier sent as a string or as a number.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

/// A count sent as a number, a numeric string, or null; anything else reads as unknown.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A fraction or percentage sent as a number, a numeric string, or null.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A list that may be null.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_import_with_parsing_errors() {
        let body = br#"{"data_import": {
            "id": "imp-7", "created_at": "2026-03-31T10:00:00Z", "launched_at": "2026-03-31T10:00:05Z",
            "finished_at": "2026-03-31T10:00:06Z", "status": "finished", "progress": 100,
            "unknown_field": {"x": 1},
            "data_tables_details": [{
                "type": "api", "status": "finished", "data_table_key": "deals", "progress": 100.0,
                "number_of_records": 2,
                "error": {"title": "ParsingError",
                          "description": "Can't parse 'AAAAA' as float for user attribute amount",
                          "parsing_error_details": [
                              {"line_number": 3, "row": {"id": "3", "amount": "AAAAA"},
                               "details": "Can't parse 'AAAAA' as float for user attribute amount"}]}
            }]}}"#;
        let status = parse_import_status(body).unwrap();
        assert!(status.is_finished());
        assert_eq!(status.id, "imp-7");
        assert_eq!(status.progress, Some(100.0));
        let table = &status.data_tables_details[0];
        assert_eq!(table.kind.as_deref(), Some("api"));
        assert_eq!(table.number_of_records, Some(2));
        let errors: Vec<_> = status.parsing_errors().collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, Some("deals"));
        assert_eq!(errors[0].1.line_number, Some(3));
        assert_eq!(errors[0].1.row.as_ref().unwrap()["amount"], "AAAAA");
        assert!(errors[0].1.details.as_deref().unwrap().contains("AAAAA"));
    }

    #[test]
    fn missing_null_and_odd_fields_are_tolerated() {
        let status = parse_import_status(
            br#"{"data_import": {"id": 12, "status": "scheduled", "progress": null,
                 "data_tables_details": [{"status": null, "number_of_records": null, "error": null},
                                         {"status": "queued", "number_of_records": "5",
                                          "error": {"parsing_error_details": null}}]}}"#,
        )
        .unwrap();
        assert_eq!(status.id, "12");
        assert_eq!(status.status, ImportState::Scheduled);
        assert!(!status.is_finished());
        assert_eq!(status.progress, None);
        assert_eq!(status.data_tables_details[0].status, ImportState::Other);
        assert_eq!(status.data_tables_details[1].status, ImportState::Other);
        assert_eq!(status.data_tables_details[1].number_of_records, Some(5));
        assert_eq!(status.parsing_errors().count(), 0);

        let bare = parse_import_status(br#"{"data_import": {"id": "x"}}"#).unwrap();
        assert_eq!(bare.status, ImportState::Other);
        assert!(bare.data_tables_details.is_empty());
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(parse_import_status(b"").is_err());
        assert!(parse_import_status(b"<html>").is_err());
        assert!(parse_import_status(br#"{"id": "x"}"#).is_err());
        assert!(parse_import_status(br#"{"data_import": {"id": null}}"#).is_err());
    }

    #[test]
    fn import_ids() {
        assert_eq!(parse_import_id(br#"{"import_id": "abc"}"#).unwrap(), "abc");
        assert_eq!(
            parse_import_id(br#"{"import_id": 42, "x": 1}"#).unwrap(),
            "42"
        );
        assert!(parse_import_id(br#"{"id": "abc"}"#).is_err());
        assert!(parse_import_id(b"[]").is_err());
        assert!(parse_import_id(br#"{"import_id": null}"#).is_err());
    }
}

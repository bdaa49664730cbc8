//! Wire format: how a row becomes a Qobra record (`docs/qobra-api.md` §4, §6.3, §6.4).
//!
//! The reader hands each value over as the text Postgres prints for it, under fixed settings
//! (`DateStyle = ISO`, `TimeZone = UTC`, money cast to numeric). One normalisation step turns that
//! text into a [`Cell`], which two writers print: JSON for the push and `preview()`, CSV for
//! `csv_template()`. Our reading of what Qobra's public reference leaves open lives here:
//! - a record is a JSON object keyed by field API keys; the id and name fields are sent as strings;
//! - numbers keep every digit Postgres prints (JSON numbers have no precision limit);
//! - timestamps are sent in UTC with a `Z`; a timestamp without time zone is taken as UTC;
//! - user values are strings, whether emails or identifiers.

use crate::mapping::{ColumnMapping, Role, UserKey};
use crate::requirements::{email_problem, id_problem, is_plain_email};
use crate::types::QobraType;
use std::borrow::Cow;

/// How one column's text is checked and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The record id: required, sent as a string.
    Id,
    /// A string field (also the name field, picklists and bit strings).
    Text,
    /// A finite number, written with all its digits.
    Number,
    /// A boolean.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A point in time, `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    Timestamp,
    /// A user given by email.
    UserEmail,
    /// A user given by identifier.
    UserId,
}

impl Encoding {
    /// The encoding of a synced column under the registration's user key.
    pub fn for_column(column: &ColumnMapping, user_key: UserKey) -> Encoding {
        use crate::types::PgType::*;
        match (column.role, column.qobra_type, column.kind) {
            (Role::Id, _, _) => Encoding::Id,
            (Role::Name, _, _) => Encoding::Text,
            (_, Some(QobraType::User), _) => match user_key {
                UserKey::Email => Encoding::UserEmail,
                UserKey::Id => Encoding::UserId,
            },
            (_, Some(QobraType::Bool), _) => Encoding::Bool,
            (_, Some(QobraType::Date), Some(Date)) => Encoding::Date,
            (_, Some(QobraType::Date), _) => Encoding::Timestamp,
            (_, Some(QobraType::Number | QobraType::Amount | QobraType::Percentage), _) => {
                Encoding::Number
            }
            _ => Encoding::Text,
        }
    }
}

/// One field of a record: its key (already JSON-escaped) and how its value is written.
#[derive(Debug, Clone)]
pub struct WireField {
    pub column: String,
    pub field_key: String,
    pub encoding: Encoding,
    json_key: String,
}

impl WireField {
    /// A field sent under `field_key` from `column`.
    pub fn new(column: &str, field_key: &str, encoding: Encoding) -> WireField {
        WireField {
            column: column.to_owned(),
            field_key: field_key.to_owned(),
            encoding,
            json_key: serde_json::to_string(field_key).expect("a string always serialises"),
        }
    }
}

/// A value after normalisation, ready for either writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Str(Cow<'a, str>),
    /// A string already known to need no JSON escape (a checked date, a plain email).
    Plain(&'a str),
    /// A JSON number, as text.
    Num(&'a str),
    Bool(bool),
    /// A point in time in UTC, as its date and time of day: written `{date}T{time}Z`.
    Utc(&'a str, &'a str),
}

/// Why a row cannot be sent: the column and the reason, for `run_errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub column: String,
    pub reason: String,
}

/// Turns Postgres' text for a value into the cell Qobra receives, or the reason it cannot.
/// (Inlined into the record writer's loop: it runs for every value pushed.)
#[inline(always)]
pub fn normalize(encoding: Encoding, text: Option<&str>) -> Result<Cell<'_>, String> {
    let Some(text) = text else {
        return match encoding {
            Encoding::Id => Err("the id is NULL".into()),
            _ => Ok(Cell::Null),
        };
    };
    match encoding {
        Encoding::Id => match id_problem(text) {
            None => Ok(Cell::Str(Cow::Borrowed(text))),
            Some(p) => Err(p),
        },
        Encoding::Text => Ok(Cell::Str(Cow::Borrowed(text))),
        Encoding::Number => {
            if is_json_number(text) {
                Ok(Cell::Num(text))
            } else {
                Err(format!(
                    "{text} is not a finite number, which Qobra cannot take"
                ))
            }
        }
        Encoding::Bool => match text {
            "t" | "true" => Ok(Cell::Bool(true)),
            "f" | "false" => Ok(Cell::Bool(false)),
            other => Err(format!("{other} is not a boolean")),
        },
        Encoding::Date => {
            if is_plain_date(text) {
                Ok(Cell::Plain(text))
            } else {
                Err(format!(
                    "date {text} cannot be sent: Qobra takes dates from year 1 to 9999"
                ))
            }
        }
        Encoding::Timestamp => iso_timestamp(text).map(|(date, time)| Cell::Utc(date, time)),
        Encoding::UserEmail if is_plain_email(text) => Ok(Cell::Plain(text)),
        Encoding::UserEmail => match email_problem(text) {
            None => Ok(Cell::Str(Cow::Borrowed(text))),
            Some(p) => Err(p),
        },
        Encoding::UserId => {
            if text.trim().is_empty() {
                Err("the user value is empty".into())
            } else {
                Ok(Cell::Str(Cow::Borrowed(text)))
            }
        }
    }
}

/// Whether `s` is a JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Whether `s` is `YYYY-MM-DD` with a four-digit year (no BC, no infinity).
fn is_plain_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && &s[..4] != "0000"
}

/// Splits an ISO timestamp printed in UTC (`2026-03-31 12:00:00.5+00`) into its date and time
/// of day (`2026-03-31`, `12:00:00.5`), checking both.
fn iso_timestamp(text: &str) -> Result<(&str, &str), String> {
    let cannot =
        || format!("timestamp {text} cannot be sent: Qobra takes dates from year 1 to 9999");
    // `YYYY-MM-DD ` first: any other shape (a year past 9999, BC, infinity) cannot be sent.
    if text.as_bytes().get(10) != Some(&b' ') || !is_plain_date(&text[..10]) {
        return Err(cannot());
    }
    let (date, rest) = (&text[..10], &text[11..]);
    let time = rest.strip_suffix("+00").unwrap_or(rest);
    let well_formed = time.len() >= 8
        && time.bytes().enumerate().all(|(i, c)| match i {
            2 | 5 => c == b':',
            8 => c == b'.',
            _ => c.is_ascii_digit(),
        });
    if !well_formed {
        return Err(format!("timestamp {text} is not in UTC ISO form"));
    }
    Ok((date, time))
}

/// How the records of a bulk request are framed in its body: the destination's choice. Qobra's
/// records endpoint shows no literal body; every other v1 bulk endpoint of its API takes
/// `{"data": [...]}` (docs/qobra-api.md §5), so that is the default, the bare array the other
/// choice. Chunks are built as bare arrays and framed when sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// `{"data": [records]}`.
    #[default]
    Data,
    /// `[records]`.
    Array,
}

/// What `BodyFormat::Data` writes before the array of records.
const DATA_PREFIX: &[u8] = br#"{"data":"#;
/// What `BodyFormat::Data` writes after it.
const DATA_SUFFIX: &[u8] = b"}";

impl BodyFormat {
    /// Every format, in the order messages list them.
    pub const ALL: [BodyFormat; 2] = [BodyFormat::Data, BodyFormat::Array];

    /// The name `set_destination(body_format => …)` takes and `destination_status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Data => "data",
            BodyFormat::Array => "array",
        }
    }

    /// The format named `name`, or the error listing the names.
    pub fn parse(name: &str) -> Result<BodyFormat, crate::error::Error> {
        BodyFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<String> = BodyFormat::ALL
                    .iter()
                    .map(|f| format!("'{}'", f.as_str()))
                    .collect();
                crate::error::Error::new(
                    crate::error::SqlState::InvalidParameterValue,
                    format!("body_format must be {}, not {}", names.join(" or "), crate::error::quoted(name)),
                )
                .hint("'data' sends {\"data\": [records]}, as Qobra's other bulk endpoints take; 'array' sends the bare array.")
            })
    }

    /// The bytes the framing adds around the array of records.
    pub fn overhead(self) -> usize {
        match self {
            BodyFormat::Data => DATA_PREFIX.len() + DATA_SUFFIX.len(),
            BodyFormat::Array => 0,
        }
    }

    /// The body of a request whose records are the JSON array `array`.
    pub fn frame(self, array: bytes::Bytes) -> bytes::Bytes {
        match self {
            BodyFormat::Array => array,
            BodyFormat::Data => {
                let mut body = Vec::with_capacity(array.len() + self.overhead());
                body.extend_from_slice(DATA_PREFIX);
                body.extend_from_slice(&array);
                body.extend_from_slice(DATA_SUFFIX);
                body.into()
            }
        }
    }
}

/// The bytes of JSON a rejected row is kept in for `run_errors`, its id aside (so that the 1,000
/// rejections a run keeps stay within a few MiB, whatever the source's width).
pub const KEPT_ROW_BYTES: usize = 4096;
/// The fewest characters kept of a value of a rejected row that is kept at all.
pub const KEPT_VALUE_CHARS_MIN: usize = 8;
/// The most characters of a rejected row's id always kept.
pub const KEPT_ID_CHARS: usize = 1024;
/// The key under which a rejected row says how many of its columns were left out.
pub const LEFT_OUT_KEY: &str = "…";

/// The length of a JSON value as text.
fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}

/// `text` cut to `chars` characters, with `…` in place of what was left out.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Writes rows as JSON records; keeps the field list so each row is one call.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    pub fields: Vec<WireField>,
}

impl RecordEncoder {
    /// An encoder for the synced columns of a mapping, in wire order.
    pub fn from_mapping(rows: &[ColumnMapping], user_key: UserKey) -> RecordEncoder {
        let fields = crate::mapping::wire_order(rows)
            .into_iter()
            .map(|c| {
                WireField::new(
                    &c.column_name,
                    c.field_key.as_deref().unwrap_or(&c.column_name),
                    Encoding::for_column(c, user_key),
                )
            })
            .collect();
        RecordEncoder { fields }
    }

    /// Appends one record for `values` (one per field, in field order) to `out`.
    /// On a rejection `out` is left as it was.
    pub fn encode(&self, values: &[Option<&str>], out: &mut Vec<u8>) -> Result<(), Rejection> {
        debug_assert_eq!(values.len(), self.fields.len());
        let start = out.len();
        out.push(b'{');
        for (i, (field, value)) in self.fields.iter().zip(values).enumerate() {
            let cell = match normalize(field.encoding, *value) {
                Ok(cell) => cell,
                Err(reason) => {
                    out.truncate(start);
                    return Err(Rejection {
                        column: field.column.clone(),
                        reason,
                    });
                }
            };
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(field.json_key.as_bytes());
            out.push(b':');
            write_json(&cell, out);
        }
        out.push(b'}');
        Ok(())
    }

    /// The header row of the CSV template: the field keys in wire order.
    pub fn csv_header(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.field_key.as_str()).collect()
    }

    /// A row's values as they were read, by column (text, or null), as `run_errors` keeps a
    /// rejected row: each value cut to its share of [`KEPT_ROW_BYTES`] (the id to at least
    /// [`KEPT_ID_CHARS`] characters), and columns left out past the budget, so that the rows a
    /// run keeps stay small whatever the source's width.
    pub fn row_json(&self, values: &[Option<&str>]) -> serde_json::Value {
        // Each value gets its share of the budget, the id at least its own; once the budget is
        // spent (escapes and keys count), the remaining columns are left out, and counted.
        let share = (KEPT_ROW_BYTES / self.fields.len().max(1)).max(KEPT_VALUE_CHARS_MIN);
        let mut row = serde_json::Map::new();
        let (mut size, mut left_out) = (2, 0);
        for (field, value) in self.fields.iter().zip(values) {
            let is_id = field.encoding == Encoding::Id;
            let cap = if is_id {
                share.max(KEPT_ID_CHARS)
            } else {
                share
            };
            let value = value.map_or(serde_json::Value::Null, |s| cut(s, cap).into());
            let cost = json_len(&field.column.clone().into()) + json_len(&value) + 2;
            if !is_id && size + cost > KEPT_ROW_BYTES {
                left_out += 1;
                continue;
            }
            size += cost;
            row.insert(field.column.clone(), value);
        }
        if left_out > 0 {
            let note = format!("{left_out} more columns left out");
            row.insert(LEFT_OUT_KEY.to_owned(), note.into());
        }
        row.into()
    }

    /// A row by its id alone (`{id column: id text}`), as `run_errors` keeps a row too large to
    /// keep whole; `{}` without an id field.
    pub fn id_json(&self, values: &[Option<&str>]) -> serde_json::Value {
        let mut row = serde_json::Map::new();
        if let Some((field, value)) = self
            .fields
            .iter()
            .zip(values)
            .find(|(f, _)| f.encoding == Encoding::Id)
        {
            let value = value.map_or(serde_json::Value::Null, |s| cut(s, KEPT_ID_CHARS).into());
            row.insert(field.column.clone(), value);
        }
        row.into()
    }

    /// The same for a record as encoded: its id under the id column, read back from the record.
    pub fn id_json_of_record(&self, record: &[u8]) -> serde_json::Value {
        let mut row = serde_json::Map::new();
        let parsed: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(record).ok();
        if let (Some(field), Some(mut parsed)) = (
            self.fields.iter().find(|f| f.encoding == Encoding::Id),
            parsed,
        ) {
            let value = parsed.remove(&field.field_key).unwrap_or_default();
            row.insert(field.column.clone(), value);
        }
        row.into()
    }

    /// One CSV row for `values`, or the reason the row would be rejected.
    pub fn csv_row(&self, values: &[Option<&str>]) -> Result<Vec<String>, Rejection> {
        self.fields
            .iter()
            .zip(values)
            .map(|(field, value)| match normalize(field.encoding, *value) {
                Ok(Cell::Null) => Ok(String::new()),
                Ok(Cell::Str(s)) => Ok(s.into_owned()),
                Ok(Cell::Plain(s)) => Ok(s.to_owned()),
                Ok(Cell::Num(n)) => Ok(n.to_owned()),
                Ok(Cell::Bool(b)) => Ok(b.to_string()),
                Ok(Cell::Utc(date, time)) => Ok(format!("{date}T{time}Z")),
                Err(reason) => Err(Rejection {
                    column: field.column.clone(),
                    reason,
                }),
            })
            .collect()
    }
}

/// Writes one cell as JSON.
#[inline(always)]
fn write_json(cell: &Cell<'_>, out: &mut Vec<u8>) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Str(s) => write_json_str(s, out),
        Cell::Plain(s) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        Cell::Num(n) => out.extend_from_slice(n.as_bytes()),
        Cell::Bool(true) => out.extend_from_slice(b"true"),
        Cell::Bool(false) => out.extend_from_slice(b"false"),
        // Checked digits and separators: nothing to escape.
        Cell::Utc(date, time) => {
            out.push(b'"');
            out.extend_from_slice(date.as_bytes());
            out.push(b'T');
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b"Z\"");
        }
    }
}

/// Writes `s` as a JSON string, byte for byte as serde_json does: `"` and `\\` and the control
/// characters escaped (`\\n`, `\\r`, `\\t`, `\\b`, `\\f`, else `\\u00xx`), everything else as
/// it is; the runs between escapes are copied at once. Most values need no escape at all.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes records into a CSV document with the given header.
pub fn csv_document(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(vec![]);
    writer
        .write_record(header)
        .expect("writing to a Vec cannot fail");
    for row in rows {
        writer
            .write_record(row)
            .expect("writing to a Vec cannot fail");
    }
    let bytes = writer.into_inner().expect("flushing a Vec cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> RecordEncoder {
        RecordEncoder {
            fields: vec![
                WireField::new("id", "id", Encoding::Id),
                WireField::new("title", "name", Encoding::Text),
                WireField::new("owner", "owner", Encoding::UserEmail),
                WireField::new("amount", "amount", Encoding::Number),
                WireField::new("close", "close_date", Encoding::Date),
                WireField::new("at", "at", Encoding::Timestamp),
                WireField::new("won", "won", Encoding::Bool),
            ],
        }
    }

    fn encode(values: &[Option<&str>]) -> Result<serde_json::Value, Rejection> {
        let mut out = b"[".to_vec();
        encoder().encode(values, &mut out)?;
        out.push(b']');
        Ok(serde_json::from_slice::<serde_json::Value>(&out).unwrap()[0].clone())
    }

    #[test]
    fn a_record_is_keyed_by_field_keys_with_typed_values() {
        let mut out = vec![];
        encoder()
            .encode(
                &[
                    Some("42"),
                    Some("Acme \"renewal\"\n✓"),
                    Some("ana@acme.com"),
                    Some("12345678901234567890123456789012345678.25"),
                    Some("2026-03-31"),
                    Some("2026-03-31 12:00:00.5+00"),
                    Some("t"),
                ],
                &mut out,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id":"42","name":"Acme \"renewal\"\n✓","owner":"ana@acme.com","amount":12345678901234567890123456789012345678.25,"close_date":"2026-03-31","at":"2026-03-31T12:00:00.5Z","won":true}"#
        );
    }

    #[test]
    fn nulls_are_json_null_but_a_null_id_is_rejected() {
        let v = encode(&[Some("1"), None, None, None, None, None, None]).unwrap();
        assert!(v["name"].is_null() && v["amount"].is_null() && v["won"].is_null());
        let err = encode(&[None, None, None, None, None, None, None]).unwrap_err();
        assert_eq!(err.column, "id");
    }

    #[test]
    fn unrepresentable_values_reject_the_row_with_a_reason() {
        let base = [
            Some("1"),
            Some("x"),
            Some("a@b.co"),
            Some("1"),
            Some("2026-01-01"),
            Some("2026-01-01 00:00:00"),
            Some("f"),
        ];
        for (i, bad) in [
            (3, "NaN"),
            (3, "Infinity"),
            (3, "-Infinity"),
            (4, "infinity"),
            (4, "0044-03-15 BC"),
            (4, "10000-01-01"),
            (5, "-infinity"),
            (2, "ana"),
            (2, "ana@acme"),
            (2, " ana@acme.com"),
        ] {
            let mut values = base;
            values[i] = Some(bad);
            let mut out = b"keep".to_vec();
            let err = encoder().encode(&values, &mut out).unwrap_err();
            assert_eq!(out, b"keep", "output untouched");
            assert_eq!(err.column, encoder().fields[i].column, "{bad}");
            assert!(!err.reason.is_empty());
        }
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        let mut every_ascii: String = (0u8..128).map(char::from).collect();
        every_ascii.push_str("é—\u{2028}\u{1F600}\"\\");
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\r\ttab\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            every_ascii.as_str(),
        ] {
            let mut ours = Vec::new();
            write_json_str(s, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn json_numbers() {
        for ok in [
            "0",
            "-1",
            "1.5",
            "1e+30",
            "-2.5E-7",
            "123.4500",
            "12345678901234567890123456789012345678",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "NaN", "Infinity", "1e", "+1", "1,000", "$5.00", "1 ",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_become_utc_iso() {
        let json = |text| {
            let mut out = vec![];
            write_json(
                &normalize(Encoding::Timestamp, Some(text)).unwrap(),
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(json("1969-07-20 20:17:40+00"), r#""1969-07-20T20:17:40Z""#);
        assert_eq!(json("2026-03-31 12:00:00.5"), r#""2026-03-31T12:00:00.5Z""#);
        assert!(iso_timestamp("2026-03-31 12:00:00+01").is_err());
        assert!(iso_timestamp("infinity").is_err());
    }

    #[test]
    fn csv_rows_use_the_same_normalisation() {
        let row = encoder()
            .csv_row(&[
                Some("7"),
                Some("a,b"),
                None,
                Some("1.50"),
                Some("2026-01-02"),
                None,
                Some("false"),
            ])
            .unwrap();
        let doc = csv_document(&encoder().csv_header(), &[row]);
        assert_eq!(
            doc,
            "id,name,owner,amount,close_date,at,won\n7,\"a,b\",,1.50,2026-01-02,,false\n"
        );
    }

    #[test]
    fn a_row_too_large_is_kept_by_its_id() {
        let enc = RecordEncoder {
            fields: vec![
                WireField::new("title", "name", Encoding::Text),
                WireField::new("deal_id", "id", Encoding::Id),
            ],
        };
        let values = [Some("a very long name"), Some("42")];
        use serde_json::json;
        assert_eq!(enc.id_json(&values), json!({"deal_id": "42"}));
        let mut out = vec![];
        enc.encode(&values, &mut out).unwrap();
        assert_eq!(enc.id_json_of_record(&out), json!({"deal_id": "42"}));
        assert_eq!(enc.id_json_of_record(b"not json"), json!({}));
    }

    #[test]
    fn a_rejected_row_is_kept_cut_to_a_bounded_size() {
        // A row of wide values (8 MB each, say) is kept with each value cut to its share, the id
        // to at least KEPT_ID_CHARS, a cut marked with `…`; short values stay whole.
        let wide = "é".repeat(100_000);
        let long_id = "7".repeat(5000);
        let row = encoder().row_json(&[
            Some(&long_id),
            Some(&wide),
            Some("ana@acme.com"),
            Some("NaN"),
            Some(&wide),
            None,
            Some(&wide),
        ]);
        let text = row.to_string();
        assert!(
            text.len() <= KEPT_ROW_BYTES + KEPT_ID_CHARS + 16,
            "{} bytes",
            text.len()
        );
        let id = row["id"].as_str().unwrap();
        assert_eq!(id.chars().count(), KEPT_ID_CHARS + 1);
        assert!(id.ends_with('…') && long_id.starts_with(id.trim_end_matches('…')));
        let title = row["title"].as_str().unwrap();
        assert_eq!(title.chars().count(), KEPT_ROW_BYTES / 7 + 1);
        assert!(title.ends_with('…'));
        assert_eq!(row["owner"], "ana@acme.com");
        assert_eq!(row["amount"], "NaN");
        assert_eq!(encoder().id_json(&[Some(&long_id)])["id"], row["id"]);
    }

    #[test]
    fn a_rejected_row_of_many_columns_of_escaped_text_stays_within_its_budget() {
        // 1,600 columns of control characters (six bytes each in JSON): the budget is spent
        // early, the id is kept whatever its place, and the rest is counted as left out.
        let mut fields: Vec<WireField> = (0..1599)
            .map(|i| WireField::new(&format!("column_{i}"), &format!("c{i}"), Encoding::Text))
            .collect();
        fields.push(WireField::new("id", "id", Encoding::Id));
        let enc = RecordEncoder { fields };
        let noise = "\u{1}".repeat(10);
        let values: Vec<Option<&str>> = (0..1599)
            .map(|_| Some(noise.as_str()))
            .chain([Some("42")])
            .collect();
        let row = enc.row_json(&values);
        let text = row.to_string();
        assert!(text.len() <= KEPT_ROW_BYTES + 64, "{} bytes", text.len());
        assert_eq!(row["id"], "42");
        let note = row[LEFT_OUT_KEY].as_str().unwrap();
        assert!(note.ends_with("more columns left out"), "{note}");
    }

    #[test]
    fn a_body_frames_its_records_as_the_destination_chose() {
        let array = bytes::Bytes::from_static(br#"[{"id":"1"}]"#);
        assert_eq!(
            &BodyFormat::Data.frame(array.clone())[..],
            br#"{"data":[{"id":"1"}]}"#
        );
        assert_eq!(&BodyFormat::Array.frame(array.clone())[..], &array[..]);
        let framed = BodyFormat::Data.frame(array.clone());
        assert_eq!(framed.len(), array.len() + BodyFormat::Data.overhead());
        let parsed: serde_json::Value = serde_json::from_slice(&framed).unwrap();
        assert_eq!(parsed["data"][0]["id"], "1");
        assert_eq!(BodyFormat::default(), BodyFormat::Data);
        assert_eq!(BodyFormat::parse("array").unwrap(), BodyFormat::Array);
        let e = BodyFormat::parse("envelope").unwrap_err();
        assert!(e.message.contains("'data' or 'array'"), "{}", e.message);
    }
}

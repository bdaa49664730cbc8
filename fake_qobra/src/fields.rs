//! Table definitions and the per-field-type parsing rules that decide whether
//! a pushed record is stored or reported as a parsing error.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// A Qobra field type, chosen by an admin when the table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Picklist,
    Multipicklist,
    User,
    Number,
    Amount,
    Percentage,
    Date,
    Bool,
}

impl FieldType {
    /// Parses a type name as written in a table definition.
    pub fn parse(name: &str) -> Option<FieldType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "string" => FieldType::String,
            "picklist" => FieldType::Picklist,
            "multipicklist" => FieldType::Multipicklist,
            "user" => FieldType::User,
            "number" => FieldType::Number,
            "amount" => FieldType::Amount,
            "percentage" => FieldType::Percentage,
            "date" => FieldType::Date,
            "bool" | "boolean" => FieldType::Bool,
            _ => return None,
        })
    }

    /// The type's name as written in a table definition.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Picklist => "picklist",
            FieldType::Multipicklist => "multipicklist",
            FieldType::User => "user",
            FieldType::Number => "number",
            FieldType::Amount => "amount",
            FieldType::Percentage => "percentage",
            FieldType::Date => "date",
            FieldType::Bool => "bool",
        }
    }

    /// Whether values of this type are numeric.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Number | FieldType::Amount | FieldType::Percentage
        )
    }
}

/// How user values are keyed in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKey {
    Email,
    Id,
}

impl UserKey {
    /// Parses `email` or `id`.
    pub fn parse(name: &str) -> Option<UserKey> {
        match name.trim().to_ascii_lowercase().as_str() {
            "email" => Some(UserKey::Email),
            "id" => Some(UserKey::Id),
            _ => None,
        }
    }

    /// The key's name, `email` or `id`.
    pub fn name(self) -> &'static str {
        match self {
            UserKey::Email => "email",
            UserKey::Id => "id",
        }
    }
}

/// A data table's definition: its id and name fields and the type of each field.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub id_field: String,
    pub name_field: String,
    pub user_key: UserKey,
    /// Field API keys in definition order.
    pub order: Vec<String>,
    /// Type of each field, and its key already written as a JSON string.
    types: HashMap<String, (FieldType, String)>,
}

impl TableDef {
    /// Builds a definition; the id and name fields default to `string` when not typed.
    pub fn new(
        id_field: &str,
        name_field: &str,
        user_key: UserKey,
        fields: Vec<(String, FieldType)>,
    ) -> Result<TableDef, String> {
        if id_field.is_empty() || name_field.is_empty() {
            return Err("id_field and name_field must be non-empty".into());
        }
        let mut all = Vec::new();
        for key in [id_field, name_field] {
            if !fields.iter().any(|(k, _)| k == key) && !all.iter().any(|(k, _)| k == key) {
                all.push((key.to_string(), FieldType::String));
            }
        }
        all.extend(fields);
        let mut order = Vec::new();
        let mut types = HashMap::new();
        for (key, ty) in all {
            if key.is_empty() {
                return Err("field API keys must be non-empty".into());
            }
            let quoted = Value::String(key.clone()).to_string();
            if types.insert(key.clone(), (ty, quoted)).is_some() {
                return Err(format!("field '{key}' is defined twice"));
            }
            order.push(key);
        }
        match types.get(id_field) {
            Some((FieldType::String | FieldType::Number, _)) => {}
            Some((t, _)) => {
                return Err(format!(
                    "id field must be string or number, not {}",
                    t.name()
                ))
            }
            None => {}
        }
        Ok(TableDef {
            id_field: id_field.to_string(),
            name_field: name_field.to_string(),
            user_key,
            order,
            types,
        })
    }

    /// The type of a field, if it is defined.
    pub fn field_type(&self, key: &str) -> Option<FieldType> {
        self.types.get(key).map(|(t, _)| *t)
    }

    /// The definition as JSON: `{id_field, name_field, user_key, fields: {key: type}}`.
    pub fn to_json(&self) -> Value {
        let fields: Map<String, Value> = self
            .order
            .iter()
            .map(|k| {
                let t = self.field_type(k).map_or("string", FieldType::name);
                (k.clone(), Value::from(t))
            })
            .collect();
        serde_json::json!({
            "id_field": self.id_field,
            "name_field": self.name_field,
            "user_key": self.user_key.name(),
            "fields": fields,
        })
    }

    /// Checks a pushed record: returns its id (as text) and the JSON object to store
    /// (known fields only, normalised), or the parsing error text.
    pub fn parse_record(&self, record: &RawRecord) -> Result<(String, String), String> {
        let entries = &record.0;
        let id_raw = entries
            .iter()
            .rev()
            .find(|(k, _)| k.0 == self.id_field)
            .map(|(_, v)| v.get())
            .filter(|v| *v != "null")
            .ok_or_else(|| format!("Missing value for id field {}", self.id_field))?;
        let id_type = self.field_type(&self.id_field).unwrap_or(FieldType::String);
        let id_json = parse_value(id_type, self.user_key, &self.id_field, id_raw)?;
        let id_text = match id_json.as_bytes().first() {
            Some(b'"') => unquote(&id_json).map_err(|e| format!("Bad id: {e}"))?,
            _ => id_json.into_owned(),
        };
        if id_text.trim().is_empty() {
            return Err(format!("Empty value for id field {}", self.id_field));
        }
        let mut out = String::with_capacity(record.len_hint());
        out.push('{');
        for (i, (key, raw)) in entries.iter().enumerate() {
            let Some((ty, quoted)) = self.types.get(key.0.as_ref()) else {
                continue;
            };
            if entries[i + 1..].iter().any(|(k, _)| k.0 == key.0) {
                continue; // a repeated key: the last one wins
            }
            let value = parse_value(*ty, self.user_key, &key.0, raw.get())?;
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(quoted);
            out.push(':');
            out.push_str(&value);
        }
        out.push('}');
        Ok((id_text, out))
    }
}

/// A record as sent, its values left as raw JSON text (parsed only where a rule needs it).
pub struct RawRecord<'a>(pub Vec<(Key<'a>, &'a RawValue)>);

impl RawRecord<'_> {
    /// The record as a JSON object, for error reports.
    pub fn to_value(&self) -> Value {
        let map: Map<String, Value> = self
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.0.to_string(),
                    serde_json::from_str(v.get()).unwrap_or(Value::Null),
                )
            })
            .collect();
        Value::Object(map)
    }

    /// A guess of the stored text's length, to size buffers.
    fn len_hint(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.0.len() + v.get().len() + 4)
            .sum::<usize>()
            + 2
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRecord<'a> {
    /// Accepts one JSON object, keeping its entries in order.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawRecordVisitor(std::marker::PhantomData))
    }
}

/// Visitor behind `RawRecord`.
struct RawRecordVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for RawRecordVisitor<'a> {
    type Value = RawRecord<'a>;

    /// What the visitor expects, for error messages.
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object (one record)")
    }

    /// Collects the object's entries.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord<'a>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(entry) = map.next_entry::<Key<'a>, &'a RawValue>()? {
            entries.push(entry);
        }
        Ok(RawRecord(entries))
    }
}

/// An object key, borrowed from the body unless it had escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    /// Reads a JSON string, borrowing it when possible.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

/// Visitor behind `Key`.
struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
    type Value = Key<'a>;

    /// What the visitor expects, for error messages.
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    /// A key without escapes, borrowed.
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    /// A key with escapes, copied.
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'a>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }
}

/// The content of a JSON string literal.
fn unquote(raw: &str) -> Result<String, String> {
    serde_json::from_str::<String>(raw).map_err(|e| e.to_string())
}

/// Applies one field type's parsing rule to a raw JSON value; returns the JSON
/// text to store.
pub fn parse_value<'r>(
    ty: FieldType,
    user_key: UserKey,
    field: &str,
    raw: &'r str,
) -> Result<Cow<'r, str>, String> {
    let kind = raw.as_bytes().first().copied().unwrap_or(b'n');
    if raw == "null" {
        return Ok(Cow::Borrowed(raw));
    }
    let text = || {
        if kind == b'"' {
            unquote(raw).unwrap_or_default()
        } else {
            raw.to_string()
        }
    };
    let fail = |what: &str| {
        Err(format!(
            "Can't parse '{}' as {what} for user attribute {field}",
            text()
        ))
    };
    let is_number = kind == b'-' || kind.is_ascii_digit();
    let is_bool = raw == "true" || raw == "false";
    match ty {
        FieldType::String | FieldType::Picklist | FieldType::Multipicklist => match kind {
            b'"' => Ok(Cow::Borrowed(raw)),
            _ if is_number || is_bool => Ok(Cow::Owned(format!("\"{raw}\""))),
            _ => fail("string"),
        },
        FieldType::Number | FieldType::Amount | FieldType::Percentage => match kind {
            _ if is_number => Ok(Cow::Borrowed(raw)),
            b'"' => match decimal(&text()) {
                Some(n) => Ok(Cow::Owned(n.to_string())),
                None => fail("float"),
            },
            _ => fail("float"),
        },
        FieldType::Date => match kind {
            b'"' if crate::clock::is_valid_date(&text()) => Ok(Cow::Borrowed(raw)),
            _ => fail("date"),
        },
        FieldType::Bool => match is_bool {
            true => Ok(Cow::Borrowed(raw)),
            false => fail("bool"),
        },
        FieldType::User => {
            let ok = match (user_key, kind) {
                (UserKey::Email, b'"') => looks_like_email(&text()),
                (UserKey::Id, b'"') => !text().trim().is_empty(),
                (UserKey::Id, _) => is_number && !raw.contains(['.', 'e', 'E']),
                (UserKey::Email, _) => false,
            };
            match (ok, user_key) {
                (true, _) => Ok(Cow::Borrowed(raw)),
                (false, UserKey::Email) => fail("user email"),
                (false, UserKey::Id) => fail("user id"),
            }
        }
    }
}

/// Parses decimal text (`-12`, `3.50`, `+1e3`, ` 7 `) into a JSON number.
pub fn decimal(text: &str) -> Option<Number> {
    let s = text.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'-' => ("-", &s[1..]),
        b'+' => ("", &s[1..]),
        _ => ("", s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let mut out = format!("{sign}{}", if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        out.push('e');
        out.push_str(e);
    }
    serde_json::from_str(&out).ok()
}

/// A loose email check: `local@domain.tld`, no spaces.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A table with one field of each type.
    fn table(user_key: UserKey) -> TableDef {
        let fields = [
            ("id", "number"),
            ("name", "string"),
            ("stage", "picklist"),
            ("tags", "multipicklist"),
            ("owner", "user"),
            ("qty", "number"),
            ("amount", "amount"),
            ("rate", "percentage"),
            ("close_date", "date"),
            ("won", "bool"),
        ]
        .iter()
        .map(|(k, t)| (k.to_string(), FieldType::parse(t).expect("type")))
        .collect();
        TableDef::new("id", "name", user_key, fields).expect("def")
    }

    /// Parses a JSON record against a table; returns the id and the stored object.
    fn parse(def: &TableDef, v: Value) -> Result<(String, Map<String, Value>), String> {
        let text = v.to_string();
        let record: RawRecord = serde_json::from_str(&text).expect("object");
        let (id, stored) = def.parse_record(&record)?;
        Ok((id, serde_json::from_str(&stored).expect("stored JSON")))
    }

    /// Well-typed values are stored, unknown keys dropped.
    #[test]
    fn accepts_well_typed_records() {
        let def = table(UserKey::Email);
        let (id, stored) = parse(
            &def,
            json!({"id": 42, "name": 7, "owner": "ana@acme.com", "amount": "1200.50",
                   "rate": 0.5, "close_date": "2026-03-31T12:00:00.000000Z", "won": true,
                   "tags": "a;b", "unknown": [1, 2]}),
        )
        .expect("ok");
        assert_eq!(id, "42");
        assert_eq!(stored["name"], json!("7"));
        assert_eq!(stored["amount"].to_string(), "1200.50");
        assert!(!stored.contains_key("unknown"));
        assert!(parse(&def, json!({"id": 1, "owner": null, "won": null})).is_ok());
    }

    /// Each field type refuses what it cannot parse, with Qobra-style text.
    #[test]
    fn rejects_badly_typed_values() {
        let def = table(UserKey::Email);
        let cases = [
            (
                json!({"id": 1, "amount": "AAAAA"}),
                "Can't parse 'AAAAA' as float for user attribute amount",
            ),
            (
                json!({"id": 1, "qty": true}),
                "Can't parse 'true' as float for user attribute qty",
            ),
            (
                json!({"id": 1, "close_date": "31/03/2026"}),
                "Can't parse '31/03/2026' as date for user attribute close_date",
            ),
            (
                json!({"id": 1, "won": "yes"}),
                "Can't parse 'yes' as bool for user attribute won",
            ),
            (
                json!({"id": 1, "owner": "ana"}),
                "Can't parse 'ana' as user email for user attribute owner",
            ),
            (
                json!({"id": 1, "stage": {"a": 1}}),
                "Can't parse '{\"a\":1}' as string for user attribute stage",
            ),
            (json!({"name": "x"}), "Missing value for id field id"),
            (json!({"id": null}), "Missing value for id field id"),
            (
                json!({"id": "x1"}),
                "Can't parse 'x1' as float for user attribute id",
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(parse(&def, record).expect_err("must fail"), expected);
        }
        let by_id = table(UserKey::Id);
        assert!(parse(&by_id, json!({"id": 1, "owner": 17})).is_ok());
        assert!(parse(&by_id, json!({"id": 1, "owner": "u-17"})).is_ok());
        assert!(parse(&by_id, json!({"id": 1, "owner": ""})).is_err());
        assert!(parse(&by_id, json!({"id": 1, "owner": 1.5})).is_err());
    }

    /// Decimal text becomes a JSON number; anything else is refused.
    #[test]
    fn parses_decimal_text() {
        assert_eq!(decimal(" 12 ").map(|n| n.to_string()), Some("12".into()));
        assert_eq!(
            decimal("-0012.50").map(|n| n.to_string()),
            Some("-12.50".into())
        );
        assert_eq!(decimal("+1e3").map(|n| n.to_string()), Some("1e+3".into()));
        assert_eq!(decimal(".5").map(|n| n.to_string()), Some("0.5".into()));
        for bad in ["", "-", ".", "1e", "1.2.3", "AAAAA", "NaN", "inf", "1,5"] {
            assert!(decimal(bad).is_none(), "{bad}");
        }
    }
}
